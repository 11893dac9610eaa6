"""``i2p show --run NAME OBJECT``: what a pre-training run does with one object.

One forward of the run's last checkpoint on the object, exactly as in training but without the
augmentation (method §1.6), in eval mode, with the mask drawn from a fixed seed:

* row 1: the three depth views with the teacher's saliency and the top-scale token centres that the
  mask keeps visible (dots) or removes (crosses) — the 2D-guided mask of method §4;
* row 2, in 3D at the reconstruction scale (method §7, §8): the input with the masked tokens' points
  in colour, the masked patches' ground truth, and the model's reconstruction of them.

The forward is the model's own (``pretrain_forward`` → ``I2PMAE.forward``); its output already
carries the groups, the per-scale masks and the 3D predictions, so nothing in i2pmae/ changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.show.stores import VIEW_NAMES, draw_views, locate, object_title, picture_name, save_figure
from pipeline.storage import rundir

MASKED, VISIBLE = "tab:red", "tab:cyan"


def load_run_model(checkpoint: Path) -> tuple[Any, int]:
    """The run's I2PMAE (its recorded config, every weight loaded strictly), eval mode, on the CPU;
    and the step the checkpoint was saved at."""
    from i2pmae.model import I2PMAE
    from pipeline.storage.checkpoint_files import read_checkpoint
    from pipeline.storage.checkpoints import config_from_dict

    state = read_checkpoint(checkpoint)
    model = I2PMAE(config_from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), int(state.get("step", 0))


def forward_one(model: Any, config: dict, split: str, row: int, seed: int) -> tuple[Any, Any, int | None]:
    """(batch of one object as training builds it, the model's PretrainOutput, the views' draw or None):
    no augmentation, or with augmented views the augmentation of the draw the loader picks."""
    import torch

    from i2pmae.pretrain import Batch, pretrain_forward
    from pipeline.train.trainset import CachedShapes

    stores, params = rundir.input_paths(config), config["params"]
    needs_maps = model.cfg.masking == "2d-guided" or model.cfg.targets == "3d+2d"
    if needs_maps and not stores.get("features"):
        raise ConfigError(
            "this run has no features store (it ran its teacher online); the run picture reads cached maps",
            "cache the run's teacher with `i2p cache-features --teacher NAME` and train a run from it",
        )
    data = CachedShapes(
        stores["points"],
        stores.get("views"),
        stores.get("features"),
        split,
        (config.get("effective") or {}).get("points", params["points"]),
        seed,
        params.get("input_subset", "draw"),
    )
    item = data[row]
    draw = int(item.pop("draw")[0]) if "draw" in item else None
    batch = Batch.from_item({k: v[None] for k, v in item.items()}, torch.device("cpu"))
    torch.manual_seed(seed)  # the mask is a draw (method §4): the same seed draws the same one
    with torch.no_grad():
        return batch, pretrain_forward(model, batch, augment=False), draw


def _scatter(ax: Any, layers: list[tuple[np.ndarray, str, float]], title: str) -> None:
    """3D points in layers (points (n, 3), colour, marker size), drawn in order, on the unit cube."""
    for points, colour, size in layers:
        ax.scatter(*points.T, s=size, c=colour, depthshade=False, linewidths=0)
    ax.set_title(title, fontsize=9)
    ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xticklabels=[], yticklabels=[], zticklabels=[])
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=20, azim=-60)


def _draw_tokens(axes: Any, batch: Any, out: Any) -> tuple[int, int]:
    """Top-scale centres on each view: visible (kept) as dots, masked as crosses. → (visible, all)."""
    from i2pmae.geometry import points_to_pixels

    idx = out.groups.top_center_point_idx[0]  # (G_top,)
    masked = out.encoded.masks[-1][0].numpy()  # (G_top,) True = masked
    centres = batch.canonical[0][idx]  # (G_top, 3) in the frame the views were projected from
    rows, cols = (t[0].numpy() for t in points_to_pixels(centres[None], batch.proj))  # (V, G_top) each
    for v, ax in enumerate(axes):
        ax.scatter(cols[v][masked], rows[v][masked], marker="x", s=14, c=MASKED, linewidths=0.8)
        ax.scatter(cols[v][~masked], rows[v][~masked], s=22, c=VISIBLE, edgecolors="black", linewidths=0.5)
    return int((~masked).sum()), len(masked)


def run_picture(
    data_root: Path, run: str, split: str, obj: str, out_dir: Path, out: Path | None = None, seed: int = 0
) -> Path:
    """Write ``out`` (default ``out_dir/<dataset>-<split>-<object>-<teacher>-run-<run>.png``) and its
    JSON sidecar; see the module docstring for the panels. Errors: CheckpointError (no such run or
    checkpoint), ConfigError (object not in the split, run without cached maps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import zarr

    from pipeline.storage.checkpoints import run_checkpoint

    checkpoint = run_checkpoint(data_root, run, "last")
    config = rundir.read(checkpoint.parent).config or {}
    stores = rundir.input_paths(config)
    points = zarr.open_group(stores["points"], mode="r")
    row = locate(points, split, obj)
    model, step = load_run_model(checkpoint)
    batch, result, draw = forward_one(model, config, split, row, seed)
    features = stores["features"]
    teacher = dict(zarr.open_group(features, mode="r").attrs["teacher"]) if features else {}

    fig = plt.figure(figsize=(11, 7.6), layout="constrained")
    top = [fig.add_subplot(2, 3, v + 1) for v in range(3)]
    views = zarr.open_group(stores["views"], mode="r")[f"{split}/image"][row].astype(
        np.float32
    )  # ([K,] V, H, W)
    views = views if draw is None else views[draw]
    saliency = batch.saliency[0].numpy() if batch.saliency is not None else None
    draw_views(fig, top, views, saliency)
    n_visible, n_tokens = _draw_tokens(top, batch, result)
    how = "2D-guided" if model.cfg.masking == "2d-guided" else "random"
    for v, ax in enumerate(top):
        ax.set_title(
            f"{VIEW_NAMES[v].split(':')[0]}: {how} mask, {n_visible} of {n_tokens} tokens kept", fontsize=9
        )
    r = model.cfg.rec_scale
    masked = result.encoded.masks[r][0]  # (G_r,) True = masked
    centres = result.groups.centers[r][0]  # (G_r, 3)
    patches = result.groups.neighborhoods[r][0] + centres[:, None]  # (G_r, K, 3) absolute
    visible = patches[~masked].reshape(-1, 3).numpy()
    truth = patches[masked].reshape(-1, 3).numpy()
    recon = (result.decoded.pred_3d + centres[masked][:, None]).reshape(-1, 3).numpy()
    loss_3d = float(result.loss_3d)
    low = [fig.add_subplot(2, 3, 4 + i, projection="3d") for i in range(3)]
    n_masked = int(masked.sum())
    _scatter(
        low[0],
        [(truth, "mistyrose", 3), (visible, VISIBLE, 4)],
        f"encoder input: {len(masked) - n_masked} of {len(masked)} scale-{r} tokens kept",
    )
    _scatter(
        low[1], [(visible, "lightgrey", 3), (truth, "tab:green", 5)], "ground truth of the masked patches"
    )
    _scatter(
        low[2],
        [(visible, "lightgrey", 3), (recon, "tab:purple", 5)],
        f"reconstruction (Chamfer-L2 {loss_3d:.4f})",
    )
    random = " — RANDOM weights" if teacher.get("random_weights") else ""
    fig.suptitle(
        f"run {run} (step {step}): {object_title(points, split, row)}\n"
        f"teacher {teacher.get('name', 'none')}{random}; mask drawn with seed {seed}; "
        f"{'no augmentation' if draw is None else f'augmentation of views draw {draw}'}",
        fontsize=10,
    )
    ident = str(points[f"{split}/id"][row])
    record = {
        "run": run,
        "step": step,
        "object": ident,
        "row": row,
        "split": split,
        "teacher": teacher or None,
        "masking": model.cfg.masking,
        "visible_top_tokens": n_visible,
        "top_tokens": n_tokens,
        "masked_rec_tokens": n_masked,
        "loss_3d": loss_3d,
        "loss_2d": None if result.loss_2d is None else float(result.loss_2d),
        "seed": seed,
        "draw": draw,
    }
    name = picture_name(points.attrs.get("dataset", "?"), split, ident, teacher.get("name"), run)
    return save_figure(fig, Path(out) if out else Path(out_dir) / name, record)
