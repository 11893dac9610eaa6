"""``i2p export`` (docs/training.md, "Sharing a pre-trained encoder"): the folder loads back in one call
wherever i2p takes a checkpoint, with the same tensors, and its ``pre-train.pth`` loads strictly into the
model the way the official runners load theirs."""

from __future__ import annotations

import json
import re

import torch
from typer.testing import CliRunner

from cli import app
from i2pmae.model import I2PMAE
from pipeline.storage.checkpoints import config_from_dict, load_encoder


def cli(root, *args):
    return CliRunner().invoke(app, [*map(str, args), "--data-root", str(root)], catch_exceptions=False)


def test_an_exported_run_loads_back_with_the_same_tensors_and_in_the_official_way(tiny_eval_root, tmp_path):
    out = tmp_path / "shared"
    result = cli(tiny_eval_root, "export", "--run", "fresh", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "pre-train.pth",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "i2p-pretrained/1" and config["checkpoint"]["run"] == "fresh"
    original = load_encoder(tiny_eval_root / "runs" / "fresh" / "ckpt-last.pt")
    exported = load_encoder(out)
    assert exported.encoder_state.keys() == original.encoder_state.keys()
    assert all(torch.equal(v, original.encoder_state[k]) for k, v in exported.encoder_state.items())
    official = torch.load(out / "pre-train.pth", weights_only=True)["base_model"]  # as the official runner
    model = I2PMAE(config_from_dict(config["architecture"]))  # (the official format carries no config)
    model.load_state_dict({k.replace("module.", ""): v for k, v in official.items()}, strict=True)
    assert all(torch.equal(v, official[k]) for k, v in model.state_dict().items())
    card = (out / "README.md").read_text()
    assert "`ckpt-last.pt` of run `fresh`" in card and "pre-train.pth" in card
    by_folder = cli(
        tiny_eval_root, "eval", "svm", "--ckpt", out, "-d", "blobs", "--report", tmp_path / "a.md"
    )
    by_file = cli(
        tiny_eval_root, "eval", "svm", "--ckpt", tiny_eval_root / "runs" / "fresh" / "ckpt-last.pt", "-d", "blobs",
        "--report", tmp_path / "b.md",
    )  # fmt: skip
    assert by_folder.exit_code == 0 and by_file.exit_code == 0, by_folder.output
    accuracy = [re.findall(r"linear SVM on blobs: ([\d.]+ %)", r.output) for r in (by_folder, by_file)]
    assert accuracy[0] and accuracy[0] == accuracy[1]  # the same encoder, the same features


def test_exporting_a_run_without_a_checkpoint_or_over_other_files_is_one_line(tiny_eval_root, tmp_path):
    result = cli(tiny_eval_root, "export", "--run", "fresh", "--which", "best", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "run fresh has no ckpt-best.pt to export" in result.output
    assert not (tmp_path / "x").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    result = cli(tiny_eval_root, "export", "--run", "fresh", "--out", mine)
    assert result.exit_code == 2 and "is not an i2p export: nothing is written into it" in result.output
    assert [p.name for p in mine.iterdir()] == ["README.md"] and (
        mine / "README.md"
    ).read_text() == "my notes"
    assert "--which 'first'" in cli(tiny_eval_root, "export", "--run", "fresh", "--which", "first").output
    for _ in range(2):  # an export is replaced as a whole
        assert cli(tiny_eval_root, "export", "--run", "fresh", "--out", tmp_path / "again").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
