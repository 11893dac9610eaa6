"""The settings of ``i2p run --quick`` (and ``i2p status --quick``): the same pipeline and architecture,
offline and short.

The data are the synthetic v3 set (class in the global structure, a relief per object: random
initialisation is far from the ceiling there, docs/datasets.md); the teacher is tiny-synthetic, which i2p
trained on that set's train views (it knows a little: docs/training.md); 15 steps of 16 objects with no
warm-up (the paper's 10-epoch warm-up with its one-epoch lag would keep lr at 1e-6 throughout); every SVM
number, the random-init baseline's included, uses BatchNorm statistics re-estimated on the train split
(docs/evaluation.md). The run is named quick-v3 so that a `runs/quick` of the earlier settings (v1,
tiny-random) is left as it is instead of being refused as "trained with other settings". A value the user
sets (--set) wins.
"""

from __future__ import annotations

from pipeline.core.config import Config

QUICK = {
    "prepare": {"synthetic_version": 3},
    "cache-features": {"teacher": "tiny-synthetic"},
    "train": {
        "run": "quick-v3",
        "epochs": 1,
        "max_steps": 15,
        "batch_size": 16,
        "warmup_epochs": 0,
        "cosine_to_end": True,
        "monitor_dataset": "synthetic",
        "monitor_every_steps": 7,
        "monitor_bn_stats": "reestimate",
    },  # steps 0, 7, 14
    "eval": {"bn_stats": "reestimate"},
}


def with_quick(config: Config) -> Config:
    """QUICK's values under the user's own --set values (which win)."""
    for stage, values in QUICK.items():
        mine = config.overrides.get(stage, {})
        config = config.with_values(stage, **{k: v for k, v in values.items() if k not in mine})
    return config
