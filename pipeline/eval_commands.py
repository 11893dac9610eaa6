"""The evaluation commands: ``i2p eval svm``, ``i2p embed``, ``i2p finetune``, ``i2p fewshot``.

cli.py registers them (``app.add_typer(eval_app, name="eval")``, ``app.command("embed")(embed_command)``
…). Importing this module costs only typer: torch, scikit-learn and zarr are imported inside the
commands. Each command runs inside cli's ``session``, which turns known errors into one red line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli_options import DataRoot, Dataset, Quiet, Sets, Verbose

eval_app = typer.Typer(
    help="Evaluate a pre-trained encoder on frozen features (linear SVM).", no_args_is_help=True
)

Run = Annotated[
    str | None, typer.Option("--run", help="Run name under <data-root>/runs (our checkpoint; config inside).")
]
Ckpt = Annotated[
    Path | None,
    typer.Option("--ckpt", help="Checkpoint file: ours, or the paper's pre-train.pth / Point-M2AE's."),
]
Which = Annotated[str, typer.Option("--which", help="Checkpoint of --run: last | best.")]
Device = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
Points = Annotated[int | None, typer.Option("--points", help="Points per object (default: see the report).")]
Pooling = Annotated[str | None, typer.Option("--pooling", help="max (I2P-MAE) | mean+max (Point-M2AE).")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Objects per forward pass.")]
RandomInit = Annotated[
    bool,
    typer.Option(
        "--random-init", help="Evaluate the same architecture at random initialisation (a baseline)."
    ),
]
Report = Annotated[
    Path | None, typer.Option("--report", help="Markdown file to append to (default: the run's report.md).")
]
Epochs = Annotated[
    int | None, typer.Option("--epochs", help="Fine-tuning epochs (paper: 300; few-shot: 150).")
]


def _say(text: str) -> None:
    from pipeline.console import console

    console.print(text, highlight=False, soft_wrap=True)


def _rel(path: Path) -> str:
    """The path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@eval_app.command("svm")
def svm_command(
    ctx: typer.Context,
    run: Run = None,
    ckpt: Ckpt = None,
    dataset: Dataset = None,
    c: Annotated[
        float | None, typer.Option("--c", "--svm-c", help="SVM C (default: the paper's for the dataset).")
    ] = None,
    pooling: Pooling = None,
    points: Points = None,
    batch_size: BatchSize = None,
    device: Device = None,
    which: Which = "last",
    random_init: RandomInit = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random-init.")] = 0,
    report: Report = None,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Linear SVM on frozen global features (spec §3.4, §9.3); appends to the run's report.md."""
    from cli import session

    with session(ctx, data_root, sets, verbose, quiet) as (config, root):
        from pipeline import evaluation as ev

        params = config.params(
            "eval", svm_c=c, points=points, pooling=pooling, batch_size=batch_size, device=device
        )
        store = ev.open_points(root, ev.dataset_name(root, dataset))
        encoder = ev.resolve_encoder(root, run, ckpt, random_init=random_init, seed=seed, which=which)
        out = ev.run_svm(
            encoder, store, params, ev.resolve_device(params.device), ev.report_path(root, encoder, report)
        )
        _say(
            f"linear SVM on {store.name}: [bold]{100 * out.accuracy:.2f} %[/] (C={out.c:g}, "
            f"{out.n_points} points, {encoder.label}) → {_rel(out.report)}"
        )


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
    which: Which = "last",
    random_init: RandomInit = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random-init.")] = 0,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Write the frozen encoder's global features (the SVM's) of every object of a split to a .npy file."""
    from cli import session

    with session(ctx, data_root, sets, verbose, quiet) as (config, root):
        from pipeline import evaluation as ev

        params = config.params("eval", points=points, pooling=pooling, batch_size=batch_size, device=device)
        store = ev.open_points(root, ev.dataset_name(root, dataset))
        encoder = ev.resolve_encoder(root, run, ckpt, random_init=random_init, seed=seed, which=which)
        path, shape, how = ev.run_embed(encoder, store, split, params, ev.resolve_device(params.device), out)
        _say(f"wrote {path}: {shape[0]} × {shape[1]} float32 ({store.name}/{split}, points {how})")


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
    seeds: Annotated[int, typer.Option("--seeds", help="Run seeds 0..N-1; the report gives mean ± std.")] = 1,
    epochs: Epochs = None,
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
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Fine-tune the encoder as a classifier (spec §3.5, §9.2); evaluates a fine-tuned checkpoint as is."""
    from cli import session

    with session(ctx, data_root, sets, verbose, quiet) as (config, root):
        from pipeline import evaluation as ev
        from pipeline.finetuning import run_finetune

        if seeds < 1:
            raise ev.EvaluationError(f"--seeds must be at least 1, got {seeds}")
        store = ev.open_points(root, ev.dataset_name(root, dataset, split))
        path = ev.checkpoint_path(root, run, ckpt, which)
        out = run_finetune(
            root, None, path, store, recipe=recipe or split, seeds=list(range(seeds)),
            device=ev.resolve_device(device or "auto"), report=report, random_init=random_init,
            epochs=epochs, batch_size=batch_size, points=points, lr=lr, votes=votes,
        )  # fmt: skip
        if out.evaluated is not None:
            acc, voted = out.evaluated
            vote = f", voted {100 * voted:.2f} %" if voted is not None else ""
            _say(f"fine-tuned classifier on {store.name}: {100 * acc:.2f} %{vote} → {_rel(out.report)}")
            return
        from pipeline.reports import mean_std

        last = mean_std([r.last_acc for r in out.results])
        best = mean_std([r.best_acc for r in out.results])
        _say(
            f"fine-tuning on {store.name}: last epoch {last}, best epoch {best} (chosen on the test split) "
            f"→ {_rel(out.report)}"
        )


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
        list[int] | None, typer.Option("--way", help="Classes per episode (repeatable; 5 and 10).")
    ] = None,
    shot: Annotated[
        list[int] | None, typer.Option("--shot", help="Train objects per class (repeatable; 10 and 20).")
    ] = None,
    folds: Annotated[int, typer.Option("--folds", help="Episodes per setting.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the episodes and of the fine-tuning.")] = 0,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    points: Points = None,
    device: Device = None,
    which: Which = "last",
    random_init: RandomInit = False,
    report: Report = None,
    data_root: DataRoot = None,
    sets: Sets = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Few-shot classification (spec §1.5): way × shot × folds episodes, fine-tuned per fold."""
    from cli import session

    with session(ctx, data_root, sets, verbose, quiet) as (config, root):
        from pipeline import evaluation as ev
        from pipeline.finetuning import run_fewshot
        from pipeline.reports import mean_std

        if folds < 1:
            raise ev.EvaluationError(f"--folds must be at least 1, got {folds}")
        store = None
        if episodes is None:
            store = ev.open_points(root, ev.dataset_name(root, dataset))
        path = ev.checkpoint_path(root, run, ckpt, which)
        settings, out = run_fewshot(
            root, None, path, store, episodes=episodes, ways=way or [5, 10], shots=shot or [10, 20],
            folds=folds, seed=seed, device=ev.resolve_device(device or "auto"), report=report,
            random_init=random_init, epochs=epochs, batch_size=batch_size, points=points,
        )  # fmt: skip
        for w, s, results in settings:
            _say(f"{w}-way {s}-shot: last epoch {mean_std([r.last_acc for r in results])}")
        _say(f"report → {_rel(out)}")
