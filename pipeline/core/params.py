"""One frozen, validated parameter model per stage.

``stages.yaml`` declares the stages and their default params; these models validate them (and every
``--set stage.key=value`` override). An unknown key is an error that names the closest known key.
Fields listed in a model's ``RUNTIME`` change how a stage runs (device, batch size, workers) but not
what it writes, so they are left out of the fingerprint.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from pipeline.core.stage_params import SEED_MAX, StageParams


class PrepareParams(StageParams):
    """Sampling point clouds from a source into the points store."""

    STAGE: ClassVar[str] = "prepare"
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"workers", "scheduler", "strict"})
    LEGACY: ClassVar[dict[str, Any]] = {"synthetic_version": 1}  # stores written before the v2 generator

    source: Literal[
        "synthetic", "shapenet", "modelnet40", "scanobjectnn", "folder", "shapenetpart", "synthetic-parts"
    ] = "synthetic"
    # where the release / meshes lie; None for synthetic and synthetic-parts (generated under the data root)
    root: str | None = None
    layout: str = "auto"  # detected from the files under root; recorded in the store attrs
    variant: Literal["obj-bg", "obj-only", "pb-t50-rs"] = "obj-bg"  # ScanObjectNN split family (method §1.4)
    # P for mesh sources; point releases keep their own count; part sources: the most rows kept per object
    points: int = Field(8192, ge=16)
    oversample: int = Field(4, ge=1)  # surface samples = oversample·P before farthest point sampling
    fps: Literal["bucket", "exact"] = "bucket"  # fpsample's kd-line bucket FPS (fast) or the classic loop
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)  # folder sources without train/test sub-folders
    synthetic_per_class: int = Field(30, ge=2)  # objects generated per synthetic class (or part category)
    # synthetic generator: 2 class-specific local geometry; 1 the original
    synthetic_version: Literal[1, 2, 3] = 2
    seed: int = Field(0, ge=0, le=SEED_MAX)  # per-object randomness is seeded from (seed, object id)
    chunk: int = Field(32, ge=1)  # objects per chunk: the unit of work, of resume and of zarr chunking
    workers: int = Field(1, ge=1)  # local dask workers (processes); 1 runs in-process
    scheduler: str | None = None  # address of an existing dask.distributed scheduler
    strict: bool = False  # stop at the first bad input instead of recording it
    # read files that lie outside root behind symlinks (false: each such link is listed in failures, not read)
    follow_links: bool = False

    def unhashed(self) -> frozenset[str]:
        """``synthetic_version`` for other sources (their fingerprints predate it); ``follow_links`` at its
        default (stores written before it existed hash as they did)."""
        left_out = set() if self.source == "synthetic" else {"synthetic_version"}
        return frozenset(left_out | (set() if self.follow_links else {"follow_links"}))


class RenderParams(StageParams):
    """Three depth views per object, method §5.2."""

    STAGE: ClassVar[str] = "render"
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"workers", "scheduler", "batch_size"})
    LEGACY: ClassVar[dict[str, Any]] = {"views": "fixed"}  # stores written before `views` existed

    subset: int = Field(2048, ge=16)  # R points projected per object (the paper projects 2048-point clouds)
    seed: int = Field(0, ge=0, le=SEED_MAX)  # subsets and draws come from (seed, object id[, draw])
    # augmented: `draws` seeded draws per object (subset + the §1.6 scale/shift), the teacher sees each
    # augmented cloud as the paper's does; fixed: one unaugmented subset per object (cheapest, older stores)
    views: Literal["augmented", "fixed"] = "augmented"
    draws: int = Field(4, ge=1, le=64)  # K draws per object (augmented views only)
    chunk: int = Field(16, ge=1)
    batch_size: int = Field(64, ge=1)
    workers: int = Field(1, ge=1)
    scheduler: str | None = None

    def unhashed(self) -> frozenset[str]:
        """Fixed views hash as before ``views``/``draws`` existed, so older stores stay up to date."""
        return frozenset({"views", "draws"}) if self.views == "fixed" else frozenset()

    def inert(self) -> dict[str, str]:
        return (
            {"draws": "fixed views have no draws: add --set render.views=augmented"}
            if self.views == "fixed"
            else {}
        )


class FeaturesParams(StageParams):
    """Frozen 2D teacher features and saliency of every view, method §6."""

    STAGE: ClassVar[str] = "cache-features"
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"device", "batch_size", "num_workers", "shard"})

    teacher: str = "clip-vit-b16"  # a name of pipeline.features.teachers.TEACHERS or open_clip:<model>/<tag>
    weights: str | None = None  # local checkpoint instead of the download
    normalisation: Literal["imagenet", "teacher"] = "imagenet"  # method §5.2 uses ImageNet mean/std
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"  # auto: fp16 autocast on CUDA, fp32 on CPU
    chunk: int = Field(16, ge=1)
    batch_size: int = Field(64, ge=1)  # images per teacher forward (3 per object)
    num_workers: int = Field(2, ge=0)
    device: str = "auto"
    shard: str | None = None  # "i/n": fill only chunks with index % n == i


# BatchNorm statistics of frozen-encoder features (SVM, embed, monitor; README "Which BatchNorm statistics"):
# running = the checkpoint's running statistics in eval mode (the paper's); reestimate = reset and re-estimated
# (cumulative average) over the evaluated dataset's train split first. One type, one default, used by both stages.
BNStats = Literal["running", "reestimate"]
BN_STATS_DEFAULT: BNStats = "running"

MONITOR_KEYS = (
    "monitor_dataset",
    "monitor_every",
    "monitor_every_steps",
    "monitor_points",
    "monitor_c",
    "monitor_bn_stats",
    "keep_every",
    "keep_from",
)  # they watch and keep, never change the trained weights: runtime


class TrainParams(StageParams):
    """I2P-MAE pre-training from the caches, method §2–§9.1."""

    STAGE: ClassVar[str] = "train"
    RUNTIME: ClassVar[frozenset[str]] = frozenset(
        {
            "device",
            "num_workers",
            "run",
            "resume",
            "max_steps",
            "keep_optimizer",
            "checkpoint_every_minutes",
            *MONITOR_KEYS,
        }
    )

    run: str = "default"  # run directory name under runs/
    epochs: int = Field(301, ge=1)  # the official range(0, max_epoch + 1), max_epoch 300 (§9.1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimiser steps (smoke runs)
    batch_size: int = Field(64, ge=1)  # the total over torchrun ranks (§9.1)
    points: int = Field(2048, ge=512)  # N points per object per step (≥ the 512 scale-0 groups)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(10, ge=0)
    schedule_epochs: int = Field(400, ge=1)  # cosine t_initial: the paper's schedule never finishes (§9.1)
    cosine_to_end: bool = False  # option: end the cosine at the last epoch (changes behaviour)
    decay_token_fix: bool = False  # option: apply weight decay to token_embed/token_prop weights
    fps_origin_rule: bool = False  # option: FPS skips |p|² ≤ 1e-3 after index 0, as pointnet2_ops (§12.3)
    warmup_lr: float = Field(1e-6, ge=0)
    min_lr: float = Field(1e-6, ge=0)
    drop_path: float = Field(0.1, ge=0, lt=1)
    mask_ratio: float = Field(0.8, gt=0.0, lt=1.0)
    masking: Literal["2d-guided", "random"] = "2d-guided"
    targets: Literal["3d", "3d+2d"] = "3d+2d"
    online_teacher: str | None = None  # the official step: project the augmented input, run this teacher
    # augmented views: the draw's own cloud, or a fresh subset
    input_subset: Literal["draw", "fresh"] = "draw"
    precision: Literal["fp32", "bf16"] = "fp32"  # the paper (§9.1); bf16: autocast, CUDA or CPU (speed)
    seed: int = Field(1, ge=0, le=SEED_MAX - 1024)  # + rank under torchrun
    monitor_dataset: str | None = "modelnet40"  # linear SVM on this prepared dataset (§9.1); None: off
    monitor_every: int = Field(1, ge=0)  # every E epochs (0: not at epoch ends)
    monitor_every_steps: int | None = Field(None, ge=1)  # also every N steps (sub-epoch runs)
    monitor_points: int = Field(1024, ge=16)  # the first N stored points (§1.3 h5 rule), capped at the store
    monitor_c: float = Field(0.01, gt=0)  # the paper's per-epoch monitor C (§9.1, §9.3)
    monitor_bn_stats: BNStats = BN_STATS_DEFAULT  # the monitor's BatchNorm statistics (as eval.bn_stats)
    keep_every: int = Field(25, ge=0)  # keep ckpt-epoch-XXX.pt every N epochs (0: none) ...
    keep_from: int = Field(250, ge=0)  # ... from this epoch on (§9.1: 250, 275, 300)
    device: str = "auto"
    num_workers: int = Field(4, ge=0)
    resume: bool = False
    # false: a finished run's ckpt-last.pt drops its optimizer state (≈ 2/3 of it)
    keep_optimizer: bool = True
    # also write ckpt-last.pt mid-epoch when this many minutes passed since the last one (0: epoch ends only)
    checkpoint_every_minutes: float = Field(30.0, ge=0)

    def unhashed(self) -> frozenset[str]:
        """``fps_origin_rule`` off hashes as before it existed: older runs stay up to date."""
        return frozenset() if self.fps_origin_rule else frozenset({"fps_origin_rule"})

    def lr_at(self, epoch: int) -> float:
        """The learning rate epoch ``epoch`` (0-based) trains at: :func:`i2pmae.schedule.epoch_lr` (§9.1)."""
        from i2pmae.schedule import epoch_lr  # imports torch: only when asked

        p = self
        return epoch_lr(
            epoch, p.lr, p.epochs, p.warmup_epochs, p.schedule_epochs, p.warmup_lr, p.min_lr, p.cosine_to_end
        )


class EvalParams(StageParams):
    """Linear SVM on frozen encoder features, method §3.4 and §9.3."""

    STAGE: ClassVar[str] = "eval"
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"device", "batch_size"})

    # None: the paper's C for the dataset (0.0093 ModelNet40, 0.018 OBJ-BG)
    svm_c: float | None = Field(None, gt=0)
    # option: choose C by 3-fold cross-validation on the train split (changes the protocol; not with svm_c)
    svm_c_cv: bool = False
    # None: 1024 for the ModelNet40 h5 release, else the training point count
    points: int | None = Field(None, ge=16)
    pooling: Literal["max", "mean+max"] = "max"
    bn_stats: BNStats = BN_STATS_DEFAULT  # running (the paper's) | reestimate on the train split first
    # train-split point order of the SVM: official = shuffled for ScanObjectNN (its loader), stored elsewhere
    train_point_order: Literal["official", "stored", "shuffled"] = "official"
    shuffle_seed: int = Field(0, ge=0, le=SEED_MAX)  # the shuffle's seed, with (seed, object) per cloud
    batch_size: int = Field(64, ge=1)  # objects per forward, and per re-estimation batch
    device: str = "auto"

    def unhashed(self) -> frozenset[str]:
        """Defaults hash as before their params existed, so older evaluations stay up to date (an OBJ-BG one
        made before ``train_point_order`` used the stored order: docs/evaluation.md says how to redo it)."""
        default = {"bn_stats": BN_STATS_DEFAULT, "svm_c_cv": False}
        default |= {"train_point_order": "official", "shuffle_seed": 0}
        return frozenset(k for k, value in default.items() if getattr(self, k) == value)

    @model_validator(mode="after")
    def _one_way_to_choose_c(self) -> EvalParams:
        if self.svm_c is not None and self.svm_c_cv:
            raise ValueError("svm_c and svm_c_cv both choose the SVM's C: set one of them")
        return self


class FinetuneParams(StageParams):
    """Fine-tuning the pre-trained encoder as a classifier, method §3.5 and §9.2 (None: the recipe's value)."""

    STAGE: ClassVar[str] = "finetune"
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"device", "test_batch_size"})

    recipe: Literal["modelnet40", "obj-bg", "obj-only", "pb-t50-rs"] | None = None  # None: from the data
    seeds: int = Field(1, ge=1)  # seeds 0..N-1; the report gives mean ± std
    epochs: int | None = Field(None, ge=1)  # None: the recipe's 301, range(0, max_epoch + 1) (§9.2)
    schedule_epochs: int | None = Field(None, ge=1)  # cosine t_initial; None: epochs − 1 (the official 300)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimiser steps (a quick check)
    batch_size: int | None = Field(None, ge=1)  # None: the recipe's (32)
    test_batch_size: int | None = Field(None, ge=1)  # None: the recipe's (64)
    points: int | None = Field(None, ge=16)  # None: the recipe's (1024 ModelNet40, 2048 ScanObjectNN)
    lr: float | None = Field(None, gt=0)  # None: the recipe's (5e-4)
    votes: int | None = Field(None, ge=0)  # None: the recipe's (10 ModelNet40; 0 = no voting)
    vote_repeats: int = Field(1, ge=1)  # voting passes: 1 honest; 49 the paper's --test, reporting the max
    vote_batch_size: int | None = Field(None, ge=1)  # None: the paper's --test batch, 32
    precision: Literal["fp32", "bf16"] = "fp32"  # the paper (§9.2); bf16: autocast, CUDA or CPU (speed)
    device: str = "auto"


class FewshotParams(StageParams):
    """Few-shot classification, method §1.5: way × shot × folds episodes, fine-tuned per fold."""

    STAGE: ClassVar[str] = "fewshot"
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"device", "test_batch_size"})

    way: list[Annotated[int, Field(ge=2)]] = [5, 10]  # classes per episode
    shot: list[Annotated[int, Field(ge=1)]] = [10, 20]  # train objects per class
    folds: int = Field(10, ge=1)  # episodes per setting
    seed: int = Field(0, ge=0, le=SEED_MAX)  # seed of the episodes and of the fine-tuning
    epochs: int | None = Field(None, ge=1)  # None: Point-MAE's few-shot 151, range(0, 150 + 1) (§1.5)
    schedule_epochs: int | None = Field(None, ge=1)  # cosine t_initial; None: epochs − 1 (Point-MAE's 150)
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # 0: Point-MAE's plain cross-entropy; 0.2: i2p's before
    max_steps: int | None = Field(None, ge=1)  # per fold: stop after this many optimiser steps
    batch_size: int | None = Field(None, ge=1)  # None: 32
    test_batch_size: int | None = Field(None, ge=1)  # None: 64
    points: int | None = Field(None, ge=16)  # None: 1024
    precision: Literal["fp32", "bf16"] = "fp32"  # fp32 as the paper; bf16: autocast, CUDA or CPU (speed)
    device: str = "auto"


class PartsegParams(StageParams):
    """Part segmentation on ShapeNetPart-format data, method §14: the reference recipe by default."""

    STAGE: ClassVar[str] = "partseg"
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"device", "test_batch_size"})

    epochs: int = Field(300, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many batches (a quick check)
    batch_size: int = Field(16, ge=2)  # BatchNorm needs two shapes per batch
    test_batch_size: int = Field(16, ge=1)
    lr: float = Field(2e-4, gt=0, le=1)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(10, ge=0)
    points: int = Field(2048, ge=16)  # drawn with replacement from each shape's points, train and test
    single_step: bool = False  # True: one clipped step per batch (the fix); False: the reference's two steps
    test_points: Literal["resample", "fps", "all"] = "resample"  # resample: new draws each evaluation
    seed: int = Field(0, ge=0, le=SEED_MAX)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast, CUDA or CPU (speed)
    device: str = "auto"


STAGES: dict[str, type[StageParams]] = {
    "prepare": PrepareParams,
    "render": RenderParams,
    "cache-features": FeaturesParams,
    "train": TrainParams,
    "eval": EvalParams,
    "finetune": FinetuneParams,
    "fewshot": FewshotParams,
    "partseg": PartsegParams,
}
