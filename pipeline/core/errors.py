"""One family of errors for everything a user can cause.

Every boundary (readers, config, stage runner, model entry) raises a subclass of :class:`I2PError`
(defined in :mod:`i2pmae.errors`, so that the method code raises the same family).
The CLI prints such errors as one red line plus the hint, without a traceback (``I2P_DEBUG=1`` shows it).
A message states the rule, the offending value and where it was found; the hint says how to fix it.
"""

from __future__ import annotations

from i2pmae.errors import I2PError, InputError, TooFewPoints

__all__ = ["I2PError", "InputError", "TooFewPoints"]


class ConfigError(I2PError):
    """A parameter, override or stages.yaml entry is invalid."""


class LayoutError(I2PError):
    """A dataset root does not hold any layout we know, or a split file / h5 key is missing."""


class BadInput(I2PError):
    """One input object cannot be used (unreadable, empty, degenerate, duplicate).

    Raised by readers for a single object; the prepare stage records it in the store's ``failures``
    and skips the object, or stops the run with ``--strict``.
    """


class UnsafeFile(I2PError):
    """A file asks to run code (a pickle global outside the allow-list) while it is read."""


class StoreError(I2PError):
    """A store is missing, belongs to another stage, or is in a state we cannot continue from."""


class LockError(StoreError):
    """Another process is writing the same store."""


class TeacherError(I2PError):
    """A 2D teacher cannot be built (unknown name, weights unavailable offline, bad checkpoint)."""


class Interrupted(I2PError):
    """Ctrl-C, or a scheduler's SIGTERM / SIGUSR1, stopped the command; the message says what was kept (a
    checkpoint, finished chunks, nothing). ``exit_code``: 128 + the signal's number (130 for Ctrl-C)."""

    exit_code: int = 130
