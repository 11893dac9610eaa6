"""The evaluation commands: ``i2p eval svm``, ``i2p embed``, ``i2p finetune``, ``i2p fewshot``.

Each builds its request and calls one function of :mod:`pipeline.runner.evaluations`, which decides
between the tracked stage of a run (``--run``, or the dataset's last run) and the encoder evaluated
directly (``--ckpt FILE``, ``--random-init``); ``cli_output`` prints the result. Importing this module
costs only typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import cli_output
from cli_options import Dataset, Device, Run, default, request, session, with_global_options

eval_app = typer.Typer(
    help="Evaluate a pre-trained encoder on frozen features (linear SVM).", no_args_is_help=True
)

Ckpt = Annotated[
    Path | None,
    typer.Option("--ckpt", help="Checkpoint file: ours, or the paper's pre-train.pth / Point-M2AE's."),
]
Which = Annotated[str, typer.Option("--which", help="Checkpoint of --run: last | best.")]
Points = Annotated[int | None, typer.Option("--points", help="Points per object (default: see the report).")]
Pooling = Annotated[str | None, typer.Option("--pooling", help="max (I2P-MAE) | mean+max (Point-M2AE).")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Objects per forward pass.")]
BnStats = Annotated[
    str | None,
    typer.Option(
        "--bn-stats",
        help="BatchNorm statistics: running (the paper's) | reestimate (on the train split first).",
    ),
]
RandomInit = Annotated[
    bool,
    typer.Option(
        "--random-init", help="Evaluate the same architecture at random initialisation (a baseline)."
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed of --random-init.")]
Report = Annotated[
    Path | None, typer.Option("--report", help="Markdown file to append to (default: the run's report.md).")
]
Epochs = Annotated[
    int | None, typer.Option("--epochs", help="Fine-tuning epochs (paper: 300; few-shot: 150).")
]
MaxSteps = Annotated[
    int | None,
    typer.Option("--max-steps", help="Stop each fine-tuning after this many steps (a quick check)."),
]
INTERRUPTED = "interrupted: nothing of this evaluation is kept (report.md is written at its end); rerun to start it again"
TRAINING_INTERRUPTED = (
    "interrupted: fine-tuning keeps its last finished epoch; rerun the same command to continue from there"
)


def _encoder(ckpt: Path | None, random_init: bool, which: str, seed: int = 0):
    from pipeline.runner.evaluations import EncoderChoice

    return EncoderChoice(ckpt, random_init, which, seed)


@eval_app.command("svm")
@with_global_options
def svm_command(
    ctx: typer.Context,
    run: Run = None,
    ckpt: Ckpt = None,
    dataset: Dataset = None,
    c: Annotated[
        float | None, typer.Option("--c", "--svm-c", help="SVM C (default: the paper's for the dataset).")
    ] = None,
    svm_c_cv: Annotated[
        bool,
        typer.Option(
            "--svm-c-cv",
            help="Choose C by 3-fold cross-validation on the train split (an option: the paper fixes C).",
        ),
    ] = False,
    pooling: Pooling = None,
    points: Points = None,
    batch_size: BatchSize = None,
    device: Device = None,
    bn_stats: BnStats = None,
    which: Which = "last",
    random_init: RandomInit = False,
    seed: Seed = 0,
    report: Report = None,
) -> None:
    """Linear SVM on frozen global features (method §3.4, §9.3); appends to the run's report.md."""
    options = dict(locals())
    with session(ctx, interrupted=INTERRUPTED) as (config, root):
        from pipeline.runner import evaluations

        config = config.with_options("eval", options, svm_c=c, svm_c_cv=svm_c_cv or None).with_values(
            "train", run=run
        )
        req = request(config, root, dataset, run)
        cli_output.report(evaluations.svm(req, _encoder(ckpt, random_init, which, seed), report))


@with_global_options
def embed_command(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="The .npy file to write: one row per object, store order.")
    ],
    run: Run = None,
    ckpt: Ckpt = None,
    dataset: Dataset = None,
    split: Annotated[
        str, typer.Option("--split", help="Which split of the dataset: train | test | ...")
    ] = "train",
    points: Points = None,
    pooling: Pooling = None,
    batch_size: BatchSize = None,
    device: Device = None,
    bn_stats: BnStats = None,
    which: Which = "last",
    random_init: RandomInit = False,
    seed: Seed = 0,
) -> None:
    """Write the frozen encoder's global features (the SVM's) of every object of a split to a .npy file."""
    options = dict(locals())
    with session(ctx, interrupted=INTERRUPTED) as (config, root):
        from pipeline.runner import evaluations

        config = config.with_options("eval", options).with_values("train", run=run)
        req = request(config, root, dataset, run)
        cli_output.report(evaluations.embed(req, _encoder(ckpt, random_init, which, seed), split, out))


@with_global_options
def finetune_command(
    ctx: typer.Context,
    run: Run = None,
    ckpt: Ckpt = None,
    dataset: Dataset = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="ScanObjectNN variant: obj-bg | obj-only | pb-t50-rs (with -d scanobjectnn)."
        ),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option("--recipe", help="modelnet40 | obj-bg | obj-only | pb-t50-rs (default: from the data)."),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Run seeds 0..N-1; the report gives mean ± std.")
    ] = None,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    points: Points = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (paper: 5e-4).")] = None,
    votes: Annotated[
        int | None,
        typer.Option("--votes", help="Views of the one voting pass (ModelNet40: 10; 0 = no voting)."),
    ] = None,
    device: Device = None,
    which: Which = "last",
    random_init: RandomInit = False,
    report: Report = None,
) -> None:
    """Fine-tune the encoder as a classifier (method §3.5, §9.2); evaluates a fine-tuned checkpoint as is."""
    options = dict(locals())
    with session(ctx, interrupted=TRAINING_INTERRUPTED) as (config, root):
        from pipeline.runner import evaluations

        if dataset == "scanobjectnn" and split:
            dataset = f"scanobjectnn-{split}"
        config = config.with_options("finetune", options, recipe=recipe or split)
        req = request(config.with_values("train", run=run), root, dataset, run)
        cli_output.report(evaluations.finetune(req, _encoder(ckpt, random_init, which), report))


@with_global_options
def fewshot_command(
    ctx: typer.Context,
    run: Run = None,
    ckpt: Ckpt = None,
    dataset: Dataset = None,
    episodes: Annotated[
        Path | None,
        typer.Option("--episodes", help="Point-BERT few-shot pickles (ModelNetFewshot/) instead."),
    ] = None,
    way: Annotated[
        list[int] | None,
        typer.Option("--way", help=f"Classes per episode (repeatable; default {default('fewshot', 'way')})."),
    ] = None,
    shot: Annotated[
        list[int] | None,
        typer.Option(
            "--shot", help=f"Train objects per class (repeatable; default {default('fewshot', 'shot')})."
        ),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option("--folds", help=f"Episodes per setting (default {default('fewshot', 'folds')})."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the episodes and of the fine-tuning.")
    ] = None,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    batch_size: BatchSize = None,
    points: Points = None,
    device: Device = None,
    which: Which = "last",
    random_init: RandomInit = False,
    report: Report = None,
) -> None:
    """Few-shot classification (method §1.5): way × shot × folds episodes, fine-tuned per fold."""
    options = dict(locals())
    with session(ctx, interrupted=TRAINING_INTERRUPTED) as (config, root):
        from pipeline.runner import evaluations

        config = config.with_options("fewshot", options)
        req = request(config.with_values("train", run=run), root, dataset, run)
        cli_output.report(evaluations.fewshot(req, _encoder(ckpt, random_init, which), report, episodes))
