"""The evaluation commands: ``i2p eval svm``, ``i2p embed``, ``i2p finetune``, ``i2p fewshot``.

With a run (``--run``, or the dataset's last run) ``eval svm``, ``finetune`` and ``fewshot`` are stages:
planned, skipped when up to date, shown by ``i2p status``, on the run's own points store for its
dataset. With ``--ckpt FILE`` (ours or the paper's) or ``--random-init`` they evaluate that encoder
directly on the dataset's current points store. Importing this module costs only typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli_options import (
    DataRoot,
    Dataset,
    Quiet,
    Run,
    Sets,
    Verbose,
    context,
    default,
    run_evaluation,
    say,
    session,
)
from pipeline.storage.remote import relative

eval_app = typer.Typer(help="Evaluate a pre-trained encoder on frozen features (linear SVM).", no_args_is_help=True)

Ckpt = Annotated[Path | None, typer.Option("--ckpt", help="Checkpoint file: ours, or the paper's pre-train.pth / Point-M2AE's.")]
Which = Annotated[str, typer.Option("--which", help="Checkpoint of --run: last | best.")]
Device = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
Points = Annotated[int | None, typer.Option("--points", help="Points per object (default: see the report).")]
Pooling = Annotated[str | None, typer.Option("--pooling", help="max (I2P-MAE) | mean+max (Point-M2AE).")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="Objects per forward pass.")]
BnStats = Annotated[str | None, typer.Option("--bn-stats", help="BatchNorm statistics: running (the paper's) | reestimate (on the train split first).")]
RandomInit = Annotated[bool, typer.Option("--random-init", help="Evaluate the same architecture at random initialisation (a baseline).")]
Report = Annotated[Path | None, typer.Option("--report", help="Markdown file to append to (default: the run's report.md).")]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Fine-tuning epochs (paper: 300; few-shot: 150).")]
MaxSteps = Annotated[int | None, typer.Option("--max-steps", help="Stop each fine-tuning after this many steps (a quick check).")]
INTERRUPTED = "interrupted: nothing of this evaluation is kept (report.md is written at its end); rerun to start it again"


def _direct(run: str | None, ckpt: Path | None, random_init: bool, which: str, cx=None) -> bool:
    """An encoder evaluated as is (not a tracked stage): a file, a random initialisation, ckpt-best, or a
    run directory this version did not train (no identity in its config.yaml)."""
    if ckpt is not None or random_init or which != "last":
        return True
    return cx is not None and not _tracked(cx, run)


def _tracked(cx, run: str | None) -> bool:
    from pipeline.storage import rundir

    return rundir.read(rundir.run_dir(cx.data_root, run or _last_run(cx))).identity is not None


def _points(cx, run: str | None, ckpt: Path | None) -> Path:
    """The run's own points store for a tracked run of this dataset, else the dataset's current one."""
    from pipeline.runner.lookup import current_points, run_points

    return run_points(cx) if ckpt is None and run and _tracked(cx, run) else current_points(cx)


def _encoder_run(cx, run: str | None, ckpt: Path | None, random_init: bool) -> str | None:
    """The run whose encoder is evaluated: --run, else (no --ckpt, no bare --random-init) the last run."""
    if run or ckpt or random_init:
        return run
    return _last_run(cx)


@eval_app.command("svm")
def svm_command(
    ctx: typer.Context, run: Run = None, ckpt: Ckpt = None, dataset: Dataset = None,
    c: Annotated[float | None, typer.Option("--c", "--svm-c", help="SVM C (default: the paper's for the dataset).")] = None,
    pooling: Pooling = None, points: Points = None, batch_size: BatchSize = None, device: Device = None,
    bn_stats: BnStats = None, which: Which = "last", random_init: RandomInit = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random-init.")] = 0,
    report: Report = None, data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Linear SVM on frozen global features (method §3.4, §9.3); appends to the run's report.md."""
    with session(ctx, data_root, sets, verbose, quiet, interrupted=INTERRUPTED) as (config, root):
        from pipeline.core.devices import resolve_device
        from pipeline.evaluate import extract as ev
        from pipeline.evaluate.encoders import report_path, resolve_encoder

        config = config.with_values("eval", svm_c=c, points=points, pooling=pooling, batch_size=batch_size, device=device,
                                    bn_stats=bn_stats)
        config = config.with_values("train", run=run)
        cx = context(config, root, dataset, run)
        if not _direct(run, ckpt, random_init, which, cx):
            return run_evaluation("eval", cx)
        params = config.params("eval")
        run = _encoder_run(cx, run, ckpt, random_init)
        store = ev.points_store(_points(cx, run, ckpt))
        encoder = resolve_encoder(root, run, ckpt, random_init=random_init, seed=seed, which=which)
        out = ev.run_svm(encoder, store, params, resolve_device(params.device), report_path(root, encoder, report))
        say(f"linear SVM on {store.name}: [bold]{100 * out.accuracy:.2f} %[/] (C={out.c:g}, {out.n_points} points, "
            f"{out.bn.text()}, {encoder.label}) → {relative(out.report, Path.cwd())}")
        _say_note(out.bn)


def _say_note(bn) -> None:
    """The staleness warning of a BatchNorm protocol, on its own line under the number it concerns."""
    if bn.note():
        say(f"  [yellow]{bn.note()}[/]")


def _last_run(cx) -> str | None:
    from pipeline.runner.plan import plan

    return plan("train", cx).params.run


def embed_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="The .npy file to write: one row per object, store order.")],
    run: Run = None, ckpt: Ckpt = None, dataset: Dataset = None,
    split: Annotated[str, typer.Option("--split", help="Which split of the dataset: train | test | ...")] = "train",
    points: Points = None, pooling: Pooling = None, batch_size: BatchSize = None, device: Device = None,
    bn_stats: BnStats = None, which: Which = "last", random_init: RandomInit = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random-init.")] = 0,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Write the frozen encoder's global features (the SVM's) of every object of a split to a .npy file."""
    with session(ctx, data_root, sets, verbose, quiet, interrupted=INTERRUPTED) as (config, root):
        from pipeline.core.devices import resolve_device
        from pipeline.evaluate import extract as ev
        from pipeline.evaluate.encoders import resolve_encoder

        params = config.params("eval", points=points, pooling=pooling, batch_size=batch_size, device=device,
                               bn_stats=bn_stats)
        cx = context(config.with_values("train", run=run), root, dataset, run)
        run = _encoder_run(cx, run, ckpt, random_init)
        store = ev.points_store(_points(cx, run, ckpt))
        encoder = resolve_encoder(root, run, ckpt, random_init=random_init, seed=seed, which=which)
        path, shape, how, bn = ev.run_embed(encoder, store, split, params, resolve_device(params.device), out)
        say(f"wrote {path}: {shape[0]} × {shape[1]} float32 ({store.name}/{split}, points {how}, {bn.text()})")
        _say_note(bn)


def finetune_command(
    ctx: typer.Context, run: Run = None, ckpt: Ckpt = None, dataset: Dataset = None,
    split: Annotated[str | None, typer.Option("--split", help="ScanObjectNN variant: obj-bg | obj-only | pb-t50-rs (with -d scanobjectnn).")] = None,
    recipe: Annotated[str | None, typer.Option("--recipe", help="modelnet40 | obj-bg | obj-only | pb-t50-rs (default: from the data).")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", help="Run seeds 0..N-1; the report gives mean ± std.")] = None,
    epochs: Epochs = None, max_steps: MaxSteps = None, batch_size: BatchSize = None, points: Points = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (paper: 5e-4).")] = None,
    votes: Annotated[int | None, typer.Option("--votes", help="Views of the one voting pass (ModelNet40: 10; 0 = no voting).")] = None,
    device: Device = None, which: Which = "last", random_init: RandomInit = False, report: Report = None,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Fine-tune the encoder as a classifier (method §3.5, §9.2); evaluates a fine-tuned checkpoint as is."""
    with session(ctx, data_root, sets, verbose, quiet, interrupted=INTERRUPTED) as (config, root):
        from pipeline.core.devices import resolve_device
        from pipeline.evaluate import extract as ev
        from pipeline.evaluate.encoders import checkpoint_path
        from pipeline.evaluate.reports import mean_std

        if dataset == "scanobjectnn" and split:
            dataset = f"scanobjectnn-{split}"
        config = config.with_values("finetune", recipe=recipe or split, seeds=seeds, epochs=epochs, max_steps=max_steps,
                                    batch_size=batch_size, points=points, lr=lr, votes=votes, device=device)
        config = config.with_values("train", run=run)
        cx = context(config, root, dataset, run)
        if not _direct(run, ckpt, random_init, which, cx):
            return run_evaluation("finetune", cx)
        from pipeline.evaluate.downstream import finetune_overrides
        from pipeline.evaluate.finetuning import run_finetune

        params = config.params("finetune")
        run = _encoder_run(cx, run, ckpt, random_init)
        store = ev.points_store(_points(cx, run, ckpt))
        path = checkpoint_path(root, run, ckpt, which)
        res = run_finetune(root, None, path, store, recipe=params.recipe, seeds=list(range(params.seeds)),
                           device=resolve_device(params.device), report=report, random_init=random_init,
                           **finetune_overrides(params))
        if res.evaluated is not None:
            acc, voted = res.evaluated
            vote = f", voted {100 * voted:.2f} %" if voted is not None else ""
            say(f"fine-tuned classifier on {store.name}: {100 * acc:.2f} %{vote} → {relative(res.report, Path.cwd())}")
            return
        say(f"fine-tuning on {store.name}: last epoch {mean_std([r.last_acc for r in res.results])}, best epoch "
            f"{mean_std([r.best_acc for r in res.results])} (chosen on the test split) → {relative(res.report, Path.cwd())}")


def fewshot_command(
    ctx: typer.Context, run: Run = None, ckpt: Ckpt = None, dataset: Dataset = None,
    episodes: Annotated[Path | None, typer.Option("--episodes", help="Point-BERT few-shot pickles (ModelNetFewshot/) instead.")] = None,
    way: Annotated[list[int] | None, typer.Option("--way", help=f"Classes per episode (repeatable; default {default('fewshot', 'way')}).")] = None,
    shot: Annotated[list[int] | None, typer.Option("--shot", help=f"Train objects per class (repeatable; default {default('fewshot', 'shot')}).")] = None,
    folds: Annotated[int | None, typer.Option("--folds", help=f"Episodes per setting (default {default('fewshot', 'folds')}).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the episodes and of the fine-tuning.")] = None,
    epochs: Epochs = None, max_steps: MaxSteps = None, batch_size: BatchSize = None, points: Points = None,
    device: Device = None, which: Which = "last", random_init: RandomInit = False, report: Report = None,
    data_root: DataRoot = None, sets: Sets = None, verbose: Verbose = 0, quiet: Quiet = False,
) -> None:
    """Few-shot classification (method §1.5): way × shot × folds episodes, fine-tuned per fold."""
    with session(ctx, data_root, sets, verbose, quiet, interrupted=INTERRUPTED) as (config, root):
        from pipeline.core.devices import resolve_device
        from pipeline.evaluate import extract as ev
        from pipeline.evaluate.encoders import checkpoint_path
        from pipeline.evaluate.reports import mean_std

        config = config.with_values("fewshot", way=way, shot=shot, folds=folds, seed=seed, epochs=epochs,
                                    max_steps=max_steps, batch_size=batch_size, points=points, device=device)
        config = config.with_values("train", run=run)
        cx = context(config, root, dataset, run) if episodes is None else None
        if episodes is None and not _direct(run, ckpt, random_init, which, cx):
            return run_evaluation("fewshot", cx)
        from pipeline.evaluate.downstream import finetune_overrides
        from pipeline.evaluate.fewshot import run_fewshot

        params = config.params("fewshot")
        run = _encoder_run(cx, run, ckpt, random_init) if cx is not None else run
        store = None if cx is None else ev.points_store(_points(cx, run, ckpt))
        path = checkpoint_path(root, run, ckpt, which)
        settings, out = run_fewshot(root, None, path, store, episodes=episodes, ways=list(params.way),
                                    shots=list(params.shot), folds=params.folds, seed=params.seed,
                                    device=resolve_device(params.device), report=report, random_init=random_init,
                                    **finetune_overrides(params))
        for w, s, results in settings:
            say(f"{w}-way {s}-shot: last epoch {mean_std([r.last_acc for r in results])}")
        say(f"report → {relative(out, Path.cwd())}")
