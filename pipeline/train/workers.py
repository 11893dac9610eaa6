"""A DataLoader worker that dies while training (the kernel's out-of-memory killer sends it SIGKILL) ends
the fit as a stop signal does: after the last finished step, with ``ckpt-last.pt`` saved at that step, and
one line naming the likely cause and the knobs, instead of a raw traceback that loses the epoch's steps.

torch finds a dead worker two ways. Its SIGCHLD handler raises in the main thread wherever that thread is,
inside an optimiser step too (the weights half updated, nothing consistent to save); the loader's own poll
raises when the next batch is asked for, between two steps (at most ``MP_STATUS_CHECK_INTERVAL``, 5 s, after
the death). While a fit reads batches, :class:`WorkerWatch` replaces the handler with one that does nothing,
so a death is always found by the poll, at a step boundary, and restores torch's when the fit ends.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from pipeline.core.errors import ResourceError

DEATH = "DataLoader worker (pid"  # how torch's RuntimeError for a dead worker starts (both ways)


class WorkerWatch:
    """Batches of a loader, where a dead worker ends the iteration and sets :attr:`death` (what happened,
    e.g. "DataLoader worker pid 4242 was killed by SIGKILL") instead of raising. A context manager: on
    exit torch's SIGCHLD handler is back."""

    def __init__(self) -> None:
        self.death: str | None = None
        self._before: Any = None  # the SIGCHLD handler found when the first batches were asked for

    def batches(self, loader: Any) -> Iterator[Any]:
        """The loader's batches of one epoch; stops early (``death`` set) when a worker died: torch's
        RuntimeError, or a pipe or socket error while a batch comes from a worker that is dead."""
        iterator = None
        try:
            iterator = iter(loader)  # starts (or, persistent, resumes) the workers: torch sets its handler
            self._quiet()
            yield from iterator
        except (RuntimeError, OSError, EOFError) as err:
            broken = iterator if iterator is not None else getattr(loader, "_iterator", None)
            ours = isinstance(err, RuntimeError) and str(err).startswith(DEATH)
            dead = dead_workers(broken, wait=0.0 if ours or isinstance(err, RuntimeError) else 2.0)
            if not (ours or dead):
                raise
            self.death = describe(dead) if dead else str(err)
            _shut_down(loader, broken)

    def _quiet(self) -> None:
        if not hasattr(signal, "SIGCHLD") or threading.current_thread() is not threading.main_thread():
            return
        handler = signal.signal(signal.SIGCHLD, _noted)
        if self._before is None:
            self._before = handler

    def __enter__(self) -> WorkerWatch:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._before is not None:
            signal.signal(signal.SIGCHLD, self._before)
            self._before = None


def _noted(signum: int, frame: Any) -> None:
    """SIGCHLD while batches are read: nothing here; the loader's poll finds a dead worker."""


def dead_workers(iterator: Any, wait: float) -> list[tuple[int, int]]:
    """(pid, exit code) of the loader iterator's worker processes that are gone, waiting up to ``wait``
    seconds for the kernel to report one (a killed worker's pipe can break before it is reaped)."""
    workers = list(getattr(iterator, "_workers", None) or [])
    deadline = time.monotonic() + wait
    while True:
        dead = [(w.pid, w.exitcode) for w in workers if not w.is_alive()]
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.02)


def describe(dead: list[tuple[int, int]]) -> str:
    """``"DataLoader worker pid 4242 was killed by SIGKILL"`` (or "… exited with code 1")."""
    how = [
        f"pid {pid} was killed by {signal.Signals(-code).name}"
        if code < 0
        else f"pid {pid} exited with code {code}"
        for pid, code in dead
    ]
    return f"DataLoader worker {'; '.join(how)}"


def _shut_down(loader: Any, iterator: Any) -> None:
    """Stop the other workers of a loader whose worker died and forget its (persistent) iterator, so that
    torch's SIGCHLD handler, once back, no longer watches the dead one and a next epoch starts afresh."""
    stop = getattr(iterator, "_shutdown_workers", None)
    if stop is not None:
        stop()
    if getattr(loader, "_iterator", None) is iterator:
        loader._iterator = None


def worker_error(death: str, step: int, ckpt: Any, num_workers: int, batch_size: int) -> ResourceError:
    """The one line a fit stopped by a dead worker ends with: ``ckpt`` holds step ``step`` (None: nothing was
    saved, under torchrun, where the ranks cannot agree on a save; the last checkpoint stays)."""
    cause = (
        "most likely the kernel's out-of-memory killer (`dmesg` says so)"
        if "SIGKILL" in death
        else "out of memory or a crash in a reader"
    )
    kept = f"checkpoint saved at step {step} ({ckpt})" if ckpt else "the run's last checkpoint stays"
    return ResourceError(
        f"{death}, {cause}: {kept}",
        f"lower --set train.num_workers={num_workers // 2} (now {num_workers}: each worker holds the batches "
        f"it reads) or --batch-size (now {batch_size}), then rerun the same `i2p train` command to continue",
    )
