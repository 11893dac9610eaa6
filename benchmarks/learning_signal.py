"""Does the 2D guidance teach the 3D encoder something? Four arms, several seeds, both BatchNorm protocols.

With the same data, steps, batch, points, model and seeds, pre-train

  (a) 2D-guided masking + 3D and 2D targets from ``tiny-synthetic`` (a teacher that knows the classes),
  (b) the same with ``tiny-random`` (a teacher that knows nothing),
  (c) 3D only: random masking, 3D targets (Point-M2AE's pretext),

and measure each, and (d) a random initialisation of the same model, by a linear SVM (C = 0.01, the
paper's monitor C) on max-pooled top-scale tokens of the synthetic test split, under both feature
protocols (``running`` BatchNorm statistics, the paper's, and ``reestimate``d on the train split;
docs/evaluation.md), and a third column with re-estimated statistics and C chosen by 3-fold cross-validation
on the train split (``eval.svm_c_cv``): a fixed C regularises features of another spread differently.
Prints mean ± std per arm, the differences a − d, a − c, b − d, c − d with the
seed spread, each arm's final loss_3d beside the no-input floor (the best constant 8 × 3 pattern on
masked scale-1 targets), and how much of the teacher's own margin over random init (its linear probe
on the test views, from the record shipped beside its weights) the 3D encoder inherits.

Results on stdout, logs on stderr. Every arm shares the setting the header prints; ``--arch small``
(4× fewer groups, the same layers) keeps the whole run near 45 minutes on 2 CPU cores.

    python benchmarks/learning_signal.py                      # 3 seeds, the defaults below
    python benchmarks/learning_signal.py --seeds 1 --steps 20 # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

log = logging.getLogger("learning_signal")

ARMS = {  # arm → (what it is, teacher whose features it reads, train params)
    "a": ("knowing teacher (tiny-synthetic), 2D-guided, 3D+2D", "tiny-synthetic", {"masking": "2d-guided", "targets": "3d+2d"}),
    "b": ("random teacher (tiny-random), 2D-guided, 3D+2D", "tiny-random", {"masking": "2d-guided", "targets": "3d+2d"}),
    "c": ("3D only: random masking, 3D targets", "tiny-random", {"masking": "random", "targets": "3d"}),
    "o": ("control: a perfect teacher (class codes), as a", "tiny-synthetic", {"masking": "2d-guided", "targets": "3d+2d"}),
}  # fmt: skip
ORDER = "abcod"  # the table's row order
ARCHS = {"paper": {}, "small": {"num_groups": (128, 64, 16)}}  # same layers; small: 4× fewer groups
SVM_C = 0.01
PROTOCOLS = ("running", "reestimate", "reest.+CV C")  # BatchNorm statistics; the last: C by CV on train


def build_stores(data_root: Path, teacher: str, sets: list[str]):
    """The synthetic dataset's points, views and ``teacher``'s features, built through the runner."""
    from pipeline.core.config import load_config
    from pipeline.runner.execute import run as run_plan
    from pipeline.runner.plan import Context, plan
    from pipeline.train.stage import train_inputs

    config = load_config(None, [*sets, f"cache-features.teacher={teacher}"])
    ctx = Context(config, data_root, "synthetic", offline=True)
    p = plan("train", ctx)
    for need in p.needs.values():
        run_plan(need, ctx)
    return config, train_inputs(p)


def oracle_store(features: str, out: Path) -> tuple[str, float]:
    """Positive control: a copy of a features store whose train features are one random 512-d code per class
    at every pixel of every view (scaled to the teacher features' std), saliency kept. Its 2D targets tell
    each visible point its object's class, whatever pixel it projects to: a teacher that knows everything.
    Returns (path, loss_2d of the best class-agnostic prediction: the codes' variance around their mean)."""
    import shutil

    import zarr

    if not out.exists():
        shutil.copytree(features, out)
    feature = zarr.open_group(str(out), mode="r+")["train/feature"]  # (O, K, V, C, 14, 14)
    labels = zarr.open_group(str(out), mode="r")["train/label"][:]
    std = float(np.asarray(feature[0]).astype(np.float32).std())
    codes = (
        np.random.default_rng(0).normal(size=(int(labels.max()) + 1, feature.shape[3])).astype(np.float32)
        * std
    )
    for o in range(feature.shape[0]):
        feature[o] = np.broadcast_to(codes[labels[o]][None, None, :, None, None], feature.shape[1:]).astype(
            np.float16
        )
    per_object = codes[labels]  # (O, C)
    return str(out), float(((per_object - per_object.mean(0)) ** 2).mean())


def pretrain(config, inputs, run: Path, arm: str, seed: int, n_train: int, args) -> dict:
    """One arm's run; returns its last loss_3d (mean of the last 5 steps) and seconds."""
    from pipeline.train.engine import fit
    from pipeline.train.setup import setup

    per_epoch = max(1, n_train // args.batch)  # steps per epoch over the train split
    update = {
        "run": run.name, "max_steps": args.steps, "batch_size": args.batch, "seed": seed, "points": args.points,
        "epochs": math.ceil(args.steps / per_epoch), "warmup_epochs": args.warmup_epochs, "cosine_to_end": True,
        "monitor_dataset": None, "num_workers": 0, "lr": args.lr, **ARMS[arm][2],
    }  # fmt: skip
    if args.monitor_every:  # the learning curve: linear SVM every N steps, re-estimated BN statistics
        update |= {"monitor_dataset": "synthetic", "monitor_every": 0, "monitor_every_steps": args.monitor_every,
                   "monitor_points": args.points, "monitor_bn_stats": "reestimate"}  # fmt: skip
    params = config.params("train").model_copy(update=update)
    from pipeline.storage import rundir

    run.mkdir(parents=True, exist_ok=True)  # a run directory (config.yaml) holds checkpoints i2p trusts
    rundir.write_config(run, {"benchmark": "learning_signal", "arm": arm, "arch": ARCHS[args.arch],
                              "params": params.model_dump(mode="json")})  # fmt: skip
    started = time.perf_counter()
    from pipeline.evaluate.monitor import build_monitor

    monitor = build_monitor(params, run.parents[1], "cpu")  # None unless --monitor-every
    fit(setup(params, inputs, run, "cpu", arch=ARCHS[args.arch]), monitor=monitor)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss_3d"] for r in rows if "loss_3d" in r]
    losses_2d = [r["loss_2d"] for r in rows if r.get("loss_2d") is not None]
    curve = {r["step"]: r["svm_acc"] for r in rows if "svm_acc" in r}
    return {
        "loss_3d": float(np.mean(losses[-5:])),
        "loss_2d": float(np.mean(losses_2d[-5:])) if losses_2d else None,
        "loss_2d_first": float(np.mean(losses_2d[:5])) if losses_2d else None,
        "seconds": time.perf_counter() - started,
        "curve": curve,
    }


def svm_both(model, store, n_points: int) -> dict[str, float]:
    """Linear SVM accuracy of ``model``'s features under each BatchNorm protocol at the paper's monitor C, and
    under re-estimated statistics with C chosen by 3-fold CV on the train split (eval.svm_c_cv)."""
    from i2pmae.evaluate import extract_features, svm_accuracy, svm_c_by_cv
    from pipeline.evaluate.bnstats import protocol_applied

    train, test = store.split("train"), store.split("test")
    out = {}
    for protocol in PROTOCOLS[:2]:
        with protocol_applied(
            model, train, protocol, n_points=n_points, selection="first", batch_size=32, device="cpu"
        ):
            x = [
                extract_features(model, s.points, n_points=n_points, selection="first", batch_size=32)
                for s in (train, test)
            ]
        out[protocol] = svm_accuracy(x[0], train.labels, x[1], test.labels, SVM_C).accuracy
    c = svm_c_by_cv(x[0], train.labels)  # x: the re-estimated features
    out[PROTOCOLS[2]] = svm_accuracy(x[0], train.labels, x[1], test.labels, c).accuracy
    return out


def random_model(arch: dict, seed: int):
    from i2pmae.model import I2PMAE, I2PMAEConfig

    torch.manual_seed(seed)
    return I2PMAE(I2PMAEConfig(**arch)).eval()


def loss_floor(store, n_points: int, arch: dict, draws: int = 4) -> float:
    """The best constant 8 × 3 pattern (no input) on masked scale-1 targets of the train split, each cloud
    scaled and shifted as the training draws are (per axis U(2/3, 3/2), ±0.2; method §1.6) ``draws`` times:
    the loss_3d a model reaches without using its encoder (fitted by Adam on the model's Chamfer loss)."""
    from i2pmae.augment import scale_and_translate
    from i2pmae.model import I2PMAE, I2PMAEConfig

    model = I2PMAE(I2PMAEConfig(masking="random", targets="3d", **arch))
    gen = torch.Generator().manual_seed(0)
    xyz = (
        torch.from_numpy(np.asarray(store.split("train").points[:, :n_points, :3]))
        .float()
        .repeat(draws, 1, 1)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        xyz = scale_and_translate(xyz)  # the draws' per-axis scale and shift (method §1.6)
    with torch.no_grad():
        groups = model.group(xyz)
        enc = model.forward_encoder(groups, model.random_mask(len(xyz), generator=gen))
        target = model.target_3d(groups, enc.masks)  # (L, K, 3) masked patches, centred
    from i2pmae.ops import chamfer_l2

    pattern = torch.nn.Parameter(torch.zeros(target.shape[1], 3))
    torch.nn.init.normal_(pattern, std=0.05, generator=gen)
    opt = torch.optim.Adam([pattern], lr=1e-2)
    for _ in range(800):
        loss = chamfer_l2(pattern.expand(len(target), -1, -1), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(chamfer_l2(pattern.detach().expand(len(target), -1, -1), target))


def mean_std(xs: list[float]) -> str:
    a = 100 * np.asarray(xs)
    return f"{a.mean():6.2f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:4.2f}"


def report(results: dict, floor: float, teacher_probe: float | None, args, seconds: float) -> None:
    """The tables on stdout."""
    seeds = args.seed_list
    print(f"\n# learning signal: synthetic v{args.version}, {args.per_class} objects/class (test 20 %), "
          f"{args.steps} steps × batch {args.batch}, {args.points} points, model {args.arch} {ARCHS[args.arch] or ''}, "
          f"lr {args.lr:g} ({f'warm-up {args.warmup_epochs} epochs, then ' if args.warmup_epochs else 'no warm-up, '}"
          f"cosine to 0), seeds {seeds}, SVM C={SVM_C} on {args.points} points, "
          f"{torch.get_num_threads()} threads, {platform.machine()}, {seconds / 60:.1f} min")  # fmt: skip
    n_test = len(results["test_labels"])
    half = 100 * 1.96 * math.sqrt(0.25 / n_test)
    print(
        f"test split: {n_test} objects (one object = {100 / n_test:.2f} %; 95 % binomial half-width at 50 %: ±{half:.1f} %)"
    )
    print(
        f"\n{'arm':4s} {'what':52s} "
        + " ".join(f"{p + ' %':>15s}" for p in PROTOCOLS)
        + f" {'loss_3d':>9s} {'loss_2d first → last':>21s}"
    )
    for arm in [a for a in ORDER if results["acc"][a]["running"]]:
        what = ARMS[arm][0] if arm in ARMS else "random initialisation"
        acc = results["acc"][arm]
        loss = f"{np.mean(results['loss'][arm]):9.5f}" if arm in ARMS else f"{'–':>9s}"
        pairs = [p for p in results["loss_2d"].get(arm, []) if p[0] is not None]
        loss_2d = (
            f"{np.mean([p[0] for p in pairs]):9.4f} → {np.mean([p[1] for p in pairs]):7.4f}" if pairs else "–"
        )
        print(
            f"{arm:4s} {what:52s} "
            + " ".join(f"{mean_std(acc[p]):>15s}" for p in PROTOCOLS)
            + f" {loss} {loss_2d:>21s}"
        )
    print(f"{'':4s} {'no-input floor (best constant pattern, train split)':52s} {'':>47s} {floor:9.5f}")
    if "oracle_floor_2d" in results:
        print(f"{'':4s} {'o: loss_2d of the best class-agnostic prediction':52s} {'':>47s} {'':>9s} "
              f"{results['oracle_floor_2d']:>21.4f}")  # fmt: skip
    print("\ndifferences (per seed, then mean ± std over seeds; points of accuracy)")
    for x, y in (("a", "d"), ("a", "c"), ("a", "b"), ("b", "d"), ("c", "d"), ("o", "d"), ("o", "a")):
        if not (results["acc"][x]["running"] and results["acc"][y]["running"]):
            continue  # an arm that did not run (--arms)
        cells = []
        for protocol in PROTOCOLS:
            diff = np.asarray(results["acc"][x][protocol]) - np.asarray(results["acc"][y][protocol])
            spread = diff.std(ddof=1) if len(diff) > 1 else 0.0
            if len(diff) < 2:
                verdict = "one seed: no spread"
            else:
                verdict = (
                    "beyond spread"
                    if diff.mean() > 2 * spread and diff.mean() > 0
                    else "within spread"
                    if diff.mean() > 0
                    else "no"
                )
            cells.append(f"{protocol}: {100 * diff.mean():+6.2f} ± {100 * spread:4.2f} ({verdict})")
        print(f"  {x} − {y}:  " + ";  ".join(cells))
    if teacher_probe is not None and results["acc"]["a"]["running"] and results["acc"]["d"]["running"]:
        for protocol in PROTOCOLS:
            a, d = np.mean(results["acc"]["a"][protocol]), np.mean(results["acc"]["d"][protocol])
            if teacher_probe <= d:
                print(f"teacher's test-view linear probe {100 * teacher_probe:.2f} % is not above random init under "
                      f"{protocol} ({100 * d:.2f} %): it has no margin for arm a to inherit (arm a: {100 * a:.2f} %)")  # fmt: skip
                continue
            share = (a - d) / (teacher_probe - d)
            print(f"teacher's test-view linear probe {100 * teacher_probe:.2f} %; arm a under {protocol} inherits "
                  f"{100 * share:+.0f} % of its margin over random init ({100 * a:.2f} vs {100 * d:.2f} %)")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="training and initialisation seeds 1..N")
    ap.add_argument("--steps", type=int, default=60, help="optimiser steps per run")
    ap.add_argument("--batch", type=int, default=16, help="objects per step")
    ap.add_argument(
        "--lr",
        type=float,
        default=1e-3,
        help="peak learning rate, cosine to 1e-6 over the run, stepped per epoch (the paper: 1e-3)",
    )
    ap.add_argument(
        "--points", type=int, default=2048, help="points per object in training, views and features"
    )
    ap.add_argument(
        "--warmup-epochs", type=int, default=0, help="linear warm-up from 1e-6 over N epochs (the paper: 10)"
    )
    ap.add_argument("--arch", choices=sorted(ARCHS), default="small", help="model size every arm shares")
    ap.add_argument("--per-class", type=int, default=30, help="synthetic objects per class")
    ap.add_argument("--version", type=int, default=3, help="synthetic generator version")
    ap.add_argument(
        "--arms", default="abcd", help="which arms to run (d: random init; o: the perfect-teacher control)"
    )
    ap.add_argument(
        "--monitor-every", type=int, default=0, help="linear SVM every N steps (0: at the end only)"
    )
    ap.add_argument(
        "--data-root", type=Path, default=None, help="stores and runs (default: a temporary folder)"
    )
    args = ap.parse_args(argv)
    args.seed_list = list(range(1, args.seeds + 1))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root or Path(tmp)
        sets = [f"prepare.synthetic_version={args.version}", f"prepare.synthetic_per_class={args.per_class}",
                f"prepare.points={max(2048, args.points)}", f"render.subset={args.points}", "render.chunk=32", "cache-features.chunk=32",
                "cache-features.num_workers=0"]  # fmt: skip
        from pipeline.evaluate.extract import points_store

        built = {t: build_stores(root, t, sets) for t in {ARMS[a][1] for a in args.arms if a in ARMS}}
        store = points_store(Path(next(iter(built.values()))[1].points))
        results = {"acc": {a: {p: [] for p in PROTOCOLS} for a in ORDER}, "loss": {a: [] for a in ARMS},
                   "loss_2d": {a: [] for a in ARMS},
                   "test_labels": store.split("test").labels}  # fmt: skip
        for seed in args.seed_list:
            for arm in [a for a in args.arms if a in ARMS]:
                config, inputs = built[ARMS[arm][1]]
                if arm == "o":
                    path, results["oracle_floor_2d"] = oracle_store(
                        inputs.features, root / "oracle-features.zarr"
                    )
                    inputs = replace(inputs, features=path)
                run = root / "runs" / f"{arm}-seed{seed}"
                out = pretrain(config, inputs, run, arm, seed, len(store.split("train").labels), args)
                from pipeline.storage.checkpoints import load_encoder

                model = load_encoder(run / "ckpt-last.pt").build_model("cpu")
                acc = svm_both(model, store, args.points)
                for p in PROTOCOLS:
                    results["acc"][arm][p].append(acc[p])
                results["loss"][arm].append(out["loss_3d"])
                results["loss_2d"][arm].append((out["loss_2d_first"], out["loss_2d"]))
                log.info(
                    "seed %d arm %s: %s, loss_3d %.5f, %.0f s", seed, arm, acc, out["loss_3d"], out["seconds"]
                )
                if out["curve"]:
                    results.setdefault("curves", {})[f"{arm}-seed{seed}"] = out["curve"]
                    log.info("seed %d arm %s learning curve (step: SVM %%, reestimate): %s", seed, arm,
                             {s: round(100 * v, 1) for s, v in out["curve"].items()})  # fmt: skip
            if "d" in args.arms:
                acc = svm_both(random_model(ARCHS[args.arch], seed), store, args.points)
                for p in PROTOCOLS:
                    results["acc"]["d"][p].append(acc[p])
                log.info("seed %d arm d: %s", seed, acc)
        floor = loss_floor(store, args.points, ARCHS[args.arch])
    from pipeline.features.tiny_teachers import packaged_record

    record = packaged_record("tiny-synthetic") or {}
    probe = (record.get("accuracy") or {}).get("test_views_probe")
    report(results, floor, probe, args, time.perf_counter() - started)
    return results


if __name__ == "__main__":
    main()
