"""One rich Console (on stderr) shared by logging and progress: bars on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)
log = logging.getLogger("i2p")


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` is when a record is written (test runners and CliRunner
    swap it; a stream kept from set-up may be closed by then)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        import sys

        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it: sys.stderr is read at each write
        pass


def setup_logging(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings only), 0 info, 1 debug. On a terminal, rich's handler; in a file or a
    pipe one plain line per record (``INFO     message``), never wrapped, so a path stays one string."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    if console.is_terminal:
        handler: logging.Handler = RichHandler(
            console=console, show_path=False, show_time=False, markup=False
        )
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


class _RateColumn(TextColumn):
    """Items per second, with the unit."""

    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:,.1f} {self.unit}/s" if speed else f"– {self.unit}/s", style="progress.data.speed"
        )


PLAIN_INTERVAL_S = 10.0  # seconds between plain progress lines when stderr is a file or a pipe


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _fields_text(fields: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())


class _PlainProgress:
    """Progress as one plain line every ``interval`` seconds (and at the end), for logs and pipes:
    ``epoch 3: 12/40 steps (30%), 1.25 steps/s, elapsed 0:00:10, ETA 0:00:22, loss 0.5321``."""

    def __init__(self, description: str, total: int, unit: str, done: int, interval: float):
        self.description, self.total, self.unit, self.interval = description, total, unit, interval
        self.start_done = self.done = self.shown = done
        self.fields: dict = {}
        self.started = self.last = time.monotonic()

    def advance(self, n: int = 1, **fields: object) -> None:
        self.done += n
        self.fields.update(fields)
        if time.monotonic() - self.last >= self.interval:
            self.emit()

    def emit(self) -> None:
        now = time.monotonic()
        self.last, self.shown = now, self.done
        elapsed = now - self.started
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
        parts = [
            f"{self.description}: {self.done}/{self.total} {self.unit}{share}",
            f"{rate:.3g} {self.unit}/s" if rate > 0 else f"– {self.unit}/s",
            f"elapsed {_clock(elapsed)}",
            f"ETA {eta}",
        ]
        if self.fields:
            parts.append(_fields_text(self.fields))
        console.print(", ".join(parts), highlight=False, markup=False, soft_wrap=True)


@contextmanager
def progress_bar(
    description: str, total: int, unit: str = "objects", done: int = 0, interval: float | None = None
) -> Iterator:
    """Yield ``advance(n=1, **fields)`` (fields: extra values shown beside, e.g. ``loss=0.53``).

    On a terminal: a rich bar (count, rate, ETA, fields). Otherwise (a file, a pipe, a CI log): a plain
    line at the start, then at most every ``interval`` seconds (default PLAIN_INTERVAL_S), and at the
    end. Nothing when logging is quiet."""
    if log.getEffectiveLevel() > logging.INFO:
        yield lambda n=1, **fields: None
        return
    if not console.is_terminal:
        plain = _PlainProgress(
            description, total, unit, done, PLAIN_INTERVAL_S if interval is None else interval
        )
        plain.emit()
        yield plain.advance
        if plain.done != plain.shown:  # the end, unless the last line already showed it
            plain.emit()
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[extra]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=done, extra="")

        def advance(n: int = 1, **fields: object) -> None:
            progress.update(task, advance=n, **({"extra": _fields_text(fields)} if fields else {}))

        yield advance
