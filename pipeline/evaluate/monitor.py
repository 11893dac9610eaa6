"""Monitoring and kept checkpoints during pre-training, as the paper's runner does them (method §9.1).

* **Monitor**: a linear SVM of the encoder (the features of ``eval svm``, §3.4) on a prepared dataset,
  ``train.monitor_dataset`` (default ``modelnet40``, the name ``i2p prepare modelnet40`` gives the h5
  release), every ``train.monitor_every`` epochs and, for runs shorter than an epoch, every
  ``train.monitor_every_steps`` steps: the first ``monitor_points`` (1024) stored points of each object,
  C = ``monitor_c`` (0.01), BatchNorm statistics ``monitor_bn_stats`` (:mod:`pipeline.evaluate.bnstats`;
  step 0 and every later step under the same one). A fresh run is measured at step 0 too: its initial,
  random weights. Each result is a row ``{"step", "epoch", "svm_acc", "svm_dataset", "bn_stats",
  "bn_note"}`` of metrics.jsonl (``bn_note``: the staleness warning, or null).
* **ckpt-best.pt**: the monitored step with the best accuracy. Like the paper's, it is chosen on the
  dataset's **test** split; config.yaml's ``best`` and the report say so.
* **ckpt-epoch-XXX.pt**: kept every ``keep_every`` epochs from ``keep_from`` (250, 275, 300).

The monitor runs on rank 0 only, in eval mode and with the RNG states and the encoder's buffers saved
and restored, so a run trains (and saves) the same weights and statistics with or without it. When the dataset is
not prepared, monitoring is off and a warning at training start says what that costs (no ckpt-best.pt, the
checkpoint the paper evaluates) and names the command that prepares it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.params import EvalParams, TrainParams
from pipeline.evaluate.reports import pct
from pipeline.storage import run_plots, rundir

log = logging.getLogger("i2p")


@dataclass
class Monitor:
    """The prepared dataset a run's encoder is measured on, and how often."""

    store: Any  # pipeline.evaluate.extract.PointsStore
    n_points: int
    selection: str  # "first" | "fps"
    c: float
    every_epochs: int
    every_steps: int | None
    device: str
    bn_stats: str  # "running" | "reestimate": train.monitor_bn_stats (pipeline.evaluate.bnstats)
    best: float = -1.0
    measured: set[int] = field(default_factory=set)  # steps already measured (no step twice)

    def due(self, step: int, epoch: int | None) -> bool:
        """At ``step``; ``epoch`` is the epoch that just ended, or None mid-epoch."""
        if step in self.measured:
            return False
        if step == 0:
            return True  # a fresh run's initial weights: the random-initialisation baseline
        by_steps = self.every_steps is not None and step % self.every_steps == 0
        by_epochs = epoch is not None and self.every_epochs > 0 and (epoch + 1) % self.every_epochs == 0
        return by_steps or by_epochs

    def restore(self, run: Path) -> None:
        """Continue a run: its best accuracy after step 0 and the steps measured, from metrics.jsonl."""
        rows = rundir.monitor_rows(run)
        self.best = max((r["svm_acc"] for r in rows if r["step"] > 0), default=-1.0)
        self.measured = {r["step"] for r in rows}

    def accuracy(self, model: Any) -> tuple[float, Any]:
        """Linear-SVM test accuracy (fraction) of ``model``'s global features and the BatchNorm protocol
        they used (``BNProtocol``); model (weights, buffers, mode) and RNG left as found."""
        from i2pmae.evaluate import svm_accuracy
        from pipeline.evaluate.bnstats import protocol_applied
        from pipeline.evaluate.extract import features, labelled
        from pipeline.storage.train_state import rng_state, set_rng_state

        state, was_training = rng_state(), model.training
        params = EvalParams(points=self.n_points, svm_c=self.c, bn_stats=self.bn_stats)
        try:
            xs, ys = [], []
            with protocol_applied(
                model,
                self.store.split("train"),
                self.bn_stats,
                n_points=self.n_points,
                selection=self.selection,
                batch_size=params.batch_size,
                device=self.device,
            ) as bn:
                for name in ("train", "test"):
                    split = self.store.split(name)
                    rows = labelled(split)
                    xs.append(
                        features(
                            model,
                            split,
                            rows,
                            self.n_points,
                            self.selection,
                            params,
                            self.device,
                            f"monitor {name}",
                        )
                    )
                    ys.append(split.labels[rows])
            return svm_accuracy(xs[0], ys[0], xs[1], ys[1], self.c).accuracy, bn
        finally:
            model.train(was_training)
            set_rng_state(state)


def build_monitor(params: TrainParams, data_root: Path, device: str) -> Monitor | None:
    """The run's monitor, or None when it is off or (one warning) its dataset is not prepared."""
    from pipeline.evaluate.extract import feature_points, points_store, require_splits
    from pipeline.storage import datasets
    from pipeline.storage.store import read_state

    name = params.monitor_dataset
    if not name or (params.monitor_every == 0 and params.monitor_every_steps is None):
        return None
    record = datasets.load(data_root, name)
    path = record.output(data_root, "prepare") if record else None
    state = read_state(path, progress=False) if path is not None else None
    if state is None or not state.complete:
        log.warning(
            "monitoring off: dataset %s is not prepared under %s, so this run keeps no ckpt-best.pt (the "
            "paper's runner keeps the epoch with the best monitor SVM, method §9.1) and evaluations use "
            "ckpt-last.pt; prepare it before training with `i2p prepare %s --root PATH` (the ModelNet40 h5 "
            "release; a run continued with --resume is monitored from then on), or --set "
            "train.monitor_dataset=NAME (null: off, without this warning)",
            name,
            data_root,
            "modelnet40" if name == "modelnet40" else "SOURCE --dataset " + name,
        )
        return None
    store = points_store(path)
    require_splits(store, "the training monitor")
    stored = int(store.split("train").points.shape[1])
    n, how, _ = feature_points(store, min(params.monitor_points, stored), params.points)
    monitor = Monitor(
        store,
        n,
        how,
        params.monitor_c,
        params.monitor_every,
        params.monitor_every_steps,
        device,
        params.monitor_bn_stats,
    )
    log.info(
        "monitor: linear SVM on %s (%d points, C = %g, bn_stats=%s) every %s",
        store.name,
        n,
        monitor.c,
        monitor.bn_stats,
        _cadence(monitor),
    )
    return monitor


def _cadence(m: Monitor) -> str:
    parts = [f"{m.every_epochs} epoch(s)"] if m.every_epochs else []
    return " and ".join(parts + ([f"{m.every_steps} steps"] if m.every_steps else []))


def check(
    monitor: Monitor | None,
    s: Any,
    params: TrainParams,
    run: Path,
    metrics: Any,
    epoch: int | None,
    rng_states: list | None = None,
) -> None:
    """At a step (``epoch`` None) or an epoch end (the epoch that ended): measure if due, keep ckpt-best.pt."""
    step = s.position["step"]
    if monitor is None or not monitor.due(step, epoch):
        return
    from pipeline.storage.train_state import rng_state, save_checkpoint

    acc, bn = monitor.accuracy(s.model)
    monitor.measured.add(step)
    shown = epoch if epoch is not None else s.position["epoch"]
    metrics.write(
        {
            "step": step,
            "epoch": shown,
            "svm_acc": acc,
            "svm_dataset": monitor.store.name,
            "bn_stats": bn.bn_stats,
            "bn_note": bn.note(),
        }
    )
    log.info(
        "step %d (epoch %d): linear SVM on %s %s (%s)%s",
        step,
        shown,
        monitor.store.name,
        pct(acc),
        bn.text(),
        f"; {bn.note()}" if bn.note() else "",
    )
    if acc > monitor.best and step > 0:
        monitor.best = acc
        save_checkpoint(
            rundir.checkpoint(run, "best"),
            s.model,
            s.optimizer,
            params,
            s.position,
            rng_states or [rng_state()],
        )
        rundir.mark_best(
            run,
            {
                "checkpoint": rundir.checkpoint(run, "best").name,
                "step": step,
                "epoch": shown,
                "svm_acc": acc,
                "dataset": monitor.store.name,
                "selected_on": "test split",
                "note": "chosen on the monitor dataset's test split, as the paper's runner (method §9.1)",
            },
        )
    run_plots.write_monitor_plot(run)


def is_kept(params: TrainParams, epoch: int) -> bool:
    """Whether epoch ``epoch`` (numbered from 0, as the official loop) keeps a ckpt-epoch-XXX.pt (§9.1:
    ``epoch % 25 == 0 and epoch >= 250``: 250, 275 and 300 of the 301 epochs)."""
    return params.keep_every > 0 and epoch >= params.keep_from and epoch % params.keep_every == 0


def keep_epoch(s: Any, params: TrainParams, run: Path, epoch: int, rng_states: list) -> Path | None:
    """Write ``ckpt-epoch-XXX.pt`` when ``epoch`` (just ended) is on the kept cadence (:func:`is_kept`)."""
    if not is_kept(params, epoch):
        return None
    from pipeline.storage.train_state import save_checkpoint

    path = rundir.checkpoint(run, f"epoch-{epoch:03d}")
    save_checkpoint(path, s.model, s.optimizer, params, s.position, rng_states)
    return path


def monitor_section(run: Path) -> str | None:
    """report.md section: the monitor's accuracy per step beside step 0's (random initialisation), the PNG
    and which checkpoint ckpt-best.pt is; None when the run was not monitored."""
    rows = rundir.monitor_rows(run)
    if not rows:
        return None
    png = run_plots.write_monitor_plot(run)
    start = rows[0]["svm_acc"] if rows[0]["step"] == 0 else None
    protocols = sorted({r.get("bn_stats", "running") for r in rows})  # rows written before bn_stats: running
    lines = [
        f"## Monitoring during pre-training: linear SVM on {rows[-1]['svm_dataset']}",
        "",
        f"Every row with BatchNorm statistics bn_stats={' / '.join(protocols)} (step 0 included).",
        "",
        "| step | epoch | encoder | random initialisation (step 0) | BatchNorm statistics |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['step']} | {r['epoch']} | {pct(r['svm_acc'])} | {pct(start)} | bn_stats={r.get('bn_stats', 'running')}"
        + (f"; **{r['bn_note']}**" if r.get("bn_note") else "")
        + " |"
        for r in rows
    ]
    best = (rundir.read(run).config or {}).get("best")
    lines += ["", f"![monitor]({png.name})", ""]
    if best:
        lines.append(
            f"`{best['checkpoint']}` holds step {best['step']} (epoch {best['epoch']}, {pct(best['svm_acc'])}). "
            "**It was selected on the test split**, as the paper's runner selects ckpt-best (§9.1), so its "
            "accuracy is optimistic; `ckpt-last.pt`, evaluated above, involves no choice on the test split."
        )
    gain = np.round(100 * (rows[-1]["svm_acc"] - start), 2) if start is not None else None
    if gain is not None:
        lines.append(f"From step 0 to step {rows[-1]['step']} the accuracy changed by {gain:+.2f} points.")
    return "\n".join(lines) + "\n"
