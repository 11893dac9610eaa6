"""Checkpoint loading: the paper's files (built from official_checkpoint_keys.json), ours, and loud failures."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from i2pmae.classifier import ClassifierConfig, PointClassifier
from i2pmae.model import I2PMAE, I2PMAEConfig
from pipeline.storage.checkpoints import (
    CheckpointError,
    is_classifier,
    load_classifier,
    load_encoder,
    open_checkpoint,
    run_checkpoint,
)
from tests.builders import TINY_ENCODER

# Names and shapes of the official models' state dicts (see its "about"); a copy kept with the tests.
KEYS = Path(__file__).resolve().parent / "data" / "official_checkpoint_keys.json"
TINY = I2PMAEConfig(**TINY_ENCODER)


@pytest.fixture(scope="module")
def official_shapes() -> dict:
    return json.loads(KEYS.read_text())


def random_state(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of the right shapes; BatchNorm running variances positive, step counters integers."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, s in shapes.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.randint(0, 100, (), dtype=torch.long, generator=g)
        elif k.endswith("running_var"):
            state[k] = torch.rand(s, generator=g) + 0.5
        else:
            state[k] = torch.randn(s, generator=g) * 0.05
    return state


def official_file(path: Path, state: dict[str, torch.Tensor], clip: bool = True) -> Path:
    """Wrapped as the official runner saves it: DataParallel 'module.' keys under 'base_model', the CLIP
    teacher under 'clip_model.', optimizer, epoch and metrics beside."""
    wrapped = {f"module.{k}": v for k, v in state.items()}
    if clip:
        wrapped["module.clip_model.visual.conv1.weight"] = torch.randn(8, 3, 4, 4)
        wrapped["module.clip_model.visual.proj"] = torch.randn(8, 4)
        wrapped["module.clip_model.token_embedding.weight"] = torch.randn(10, 8)  # 'token' in a teacher name
    torch.save(
        {
            "base_model": wrapped,
            "optimizer": {"state": {}, "param_groups": []},
            "epoch": 300,
            "metrics": {"acc": 93.3},
            "best_metrics": {"acc": 93.4},
        },
        path,
    )
    return path


def test_official_pretrain_loads_every_encoder_key(official_shapes, tmp_path):
    state = random_state(official_shapes["pretrain"]["state_dict"])
    ck = load_encoder(official_file(tmp_path / "pre-train.pth", state))
    expected = [k for k in official_shapes["pretrain"]["state_dict"] if k.startswith("h_encoder.")]
    assert sorted(ck.encoder_state) == sorted(expected) and len(expected) == 237
    assert ck.origin == "official" and ck.epoch == 300 and ck.train_points == 2048
    assert ck.config.encoder_dims == (96, 192, 384) and ck.config.encoder_depths == (5, 5, 5)
    assert ck.ignored["clip_model"] == 3 and ck.ignored["h_decoder"] > 0 and "rec_head_2d" in ck.ignored
    model = ck.build_model()
    loaded = model.state_dict()
    for k in expected:  # the values, not just the names, arrived
        assert torch.equal(loaded[k], state[k]), k
    # the same file feeds fine-tuning: no encoder_norms needed, the classifier loads all its encoder keys
    clf = PointClassifier(ClassifierConfig.modelnet40())
    names = clf.load_pretrained_encoder(
        load_encoder(tmp_path / "pre-train.pth", need_norms=False).encoder_state
    )
    assert len(names) == 231 and torch.equal(clf.state_dict()[names[0]], state[names[0]])


def test_every_missing_and_unexpected_encoder_key_is_named(official_shapes, tmp_path):
    state = random_state(official_shapes["pretrain"]["state_dict"])
    gone = ["h_encoder.encoder_blocks.2.blocks.4.mlp.fc2.bias", "h_encoder.token_embed.0.first_conv.0.weight"]
    for k in gone:
        del state[k]
    state["h_encoder.encoder_blocks.2.blocks.9.mlp.fc2.bias"] = torch.zeros(384)
    with pytest.raises(CheckpointError) as err:
        load_encoder(official_file(tmp_path / "broken.pth", state))
    text = err.value.message
    assert "2 missing" in text and all(k in text for k in gone)
    assert "1 unexpected" in text and "h_encoder.encoder_blocks.2.blocks.9.mlp.fc2.bias" in text


def test_a_mis_shaped_key_is_named_with_both_shapes(official_shapes, tmp_path):
    state = random_state(official_shapes["pretrain"]["state_dict"])
    state["h_encoder.encoder_pos_embeds.1.2.weight"] = torch.zeros(192, 190)
    with pytest.raises(CheckpointError, match=r"encoder_pos_embeds\.1\.2\.weight: \(192, 190\) in the file"):
        load_encoder(official_file(tmp_path / "shape.pth", state))


def test_a_file_without_encoder_keys_says_so(tmp_path):
    torch.save({"base_model": {"module.cls.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as err:
        load_encoder(tmp_path / "other.pth")
    assert "no h_encoder.* keys" in err.value.hint


def test_official_classifier_loads_strictly_and_is_recognised(official_shapes, tmp_path):
    state = random_state(official_shapes["scanobjectnn"]["state_dict"])
    opened = open_checkpoint(official_file(tmp_path / "ckpt-best.pth", state, clip=False))
    assert is_classifier(opened)
    model = load_classifier(opened, ClassifierConfig.scanobjectnn("pb-t50-rs"))
    assert model.cfg.num_classes == 15 and model.cfg.pooling == "concat"
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # its encoder lacks encoder_norms: used as a pre-training checkpoint it fails with a clear hint
    with pytest.raises(CheckpointError) as err:
        load_encoder(opened)
    assert "6 missing" in err.value.message and "fine-tuned classifier" in err.value.hint


def test_our_run_checkpoint_rebuilds_its_config(tmp_path):
    torch.manual_seed(0)
    model = I2PMAE(TINY)
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"params": {"points": 256}}))
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": asdict(TINY),
            "train_params": {"points": 256},
            "epoch": 4,
            "step": 40,
            "optimizer": {},
            "scheduler": None,
            "rng": {"numpy": np.random.get_state()},
        },
        run_dir / "ckpt-last.pt",
    )
    ck = load_encoder(run_checkpoint(tmp_path, "tiny"))
    assert ck.origin == "ours" and ck.config == TINY and ck.train_points == 256 and ck.run_dir == run_dir
    rebuilt = ck.build_model()
    assert all(
        torch.equal(rebuilt.state_dict()[k], v)
        for k, v in model.state_dict().items()
        if k.startswith("h_encoder.")
    )
    with pytest.raises(CheckpointError, match="no ckpt-best.pt"):
        run_checkpoint(tmp_path, "tiny", "best")
    with pytest.raises(CheckpointError, match="runs: tiny"):
        run_checkpoint(tmp_path, "nope")


def test_foreign_pickles_are_refused_outside_run_directories(tmp_path):
    torch.save(
        {"base_model": I2PMAE(TINY).state_dict(), "args": argparse.Namespace(lr=1)}, tmp_path / "x.pth"
    )
    with pytest.raises(CheckpointError) as err:
        load_encoder(tmp_path / "x.pth")
    assert "Python objects besides tensors" in err.value.message and "re-save" in err.value.hint


@pytest.mark.slow
def test_paper_checkpoints_run_end_to_end(official_shapes, tmp_path):
    """The paper's files through the commands at full size: SVM on an h5-layout store (first 1024 of 2048
    points) and a fine-tuned ScanObjectNN classifier evaluated as is (no voting for 2048 points)."""
    from tests.builders import invoke, write_store

    data = tmp_path / "data"
    write_store(
        data,
        "modelnet40",
        {"train": 2, "test": 1},
        P=2048,
        layout="modelnet40_ply_hdf5_2048",
        point_order="stored",
    )
    write_store(
        data,
        "scanobjectnn-obj-bg",
        {"train": 1, "test": 1},
        P=2048,
        layout="scanobjectnn_h5",
        point_order="stored",
        variant="obj-bg",
    )
    pre = official_file(tmp_path / "pre-train.pth", random_state(official_shapes["pretrain"]["state_dict"]))
    out = invoke("eval", "svm", "--ckpt", pre, "-d", "modelnet40", "--data-root", data)
    assert out.exit_code == 0, out.output
    report = (data / "runs" / "pre-train" / "report.md").read_text()
    assert "the first 1024 of 2048 stored points (method §1.3" in report and "C=0.0093" in report
    assert "pre-train.pth (official checkpoint, epoch 300)" in report
    clf = official_file(
        tmp_path / "scan.pth", random_state(official_shapes["scanobjectnn"]["state_dict"]), clip=False
    )
    out = invoke("finetune", "--ckpt", clf, "-d", "scanobjectnn", "--split", "obj-bg", "--data-root", data)
    assert out.exit_code == 0, out.output
    report = (data / "runs" / "scan" / "report.md").read_text()
    assert "evaluated as is" in report and "n/a (voting not defined for this recipe)" in report


# ---- checkpoints as users really have them (DataParallel, torch.compile, saved pages, truncated) -----------


def encoder_only(official_shapes) -> dict[str, torch.Tensor]:
    state = random_state(official_shapes["pretrain"]["state_dict"])
    return {k: v for k, v in state.items() if k.startswith("h_encoder.")}


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapper_prefixes_of_dataparallel_and_torch_compile_are_stripped(official_shapes, tmp_path, prefix):
    state = encoder_only(official_shapes)
    torch.save({"base_model": {prefix + k: v for k, v in state.items()}, "epoch": 3}, tmp_path / "c.pth")
    ck = load_encoder(tmp_path / "c.pth")
    assert ck.encoder_state.keys() == state.keys()
    assert all(torch.equal(ck.encoder_state[k], v) for k, v in state.items())


@pytest.mark.parametrize(
    "content, what",
    [
        (b"<!DOCTYPE html><html><body>Quota exceeded</body></html>\n", "an HTML page"),
        (b"<html><head><title>Google Drive - Virus scan warning</title>", "an HTML page"),
        (b'{"error": "not found"}', "not a zip or pickle"),
        (b"", "an empty file"),
    ],
)
def test_a_file_that_is_no_checkpoint_says_download_it_again(tmp_path, content, what):
    (tmp_path / "pre-train.pth").write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_encoder(tmp_path / "pre-train.pth")
    assert f"is not a PyTorch checkpoint ({what}" in err.value.message
    assert "download it again" in err.value.hint


@pytest.mark.parametrize("zipped", [True, False])
def test_a_truncated_download_is_named_as_such(official_shapes, tmp_path, zipped):
    torch.save(
        {"base_model": encoder_only(official_shapes)},
        tmp_path / "full.pth",
        _use_new_zipfile_serialization=zipped,
    )
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError) as err:
        load_encoder(tmp_path / "cut.pth")
    assert "the file ends early, a truncated download" in err.value.message
    assert "download it again" in err.value.hint


def test_stray_non_tensor_entries_are_left_out_and_named(official_shapes, tmp_path, caplog):
    state = {f"module.{k}": v for k, v in encoder_only(official_shapes).items()}
    torch.save({"base_model": {**state, "module.version": 2}, "epoch": 299}, tmp_path / "f.pth")
    with caplog.at_level("WARNING", logger="i2p"):
        ck = load_encoder(tmp_path / "f.pth")
    assert len(ck.encoder_state) == 237 and ck.epoch == 299
    assert "1 non-tensor entries, left out: module.version (int)" in caplog.text


def test_a_key_mismatch_counts_and_shows_a_few(official_shapes, tmp_path):
    state = encoder_only(official_shapes)
    renamed = {f"module.{k.replace('h_encoder.', 'MAE_encoder.')}": v for k, v in state.items()}
    torch.save({"base_model": renamed}, tmp_path / "d.pth")
    with pytest.raises(CheckpointError) as err:
        load_encoder(tmp_path / "d.pth")
    text = err.value.message
    assert "237 missing: " in text and "... (232 more)" in text and text.count("h_encoder.") == 5
    assert "its keys start with MAE_encoder. (237)" in err.value.hint
