"""The tiny teachers i2p defines itself: open_clip configs registered at runtime, and shipped weights.

``tiny-random`` (:data:`TINY_MODEL`) is a 2-layer ViT with seeded random weights, for tests that need
no knowledge. ``tiny-synthetic`` (:data:`SYNTH_MODEL`) is a 4-layer ViT of the same family trained by
i2p to tell the classes of the synthetic dataset's depth views apart
(:mod:`pipeline.features.train_teacher`); its weights ship with the package in ``weights/`` as
``tiny-synthetic.safetensors`` (float16), beside ``tiny-synthetic.json``, the record of how they were
trained (data, steps, seed, accuracies, the weights' sha256).

Both configs give the real 14×14 grid at 224 px (patch 16) and 512-d projected features, as the
paper's ViT-B/16 does, so every store and model shape downstream is the same. Nothing here imports
torch or open_clip at module level.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import TeacherError


@dataclass(frozen=True)
class TeacherTraining:
    """How ``tiny-synthetic`` is trained (:mod:`pipeline.features.train_teacher`); every field is recorded
    beside the weights. Kept here, without numpy or torch, so the CLI help can read its defaults."""

    steps: int = 2000  # optimiser steps
    batch_size: int = 32  # views per step, drawn at random from every (object, draw, view) of the train split
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 0.05  # AdamW's decoupled decay, on every parameter
    warmup: int = 10  # steps of linear warm-up, then cosine decay to 0 at `steps`
    token_drop: float = 0.0  # share of patch tokens dropped per training view (open_clip's PatchDropout, as
    # FLIP); > 0 trains the CLS loss alone (the kept tokens are not known); the shipped model sees all 196
    patch_loss: float = 1.0  # weight of the per-patch class loss beside the CLS loss (0: CLS alone)
    seed: int = 0  # the init (torch), batch order (numpy) and the render draws (seed, object id, k)
    draws: int = 2  # augmented draws rendered per train object, 3 views each: 360 objects → 2,160 views
    subset: int = 2048  # points per projected cloud (the render stage's default)
    probe_draws: int = 1  # draws per object whose views the linear probe fits (train) and scores (test)

    def __post_init__(self) -> None:
        for field, low in (("steps", 1), ("batch_size", 1), ("draws", 1), ("subset", 16), ("probe_draws", 1)):
            assert getattr(self, field) >= low, f"TeacherTraining.{field} = {getattr(self, field)} < {low}"
        assert self.probe_draws <= self.draws, f"probe_draws {self.probe_draws} > draws {self.draws}"
        assert 0 <= self.token_drop < 1, f"token_drop {self.token_drop} outside [0, 1)"


TINY_MODEL = "i2p-tiny-random"  # the open_clip config name of the tiny random teacher
TINY_SEED = 0  # torch seed of the tiny teachers' init: two builds give the same weights
SYNTH_MODEL = "i2p-tiny-synthetic"  # the open_clip config name of the trained tiny teacher
_TEXT = {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 1, "layers": 1}  # a token text tower
# a 2-layer, width-64, 2-head ViT with the real 14×14 grid and 512-d output
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 512,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": _TEXT,
}
# 4 layers of width 128, 4 heads: ≈ 1 M parameters (2 MB in float16), ≈ 20 ms per view on a busy CPU core
SYNTH_CONFIG: dict[str, Any] = {
    "embed_dim": 512,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "patch_size": 16, "width": 128, "layers": 4, "head_width": 32},
    "text_cfg": _TEXT,
}
CONFIGS: dict[str, dict[str, Any]] = {TINY_MODEL: TINY_CONFIG, SYNTH_MODEL: SYNTH_CONFIG}
WEIGHTS_DIR = Path(__file__).parent / "weights"
# teacher name -> weight file shipped in WEIGHTS_DIR (its record: the same stem, .json)
PACKAGED: dict[str, str] = {"tiny-synthetic": "tiny-synthetic.safetensors"}
# the command that rebuilds the shipped weights: 1,800 train objects of a synthetic v3 set drawn from seed 1
# (none of them in the default set, seed 0, whose test split the evaluations score), at 2048 points, in a
# data root of its own so that the default set's record stays as it is
REGENERATE = (
    "i2p teacher train --data-root data/teacher --set prepare.synthetic_version=3 --set prepare.points=2048 "
    "--set prepare.seed=1 --set prepare.synthetic_per_class=150"
)


def register(open_clip: Any, model_name: str) -> None:
    """Register one of :data:`CONFIGS` with open_clip, once per process (the registry keeps it after
    the temporary JSON file is gone). Other model names are left alone."""
    if model_name not in CONFIGS or model_name in open_clip.list_models():
        return
    with tempfile.TemporaryDirectory(prefix="i2p-teacher-") as tmp:
        path = Path(tmp) / f"{model_name}.json"
        path.write_text(json.dumps(CONFIGS[model_name]))
        open_clip.add_model_config(path)


def packaged_weights(name: str) -> Path | None:
    """The weight file shipped for teacher ``name`` (whether or not it exists yet); None for teachers
    without shipped weights."""
    return WEIGHTS_DIR / PACKAGED[name] if name in PACKAGED else None


def shipped_file(name: str) -> str:
    """The path of teacher ``name``'s shipped weight file. Raises TeacherError when it is missing."""
    path = packaged_weights(name)
    assert path is not None, f"teacher {name} ships no weights"
    if not path.is_file():
        raise TeacherError(
            f"the weights of teacher {name} are not in the package ({path} is missing)",
            f"regenerate them with `{REGENERATE}` (a few CPU minutes), or reinstall i2p",
        )
    return str(path)


def shipped_note(name: str, path: str | None) -> str | None:
    """What teacher ``name`` knows (:func:`teacher_note`) when ``path`` is its shipped weight file;
    None for other files (``--weights``) and for teachers without shipped weights."""
    shipped = packaged_weights(name)
    if path is None or shipped is None or os.path.abspath(path) != os.path.abspath(shipped):
        return None
    return teacher_note(packaged_record(name))


def record_path(weights: Path) -> Path:
    """The training record beside a weight file: ``tiny-synthetic.safetensors`` → ``tiny-synthetic.json``."""
    return Path(weights).with_suffix(".json")


def packaged_record(name: str) -> dict[str, Any] | None:
    """The training record of teacher ``name``'s shipped weights (a JSON dict), None when there is none."""
    path = packaged_weights(name)
    if path is None or not record_path(path).is_file():
        return None
    return json.loads(record_path(path).read_text())


def teacher_note(record: dict[str, Any] | None) -> str | None:
    """One line on what a trained teacher knows, from its record: data, split and test-view probe."""
    if not record:
        return None
    data, acc = record.get("data", {}), record.get("accuracy", {})
    probe = acc.get("test_views_probe")
    probe_text = f"; test-view linear probe {100 * probe:.0f} %" if probe is not None else ""
    return (
        f"trained by i2p on depth views of the {data.get('dataset', '?')} train split "
        f"(generator v{data.get('generator_version', '?')}, {data.get('classes_count', '?')} classes)"
        f"{probe_text}"
    )
