"""``i2p partseg``: part segmentation with a pre-trained encoder (method §14), a stage like ``finetune``.

The dataset must carry part labels (``i2p prepare shapenetpart --root R`` or the generated
``synthetic-parts``, the default, prepared on first use). Importing this module costs only typer.
"""

from __future__ import annotations

from typing import Annotated

import typer

import cli_output
from cli_eval import (
    TRAINING_INTERRUPTED,
    BatchSize,
    Ckpt,
    MaxSteps,
    Points,
    RandomInit,
    Report,
    Which,
    _encoder,
)
from cli_options import Device, Run, default, request, session, with_global_options

GENERATED = "synthetic-parts"  # the part-labelled dataset i2p generates itself (no --root)
PartDataset = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help=f"A part-labelled dataset: shapenetpart, or {GENERATED} (the default, generated).",
    ),
]


@with_global_options
def partseg_command(
    ctx: typer.Context,
    run: Run = None,
    ckpt: Ckpt = None,
    dataset: PartDataset = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help=f"Epochs (default {default('partseg', 'epochs')}).")
    ] = None,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    points: Points = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (reference: 2e-4).")] = None,
    single_step: Annotated[
        bool | None,
        typer.Option(
            "--single-step/--double-step",
            help="One clipped optimiser step per batch (the fix) instead of the reference's two.",
        ),
    ] = None,
    test_points: Annotated[
        str | None,
        typer.Option("--test-points", help="resample (the reference's, new draws each epoch) | fps | all."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the head, the draws and dropout.")
    ] = None,
    device: Device = None,
    which: Which = "last",
    random_init: RandomInit = False,
    report: Report = None,
) -> None:
    """Part segmentation on ShapeNetPart-format data (method §14): class and instance mIoU."""
    options = dict(locals())
    with session(ctx, interrupted=TRAINING_INTERRUPTED) as (config, root):
        from pipeline.core.errors import ConfigError
        from pipeline.runner import evaluations

        if not (run or ckpt or random_init):
            raise ConfigError(
                "part segmentation needs an encoder", "pass --run NAME, --ckpt FILE or --random-init"
            )
        dataset = dataset or GENERATED
        if dataset == GENERATED and "source" not in config.overrides.get("prepare", {}):
            config = config.with_values("prepare", source=GENERATED)
        config = config.with_options("partseg", options)
        req = request(config.with_values("train", run=run), root, dataset, run)
        cli_output.report(evaluations.partseg(req, _encoder(ckpt, random_init, which), report))
