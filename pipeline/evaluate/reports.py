"""``report.md`` sections for every evaluation, written honestly (docs/evaluation.md, "Honest evaluation").

Every section states what was measured and how: encoder, dataset and split sizes, point count and how
points were chosen, the classifier's settings, seeds, last-epoch *and* best-epoch accuracy, unvoted
*and* voted, mean ± std over seeds or folds, and that a "best" epoch was chosen on the test split when
the dataset has no validation split. A voted number is one voting pass unless ``finetune.vote_repeats``
asks for the paper's maximum over repeated passes, which the section then says in bold. Sections are appended to the file atomically (the whole file is rewritten to a
temporary name and renamed into place).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.storage import rundir
from pipeline.storage.store import atomic_write_bytes

BEST_ON_TEST = (
    "**Best epochs were chosen on the test split** (the dataset has no validation split), so the "
    "best-epoch numbers are optimistic; the last-epoch numbers involve no choice on the test split "
    "(method §12.4)."
)


def append_report(path: Path, section: str) -> Path:
    """Append ``section`` to the markdown file at ``path`` (created with a title when missing)."""
    path = Path(path)
    with rundir.report_lock(path):  # two evaluations of one run append one after the other
        old = path.read_text() if path.is_file() else f"# Evaluation report: {path.parent.name}\n"
        text = old.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
        atomic_write_bytes(path, text.encode())
    return path


def pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f} %"


def mean_std(values: Sequence[float | None]) -> str:
    """ "91.20 ± 0.35 %" (sample std, ddof 1) over several values; the value alone for one; n/a for none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return pct(vals[0])
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{100 * m:.2f} ± {100 * sd:.2f} % (n={len(vals)})"


def population_std(values: Sequence[float]) -> str:
    """ "2.37 %": the population std (ddof 0) of fractions, in percent; n/a for none."""
    if not values:
        return "n/a"
    m = sum(values) / len(values)
    return f"{100 * math.sqrt(sum((v - m) ** 2 for v in values) / len(values)):.2f} %"


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def table(rows: Sequence[tuple[str, str]]) -> str:
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def svm_section(
    *,
    encoder: str,
    dataset: str,
    splits: str,
    points: str,
    pooling: str,
    c: float,
    c_note: str,
    accuracy: float,
    feature_dim: int,
    bn: str,
    bn_detail: str,
    bn_note: str | None = None,
) -> str:
    """bn, bn_detail, bn_note: the BatchNorm protocol's name, how it was applied and its staleness warning
    (``pipeline.evaluate.bnstats.BNProtocol``: text, detail, note)."""
    rows = [
        ("encoder", encoder),
        ("dataset", dataset),
        ("split sizes", splits),
        ("points per object", points),
        (
            "feature",
            f"{pooling}-pooled LayerNorm-ed top-scale tokens ({feature_dim}-d), encoder frozen in "
            "eval mode, no masking, no augmentation, no feature scaling",
        ),
        ("BatchNorm statistics", f"{bn}: {bn_detail}"),
        ("classifier", f'scikit-learn SVC(kernel="linear", C={c:g}): {c_note}'),
        ("**test accuracy**", f"**{pct(accuracy)}**, {bn}" + (f"; **{bn_note}**" if bn_note else "")),
    ]
    return (
        f"## Linear SVM ({_stamp()})\n\n{table(rows)}\n\n"
        "Trained once on the train split, scored once on the test split; no epoch or C was selected "
        "by this command. The paper's C values appear to have been tuned on the test split (method §12.4)."
    )


def finetune_section(
    *,
    title: str,
    encoder: str,
    dataset: str,
    splits: str,
    recipe: str,
    optimisation: str,
    results: Sequence,
    voting: str,
    metrics_file: str | None,
) -> str:
    """results: FinetuneResult per seed (or per fold, with ``seed`` holding the fold's label)."""
    rows = [
        ("encoder", encoder),
        ("dataset", dataset),
        ("split sizes", splits),
        ("recipe", recipe),
        ("optimisation", optimisation),
        ("seeds", ", ".join(str(r.seed) for r in results)),
    ]
    head = "| seed | last epoch | best epoch (epoch) | last epoch, voted | best epoch, voted |\n|---|---|---|---|---|"
    body = [
        f"| {r.seed} | {pct(r.last_acc)} | {pct(r.best_acc)} ({r.best_epoch}) | {pct(r.last_vote_acc)} "
        f"| {pct(r.best_vote_acc)} |"
        for r in results
    ]
    body.append(
        f"| **mean ± std** | {mean_std([r.last_acc for r in results])} | {mean_std([r.best_acc for r in results])} "
        f"| {mean_std([r.last_vote_acc for r in results])} | {mean_std([r.best_vote_acc for r in results])} |"
    )
    notes = [BEST_ON_TEST, voting]
    if metrics_file:
        notes.append(f"Per-epoch metrics (lr, loss, train and test accuracy): `{metrics_file}`.")
    return (
        f"## {title} ({_stamp()})\n\n{table(rows)}\n\n{head}\n"
        + "\n".join(body)
        + "\n\n"
        + "\n\n".join(notes)
    )


def fewshot_section(
    *,
    encoder: str,
    dataset: str,
    protocol: str,
    recipe: str,
    optimisation: str,
    settings: Sequence[tuple[int, int, Sequence]],
    metrics_file: str | None,
) -> str:
    """settings: (way, shot, FinetuneResult per fold) for each setting run."""
    rows = [
        ("encoder", encoder),
        ("dataset", dataset),
        ("episodes", protocol),
        ("recipe", recipe),
        ("optimisation", optimisation),
    ]
    head = "| setting | folds | last epoch | best epoch | last epoch, population std |\n|---|---|---|---|---|"
    body = [
        f"| {way}-way {shot}-shot | {len(res)} | {mean_std([r.last_acc for r in res])} "
        f"| {mean_std([r.best_acc for r in res])} | {population_std([r.last_acc for r in res])} |"
        for way, shot, res in settings
    ]
    notes = [
        "Mean ± std over folds (sample std, ddof 1; Point-MAE's code computes no std and its README does not "
        "say which, so the population std, ddof 0, is given beside it). "
        + "**Best epochs were chosen on each fold's test objects** (episodes have no validation "
        "objects), so the best-epoch numbers are optimistic; the last-epoch numbers involve no such choice.",
        "No voting.",
    ]
    if metrics_file:
        notes.append(f"Per-fold, per-epoch metrics: `{metrics_file}`.")
    return (
        f"## Few-shot classification ({_stamp()})\n\n{table(rows)}\n\n{head}\n"
        + "\n".join(body)
        + "\n\n"
        + "\n\n".join(notes)
    )
