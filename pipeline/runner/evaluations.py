"""The one pipeline call behind each evaluation command: ``i2p eval svm``, ``embed``, ``finetune``,
``fewshot``, ``partseg``.

With a run (``--run``, or the dataset's last run) ``eval svm``, ``finetune``, ``fewshot`` and ``partseg`` are
stages:
planned, skipped when up to date, shown by ``i2p status``, on the run's own points store for its
dataset; the result is the stage's record (:class:`Recorded`). With ``--ckpt FILE`` (ours or the
paper's), ``--random-init``, ``--which best``, or a run this version did not train, they evaluate that
encoder directly on the dataset's current points store, and the result is what that evaluation returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.runner.plan import plan
from pipeline.runner.request import Request, build
from pipeline.storage import rundir
from pipeline.storage.contract import Context


@dataclass(frozen=True)
class EncoderChoice:
    """Which encoder is evaluated besides ``Request.run``: a checkpoint file, a random initialisation
    (``seed``: its seed), and which of a run's checkpoints (last | best)."""

    ckpt: Path | None = None
    random_init: bool = False
    which: str = "last"
    seed: int = 0


@dataclass(frozen=True)
class Recorded:
    """A tracked evaluation stage's result: its ``evals/*.json`` record."""

    stage: str  # eval | finetune | fewshot | partseg
    record: dict[str, Any]


@dataclass(frozen=True)
class SVMResult:
    store: str  # the points store's name
    outcome: Any  # pipeline.evaluate.extract.SVMOutcome
    encoder: str  # the encoder's label


@dataclass(frozen=True)
class EmbedResult:
    path: Path
    shape: tuple[int, int]  # (objects, channels)
    points: str  # how points were chosen
    bn: Any  # pipeline.evaluate.bnstats.BNProtocol
    store: str
    split: str


@dataclass(frozen=True)
class FinetuneResult:
    store: str
    outcome: Any  # pipeline.evaluate.finetuning.FinetuneOutcome


@dataclass(frozen=True)
class FewshotResult:
    settings: list  # (way, shot, results per fold)
    report: Path


def svm(req: Request, enc: EncoderChoice, report: Path | None) -> Recorded | SVMResult:
    """Linear SVM on frozen global features (method §3.4, §9.3); appends to the run's report.md."""
    from pipeline.core.devices import resolve_device
    from pipeline.evaluate import extract as ev
    from pipeline.evaluate.encoders import report_path, resolve_encoder

    chosen = _direct_inputs(req, enc, "eval")
    if isinstance(chosen, Recorded):
        return chosen
    params, run, store = chosen
    encoder = resolve_encoder(
        req.data_root, run, enc.ckpt, random_init=enc.random_init, seed=enc.seed, which=enc.which
    )
    out = ev.run_svm(
        encoder, store, params, resolve_device(params.device), report_path(req.data_root, encoder, report)
    )
    return SVMResult(store.name, out, encoder.label)


def embed(req: Request, enc: EncoderChoice, split: str, out: Path) -> EmbedResult:
    """Write the frozen encoder's global features (the SVM's) of every object of a split to a .npy file."""
    from pipeline.core.devices import resolve_device
    from pipeline.evaluate.embed import run_embed
    from pipeline.evaluate.encoders import resolve_encoder

    params, run, store = _inputs(req, enc, req.context(), "eval")
    encoder = resolve_encoder(
        req.data_root, run, enc.ckpt, random_init=enc.random_init, seed=enc.seed, which=enc.which
    )
    path, shape, how, bn = run_embed(encoder, store, split, params, resolve_device(params.device), out)
    return EmbedResult(path, shape, how, bn, store.name, split)


def finetune(req: Request, enc: EncoderChoice, report: Path | None) -> Recorded | FinetuneResult:
    """Fine-tune the encoder as a classifier (method §3.5, §9.2); evaluates a fine-tuned checkpoint as is."""
    from pipeline.evaluate.encoders import checkpoint_path
    from pipeline.evaluate.finetuning import run_finetune

    chosen = _direct_inputs(req, enc, "finetune")
    if isinstance(chosen, Recorded):
        return chosen
    params, run, store = chosen
    path = checkpoint_path(req.data_root, run, enc.ckpt, enc.which)
    res = run_finetune(req.data_root, path, store, params, report=report, random_init=enc.random_init)
    return FinetuneResult(store.name, res)


def fewshot(
    req: Request, enc: EncoderChoice, report: Path | None, episodes: Path | None
) -> Recorded | FewshotResult:
    """Few-shot classification (method §1.5): way × shot × folds episodes, fine-tuned per fold; on
    Point-BERT's episode pickles (``episodes``) instead of the dataset's when given."""
    from pipeline.evaluate import extract as ev
    from pipeline.evaluate.encoders import checkpoint_path

    cx = req.context() if episodes is None else None
    if episodes is None and not _direct(req.run, enc, cx):
        return _recorded("fewshot", cx)
    from pipeline.evaluate.fewshot import run_fewshot

    params = req.config.params("fewshot")
    run = _encoder_run(cx, req.run, enc) if cx is not None else req.run
    store = None if cx is None else ev.points_store(_points(cx, run, enc.ckpt))
    path = checkpoint_path(req.data_root, run, enc.ckpt, enc.which)
    settings, out = run_fewshot(
        req.data_root, path, store, params, episodes=episodes, report=report, random_init=enc.random_init
    )
    return FewshotResult(settings, out)


def partseg(req: Request, enc: EncoderChoice, report: Path | None) -> Recorded | Any:
    """Part segmentation (method §14) on a part-labelled dataset; the result is the stage's record, or
    :class:`pipeline.evaluate.partseg.PartsegOutcome` for an encoder evaluated directly (on the dataset's
    points store, brought up to date first: the generated ``synthetic-parts`` needs no prepare of its own)."""
    from pipeline.evaluate.encoders import checkpoint_path
    from pipeline.evaluate.partseg import run_partseg

    cx = req.context()
    if not _direct(req.run, enc, cx):
        return _recorded("partseg", cx)
    run = _encoder_run(cx, req.run, enc)
    store = build("prepare", cx)
    path = checkpoint_path(req.data_root, run, enc.ckpt, enc.which)
    params = req.config.params("partseg")
    return run_partseg(req.data_root, path, store, params, report=report, random_init=enc.random_init)


def _direct_inputs(req: Request, enc: EncoderChoice, stage: str) -> Recorded | tuple[Any, str | None, Any]:
    """The tracked stage's record when the encoder is a tracked run's last checkpoint; else what a direct
    evaluation needs: (the stage's params, the run evaluated, its points store)."""
    cx = req.context()
    if not _direct(req.run, enc, cx):
        return _recorded(stage, cx)
    return _inputs(req, enc, cx, stage)


def _inputs(req: Request, enc: EncoderChoice, cx: Context, stage: str) -> tuple[Any, str | None, Any]:
    """(the stage's params, the run whose encoder is evaluated, the points store it is evaluated on)."""
    from pipeline.evaluate import extract as ev

    run = _encoder_run(cx, req.run, enc)
    return req.config.params(stage), run, ev.points_store(_points(cx, run, enc.ckpt))


def _recorded(stage: str, cx: Context) -> Recorded:
    """Bring the evaluation stage of the context's run up to date; its record."""
    return Recorded(stage, rundir.read_eval(build(stage, cx)))


def _direct(run: str | None, enc: EncoderChoice, cx: Context | None) -> bool:
    """An encoder evaluated as is (not a tracked stage): a file, a random initialisation, ckpt-best, or a
    run directory this version did not train (no identity in its config.yaml)."""
    if enc.ckpt is not None or enc.random_init or enc.which != "last":
        return True
    return cx is not None and not _tracked(cx, run)


def _tracked(cx: Context, run: str | None) -> bool:
    return rundir.read(rundir.run_dir(cx.data_root, run or _last_run(cx))).identity is not None


def _points(cx: Context, run: str | None, ckpt: Path | None) -> Path:
    """The run's own points store for a tracked run of this dataset, else the dataset's current one."""
    from pipeline.runner.lookup import current_points, run_points

    return run_points(cx) if ckpt is None and run and _tracked(cx, run) else current_points(cx)


def _encoder_run(cx: Context, run: str | None, enc: EncoderChoice) -> str | None:
    """The run whose encoder is evaluated: --run, else (no --ckpt, no bare --random-init) the last run."""
    if run or enc.ckpt or enc.random_init:
        return run
    return _last_run(cx)


def _last_run(cx: Context) -> str | None:
    return plan("train", cx).params.run
