"""The project's one error family: its base class lives here so that the method code can raise it too.

:class:`I2PError` carries a message (the rule, the offending value, where) and a hint (how to fix it).
The CLI prints any I2PError as one red line plus the hint; ``I2P_DEBUG=1`` adds the traceback.
:mod:`pipeline.errors` defines the subclasses raised at the pipeline's boundaries.
"""

from __future__ import annotations


class I2PError(Exception):
    """Base class of every error the CLI reports as a known, user-fixable problem."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint)  # both in args, so the error survives pickling (dask workers)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class InputError(I2PError, ValueError):
    """Tensors or arguments that break the method's contract (shapes, counts, ranges); a ValueError too."""


class TooFewPoints(InputError):
    """An object has fewer points than a sampling step asks for (e.g. FPS of 1024 out of 512)."""
