"""Augmented views (K seeded draws per object) and the true online baseline, against the official step.

The official step (method §1.1, §1.6, §4, §5, §8): a random subset, pc_norm, per-axis scale and shift,
projection of *that* augmented cloud, the teacher on its views, saliency at the top-scale centres and
2D targets at the visible members, all read in the augmented cloud's own frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr

from i2pmae.augment import scale_and_translate
from i2pmae.geometry import normalise_images, project
from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.pretrain import Batch, official_step, online_maps, pretrain_forward
from pipeline.core.params import RenderParams
from pipeline.features.teachers import load_teacher
from pipeline.runner.execute import output_state
from pipeline.runner.plan import Context, plan
from pipeline.storage.fastread import ArrayReader
from pipeline.train.trainset import CachedShapes
from tests.builders import TRAIN_SETS, built_inputs, toy_config

DRAWS = 2
AUGMENTED = [
    *TRAIN_SETS,
    "prepare.points=2048",
    f"render.draws={DRAWS}",
    "render.chunk=2",
    "cache-features.chunk=2",
]  # stages.yaml's default views: augmented


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("draws")
    config = toy_config(tmp, AUGMENTED)
    return config, tmp / "data", built_inputs(config, tmp / "data")


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("tiny-random", device="cpu", precision="fp32", offline=True)


def items(inputs, input_subset="draw", n=4, epoch=0):
    data = CachedShapes(
        inputs.points, inputs.views, inputs.features, "train", 1024, seed=1, input_subset=input_subset
    )
    data.set_epoch(epoch)
    rows = [data[i] for i in range(n)]
    return data, rows, Batch.from_item(torch.utils.data.default_collate(rows), torch.device("cpu"))


def test_views_store_holds_k_seeded_draws_of_the_augmented_cloud(stores):
    _, _, inputs = stores
    views = zarr.open_group(inputs.views, mode="r")
    points = zarr.open_group(inputs.points, mode="r")["train/points"][:]
    assert views.attrs["draws"] == DRAWS and views["train/image"].metadata.dimension_names[:3] == (
        "object",
        "draw",
        "view",
    )
    o, k = 1, 1
    subset, scale, shift = (views[f"train/{a}"][o, k] for a in ("subset", "scale", "shift"))
    assert np.all((scale >= 2 / 3) & (scale < 3 / 2)) and np.all(np.abs(shift) <= 0.2)
    assert not np.array_equal(subset, views["train/subset"][o, 0])  # draws differ
    # official order, by hand: subset → pc_norm → scale and shift → projection
    cloud = torch.from_numpy(points[o][subset])
    centred = cloud - cloud.mean(dim=0, keepdim=True)
    augmented = centred / centred.norm(dim=1).max() * torch.from_numpy(scale) + torch.from_numpy(shift)
    images, proj = project(augmented[None])
    assert torch.allclose(torch.from_numpy(views["train/proj"][o, k]), proj[0], atol=1e-5)
    stored = torch.from_numpy(views["train/image"][o, k].astype(np.float32))
    assert (stored - images[0]).abs().max() < 1e-3  # float16 storage of the same image


def test_features_of_each_draw_are_read_per_draw(stores, teacher):
    _, _, inputs = stores
    features = zarr.open_group(inputs.features, mode="r")
    assert features["train/feature"].shape[:3] == (4, DRAWS, 3)
    reader = ArrayReader(inputs.features, "train")
    assert type(reader._array("feature")).__name__ == "_Sharded"  # the shard reader, not zarr's fallback
    for o, k in ((0, 1), (3, 0), (2, 1), (3, 1)):  # two shards of two objects, K chunks per object
        assert np.array_equal(reader.get("feature", o, draw=k), features["train/feature"][o, k])
        assert np.array_equal(reader.get("saliency", o, draw=k), features["train/saliency"][o, k])
    assert np.array_equal(reader.get("saliency", 3), features["train/saliency"][3])  # every draw at once
    image = zarr.open_group(inputs.views, mode="r")["train/image"][2, 1]  # (V, H, W) float16
    with torch.no_grad():
        f, s = teacher(normalise_images(torch.from_numpy(image.astype(np.float32))))
    assert torch.allclose(torch.from_numpy(features["train/feature"][2, 1]).float(), f, atol=2e-3, rtol=2e-3)


def test_cached_draw_and_online_baseline_give_the_same_masks_and_losses(stores, teacher):
    """For the same draw, the cached mode and the official online step agree within fp16 storage."""
    _, _, inputs = stores
    _, _, cached = items(inputs, "draw")
    online = online_maps(
        Batch(cached.xyz.clone(), None), teacher
    )  # the official 2D branch on the draw's cloud
    assert torch.equal(online.proj, cached.proj)  # the same cloud, projected the same way
    # images and maps are stored in float16 (steps of 2⁻¹¹ relative): measured max error 0.006 at |f| ≤ 4.7
    assert torch.allclose(online.feature, cached.feature.float(), atol=1e-2, rtol=2e-3)
    torch.manual_seed(0)
    model = I2PMAE(I2PMAEConfig(feat_dim_2d=512)).eval()  # eval: no drop path
    outs = []
    for batch in (cached, online):
        torch.manual_seed(7)  # the same masking draws
        outs.append(pretrain_forward(model, batch, augment=False))
    a, b = outs
    for ma, mb in zip(a.encoded.masks, b.encoded.masks, strict=True):
        assert torch.equal(ma, mb)
    assert a.loss_3d.item() == pytest.approx(b.loss_3d.item(), rel=1e-6)
    assert a.loss_2d.item() == pytest.approx(b.loss_2d.item(), rel=2e-3)  # cached maps are float16


def test_online_step_is_the_official_order_computed_by_hand(stores, teacher):
    """official_step == subset → pc_norm → scale/shift → project → teacher → dense bicubic I2P (§5.3)
    at the augmented centres and members → 2D-guided masks and losses."""
    _, _, inputs = stores
    data = CachedShapes(inputs.points, None, None, "train", 1024, seed=1)  # the online mode reads points only
    batch = Batch.from_item(
        torch.utils.data.default_collate([data[i] for i in range(4)]), torch.device("cpu")
    )
    torch.manual_seed(0)
    model = I2PMAE(I2PMAEConfig(feat_dim_2d=512)).eval()
    torch.manual_seed(11)
    ours = official_step(model, batch, teacher)

    torch.manual_seed(11)
    xyz = scale_and_translate(batch.xyz)  # the same draws of scale and shift
    images, proj = project(xyz)
    B, V = images.shape[:2]
    with torch.no_grad():
        feats, sal = teacher(normalise_images(images).flatten(0, 1))
    feats, sal = feats.reshape(B, V, *feats.shape[1:]), sal.reshape(B, V, *sal.shape[1:])

    def dense_i2p(maps, points, b):  # official I2P for object b: dense 224² bicubic upsampling, then
        out = []  # the centre splat's pixel of each point. maps (V, C, h, w), points (n, 3) → V × (n, C)
        for v, perm in enumerate(((0, 1, 2), (2, 0, 1), (1, 2, 0))):
            q = points[:, list(perm)]
            pmin, grid, off = proj[b, v, :2], proj[b, v, 2], proj[b, v, 3:].long()
            ij = torch.floor((q[:, :2] - pmin) / grid).long() + 1 + off  # (n, 2)
            assert int(ij.min()) >= 0 and int(ij.max()) <= 223  # points of the projected cloud
            up = F.interpolate(maps[v][None].float(), size=224, mode="bicubic", align_corners=False)[0]
            out.append(up[:, ij[:, 0], ij[:, 1]].T)
        return out

    def saliency_fn(idx):
        centres = torch.gather(xyz, 1, idx[..., None].expand(-1, -1, 3))  # (B, G, 3)
        return torch.stack(
            [torch.stack([s[:, 0] for s in dense_i2p(sal[b, :, None], centres[b], b)]) for b in range(B)]
        )  # (B, V, G)

    def target_fn(batch_idx, member_idx):
        L, K = member_idx.shape
        out = torch.zeros(L, K, V * feats.shape[2])
        for b in batch_idx.unique().tolist():
            rows = batch_idx == b
            views = dense_i2p(feats[b], xyz[b][member_idx[rows].reshape(-1)], b)  # V × (l·K, C)
            out[rows] = torch.cat(views, dim=-1).reshape(-1, K, out.shape[-1])  # views in order (§8)
        return out

    ref = model(xyz, saliency_fn=saliency_fn, target_fn=target_fn)
    for mine, theirs in zip(ours.encoded.masks, ref.encoded.masks, strict=True):
        assert torch.equal(mine, theirs)
    assert ours.loss_3d.item() == pytest.approx(ref.loss_3d.item(), rel=1e-6)
    assert ours.loss_2d.item() == pytest.approx(ref.loss_2d.item(), rel=1e-4)


def test_fresh_subset_reads_the_draws_pixels_at_its_own_points(stores):
    """input_subset=fresh: a fresh subset with the draw's scale and shift; a point that the draw also
    projected is looked up exactly where the draw put it."""
    _, _, inputs = stores
    data, rows, batch = items(inputs, "fresh", epoch=3)
    views = zarr.open_group(inputs.views, mode="r")
    stored = zarr.open_group(inputs.points, mode="r")["train/points"][:]
    for o, row in enumerate(rows):
        k = int(row["draw"][0])
        rng = np.random.default_rng([1, 3, o])
        chosen = rng.permutation(stored.shape[1])[:1024]
        assert int(rng.integers(DRAWS)) == k  # the draw comes from the same (seed, epoch, index) stream
        subset = views["train/subset"][o, k]
        scale, shift = views["train/scale"][o, k], views["train/shift"][o, k]
        rendered = _frame(stored[o][subset], scale, shift)  # the cloud draw k projected
        common, at_fresh, at_draw = np.intersect1d(chosen, subset, return_indices=True)
        assert len(common) > 100
        assert np.allclose(row["canonical"].numpy()[at_fresh], rendered[at_draw], atol=1e-5)
        own = _frame(stored[o][chosen], scale, shift)  # the input: pc_norm of the fresh subset itself
        assert np.allclose(row["xyz"].numpy(), own, atol=1e-5)
    assert data.augmented


def _frame(points, scale, shift):
    centred = points - points.mean(axis=0, keepdims=True)
    return centred / np.sqrt((centred**2).sum(axis=1)).max() * scale + shift


def test_input_subset_draw_needs_the_draws_point_count(stores):
    from pipeline.core.errors import StoreError

    _, _, inputs = stores
    with pytest.raises(StoreError, match="input_subset=draw"):
        CachedShapes(inputs.points, inputs.views, inputs.features, "train", 512, seed=1, input_subset="draw")


def test_fixed_views_keep_their_fingerprint_and_older_stores_stay_up_to_date(tmp_path, caplog, monkeypatch):
    assert RenderParams(views="fixed", draws=8).fingerprint_params() == {
        "subset": 2048,
        "seed": 0,
        "chunk": 16,
    }
    config = toy_config(tmp_path, [*TRAIN_SETS, "render.views=fixed"])
    ctx = Context(config, tmp_path / "data", "toys")
    from pipeline.runner.execute import run as run_plan

    built = plan("render", ctx)
    run_plan(built.needs["prepare"], ctx)
    run_plan(built, ctx)
    assert "views" not in zarr.open_group(str(built.out), mode="r").attrs["stage_params"]  # as older stores
    default = toy_config(
        tmp_path, TRAIN_SETS
    )  # stages.yaml: views augmented; the dataset keeps what it built
    again = plan("render", Context(default, tmp_path / "data", "toys"))
    assert again.out == built.out and output_state(again).label == "up to date"
    asked = toy_config(tmp_path, [*TRAIN_SETS, "render.views=augmented"])  # asked for explicitly: a new store
    assert plan("render", Context(asked, tmp_path / "data", "toys")).out != built.out
    draws_only = toy_config(
        tmp_path, [*TRAIN_SETS, "render.draws=8"]
    )  # not enough to leave fixed views: said
    import logging

    monkeypatch.setattr(logging.getLogger("i2p"), "propagate", True)  # a CLI test may have turned it off
    with caplog.at_level("WARNING", logger="i2p"):
        assert plan("render", Context(draws_only, tmp_path / "data", "toys")).out == built.out
    assert "render.draws=8 has no effect here (fixed views have no draws" in caplog.text
    assert "render.views=augmented" in caplog.text


def test_draw_input_is_the_draws_cloud_in_a_fresh_order_each_epoch(stores):
    """input_subset=draw (the default): the very cloud the views show, in a random order each step
    (the official subset comes in random order, so FPS starts from a random point)."""
    _, _, inputs = stores
    views = zarr.open_group(inputs.views, mode="r")
    seen = {}
    for epoch in range(6):
        _, rows, _ = items(inputs, "draw", n=1, epoch=epoch)
        k, xyz = int(rows[0]["draw"][0]), rows[0]["xyz"].numpy()
        assert np.array_equal(rows[0]["canonical"].numpy(), xyz)  # looked up in the frame it was projected in
        seen.setdefault(k, []).append(xyz)
    k, clouds = max(seen.items(), key=lambda kv: len(kv[1]))
    assert len(clouds) >= 2, "six epochs should pick one of two draws twice"
    a, b = clouds[:2]
    assert not np.array_equal(a, b)  # another order ...
    assert np.array_equal(np.unique(a, axis=0), np.unique(b, axis=0))  # ... of the same points
    proj = views["train/proj"][0, k]
    images, again = project(torch.from_numpy(a)[None])
    assert np.allclose(again[0].numpy(), proj, atol=1e-6)  # whose projection is the draw's


def test_the_training_step_augments_once_per_mode(stores, tmp_path):
    """train_step: augmented views are fed as the loader made them (the draw's scale and shift, no
    second augmentation); the loss is that of pretrain_forward(augment=False) on the same batch."""
    import copy

    from pipeline.train.engine import train_step
    from pipeline.train.setup import setup

    config, _, inputs = stores
    params = config.params("train").model_copy(update={"run": "once", "batch_size": 4})
    s = setup(params, inputs, tmp_path / "once", "cpu", arch={"num_groups": (128, 64, 16)})
    assert s.dataset.augmented
    item = next(iter(s.loader))
    model = copy.deepcopy(s.model)  # the weights before the step
    batch = Batch.from_item(item, torch.device("cpu"))
    torch.manual_seed(5)
    expected = pretrain_forward(model, batch, augment=False).loss.item()
    torch.manual_seed(5)
    twice = pretrain_forward(copy.deepcopy(s.model), batch, augment=True).loss.item()
    torch.manual_seed(5)
    out, finite = train_step(s, item)
    assert finite and out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss.item() != pytest.approx(twice, rel=1e-3)  # augmenting again would be another loss


def test_draws_and_their_order_do_not_depend_on_loader_workers(stores):
    """The draw picked, its points and its maps come from (seed, epoch, index): the same batches with 0
    or 2 DataLoader workers, in every epoch (so a resume mid-epoch sees what the first run saw)."""
    from pipeline.train.trainset import EpochSampler, batch_loader

    _, _, inputs = stores
    runs = []
    for workers in (0, 2):
        data = CachedShapes(inputs.points, inputs.views, inputs.features, "train", 1024, seed=4)
        sampler = EpochSampler(len(data), 2, seed=4)
        loader = batch_loader(data, sampler, num_workers=workers)
        batches = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            batches += [{k: v.clone() for k, v in b.items()} for b in loader]
        runs.append(batches)
    assert len(runs[0]) == 4 and {int(d) for b in runs[0] for d in b["draw"].flatten()} == {0, 1}
    for a, b in zip(*runs, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
