"""Tiny real data builders shared by the tests: not a test module (pytest collects ``test_*.py`` only).

Mesh folders, release files in each source's real format, points stores written with the real StoreWriter,
the ``--set`` lists of the toy pipeline runs and the helpers that build their stores through the runner.
A test module imports what it needs from here (or asks conftest.py for a fixture), never from another
test module. torch, the CLI and the runner are imported inside the helpers that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.params import PrepareParams
from pipeline.storage import datasets
from pipeline.storage.store import ArraySpec, StoreWriter, per_object

# ---- mesh folders and toy configurations ------------------------------------------------------------

# The tiny encoder (I2PMAEConfig fields) the evaluation and checkpoint tests share: 4 top groups, no drop path
TINY_ENCODER = dict(
    num_groups=(16, 8, 4),
    group_sizes=(4, 2, 2),
    encoder_dims=(16, 32, 64),
    encoder_depths=(1, 1, 1),
    num_heads=2,
    decoder_dims=(64, 32),
    targets="3d",
    drop_path=0.0,
)


def write_folder(root, n_per_class=3, classes=("box", "ball", "cone")):
    """A tiny `folder` dataset: <root>/<class>/train|test/<class>_<i>.ply of real meshes."""
    import trimesh

    makers = {
        "box": lambda r: trimesh.creation.box(extents=r.uniform(0.5, 2.0, 3)),
        "ball": lambda r: trimesh.creation.icosphere(subdivisions=1, radius=r.uniform(0.5, 1.5)),
        "cone": lambda r: trimesh.creation.cone(radius=r.uniform(0.3, 1.0), height=r.uniform(0.5, 2.0)),
    }
    rng = np.random.default_rng(0)
    for name in classes:
        for split, count in (("train", n_per_class), ("test", 1)):
            folder = root / name / split
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                makers[name](rng).export(folder / f"{name}_{split}{i}.ply")
    return root


def toy_config(tmp, sets):
    """stages.yaml + ``sets`` with the prepare root on a 4-object `folder` dataset (box, cone) in ``tmp``."""
    from pipeline.core.config import load_config

    root = write_folder(tmp / "meshes", n_per_class=2, classes=("box", "cone"))
    return load_config(overrides=[*sets, f"prepare.root={root}"])


def array_bytes(path):
    """Every file under the store except the root attrs (which hold timestamps) → bytes."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.relative_to(path).as_posix() != "zarr.json"
    }


# The toy training run: 1024 points, tiny-random features, 30 epochs (tests/test_train.py and others).
TRAIN_SETS = [
    "prepare.source=folder",
    "prepare.points=1024",
    "prepare.oversample=2",
    "prepare.chunk=4",
    "render.subset=1024",
    "render.chunk=4",
    "cache-features.teacher=tiny-random",
    "cache-features.chunk=4",
    "cache-features.num_workers=0",
    "train.points=1024",
    "train.batch_size=4",
    "train.num_workers=0",
    "train.warmup_epochs=0",
    "train.schedule_epochs=30",
    "train.epochs=30",
]
SMALL = {"num_groups": (128, 64, 16)}  # same layers, 4× fewer groups: the loop at a quarter of the cost

# The toy views and features stores: 512 points, 256 rendered, fixed views (tests/test_views_features.py).
STAGE_SETS = [
    "prepare.source=folder",
    "prepare.points=512",
    "prepare.oversample=2",
    "prepare.chunk=4",
    "render.subset=256",
    "render.chunk=2",
    "render.views=fixed",  # the one-subset schema (older stores); augmented views: tests/test_draws.py
    "cache-features.teacher=tiny-random",
    "cache-features.chunk=2",
    "cache-features.num_workers=0",
    "cache-features.batch_size=4",
]


def build_stage(
    stage: str, config: Any, data_root: Path, dataset: str, store_root: Any = None
) -> dict[str, Path]:
    """Bring ``stage`` up to date for ``dataset`` through the runner (plan, then run); {stage: output} for it
    and its needs. store_root: where stores go when not under the data root (a folder or an fsspec URL)."""
    from pipeline.runner.execute import run
    from pipeline.runner.plan import Context, plan

    ctx = Context(config, Path(data_root), dataset, store_root=store_root)
    p = plan(stage, ctx)
    run(p, ctx)
    outs: dict[str, Path] = {}

    def walk(q) -> None:
        outs[q.stage] = q.out
        for n in q.needs.values():
            walk(n)

    walk(p)
    return outs


def built_inputs(config, data_root):
    """The stores a run of ``config`` reads, built through the runner."""
    from pipeline.runner.execute import run as run_plan
    from pipeline.runner.plan import Context, plan
    from pipeline.train.stage import train_inputs

    ctx = Context(config, data_root, "toys")
    p = plan("train", ctx)
    for need in p.needs.values():
        run_plan(need, ctx)
    return train_inputs(p)


# ---- source files ------------------------------------------------------------------------------------

SOURCE_POINTS = 128  # points per mesh object in the source tests


def source_params(source="folder", root=None, **kw) -> PrepareParams:
    base = dict(source=source, root=None if root is None else str(root), points=SOURCE_POINTS, oversample=2)
    return PrepareParams(**{**base, **kw})


def assert_unit_sphere(points):
    assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 3
    assert np.abs(points.mean(axis=0)).max() < 1e-5
    assert abs(float(np.linalg.norm(points, axis=1).max()) - 1.0) < 1e-5


CUBE = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]  # vertex index = 4x + 2y + z
QUADS = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def box_off(glued: bool, quads: bool = False) -> str:
    """A unit cube as OFF text: 6 quads or 12 triangles; the ModelNet40 defect "OFF8 12 0" when glued."""
    faces = list(QUADS) if quads else [t for a, b, c, d in QUADS for t in ((a, b, c), (a, c, d))]
    lines = [" ".join(map(str, v)) for v in CUBE] + [f"{len(f)} " + " ".join(map(str, f)) for f in faces]
    head = f"OFF8 {len(faces)} 0" if glued else f"OFF\n# a comment\n8 {len(faces)} 0"
    return head + "\n" + "\n".join(lines) + "\n"


def write_shapenet55(base, n=4):
    """Point-BERT layout: shapenet_pc/<synset>-<model>.npy (n points) + ShapeNet-55/{train,test}.txt."""
    (base / "shapenet_pc").mkdir(parents=True)
    (base / "ShapeNet-55").mkdir()
    rng = np.random.default_rng(0)
    ids = [f"{s}-m{k}" for s in ("04379243", "02691156") for k in range(3)]
    for i in ids:
        np.save(base / "shapenet_pc" / f"{i}.npy", (rng.random((256, 3)) * 3 + 1).astype(np.float32))
    (base / "ShapeNet-55" / "train.txt").write_text("\n".join(f"{i}.npy" for i in ids[:2] + ids[3:5]) + "\n")
    (base / "ShapeNet-55" / "test.txt").write_text(f"{ids[2]}.npy\n{ids[5]}.npy\n02691156-gone.npy\n")
    return ids


def write_h5(path, n, n_points=2048, label_shape=(1,), keys=("data", "label"), seed=0):
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f[keys[0]] = rng.uniform(-1, 1, (n, n_points, 3)).astype(np.float32)
        f[keys[1]] = rng.integers(0, 3, (n, *label_shape)).astype(np.uint8)


def write_resampled(base, n_per=3, n_lines=300):
    names = ["airplane", "night_stand"]
    rng = np.random.default_rng(0)
    (base).mkdir(parents=True)
    (base / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    ids = {"train": [], "test": []}
    for c in names:
        (base / c).mkdir()
        for k in range(n_per):
            i = f"{c}_{k + 1:04d}"
            np.savetxt(base / c / f"{i}.txt", rng.uniform(-2, 3, (n_lines, 6)), fmt="%.6f", delimiter=",")
            ids["test" if k == n_per - 1 else "train"].append(i)
    for split, lst in ids.items():
        (base / f"modelnet40_{split}.txt").write_text("\n".join(lst) + "\n")
    return ids


# ---- labelled points stores (evaluation) ---------------------------------------------------------------

CLASSES = ["ball", "disc", "needle"]


def toy_cloud(c: int, rng: np.random.Generator, P: int) -> np.ndarray:
    """A sphere, a flat disc or a thin needle, anisotropically scaled, in the unit sphere."""
    if c == 0:
        x = rng.normal(size=(P, 3))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    elif c == 1:
        r, t = np.sqrt(rng.uniform(size=P)), rng.uniform(0, 2 * np.pi, P)
        x = np.stack([r * np.cos(t), rng.normal(0, 0.02, P), r * np.sin(t)], 1)
    else:
        x = np.stack([rng.normal(0, 0.05, P), rng.uniform(-1, 1, P), rng.normal(0, 0.05, P)], 1)
    x = x * rng.uniform(0.6, 1.0, 3)
    x -= x.mean(0)
    return (x / np.linalg.norm(x, axis=1).max()).astype(np.float32)


def write_labelled_store(
    data_root: Path,
    name: str,
    fp: str,
    classes: list[str],
    clouds: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    ids: dict[str, list[str]],
    **attrs,
) -> Path:
    """A complete points store in the real schema, written with the real StoreWriter and bound as dataset
    ``name``: per split, clouds (O, P, 3) float32, labels (O,) and ids (O,). ``attrs`` add store attrs."""
    path = data_root / "points" / f"{name}-{fp[:8]}.zarr"
    P = next(iter(clouds.values())).shape[1]
    handling = {
        "layout": "folder",
        "points": "sampled",
        "point_order": "fps",
        "n_points": P,
        **attrs.pop("handling", {}),
    }
    writer = StoreWriter(
        path,
        {
            "fingerprint": fp,
            "stage": "prepare",
            "params": {},
            "upstream": {},
            "dataset": name,
            "layout": handling["layout"],
            "classes": classes,
            "handling": handling,
            **attrs,
        },
    )
    writer.create(
        {
            s: (
                1,
                [
                    per_object("points", (len(y), P, 3), len(y), "float32", ("object", "point", "xyz")),
                    ArraySpec("label", (len(y),), (len(y),), "int32", ("object",), -1),
                    ArraySpec("id", (len(y),), (len(y),), str, ("object",), ""),
                ],
            )
            for s, y in labels.items()
        }
    )
    for s, y in labels.items():
        writer.write(s, "points", 0, clouds[s].astype(np.float32))
        writer.write(s, "label", 0, y.astype(np.int32))
        writer.write(s, "id", 0, np.array(ids[s]))
        writer.mark_done(s, 0)
    writer.finish({"failures": []})
    return bind_dataset(data_root, name, path)


def write_store(data_root: Path, name: str, per_class: dict[str, int], P: int = 64, **handling) -> Path:
    """A complete points store of :data:`CLASSES` (:func:`toy_cloud`), ``per_class`` objects per split."""
    rng = np.random.default_rng(0)
    fp = f"{abs(hash(name)) % 16**8:08x}" + "0" * 56
    labels = {s: np.arange(n * len(CLASSES)) % len(CLASSES) for s, n in per_class.items()}
    clouds = {s: np.stack([toy_cloud(int(c), rng, P) for c in y]) for s, y in labels.items()}
    ids = {s: [f"{CLASSES[c]}/{s}{i}" for i, c in enumerate(y)] for s, y in labels.items()}
    return write_labelled_store(data_root, name, fp, CLASSES, clouds, labels, ids, handling=handling)


def write_classes_store(
    data_root: Path, name: str, per_split: dict[str, int], n_classes: int, P: int
) -> Path:
    """A complete points store (real StoreWriter) of ``n_classes`` jittered spheres scaled per class."""
    rng = np.random.default_rng(0)
    labels = {s: np.arange(n * n_classes) % n_classes for s, n in per_split.items()}
    clouds = {}
    for s, y in labels.items():
        x = rng.normal(size=(len(y), P, 3))
        x /= np.linalg.norm(x, axis=2, keepdims=True)
        x *= (1 + y[:, None, None] * np.array([0.3, 0.0, -0.1]))[:, :, :]
        clouds[s] = x / np.abs(x).max()
    ids = {s: [f"c{c}/{s}{i}" for i, c in enumerate(y)] for s, y in labels.items()}
    return write_labelled_store(
        data_root, name, "f" * 64, [f"c{k}" for k in range(n_classes)], clouds, labels, ids, source="folder"
    )


def bind_dataset(data_root: Path, name: str, path: Path) -> Path:
    """Record ``path`` as dataset ``name``'s points store, as `i2p prepare` leaves a dataset."""
    record = datasets.DatasetRecord(name, {"source": "folder", "root": f"/{name}", "variant": None})
    record.current["prepare"] = str(path.relative_to(data_root))
    datasets.save(data_root, record)
    return path


def invoke(*args):
    """The evaluation commands (eval svm, embed, finetune, fewshot) run as the CLI runs them."""
    import typer
    from typer.testing import CliRunner

    from cli_eval import embed_command, eval_app, fewshot_command, finetune_command
    from cli_options import global_options

    app = typer.Typer()
    app.callback()(global_options)
    app.add_typer(eval_app, name="eval")
    for name, fn in (("embed", embed_command), ("finetune", finetune_command), ("fewshot", fewshot_command)):
        app.command(name)(fn)
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
