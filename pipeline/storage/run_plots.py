"""A run's pictures, drawn from its files (:mod:`pipeline.storage.rundir`): ``loss.png`` from metrics.jsonl,
``monitor.png`` from the monitor's rows. matplotlib is imported only when one is drawn.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.storage.rundir import LOSS_PNG, MONITOR_PNG, metric_rows, monitor_rows
from pipeline.storage.store import atomic_write_bytes


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(7, 3.8))


def _save_png(plt, fig, path: Path) -> Path:
    import io

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_monitor_plot(run: Path) -> Path | None:
    """monitor.png: the monitor's SVM test accuracy per step, step 0 (initial weights) as a dashed line."""
    rows = monitor_rows(run)
    if not rows:
        return None
    plt, fig, ax = _figure()
    ax.plot([r["step"] for r in rows], [100 * r["svm_acc"] for r in rows], marker="o", label="encoder")
    if rows[0]["step"] == 0:
        ax.axhline(
            100 * rows[0]["svm_acc"], linestyle="--", color="grey", label="random initialisation (step 0)"
        )
    ax.set_xlabel("step")
    ax.set_ylabel(f"linear-SVM test accuracy on {rows[-1].get('svm_dataset')} (%)")
    ax.legend()
    ax.set_title(Path(run).name)
    return _save_png(plt, fig, Path(run) / MONITOR_PNG)


def write_loss_plot(run: Path) -> Path | None:
    """loss.png from metrics.jsonl: total, 3D and 2D losses per step (log scale), the learning rate on a
    second axis, and a dotted line where each epoch starts."""
    rows = [r for r in metric_rows(run) if "loss" in r]
    if not rows:
        return None
    plt, fig, ax = _figure()
    for key in ("loss", "loss_3d", "loss_2d"):
        values = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if values:
            ax.plot(*zip(*values, strict=True), label=key, linewidth=1)
    starts = [b["step"] for a, b in zip(rows, rows[1:], strict=False) if b.get("epoch") != a.get("epoch")]
    for step in starts:
        ax.axvline(step - 0.5, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("step (dotted: a new epoch starts)")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    lr = [(r["step"], r["lr"]) for r in rows if r.get("lr") is not None]
    if lr:
        ax2 = ax.twinx()
        ax2.plot(*zip(*lr, strict=True), color="black", linewidth=0.8, linestyle="--", label="lr")
        ax2.set_ylabel("learning rate (dashed)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(Path(run).name)
    return _save_png(plt, fig, Path(run) / LOSS_PNG)
