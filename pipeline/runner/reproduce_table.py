"""The table ``i2p reproduce`` ends with: each of the paper's numbers (method §11), ours under the official
protocol, ours under the honest one, and where each came from.

* official protocol: what the paper's code reports — the pre-training checkpoint chosen by the monitor's
  test-split SVM (``ckpt-best``), the fine-tuning epoch chosen on the test split, part segmentation's
  independent maxima over epochs (method §12.4, §14.4);
* honest protocol: the last checkpoint, the last epoch, one voting pass, mean ± std over seeds or folds.

A cell that could not be computed says why ("not run: no --scanobjectnn root given").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.evaluate.reports import mean_std, pct

# row → the paper's number (I2P-MAE's README, method §11); None: not reported, with what the family reports
PAPER: dict[str, str] = {
    "linear SVM, ModelNet40": "93.35",
    "linear SVM, ScanObjectNN OBJ-BG": "87.09",
    "fine-tuning, ModelNet40 (1k points)": "93.67 / 94.06 voted",
    "fine-tuning, ScanObjectNN OBJ-BG": "94.15",
    "fine-tuning, ScanObjectNN OBJ-ONLY": "91.57",
    "fine-tuning, ScanObjectNN PB-T50-RS": "90.11",
    "few-shot, ModelNet40": "not reported (Point-M2AE: 96.8 / 98.3 / 92.3 / 95.0)",
    "part segmentation, ShapeNetPart": "not reported (Point-M2AE: 86.51 instance / 84.86 class)",
}


@dataclass(frozen=True)
class Row:
    metric: str
    paper: str
    official: str  # ours, the paper's protocol (with how it was selected)
    honest: str  # ours, last checkpoint / last epoch / one vote pass
    source: str  # the run, the dataset, and what the data stands in for


def row(step: Any, outcome: Any, run: str) -> Row:
    """One table row from a protocol step (:class:`pipeline.runner.reproduce.Step`) and what it returned."""
    where = f"run {run}, {step.dataset}" + (f" ({step.stand_in})" if step.stand_in else "")
    paper = PAPER.get(step.what, "")
    if step.missing or outcome is None:
        why = f"not run: {step.missing}" if step.missing else "not run"
        return Row(step.what, paper, why, why, where)
    result, official = outcome
    r = result.record["result"]
    if step.stage == "eval":
        best = (
            f"{pct(official.outcome.accuracy)} (ckpt-best: chosen on the monitor's test split)"
            if official is not None
            else "n/a: the run kept no ckpt-best (no monitor dataset when it trained)"
        )
        return Row(step.what, paper, best, f"{pct(r['accuracy'])} (ckpt-last)", where)
    if step.stage == "finetune":
        repeats = int(r.get("vote_repeats") or 1)
        voted = [v for v in r.get("last_vote_acc", []) if v is not None]
        best_voted = [v for v in r.get("best_vote_acc", []) if v is not None]
        official = f"{mean_std(r['best_acc'])} (best epoch, chosen on the test split)"
        honest = f"{mean_std(r['last_acc'])} last epoch"
        if repeats > 1 and best_voted:  # the voted numbers are maxima over passes: official only
            official += f", voted {mean_std(best_voted)} (maximum of {repeats} passes)"
        elif voted:
            honest += f", {mean_std(voted)} one vote pass"
        return Row(step.what, paper, official, honest, where)
    if step.stage == "fewshot":
        cells = "; ".join(f"{k}: {mean_std(v)}" for k, v in r.items())
        return Row(
            step.what,
            paper,
            "n/a: the official code has no few-shot runner",
            f"{cells} (last epoch, folds)",
            where,
        )
    last = r["last"]
    return Row(
        step.what,
        paper,
        f"instance {pct(r['max_instance_miou'])}, class {pct(r['max_class_miou'])} (independent maxima over epochs)",
        f"instance {pct(last['instance_miou'])}, class {pct(last['class_miou'])} (last epoch)",
        where,
    )


def markdown(rows: list[Row], quick: bool) -> str:
    """The table as markdown, with the note on what the two protocols are (and, for --quick, what not)."""
    lines = [
        "| metric | paper | ours, official protocol | ours, honest protocol | from |",
        "|---|---|---|---|---|",
        *(f"| {r.metric} | {r.paper} | {r.official} | {r.honest} | {r.source} |" for r in rows),
    ]
    note = (
        "Official protocol: the selections the paper's code makes, on the test split (method §12.4). Honest "
        "protocol: the last checkpoint and epoch, one voting pass, mean ± std over seeds or folds."
    )
    if quick:
        note += (
            " --quick: generated data stands in for every release and every stage runs a few steps: these "
            "numbers check that the protocol runs end to end, they are not results."
        )
    return "\n".join(lines) + "\n\n" + note + "\n"
