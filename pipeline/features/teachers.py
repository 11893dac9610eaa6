"""Frozen 2D teachers: open_clip ViTs that give patch features and CLS saliency (method §6).

A teacher turns normalised views (B, 3, 224, 224) into feature maps (B, C, h, w) (every patch token
after ``ln_post``, times ``proj``) and saliency (B, h, w) (last-layer CLS→patch attention averaged
over heads). Names map to open_clip models in the plain dict :data:`TEACHERS`; any other model is
``open_clip:<model>/<tag>``. ``tiny-random`` is a tiny ViT registered with open_clip at runtime and
randomly initialised from a fixed seed, for tests and offline smoke runs; ``tiny-synthetic`` is a
small ViT of the same family trained by i2p on the synthetic dataset's depth views, loaded offline
from the weight file shipped with the package (``pipeline.features.tiny_teachers``).

torch and open_clip are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any

from pipeline.core.errors import TeacherError
from pipeline.features.teacher_support import check_config, check_tower
from pipeline.features.teacher_weights import fetch_weights, load_weights, weights_sha256
from pipeline.features.tiny_teachers import (
    SYNTH_MODEL,
    TINY_MODEL,
    TINY_SEED,
    packaged_weights,
    register,
    shipped_file,
    shipped_note,
)

log = logging.getLogger(__name__)

OPEN_CLIP_PREFIX = "open_clip:"
RANDOM_PREFIX = "random:"  # random:<open_clip model>, e.g. random:ViT-B-16-quickgelu (benchmarks)
# name -> (open_clip model, pretrained tag); tag None = random init (unless --weights is given), or, for
# the names of tiny_teachers.PACKAGED, the weight file shipped with the package
TEACHERS: dict[str, tuple[str, str | None]] = {
    "clip-vit-b16": ("ViT-B-16-quickgelu", "openai"),  # the paper's teacher
    "clip-vit-b32": ("ViT-B-32-quickgelu", "openai"),
    "clip-vit-l14": ("ViT-L-14-quickgelu", "openai"),
    "tiny-random": (TINY_MODEL, None),
    "tiny-synthetic": (SYNTH_MODEL, None),  # trained by i2p on the synthetic train split's depth views
}
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def resolve_teacher(name: str) -> tuple[str, str | None]:
    """Teacher name -> (open_clip model name, pretrained tag or None). Raises TeacherError if unknown."""
    if name in TEACHERS:
        return TEACHERS[name]
    if name.startswith(RANDOM_PREFIX) and len(name) > len(RANDOM_PREFIX):
        return name[len(RANDOM_PREFIX) :], None  # random init of any open_clip model (timing, smoke runs)
    if name.startswith(OPEN_CLIP_PREFIX):
        body = name[len(OPEN_CLIP_PREFIX) :]
        model, _, tag = body.rpartition("/") if "/" in body else (body, "", "")
        if model:
            return model, tag or None
    raise TeacherError(
        f"unknown teacher {name!r}",
        f"known teachers: {', '.join(TEACHERS)}; or open_clip:<model>/<tag>, "
        "e.g. open_clip:ViT-B-16/laion2b_s34b_b88k; or random:<model> (random weights, for timing)",
    )


def teacher_slug(name: str) -> str:
    """A path-safe form of a teacher name: 'open_clip:ViT-B-16/laion2b' -> 'open_clip-ViT-B-16-laion2b'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


class Teacher:
    """A frozen open_clip vision tower that returns (features, saliency) for normalised images.

    Attributes: ``name``, ``model_name``, ``pretrained_tag``, ``weights_path``, ``weights_sha256``
    (of the file actually loaded; None for random weights), ``random_weights``, ``mean``/``std`` (the
    model's own image normalisation; the paper feeds ImageNet statistics instead, method §5.2),
    ``image_size`` (H, W), ``patch_grid`` (h, w), ``channels`` C, ``heads``, ``device``, ``precision``
    (what actually runs: fp32, or fp16/bf16 autocast on CUDA), ``note`` (what a teacher trained by
    i2p knows, from its shipped training record; None for the others).
    """

    def __init__(self, visual: Any, *, device: Any, precision: str, **info: Any):
        self.visual = visual
        self.device = device
        self.precision = precision
        self.name: str = info["name"]
        self.model_name: str = info["model_name"]
        self.pretrained_tag: str | None = info["pretrained_tag"]
        self.weights_path: str | None = info["weights_path"]
        self.weights_sha256: str | None = info["weights_sha256"]
        self.random_weights: bool = info["weights_path"] is None
        self.mean: tuple[float, ...] = tuple(float(m) for m in info["mean"])
        self.std: tuple[float, ...] = tuple(float(s) for s in info["std"])
        self.image_size: tuple[int, int] = tuple(visual.image_size)
        self.patch_grid: tuple[int, int] = tuple(visual.grid_size)
        self.channels: int = int(visual.proj.shape[1])
        self.heads: int = int(visual.transformer.resblocks[-1].attn.num_heads)
        self.note: str | None = info.get("note")

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of what this teacher is, for store attrs."""
        return {
            "name": self.name,
            "model_name": self.model_name,
            "pretrained_tag": self.pretrained_tag,
            "weights_sha256": self.weights_sha256,
            "random_weights": self.random_weights,
            "mean": list(self.mean),
            "std": list(self.std),
            "image_size": list(self.image_size),
            "patch_grid": list(self.patch_grid),
            "channels": self.channels,
            "precision": self.precision,
            "note": self.note,
        }

    def __call__(self, images: Any) -> tuple[Any, Any]:
        """images: (B, 3, H, W) normalised -> features (B, C, h, w), saliency (B, h, w), float32."""
        import torch

        B = images.shape[0]
        if tuple(images.shape[1:]) != (3, *self.image_size):
            raise TeacherError(
                f"teacher {self.name} expects images (B, 3, {self.image_size[0]}, {self.image_size[1]}), "
                f"got {tuple(images.shape)}"
            )
        h, w = self.patch_grid
        attn = self.visual.transformer.resblocks[-1].attn
        kept: dict[str, Any] = {}

        def want_weights(module, args, kwargs):  # the blocks call attn with need_weights=False
            return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

        def keep_weights(module, args, out):
            kept["attn"] = out[1]  # (B, heads, 1 + h·w, 1 + h·w)

        handles = [
            attn.register_forward_pre_hook(want_weights, with_kwargs=True),
            attn.register_forward_hook(keep_weights),
        ]
        try:
            with torch.no_grad(), self._autocast():
                _, tokens = self.visual(images.to(self.device, torch.float32))  # (B, h·w, width), ln_post-ed
                features = tokens @ self.visual.proj  # (B, h·w, C)
        finally:
            for handle in handles:
                handle.remove()
        features = features.float().reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()  # (B, C, h, w)
        saliency = kept["attn"][:, :, 0, 1:].float().mean(dim=1).reshape(B, h, w)  # CLS row, head mean
        return features, saliency

    def _autocast(self):
        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def load_teacher(
    name: str,
    weights: str | None = None,
    device: Any = "cpu",
    precision: str = "auto",
    *,
    offline: bool = False,
    cache_dir: str | None = None,
) -> Teacher:
    """Build a frozen teacher on ``device``.

    weights: a local checkpoint to load instead of the pretrained tag's download. offline: look only
    in the Hugging Face cache (the CLI passes True when HF_HUB_OFFLINE=1). cache_dir: the download
    cache (open_clip's default when None). precision: auto (fp16 autocast on CUDA, fp32 on CPU),
    fp32, fp16 or bf16 (autocast on CUDA only; the CPU always runs fp32).
    """
    model_name, tag = resolve_teacher(name)
    if precision not in PRECISIONS:
        raise TeacherError(f"unknown precision {precision!r} for teacher {name}", f"use one of {PRECISIONS}")
    import open_clip
    import torch

    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TeacherError(f"device {device} requested for teacher {name}, but CUDA is not available")
    register(open_clip, model_name)  # the tiny configs (no-op for open_clip's own models)
    if model_name not in open_clip.list_models():
        raise TeacherError(
            f"open_clip has no model {model_name!r} (teacher {name})",
            "see open_clip.list_models(); quick-GELU variants of OpenAI models end in -quickgelu",
        )
    pcfg = open_clip.get_pretrained_cfg(model_name, tag) if tag else {}
    if tag and not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise TeacherError(
            f"open_clip model {model_name} has no pretrained tag {tag!r} (teacher {name})",
            f"known tags: {', '.join(tags) or 'none'}",
        )
    if weights is not None:
        if not os.path.isfile(weights):
            raise TeacherError(f"weights file {weights} for teacher {name} does not exist")
        path: str | None = weights
    elif tag:
        path = fetch_weights(open_clip, name, model_name, tag, pcfg, cache_dir, offline)
    elif packaged_weights(name) is not None:
        path = shipped_file(name)
    elif model_name == TINY_MODEL or name.startswith(RANDOM_PREFIX):
        path = None
    else:
        raise TeacherError(
            f"teacher {name} names no pretrained tag and no --weights were given",
            f"use open_clip:{model_name}/<tag> (known tags: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(model_name)) or 'none'}) or pass --weights",
        )

    check_config(open_clip, name, model_name)  # before building it: seconds and GBs for a big tower
    # a seeded init that leaves the caller's RNG alone; weights (if any) are loaded below, so open_clip's
    # "initialized randomly" warning is dropped
    with torch.random.fork_rng(devices=[]), without_log("No pretrained weights loaded"):
        torch.manual_seed(TINY_SEED)
        model = open_clip.create_model(
            model_name, pretrained=None, force_quick_gelu=pcfg.get("quick_gelu", False)
        )
    sha256 = None
    if path is not None:
        sha256 = weights_sha256(path)
        load_weights(open_clip, model, path, name, model_name)
    visual = model.visual
    check_tower(open_clip, visual, name, model_name)
    mean = pcfg.get("mean") or visual.preprocess_cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = pcfg.get("std") or visual.preprocess_cfg.get("std") or open_clip.OPENAI_DATASET_STD
    del model  # the text tower is never used
    visual.output_tokens = True  # forward returns (pooled, ln_post patch tokens), tokens not projected
    visual.to(device).eval().requires_grad_(False)
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if device.type != "cuda" and precision != "fp32":
        log.warning(
            "teacher %s: %s autocast is only used on CUDA; running fp32 on %s", name, precision, device
        )
        precision = "fp32"
    return Teacher(
        visual,
        device=device,
        precision=precision,
        name=name,
        model_name=model_name,
        pretrained_tag=tag,
        weights_path=path,
        weights_sha256=sha256,
        note=shipped_note(name, path),
        mean=mean,
        std=std,
    )


@contextlib.contextmanager
def without_log(text: str):
    """Drop root-logger records containing ``text`` while the block runs (open_clip logs on the root)."""

    def keep(record: logging.LogRecord) -> bool:
        return text not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
