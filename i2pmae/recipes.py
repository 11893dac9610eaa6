"""The paper's downstream recipes (method §3.5, §9.2, §9.3), one record per dataset family.

A recipe fixes what the paper's configs fix per dataset: input points, group sizes, attention radii,
pooling, label smoothing, augmentation, voting and the SVM's C. Group sizes are written as a factor
of the pre-training group sizes (48/24/24 = 3 × 16/8/8, 32/16/16 = 2 × 16/8/8), which gives the
paper's numbers for the paper's encoder and scales sensibly for smaller test encoders.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from i2pmae.classifier import RADII, ClassifierConfig
from i2pmae.finetune import FinetuneConfig
from i2pmae.finetune_inputs import Augment
from i2pmae.model import I2PMAEConfig


@dataclass(frozen=True)
class Recipe:
    name: str
    points: int  # fine-tuning input points
    group_factor: int  # fine-tuning group sizes = pre-training group sizes × this
    pooling: str  # "mean+max" (summed, 384-d) or "concat" (768-d)
    label_smoothing: float
    augment: Augment
    votes: int  # 0: voting not defined (2048-point inputs; the official code raises)


RECIPES: dict[str, Recipe] = {
    "modelnet40": Recipe("modelnet40", 1024, 3, "mean+max", 0.2, "scale-translate", 10),
    "obj-bg": Recipe("obj-bg", 2048, 2, "concat", 0.0, "scale-rotate", 0),
    "obj-only": Recipe("obj-only", 2048, 2, "concat", 0.0, "scale-rotate", 0),
    "pb-t50-rs": Recipe("pb-t50-rs", 2048, 2, "concat", 0.0, "scale-rotate", 0),
}


def classifier_config(
    recipe: Recipe, num_classes: int, encoder: I2PMAEConfig, points: int
) -> ClassifierConfig:
    """The fine-tuning classifier for ``recipe`` around a pre-trained encoder of config ``encoder``.

    Group sizes are capped by what each scale groups (``points`` input points, then the centres of the
    scale below), so tiny test encoders stay valid. The classifier keeps the encoder's FPS rule
    (``fps_origin_rule``, method §12.3).
    """
    sources = (points, *encoder.num_groups[:-1])
    sizes = tuple(min(k * recipe.group_factor, n) for k, n in zip(encoder.group_sizes, sources, strict=True))
    return ClassifierConfig(
        num_classes=num_classes,
        pooling=recipe.pooling,  # type: ignore[arg-type]
        num_groups=tuple(encoder.num_groups),
        group_sizes=sizes,
        local_radius=RADII[recipe.name],
        encoder_dims=tuple(encoder.encoder_dims),
        encoder_depths=tuple(encoder.encoder_depths),
        num_heads=encoder.num_heads,
        mlp_ratio=encoder.mlp_ratio,
        fps_origin_rule=encoder.fps_origin_rule,
    )


def finetune_config(recipe: Recipe, **overrides: object) -> FinetuneConfig:
    """The recipe's FinetuneConfig; ``overrides`` that are not None replace fields (epochs, seed, ...).

    A ``batch_size`` given without a ``test_batch_size`` or ``vote_batch_size`` sets those too: a user who
    lowers the batch to fit memory gets test and voting passes of that size (the paper's 64 = 2 × 32 and 32
    stay the defaults).
    """
    if overrides.get("batch_size") is not None:
        for key in ("test_batch_size", "vote_batch_size"):
            if overrides.get(key) is None:
                overrides = {**overrides, key: overrides["batch_size"]}
    cfg = FinetuneConfig(
        points=recipe.points,
        label_smoothing=recipe.label_smoothing,
        augment=recipe.augment,
        votes=recipe.votes,
    )
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
