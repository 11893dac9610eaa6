"""Which open_clip towers can be teachers: CLS-token ViTs with ln_post, an output proj and standard attention,
at the 224-px views the render stage draws. Checked twice: from the model's config before it is built (a
big tower costs seconds and GBs to build, and no features store is created for a teacher that cannot run),
and on the built tower, which the hooks read.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.errors import TeacherError

IMAGE_SIZE = 224  # the rendered depth views (method §5.2)
SUPPORTED = "a teacher must be a CLS-token ViT with ln_post, an output proj and standard attention (OpenAI/LAION CLIP ViTs)"


def check_config(open_clip: Any, name: str, model_name: str) -> None:
    """Refuse a tower the config already shows unsupported: ResNet (``layers`` a list), timm-backed (SigLIP,
    EVA02, ConvNeXt), attention pooling, or another image size than the views'. TeacherError, before any
    weights are built; a model without a config is left to :func:`check_tower`."""
    vision = (open_clip.get_model_config(model_name) or {}).get("vision_cfg") or {}
    if not vision:
        return
    why = None
    if isinstance(vision.get("layers"), list | tuple):
        why = "a ResNet tower (no patch tokens)"
    elif vision.get("timm_model_name"):
        why = f"a timm tower ({vision['timm_model_name']})"
    elif vision.get("attentional_pool") or vision.get("pool_type") not in (None, "tok"):
        why = "no CLS-token pooling"
    elif int(vision.get("image_size") or IMAGE_SIZE) != IMAGE_SIZE:
        why = f"image size {vision['image_size']} px where the views are {IMAGE_SIZE} px"
    if why:
        raise TeacherError(
            f"open_clip model {model_name} (teacher {name}) is not a supported teacher: {why}", SUPPORTED
        )


def check_tower(open_clip: Any, visual: Any, name: str, model_name: str) -> None:
    """The hooks assume a CLS-token ViT with ln_post on every token, a proj matrix and nn.MultiheadAttention."""
    import torch

    ok = (
        isinstance(visual, open_clip.transformer.VisionTransformer)
        and visual.attn_pool is None
        and not visual.final_ln_after_pool
        and visual.pool_type == "tok"
        and visual.proj is not None
        and isinstance(visual.transformer.resblocks[-1].attn, torch.nn.MultiheadAttention)
    )
    if not ok:
        raise TeacherError(
            f"open_clip model {model_name} (teacher {name}) is not a supported teacher",
            SUPPORTED,
        )
