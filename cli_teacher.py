"""``i2p teacher train``: regenerate the shipped ``tiny-synthetic`` teacher (logic in
``pipeline.features.train_teacher``). The dataset is prepared (or found) by the stage runner like any
other command's; only its train split is shown to the teacher."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli_options import request, session, with_global_options
from cli_output import report, teacher_lines
from pipeline.features.tiny_teachers import TeacherTraining

DEFAULTS = TeacherTraining()  # the one place the recipe's defaults are written

teacher_app = typer.Typer(help="The tiny teachers i2p trains itself.", no_args_is_help=True)


@teacher_app.command("train")
@with_global_options
def train_command(
    ctx: typer.Context,
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Labelled dataset whose train split it learns.")
    ] = "synthetic",
    steps: Annotated[
        int | None, typer.Option(min=1, help=f"Optimiser steps (default {DEFAULTS.steps}).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Init, batch order and render draws (default {DEFAULTS.seed}).")
    ] = None,
    draws: Annotated[
        int | None, typer.Option(min=1, help=f"Augmented draws per train object (default {DEFAULTS.draws}).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Weights to write (default: the file shipped in the package).")
    ] = None,
) -> None:
    """Train tiny-synthetic on depth views of a dataset's train split; write its weights and record."""
    with session(ctx) as (config, root_dir):
        from pipeline.runner import commands

        given = {"steps": steps, "seed": seed, "draws": draws}
        training = TeacherTraining(**{k: v for k, v in given.items() if v is not None})
        target, record = commands.train_tiny_teacher(
            request(config, root_dir, dataset), training, out, shlex.join(["i2p", *sys.argv[1:]])
        )
        report(teacher_lines(target, record))
