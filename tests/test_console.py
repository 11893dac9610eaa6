"""Progress on stderr: rich bars on a terminal, plain lines when stderr is a file or a pipe."""

from __future__ import annotations

import io
import re

from rich.console import Console

from pipeline.core import console as console_module
from pipeline.core.console import progress_bar, setup_logging


def test_plain_lines_when_stderr_is_not_a_terminal(capsys):
    setup_logging(0)
    assert not console_module.console.is_terminal  # pytest captures stderr: not a terminal
    with progress_bar("epoch 3", 4, "steps", interval=0) as advance:
        advance(1, loss=0.53214)
        advance(2, loss=0.4)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("epoch 3: 0/4 steps (0%)")  # said at once: the work has started
    assert lines[1].startswith("epoch 3: 1/4 steps (25%)") and "loss 0.5321" in lines[1]
    assert re.search(r"[0-9.e+]+ steps/s, elapsed 0:00:\d\d, ETA \d:\d\d:\d\d, loss 0.4$", lines[2]), lines[2]
    assert len(lines) == 3  # the last line already showed the end state: it is not repeated


def test_log_lines_in_a_file_are_never_wrapped(capsys):
    setup_logging(0)
    path = "/a/data/root/" + "/".join(["folder"] * 20) + "/points/synthetic-0b0bb493.zarr"
    console_module.log.info("prepare synthetic: wrote %s (test 8, train 24; 0 skipped)", path)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"INFO     prepare synthetic: wrote {path} (test 8, train 24; 0 skipped)"


def test_plain_lines_are_throttled_and_silent_when_quiet(capsys):
    setup_logging(0)
    with progress_bar("prepare toys", 1000, "objects", done=10) as advance:  # default interval: seconds
        for _ in range(100):
            advance(1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("prepare toys: 10/1000") and "110/1000" in lines[1]
    setup_logging(-1)
    with progress_bar("quiet", 3) as advance:
        advance(3)
    assert capsys.readouterr().err == ""
    setup_logging(0)


def test_rich_bar_on_a_terminal_shows_the_extra_fields(monkeypatch):
    buffer = io.StringIO()
    terminal = Console(file=buffer, force_terminal=True, width=150, color_system=None)
    with monkeypatch.context() as patch:
        patch.setattr(console_module, "console", terminal)  # the output device, not our code
        setup_logging(0)
        with progress_bar("finetune", 5, "batches") as advance:
            advance(2, loss=1.25)
    setup_logging(0)  # logging back on the shared console
    text = buffer.getvalue()
    assert "finetune" in text and "2/5" in text and "loss 1.25" in text and "batches/s" in text
