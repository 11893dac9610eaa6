"""One rich Console shared by logging and progress bars (bars only in the main process)."""

from __future__ import annotations

import logging
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


def setup_logging(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings only), 0 info, 1 debug."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    log.handlers[:] = [RichHandler(console=console, show_path=False, show_time=False, markup=False)]
    log.setLevel(level)
    log.propagate = False


class _RateColumn(TextColumn):
    """Items per second, with the unit."""

    def __init__(self, unit: str):
        super().__init__("")
        self.unit = unit

    def render(self, task):  # noqa: ANN001, ANN201
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:,.1f} {self.unit}/s" if speed else f"– {self.unit}/s", style="progress.data.speed"
        )


@contextmanager
def progress_bar(description: str, total: int, unit: str = "objects", done: int = 0) -> Iterator:
    """Yield ``advance(n)``; draws a bar (count, rate, ETA) unless logging is quiet."""
    enabled = log.getEffectiveLevel() <= logging.INFO and console.is_terminal
    if not enabled:
        yield lambda n=1: None
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
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=done)
        yield lambda n=1: progress.advance(task, n)
