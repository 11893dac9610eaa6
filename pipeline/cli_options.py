"""Typer option types shared by every ``i2p`` command (cli.py and pipeline/eval_commands.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataRoot = Annotated[
    Path | None,
    typer.Option("--data-root", envvar="I2P_DATA_ROOT", help="Where stores and runs live (default ./data)."),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a stages.yaml value for this run: stage.key=value (repeatable)."),
]
Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v debug).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors; no progress bars.")]
Stages = Annotated[Path | None, typer.Option("--stages", help="stages.yaml to use (default ./stages.yaml).")]
Dataset = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="Dataset name; may be omitted when exactly one is prepared."),
]
