"""``i2p teacher train``: regenerate the shipped ``tiny-synthetic`` teacher (logic in
``pipeline.features.train_teacher``). The dataset is prepared (or found) by the stage runner like any
other command's; only its train split is shown to the teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli_options import DataRoot, Quiet, Sets, Verbose, build, context, say, session
from pipeline.features.tiny_teachers import TeacherTraining

DEFAULTS = TeacherTraining()  # the one place the recipe's defaults are written

teacher_app = typer.Typer(help="The tiny teachers i2p trains itself.", no_args_is_help=True)


@teacher_app.command("train")
def train_command(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Labelled dataset whose train split it learns.")] = "synthetic",
    steps: Annotated[int | None, typer.Option(min=1, help=f"Optimiser steps (default {DEFAULTS.steps}).")] = None,
    seed: Annotated[int | None, typer.Option(help=f"Init, batch order and render draws (default {DEFAULTS.seed}).")] = None,
    draws: Annotated[int | None, typer.Option(min=1, help=f"Augmented draws per train object (default {DEFAULTS.draws}).")] = None,
    out: Annotated[Path | None, typer.Option(help="Weights to write (default: the file shipped in the package).")] = None,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Train tiny-synthetic on depth views of a dataset's train split; write its weights and record."""
    with session(ctx, data_root, sets, verbose, quiet) as (config, root_dir):
        from pipeline.features.tiny_teachers import packaged_weights, record_path
        from pipeline.features.train_teacher import NAME, train_teacher

        given = {"steps": steps, "seed": seed, "draws": draws}
        training = TeacherTraining(**{k: v for k, v in given.items() if v is not None})
        points = build("prepare", context(config, root_dir, dataset))
        target = (out.expanduser().resolve() if out else packaged_weights(NAME))
        record = train_teacher(points, target, training)
        acc, data = record["accuracy"], record["data"]
        say(f"weights: {target} ({record['weights_bytes']} bytes, sha256 {record['weights_sha256']})")
        say(f"record: {record_path(target)}")
        say(
            f"trained on {data['dataset']} train (generator v{data['generator_version']}, {data['objects']} objects) "
            f"in {record['training']['seconds_total']:.0f} s; train views {100 * acc['train_views_head']:.1f} %, "
            f"test-view linear probe {100 * acc['test_views_probe']:.1f} % (chance {100 * acc['chance']:.1f} %)"
        )
