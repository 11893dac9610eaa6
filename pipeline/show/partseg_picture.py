"""``i2p show OBJECT --run NAME --partseg``: a run's part segmentation of one shape beside the ground truth.

Two 3D panels on the unit cube, each point coloured by its part (the parts of the shape's category, in
the same colours on both sides), titled with the shape's IoU (method §14.4). The model is the one the
last ``i2p partseg`` of the run trained (``runs/<run>/partseg-<dataset>.pt``, its last epoch); the points
are all of the shape's own points when it has enough for the tokenizer, else a seeded draw of the model's
input size with replacement (as the reference evaluates). A JSON sidecar records what is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.show.run_picture import _scatter
from pipeline.show.stores import locate, picture_name, save_figure
from pipeline.storage import rundir
from pipeline.storage.checked import open_group


def partseg_model_file(data_root: Path, run: str, dataset: str | None) -> Path:
    """``runs/<run>/partseg-<dataset>.pt`` (without ``dataset``: the newest of the run's). ConfigError when
    the run has none: the hint gives the command that makes one."""
    folder = rundir.run_dir(data_root, run)
    found = [folder / f"partseg-{dataset}.pt"] if dataset else sorted(folder.glob("partseg-*.pt"))
    found = [p for p in found if p.is_file()]
    if not found:
        raise ConfigError(
            f"run {run} has no part-segmentation model{f' for {dataset}' if dataset else ''} ({folder})",
            f"train one: i2p partseg --run {run}" + (f" -d {dataset}" if dataset else ""),
        )
    return max(found, key=lambda p: p.stat().st_mtime)


def load_partseg_model(path: Path) -> tuple[Any, dict[str, Any]]:
    """(PartSegmenter in eval mode, the saved record) from a file :mod:`pipeline.evaluate.partseg` wrote."""
    from i2pmae.partseg import PartSegConfig, PartSegmenter
    from pipeline.storage.safe_load import torch_load

    saved = torch_load(path)
    cfg = PartSegConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()})
    model = PartSegmenter(cfg)
    model.load_state_dict(saved["model"])
    return model.eval(), saved


def partseg_picture(
    data_root: Path,
    run: str,
    dataset: str | None,
    split: str,
    obj: str,
    out_dir: Path,
    out: Path | None,
    seed: int,
) -> Path:
    """Write the PNG (default ``out_dir/<dataset>-<split>-<object>-partseg-run-<run>.png``) and its sidecar.
    Errors: ConfigError (no model for the run, object not in the split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from i2pmae.partseg_metrics import parts_by_index, predict_parts, shape_iou

    model, saved = load_partseg_model(partseg_model_file(data_root, run, dataset))
    group = open_group(saved["store"])  # damaged chunks: one DamagedStore line
    row = locate(group, split, obj)
    n = int(group[f"{split}/count"][row])
    points = np.asarray(group[f"{split}/points"][row][:n], np.float32)
    truth = np.asarray(group[f"{split}/part"][row][:n], np.int64)
    category = int(group[f"{split}/label"][row])
    classes, parts = saved["classes"], saved["parts"]
    ids = list(parts[classes[category]])
    if n < model.cfg.num_groups[0]:  # too few for the tokenizer: the reference's draw with replacement
        pick = np.random.default_rng(seed).integers(0, n, 2048)
        points, truth = points[pick], truth[pick]
    with torch.no_grad():
        logp = model(torch.from_numpy(points)[None], torch.tensor([category])).numpy()
    pred = predict_parts(logp, np.array([category]), parts_by_index(classes, parts))[0]
    iou = shape_iou(pred, truth, ids)
    from matplotlib.colors import to_hex

    colours = plt.get_cmap("tab10")
    fig = plt.figure(figsize=(10, 5), layout="constrained")
    axes = [fig.add_subplot(1, 2, i + 1, projection="3d") for i in range(2)]
    for ax, labels, title in (
        (axes[0], truth, "ground truth"),
        (axes[1], pred, f"prediction: shape IoU {100 * iou:.1f} %"),
    ):
        layers = [
            (points[labels == p], to_hex(colours(k % 10)), 4)
            for k, p in enumerate(ids)
            if (labels == p).any()
        ]
        _scatter(ax, layers, title)
    ident = str(group[f"{split}/id"][row])
    fig.suptitle(
        f"run {run}: part segmentation of {ident} ({classes[category]}, {len(points)} points), "
        f"model of epoch {saved.get('epoch')} (from 0); colours: parts {', '.join(map(str, ids))}",
        fontsize=10,
    )
    record = {
        "run": run, "object": ident, "row": row, "split": split, "category": classes[category], "parts": ids,
        "points": len(points), "shape_iou": iou, "epoch": saved.get("epoch"), "store": saved["store"],
    }  # fmt: skip
    name = picture_name(group.attrs.get("dataset", "?"), split, ident, "partseg", run)
    return save_figure(fig, Path(out) if out else Path(out_dir) / name, record)
