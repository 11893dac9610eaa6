"""``i2p reproduce``: the paper's whole protocol as one plan over the existing stages.

The plan (:func:`protocol`) is a list of :class:`Step`: prepare every release given (the monitor's
ModelNet40 h5 before training, so the run keeps a ``ckpt-best``), pre-train on ShapeNet-55 with the monitor,
then every evaluation of the paper — linear SVM on ModelNet40 and ScanObjectNN OBJ-BG, fine-tuning with
the four recipes, few-shot on ModelNet40, part segmentation on ShapeNetPart. Each step is a tracked stage
of the run (``bring_up_to_date``): a rerun skips what is done, ``i2p status`` shows it, an interrupted
step resumes. A release whose root is not given is a step "not run", with the flag that adds it.

``quick``: every release is stood in for by generated data (synthetic v3 at the quick settings of
``i2p run --quick``; ``synthetic-parts`` for ShapeNetPart) and every evaluation is cut to a few steps,
so the whole protocol runs on a CPU in minutes and the table shows every cell's plumbing, not results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.core.quick import QUICK
from pipeline.runner.request import Request

log = logging.getLogger("i2p")

# release key → (the flag that gives its root, prepare source, layout, variant, the dataset's name)
RELEASES: dict[str, tuple[str, str, str, str | None, str]] = {
    "shapenet": ("--shapenet", "shapenet", "auto", None, "shapenet"),
    "modelnet40-h5": ("--modelnet40-h5", "modelnet40", "modelnet40_ply_hdf5_2048", None, "modelnet40"),
    "modelnet40": ("--modelnet40", "modelnet40", "modelnet40_normal_resampled", None, "modelnet40-resampled"),
    "obj-bg": ("--scanobjectnn", "scanobjectnn", "auto", "obj-bg", "scanobjectnn-obj-bg"),
    "obj-only": ("--scanobjectnn", "scanobjectnn", "auto", "obj-only", "scanobjectnn-obj-only"),
    "pb-t50-rs": ("--scanobjectnn", "scanobjectnn", "auto", "pb-t50-rs", "scanobjectnn-pb-t50-rs"),
    "shapenetpart": ("--shapenetpart", "shapenetpart", "auto", None, "shapenetpart"),
}
ROOT_FLAGS = {"shapenet", "modelnet40-h5", "modelnet40", "scanobjectnn", "shapenetpart"}

# What --quick cuts every evaluation to (on top of QUICK's pre-training settings).
QUICK_EVALS: dict[str, dict[str, Any]] = {
    "finetune": {"epochs": 1, "max_steps": 2, "batch_size": 8, "votes": 2, "points": 1024},
    "fewshot": {"folds": 1, "epochs": 1, "max_steps": 1, "batch_size": 8, "points": 1024},
    "partseg": {"epochs": 1, "max_steps": 2, "batch_size": 4, "points": 1024, "test_batch_size": 8},
}
QUICK_PARTS = {"source": "synthetic-parts", "synthetic_per_class": 10}  # 80 shapes stand in for ShapeNetPart
# few-shot draws 20 unseen test objects per class: a stand-in with 20 train and 20 test objects per class
QUICK_FEWSHOT = {"source": "synthetic", **QUICK["prepare"], "synthetic_per_class": 40, "test_fraction": 0.5}


@dataclass(frozen=True)
class Step:
    """One step of the protocol: a stage for one dataset with its settings, or a step that cannot run."""

    stage: str  # prepare | train | eval | finetune | fewshot | partseg
    dataset: str
    what: str  # what it is, in the paper's words (the table's row for evaluations)
    sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage → values, over the user's config
    missing: str | None = None  # why it cannot run (a release not given), with the flag that adds it
    stand_in: str | None = None  # --quick: what the generated data stands in for


def _root_key(release: str) -> str:
    return "scanobjectnn" if release in ("obj-bg", "obj-only", "pb-t50-rs") else release


def protocol(roots: dict[str, Path | None], run: str, seeds: int = 1, quick: bool = False) -> list[Step]:
    """The paper's protocol as steps, in order (prepares first). ``roots``: release flag key (shapenet,
    modelnet40-h5, modelnet40, scanobjectnn, shapenetpart) → its root or None."""
    steps: list[Step] = []
    data: dict[str, tuple[str, str | None, dict]] = {}  # release → (dataset, missing, prepare values)
    for release, (flag, source, layout, variant, name) in RELEASES.items():
        root = roots.get(_root_key(release))
        if quick:
            parts = release == "shapenetpart"
            values = QUICK_PARTS if parts else {"source": "synthetic", **QUICK["prepare"]}
            data[release] = ("synthetic-parts" if parts else "synthetic", None, dict(values))
        elif root is None:
            data[release] = (name, f"no {flag} root given", {})
        else:
            values = {"source": source, "root": str(Path(root).expanduser().resolve()), "layout": layout}
            data[release] = (name, None, {**values, **({"variant": variant} if variant else {})})
    if quick:
        data["fewshot"] = ("synthetic-fewshot", None, dict(QUICK_FEWSHOT))
    seen = set()
    for release, (dataset, missing, values) in data.items():
        if missing is None and dataset not in seen:
            seen.add(dataset)
            steps.append(Step("prepare", dataset, f"prepare {release}", {"prepare": values}))
    monitor = data["modelnet40-h5"][0] if data["modelnet40-h5"][1] is None else None
    train_values = {**(QUICK["train"] if quick else {}), "run": run}
    if monitor:
        train_values["monitor_dataset"] = monitor
    pre = {k: v for k, v in QUICK.items() if k != "train"} if quick else {}
    shapenet, missing, values = data["shapenet"]
    base = {**pre, "prepare": values, "train": train_values}
    steps.append(
        Step("train", shapenet, "pre-training on ShapeNet-55", base, missing, _stand(quick, "ShapeNet-55"))
    )

    def evaluation(stage: str, release: str, what: str, **values: Any) -> Step:
        dataset, gone, prepare = data[release]
        sets = {"prepare": prepare, stage: {**(QUICK_EVALS.get(stage, {}) if quick else {}), **values}}
        if quick and stage == "eval":
            sets["eval"] = dict(QUICK["eval"])
        return Step(stage, dataset, what, sets, gone or missing, _stand(quick, what))

    steps += [
        evaluation("eval", "modelnet40-h5", "linear SVM, ModelNet40"),
        evaluation("eval", "obj-bg", "linear SVM, ScanObjectNN OBJ-BG"),
        evaluation(  # the official voting: the maximum of 49 passes (its cell says so)
            "finetune",
            "modelnet40",
            "fine-tuning, ModelNet40 (1k points)",
            recipe="modelnet40",
            seeds=seeds,
            **({} if quick else {"vote_repeats": 49}),
        ),
        *(
            evaluation("finetune", v, f"fine-tuning, ScanObjectNN {v.upper()}", recipe=v, seeds=seeds)
            for v in ("obj-bg", "obj-only", "pb-t50-rs")
        ),
        evaluation("fewshot", "fewshot" if quick else "modelnet40", "few-shot, ModelNet40"),
        evaluation("partseg", "shapenetpart", "part segmentation, ShapeNetPart"),
    ]
    return steps


def _stand(quick: bool, what: str) -> str | None:
    return f"generated data standing in for {what.split(', ')[-1]}" if quick else None


def run_protocol(
    req: Request, steps: list[Step], on_step: Callable[[int, Step], None]
) -> Iterator[tuple[Step, Any]]:
    """Bring every step up to date in order (``req.run``: the protocol's run); yields (step, its record or
    result; None when it cannot run).
    The request's config (the user's --set) lies under each step's settings."""
    from pipeline.runner import evaluations
    from pipeline.runner.commands import bring_up_to_date

    best_svm: dict[str, Any] = {}
    for i, step in enumerate(steps):
        on_step(i, step)
        if step.missing:
            yield step, None
            continue
        config = step_config(req, step)
        sub = replace(req, config=config.with_values("train", run=req.run), dataset=step.dataset)
        if step.stage in ("prepare", "train"):
            yield step, bring_up_to_date(step.stage, sub)
            continue
        call = {"eval": evaluations.svm, "finetune": evaluations.finetune, "partseg": evaluations.partseg}
        choice = evaluations.EncoderChoice()
        result = (
            evaluations.fewshot(sub, choice, None, None)
            if step.stage == "fewshot"
            else call[step.stage](sub, choice, None)
        )
        official = None
        if step.stage == "eval":  # the paper's protocol: ckpt-best (chosen on the monitor's test split)
            if step.dataset not in best_svm:  # --quick: two rows share one stand-in, measured once
                best_svm[step.dataset] = _best_svm(sub, evaluations)
            official = best_svm[step.dataset]
        yield step, (result, official)


def _best_svm(req: Request, evaluations: Any) -> Any:
    """The linear SVM of the run's ``ckpt-best.pt`` (None when the run kept none: no monitor)."""
    from pipeline.storage import rundir

    if not rundir.checkpoint(rundir.run_dir(req.data_root, req.run), "best").is_file():
        return None
    return evaluations.svm(req, evaluations.EncoderChoice(which="best"), None)


def step_config(req: Request, step: Step) -> Any:
    """The config a step runs with: the user's, under the step's own settings."""
    config = req.config
    for stage, values in step.sets.items():
        config = config.with_values(stage, **values)
    return config


def dry_run(req: Request, steps: list[Step]) -> list[str]:
    """The plan, one line per step, with its estimated time and disk on this machine (estimates.py)."""
    from pipeline.runner.estimates import duration, estimate, machine

    cores, gpu = machine()
    lines, total_s, total_b = [f"machine: {cores} CPU cores, {'a CUDA GPU' if gpu else 'no GPU'}"], 0.0, 0
    for i, step in enumerate(steps, 1):
        head = f"{i:>2}. {step.stage:<8} {step.dataset:<24} {step.what}"
        if step.missing:
            lines.append(f"{head}: not run ({step.missing})")
            continue
        config = step_config(req, step)
        params = config.params(step.stage).model_dump()
        if step.stage == "train":
            render = config.params("render")
            params["draws"] = render.draws if render.views == "augmented" else 1
            params["teacher"] = config.params("cache-features").teacher
        est = estimate(step, params, cores, gpu)
        total_s, total_b = total_s + est.seconds, total_b + est.bytes
        lines.append(f"{head}: ≈ {duration(est.seconds)}, {est.bytes / 2**30:.1f} GiB ({est.how})")
    lines.append(
        f"total ≈ {duration(total_s)}, {total_b / 2**30:.1f} GiB on disk (estimates: docs/reproducing.md says "
        "what they are made of; steps already done are skipped when run)"
    )
    return lines


def reproduce(req: Request, steps: list[Step], run: str, quick: bool) -> tuple[list[Any], str]:
    """Run every step (skipping what is done); (table rows, the markdown table)."""
    from pipeline.runner.reproduce_table import markdown, row

    def announce(i: int, step: Step) -> None:
        state = f"not run: {step.missing}" if step.missing else "…"
        log.info(
            "reproduce [%d/%d] %s %s: %s %s", i + 1, len(steps), step.stage, step.dataset, step.what, state
        )

    rows = [
        row(step, out, run)
        for step, out in run_protocol(req, steps, announce)
        if step.stage not in ("prepare", "train")
    ]
    return rows, markdown(rows, quick)
