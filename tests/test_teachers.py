"""The teacher's features and hooked saliency, on the real open_clip code path with a tiny random ViT."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network, whatever else the test session imported

import hashlib
import math
import re
import time

import pytest
import torch
import torch.nn.functional as F

from pipeline.core.errors import TeacherError
from pipeline.features.teachers import TEACHERS, load_teacher, resolve_teacher, teacher_slug


@pytest.fixture(scope="module")
def tiny():
    return load_teacher("tiny-random")


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_tiny_teacher_shapes_and_flags(tiny, images):
    features, saliency = tiny(images)
    assert features.shape == (3, 512, 14, 14) and features.dtype == torch.float32
    assert saliency.shape == (3, 14, 14) and saliency.dtype == torch.float32
    assert torch.isfinite(features).all() and torch.isfinite(saliency).all()
    assert tiny.random_weights and tiny.weights_sha256 is None and tiny.pretrained_tag is None
    assert tiny.patch_grid == (14, 14) and tiny.channels == 512 and tiny.heads == 2
    assert tiny.precision == "fp32" and len(tiny.mean) == len(tiny.std) == 3
    # CLS→patch probabilities: the CLS→CLS share is missing, so each map sums to less than 1
    assert (saliency > 0).all() and (saliency.sum(dim=(1, 2)) < 1).all()


def test_tiny_teacher_is_deterministic(tiny, images):
    again = load_teacher("tiny-random")
    for a, b in zip(tiny(images), again(images), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_features_and_saliency_match_a_manual_recompute(tiny, images):
    """ln_1 -> in_proj -> per-head softmax(q kᵀ/√d) -> head mean, and ln_post -> proj, by hand."""
    visual = tiny.visual
    block = visual.transformer.resblocks[-1]
    seen = {}
    handles = [
        block.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0])),
        block.register_forward_hook(lambda m, args, out: seen.__setitem__("y", out)),
    ]
    try:
        features, saliency = tiny(images)
    finally:
        for handle in handles:
            handle.remove()
    x = seen["x"]  # (B, L, D) input of the last block (batch first)
    B, L, D = x.shape
    attn = block.attn
    nh = attn.num_heads
    q, k, _ = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q = q.view(B, L, nh, D // nh).transpose(1, 2)  # (B, nh, L, hs)
    k = k.view(B, L, nh, D // nh).transpose(1, 2)
    probs = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // nh), dim=-1)  # (B, nh, L, L)
    expected = probs[:, :, 0, 1:].mean(dim=1).reshape(B, 14, 14)
    torch.testing.assert_close(saliency, expected, rtol=0, atol=1e-6)

    tokens = visual.ln_post(seen["y"])[:, 1:] @ visual.proj  # (B, 196, 512)
    torch.testing.assert_close(features, tokens.reshape(B, 14, 14, -1).permute(0, 3, 1, 2), rtol=0, atol=1e-5)
    # the hooks are gone: the plain forward runs the fast path again without returning weights
    assert not attn._forward_pre_hooks and not attn._forward_hooks


def test_weights_file_loads_and_reports_its_sha256(tiny, images, tmp_path):
    import open_clip

    with torch.random.fork_rng():
        torch.manual_seed(123)  # different weights from the tiny teacher's own seed
        model = open_clip.create_model("i2p-tiny-random")
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    teacher = load_teacher("tiny-random", weights=str(path))
    assert teacher.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not teacher.random_weights and teacher.weights_path == str(path)
    torch.testing.assert_close(teacher.visual.proj, model.visual.proj, rtol=0, atol=0)
    assert not torch.equal(teacher(images)[0], tiny(images)[0])
    assert teacher.describe()["weights_sha256"] == teacher.weights_sha256


def test_wrong_checkpoint_is_a_teacher_error(tmp_path):
    """A state dict of another model is named as such by a tensor's shape; a web page saved as the weights
    is diagnosed before anything reads it (the same signature check as --ckpt files)."""
    import open_clip

    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(TeacherError, match="are of another model than i2p-tiny-random"):
        load_teacher("tiny-random", weights=str(path))
    state = open_clip.create_model("i2p-tiny-random").state_dict()
    key = "visual.conv1.weight"
    wider = {**state, key: torch.zeros(2 * state[key].shape[0], *state[key].shape[1:])}
    torch.save(wider, path)
    with pytest.raises(TeacherError) as err:
        load_teacher("tiny-random", weights=str(path))
    assert (
        f"{key} is {tuple(wider[key].shape)} in the file, {tuple(state[key].shape)} for the model"
        in err.value.message
    )
    page = tmp_path / "weights.bin"
    page.write_text("<!DOCTYPE html><html><body>Sign in to continue</body></html>")
    with pytest.raises(TeacherError, match="is not a weights file .*an HTML page"):
        load_teacher("tiny-random", weights=str(page))
    with pytest.raises(TeacherError, match="does not exist"):
        load_teacher("tiny-random", weights=str(tmp_path / "missing.pt"))


def test_unknown_teacher_lists_known_names():
    with pytest.raises(TeacherError) as info:
        load_teacher("clip-vit-b61")
    for name in TEACHERS:
        assert name in str(info.value)
    assert "open_clip:<model>/<tag>" in str(info.value)


def test_names_parse_and_slug():
    assert resolve_teacher("clip-vit-b16") == ("ViT-B-16-quickgelu", "openai")
    assert resolve_teacher("open_clip:ViT-B-16/laion2b_s34b_b88k") == ("ViT-B-16", "laion2b_s34b_b88k")
    assert resolve_teacher("open_clip:ViT-B-16") == ("ViT-B-16", None)
    assert teacher_slug("open_clip:ViT-B-16/laion2b_s34b_b88k") == "open_clip-ViT-B-16-laion2b_s34b_b88k"
    assert teacher_slug("clip-vit-b16") == "clip-vit-b16"
    with pytest.raises(TeacherError, match="no pretrained tag 'nope'"):
        load_teacher("open_clip:ViT-B-16/nope")
    with pytest.raises(TeacherError, match="no model"):
        load_teacher("open_clip:ViT-Z-99/openai")


def test_paper_teacher_offline_fails_fast_with_how_to_fix(tmp_path):
    start = time.perf_counter()
    with pytest.raises(TeacherError) as info:
        load_teacher("clip-vit-b16", offline=True, cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "--weights" in message and "HF_HUB_CACHE" in message and "HF_HOME" in message


def test_wrong_image_shape_is_a_teacher_error(tiny):
    with pytest.raises(TeacherError, match=r"expects images \(B, 3, 224, 224\)"):
        tiny(torch.zeros(2, 1, 224, 224))


# ---- tiny-synthetic: trained by i2p, shipped with the package ------------------------------------


@pytest.fixture(scope="module")
def synthetic():
    return load_teacher("tiny-synthetic")


def test_tiny_synthetic_loads_offline_from_the_shipped_file(synthetic, images):
    from pipeline.features.tiny_teachers import packaged_record, packaged_weights

    record, path = packaged_record("tiny-synthetic"), packaged_weights("tiny-synthetic")
    assert synthetic.weights_path == str(path) and not synthetic.random_weights
    assert (
        synthetic.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == record["weights_sha256"]
    )
    assert path.stat().st_size == record["weights_bytes"] <= 2.5e6
    assert (
        record["data"]["split"] == "train"
        and record["accuracy"]["test_views_probe"] > 2 * record["accuracy"]["chance"]
    )
    assert "test-view linear probe" in synthetic.note and synthetic.describe()["note"] == synthetic.note
    features, saliency = synthetic(images)
    assert features.shape == (3, 512, 14, 14) and saliency.shape == (3, 14, 14)
    assert synthetic.heads == 4 and synthetic.patch_grid == (14, 14) and synthetic.channels == 512
    assert torch.isfinite(features).all() and (saliency > 0).all()


def _views(name, indices):
    """Depth views (n·3, 224, 224) float16 of synthetic objects (test-split indices: never trained on)."""
    import numpy as np
    import trimesh

    from i2pmae.geometry import project
    from pipeline.render.draws import norm_stats
    from pipeline.sources.synthetic_shapes import make_object

    clouds = []
    for index in indices:
        points = trimesh.sample.sample_surface(make_object(name, 0, index), 2048, seed=index)[0].astype(
            np.float32
        )
        centre, radius = norm_stats(points)
        clouds.append((points - centre) / radius)
    images, _ = project(torch.from_numpy(np.stack(clouds)))  # (n, 3, 224, 224)
    return images.reshape(-1, 224, 224).numpy().astype(np.float16)


def test_tiny_synthetic_linear_probe_tells_two_classes_apart(synthetic):
    import numpy as np

    from pipeline.features.teacher_probe import embed, linear_probe

    a, b = _views("airplane", range(24, 30)), _views("bottle", range(24, 30))  # 6 test objects each
    x = np.concatenate([embed(synthetic, a)["cls"], embed(synthetic, b)["cls"]])
    y = np.repeat([0, 1], 18)
    train = np.r_[np.arange(0, 12), np.arange(18, 30)]  # 4 objects per class fit, 2 are scored
    test = np.setdiff1d(np.arange(36), train)
    assert linear_probe(x[train], y[train], x[test], y[test]) > 0.6  # chance 0.5; 0.75 (9 of 12) when shipped


def test_regeneration_is_seeded_and_loads(tmp_path):
    """The training command on a 6-object dataset, 2 steps: same seed → same bytes; a record beside them."""
    import json

    from typer.testing import CliRunner

    from cli import app
    from pipeline.features.tiny_teachers import TeacherTraining
    from pipeline.features.train_teacher import train_teacher
    from tests.builders import write_folder

    root = write_folder(tmp_path / "meshes", n_per_class=2, classes=("box", "cone"))
    args = [
        "teacher",
        "train",
        "--data-root",
        str(tmp_path / "data"),
        "--dataset",
        "toys",
        "--steps",
        "2",
        "--draws",
        "1",
        "--set",
        "prepare.source=folder",
        "--set",
        f"prepare.root={root}",
        "--set",
        "prepare.points=512",
        "--out",
        str(tmp_path / "a.safetensors"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test-view linear probe" in result.output
    points = next((tmp_path / "data" / "points").glob("toys-*.zarr"))
    record = train_teacher(points, tmp_path / "b.safetensors", TeacherTraining(steps=2, draws=1))
    a, b = (tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.safetensors").read_bytes()
    assert a == b and record["weights_sha256"] == hashlib.sha256(b).hexdigest()
    assert json.loads((tmp_path / "a.json").read_text())["weights_sha256"] == record["weights_sha256"]
    assert record["data"]["split"] == "train" and record["training"]["steps"] == 2
    assert record["training"]["command"] is None  # trained from Python: no command line to record
    teacher = load_teacher("tiny-synthetic", weights=str(tmp_path / "b.safetensors"))
    assert teacher.weights_sha256 == record["weights_sha256"] and teacher.note is None  # not the shipped file


def test_features_stores_pin_the_shipped_weights_and_say_what_the_teacher_knows(tmp_path):
    import zarr

    from pipeline.core.params import FeaturesParams
    from pipeline.features.tiny_teachers import packaged_record
    from pipeline.runner.stages import features_identity
    from tests.builders import build_stage, toy_config

    sha = packaged_record("tiny-synthetic")["weights_sha256"]
    assert features_identity(FeaturesParams(teacher="tiny-synthetic", device="cpu"))["weights_sha256"] == sha
    assert "weights_sha256" not in features_identity(FeaturesParams(teacher="tiny-random", device="cpu"))
    sets = [
        "prepare.source=folder",
        "prepare.points=256",
        "render.subset=128",
        "render.views=fixed",
        "cache-features.teacher=tiny-synthetic",
        "cache-features.num_workers=0",
        "cache-features.batch_size=6",
    ]
    done = build_stage("cache-features", toy_config(tmp_path, sets), tmp_path / "data", "toys")
    attrs = zarr.open_group(str(done["cache-features"]), mode="r").attrs
    assert attrs["teacher"]["weights_sha256"] == sha and not attrs["teacher"]["random_weights"]
    assert attrs["teacher_note"].startswith("trained by i2p on depth views of the synthetic train split")
    assert attrs["params"]["weights_sha256"] == sha  # in the fingerprint: regenerated weights, new store


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("ViT-B-16-plus-240", "image size 240 px where the views are 224 px"),
        ("RN50", "a ResNet tower"),
        ("ViT-B-16-SigLIP", "a timm tower (vit_base_patch16_siglip_224)"),
    ],
)
def test_unsupported_towers_are_refused_from_their_config_before_they_are_built(model, why):
    import open_clip

    from pipeline.features.teacher_support import check_config

    with pytest.raises(TeacherError, match="is not a supported teacher: " + re.escape(why)):
        check_config(open_clip, f"random:{model}", model)
    with pytest.raises(TeacherError, match=re.escape(why)):
        load_teacher(f"random:{model}")  # the same refusal on the command's path, before any weights
    check_config(open_clip, "clip-vit-b16", "ViT-B-16")  # the paper's tower passes
