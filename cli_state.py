"""``i2p status`` and ``i2p gc``: what the data root holds, and what of it nothing uses. Registered on the
app in ``cli.py`` (between ``run`` and the end, the order ``i2p --help`` lists them in).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli_options import Dataset, request, session, with_global_options
from cli_output import freed_line, garbage_lines, report, say


@with_global_options
def status(
    ctx: typer.Context,
    dataset: Dataset = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Compare with the settings of `i2p run --quick`.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole state as JSON (schema: docs/pipeline.md).")
    ] = False,
) -> None:
    """Every stage per dataset (up to date, partial, missing, or which param changed), stores, runs."""
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands
        from pipeline.runner.status import render_json, render_tables

        state = commands.status(request(config, root_dir, dataset), quick)
        say(render_json(state)) if as_json else render_tables(state)


@with_global_options
def gc(
    ctx: typer.Context,
    yes: Annotated[
        bool, typer.Option("--yes", help="Remove what is listed (default: only list it).")
    ] = False,
) -> None:
    """List stores no dataset or run uses, and optimizer state of finished runs; remove them with --yes."""
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        items, freed = commands.gc(request(config, root_dir, None), yes)
        report(garbage_lines(items, root_dir))
        if items:
            say(freed_line(items, freed))
