"""Ablation arms read only the arrays they use: saliency for 2D-guided masking, feature maps for 2D
targets, the points store alone for the 3D-only arm; and every arm computes what it computed before."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from i2pmae.pretrain import Batch, saliency_fn, target_fn
from pipeline.runner.execute import run as run_plan
from pipeline.runner.plan import Context, plan
from pipeline.storage.fastread import ArrayReader
from pipeline.train.engine import fit, train_step
from pipeline.train.setup import setup
from pipeline.train.stage import train_inputs
from pipeline.train.trainset import CachedShapes, maps_used
from tests.builders import SMALL, TRAIN_SETS, built_inputs, toy_config

ARMS = [("2d-guided", "3d+2d"), ("2d-guided", "3d"), ("random", "3d+2d"), ("random", "3d")]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A 4-object training split with real points, views and tiny-random features stores."""
    tmp = tmp_path_factory.mktemp("arms")
    config = toy_config(tmp, TRAIN_SETS)
    return config, tmp / "data", built_inputs(config, tmp / "data")


@pytest.fixture
def reads(monkeypatch):
    """A spy on the loader's reads: (store path, array name) of every ArrayReader.get."""
    seen, get = [], ArrayReader.get

    def spy(self, name, *args, **kwargs):
        seen.append((self.store, name))
        return get(self, name, *args, **kwargs)

    monkeypatch.setattr(ArrayReader, "get", spy)
    return seen


def test_each_arm_names_the_maps_it_uses():
    assert maps_used("2d-guided", "3d+2d") == ("feature", "saliency")  # the item's order as before
    assert maps_used("2d-guided", "3d") == ("saliency",)
    assert maps_used("random", "3d+2d") == ("feature",)
    assert maps_used("random", "3d") == ()


@pytest.mark.parametrize(("masking", "targets"), ARMS)
def test_the_loader_of_a_run_reads_only_the_arrays_of_its_arm(stores, reads, tmp_path, masking, targets):
    config, _, inputs = stores
    params = config.params("train").model_copy(
        update={"masking": masking, "targets": targets, "batch_size": 2}
    )
    s = setup(params, inputs, tmp_path / "run", "cpu", arch=SMALL)
    batch = next(iter(s.loader))
    expected = {"feature", "saliency"} & set(maps_used(masking, targets))
    assert {"feature", "saliency"} & set(batch) == expected
    assert {name for store, name in reads if store == inputs.features} == expected


@pytest.mark.parametrize(("masking", "targets"), [("2d-guided", "3d"), ("random", "3d+2d")])
def test_an_arm_that_reads_fewer_maps_trains_as_when_it_read_every_map(stores, tmp_path, masking, targets):
    """A step from the same seed on the arm's batch and on a batch of every array (what the loader read
    before): the same loss and weights, bit for bit."""
    config, _, inputs = stores
    params = config.params("train").model_copy(
        update={"masking": masking, "targets": targets, "batch_size": 2}
    )
    results = []
    for maps in (maps_used(masking, targets), ("feature", "saliency")):
        data = CachedShapes(
            inputs.points, inputs.views, inputs.features, "train", 1024, params.seed, maps=maps
        )
        s = setup(params, inputs, tmp_path / "-".join(maps), "cpu", arch=SMALL)
        out, finite = train_step(s, data[(0, [0, 1])])  # a batch as the run's DataLoader reads it
        assert finite
        results.append((out.loss, s.model.state_dict()))
    (loss, weights), (loss_every, weights_every) = results
    assert torch.equal(loss, loss_every)
    assert all(torch.equal(v, weights_every[k]) for k, v in weights.items())


def test_a_3d_only_run_needs_and_reads_the_points_store_alone(tmp_path, reads):
    """Random masking + 3D targets: the runner builds no views or features, and the run trains."""
    config = toy_config(tmp_path, [*TRAIN_SETS, "train.masking=random", "train.targets=3d"])
    data_root = tmp_path / "data"
    ctx = Context(config, data_root, "toys")
    p = plan("train", ctx)
    assert list(p.needs) == ["prepare"]
    for need in p.needs.values():
        run_plan(need, ctx)
    inputs = train_inputs(p)
    assert inputs.views is None and inputs.features is None
    fit(
        setup(p.params.model_copy(update={"max_steps": 2, "batch_size": 2}), inputs, p.out, "cpu", arch=SMALL)
    )
    assert not (data_root / "views").exists() and not (data_root / "features").exists()
    rows = [json.loads(x) for x in (p.out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss_2d"] is None for r in rows)
    assert {name for _, name in reads} == {"points"}


def test_2d_targets_do_not_depend_on_the_order_of_their_rows(stores):
    _, _, inputs = stores
    data = CachedShapes(inputs.points, inputs.views, inputs.features, "train", 1024, seed=1)
    batch = Batch.from_item(
        torch.utils.data.default_collate([data[i] for i in range(4)]), torch.device("cpu")
    )
    from i2pmae.model import I2PMAE, I2PMAEConfig

    torch.manual_seed(0)
    model = I2PMAE(I2PMAEConfig(num_groups=(128, 64, 16)))
    groups = model.group(batch.xyz)
    enc = model.forward_encoder(groups, model.guided_mask(saliency_fn(batch)(groups.top_center_point_idx)))
    batch_idx, member_idx = model.visible_members(groups, enc.masks)  # rows sample by sample
    in_order = target_fn(batch)(batch_idx, member_idx)
    shuffled = torch.randperm(len(batch_idx))
    assert torch.equal(target_fn(batch)(batch_idx[shuffled], member_idx[shuffled]), in_order[shuffled])
