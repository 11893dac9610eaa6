"""``i2p verify [STORE…]``: read every chunk of every store and say which are damaged (the checks:
``pipeline.storage.verify``). Registered on the app in ``cli.py``, after ``status`` and ``gc``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli_options import session, store_root, with_global_options
from cli_output import say

STYLES = {"ok": "green", "damaged": "red", "cannot be checked": "yellow", "partly checked": "yellow"}


@with_global_options
def verify(
    ctx: typer.Context,
    stores: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="STORE",
            help="Store folders (default: every points/, views/ and features/ store under the data root and "
            "the store root).",
        ),
    ] = None,
) -> None:
    """Read every chunk of every store: files, checksums, done masks. One line per store on stdout (ok,
    damaged: what and how to rebuild, cannot be checked: no checksums); exit 1 when any is damaged."""
    from rich.markup import escape

    with session(ctx) as (_config, root):
        from pipeline.storage.remote import relative
        from pipeline.storage.verify import find_stores, verify_store

        elsewhere = store_root()
        targets = [_store_path(p, root) for p in stores] if stores else find_stores(root, elsewhere)
        if not stores and elsewhere and "://" in elsewhere:
            say(f"{elsewhere}: not verified (i2p verify reads local folders)")
        if not targets:
            say(f"no stores under {root}")
        damaged = 0
        for path in targets:
            verdict = verify_store(path)
            damaged += verdict.state == "damaged"
            say(f"{escape(relative(path, root))}: [{STYLES[verdict.state]}]{escape(verdict.text())}[/]")
    if damaged:
        raise typer.Exit(1)


def _store_path(given: Path, root: Path) -> Path:
    """A STORE argument: as given (from the working directory), else under the data root."""
    path = given.expanduser()
    return path.resolve() if path.exists() or path.is_absolute() else (root / path).resolve()
