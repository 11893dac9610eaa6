"""Typer option types shared by every ``i2p`` command (cli.py and pipeline/eval_commands.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

DataRoot = Annotated[
    Path | None,
    typer.Option("--data-root", envvar="I2P_DATA_ROOT", help="Where stores and runs live (default ./data)."),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a stages.yaml value for this run: stage.key=value (repeatable)."),
]
# Flags (bool or counted) take no value: metavar="" keeps the help from showing `<bool>` / `<int>`.
Verbose = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True, metavar="", show_default=False, help="More logging: -v (or -vv) debug."
    ),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", metavar="", help="Only warnings and errors; no progress bars.")
]
Stages = Annotated[Path | None, typer.Option("--stages", help="stages.yaml to use (default ./stages.yaml).")]
Dataset = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="Dataset name; may be omitted when exactly one is prepared."),
]


def hide_flag_types(command: Any, parent: Any = None) -> Any:
    """Set ``metavar=""`` on every flag of a click ``command`` and its sub-commands (``--help`` too).

    typer ≥ 0.20 shows a flag's Python type (``--help <bool>``) in the help table, which reads as if
    the flag took a value; a flag with an empty metavar shows none. Returns ``command``."""
    ctx = command.context_class(command, parent=parent)
    for param in command.get_params(ctx):
        if param.param_type_name == "option" and (param.is_flag or param.count):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        hide_flag_types(sub, ctx)
    return command


class FlagGroup(TyperGroup):
    """The ``i2p`` command group (``typer.Typer(cls=FlagGroup)``): help shows flags without a type."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "_flags_hidden", False):
            self._flags_hidden = hide_flag_types(self) is self
        return super().main(*args, **kwargs)
