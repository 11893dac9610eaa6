"""The provenance header of report.md: teacher (random or not), store fingerprints, seed, code, machine."""

from __future__ import annotations

import re

from pipeline import __version__
from pipeline.storage.provenance import code_version, machine_info, provenance_header

FP = {s: (c * 64) for s, c in (("prepare", "a"), ("render", "b"), ("cache-features", "c"))}
CONFIG = {  # the shape of a run's config.yaml
    "params": {"seed": 1, "online_teacher": None},
    "seed": 1,
    "stores": {
        "prepare": {"path": "/d/points/toys-aaaaaaaa.zarr", "fingerprint": FP["prepare"]},
        "render": {"path": "/d/views/toys-bbbbbbbb.zarr", "fingerprint": FP["render"]},
        "cache-features": {
            "path": "/d/features/toys-tiny-random-cccccccc.zarr",
            "fingerprint": FP["cache-features"],
        },
    },
}
TINY = {
    "name": "tiny-random",
    "model_name": "i2p-tiny-random",
    "pretrained_tag": None,
    "weights_sha256": None,
    "random_weights": True,
    "channels": 512,
}
CODE = {"package": "0.1.0", "commit": "0123abcd" * 5, "dirty": True}
MACHINE = {
    "hostname": "box",
    "cpu": "Some CPU",
    "cpus": 2,
    "python": "3.11.7",
    "torch": "2.14.1",
    "cuda": None,
}


def attrs(teacher=TINY):
    out = {stage: {"fingerprint": fp, "dataset": "toys", "complete": True} for stage, fp in FP.items()}
    out["cache-features"]["teacher"] = teacher
    return out


def test_random_teacher_is_said_first_and_everything_is_named():
    text = provenance_header(CONFIG, attrs(), CODE, MACHINE)
    first = text.splitlines()[0]
    assert "Random teacher" in first and "tiny-random" in first
    assert "| teacher | tiny-random (open_clip `i2p-tiny-random`, **random weights**" in text
    for stage, fp in FP.items():
        assert f"{stage} `{fp}`" in text  # every store's full fingerprint
    assert "`/d/features/toys-tiny-random-cccccccc.zarr`" in text
    assert "| seed | 1 |" in text
    assert f"git {'0123abcd' * 5} (uncommitted changes)" in text and "i2p 0.1.0" in text
    assert "box: Some CPU (2 CPUs), Python 3.11.7, torch 2.14.1, CUDA device none" in text
    assert provenance_header(CONFIG, attrs(), CODE, MACHINE) == text  # pure: same inputs, same text
    assert "| trainable parameters | not recorded |" in text  # a run written before the count was kept
    counted = provenance_header(
        {**CONFIG, "parameters": {"model": 1234567, "encoder": 89012}}, attrs(), CODE, MACHINE
    )
    assert "| trainable parameters | 1,234,567 (encoder 89,012) |" in counted


def test_pretrained_teacher_names_its_weights_and_no_random_warning():
    clip = {
        **TINY,
        "name": "clip-vit-b16",
        "model_name": "ViT-B-16",
        "pretrained_tag": "openai",
        "random_weights": False,
    }
    text = provenance_header(CONFIG, attrs(clip), CODE, MACHINE)
    assert text.startswith("## Provenance") and "Random teacher" not in text
    assert "clip-vit-b16 (open_clip `ViT-B-16`, pre-trained weights `openai`)" in text
    local = {**clip, "weights_sha256": "f" * 64}
    assert f"weights file sha256 `{'f' * 64}`" in provenance_header(CONFIG, attrs(local), CODE, MACHINE)


def test_a_replaced_or_incomplete_store_is_flagged():
    changed = attrs()
    changed["render"] = {"fingerprint": "d" * 64, "complete": False}
    text = provenance_header(CONFIG, changed, {"package": "0.1.0", "commit": None}, MACHINE)
    assert f"render `{'b' * 64} (the store there now holds {'d' * 64})`" in text
    assert "**incomplete**" in text and "git commit unknown" in text


def test_online_teacher_without_features_store():
    config = {**CONFIG, "params": {"seed": 3, "online_teacher": "clip-vit-b16"}, "seed": 3}
    text = provenance_header(config, {"prepare": attrs()["prepare"]}, CODE, MACHINE)
    assert "clip-vit-b16 (open_clip, weights not recorded, run online inside each step)" in text
    assert "| seed | 3 |" in text
    assert "| views | online: each step's augmented input" in text


def test_the_views_the_teacher_saw_are_named():
    fixed = provenance_header(CONFIG, attrs(), CODE, MACHINE)
    assert "| views | fixed: one unaugmented subset per object" in fixed
    drawn = attrs()
    drawn["render"]["draws"] = 4
    text = provenance_header(CONFIG, drawn, CODE, MACHINE)
    assert "| views | augmented: 4 seeded draws per object; 3D input: the draw's own cloud |" in text
    fresh = {**CONFIG, "params": {**CONFIG["params"], "input_subset": "fresh"}}
    assert "3D input: a fresh subset with the draw's scale and shift" in provenance_header(
        fresh, drawn, CODE, MACHINE
    )


def test_code_version_and_machine_of_this_checkout():
    code = code_version()
    assert code["package"] == __version__
    assert code["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", code["commit"])
    machine = machine_info()
    assert machine["cpus"] >= 1 and machine["python"].count(".") == 2 and machine["hostname"]
    assert machine["torch"]  # installed with the package
