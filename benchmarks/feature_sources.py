"""Where in a pre-trained model does class knowledge live? A linear probe of features from each place.

For each checkpoint (a pre-training ``ckpt-*.pt`` holding the whole model: encoder, decoder and heads) and
for random initialisations of the same model, pool the unmasked tokens of

  enc0, enc1, enc2   the encoder's LayerNorm-ed tokens of scales 0, 1, 2 (enc2 is the paper's SVM feature),
  dec                the decoder's output at the reconstruction scale (what the 3D and 2D heads read),

by max over tokens, with BatchNorm statistics re-estimated on the train split (docs/evaluation.md), and
score a linear SVM on the test split. C is chosen by 3-fold cross-validation on the train split from
{0.01, 0.1, 1, 10} (the test split is never used to choose), and the fixed paper C = 0.01 is printed
beside it: features of a trained model can have another scale than those of a random one.

The decoder sees the whole cloud here (nothing masked), as the encoder does: a diagnostic, not an
evaluation protocol of the paper.

    python benchmarks/feature_sources.py POINTS_STORE CKPT [CKPT ...] [--random-seeds 1 2 3]

Results on stdout (one row per model and place), logs on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

PLACES = ("enc0", "enc1", "enc2", "dec")
C_GRID = (0.01, 0.1, 1.0, 10.0)
PAPER_C = 0.01


def whole_model(path: Path):
    """The pre-training model of a checkpoint with its decoder and heads (not only the encoder)."""
    from i2pmae.model import I2PMAE
    from pipeline.storage.checkpoint_files import open_checkpoint
    from pipeline.storage.checkpoints import load_encoder

    opened = open_checkpoint(path)
    encoder, state = load_encoder(opened), opened.state
    has_2d = any(k.startswith("rec_head_2d") for k in state)
    model = I2PMAE(replace(encoder.config, targets="3d+2d" if has_2d else "3d"))
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def pooled(model, points: np.ndarray, n_points: int, batch: int = 32) -> dict[str, np.ndarray]:
    """Max-pooled features of every place for clouds (O, P, 3) → {place: (O, C_place)}."""
    out: dict[str, list] = {p: [] for p in PLACES}
    xyz_all = torch.from_numpy(np.asarray(points, dtype=np.float32))[:, :n_points]  # the first N (§1.3)
    for i in range(0, len(xyz_all), batch):
        groups = model.group(xyz_all[i : i + batch])
        B, G = groups.centers[-1].shape[:2]
        enc = model.forward_encoder(groups, torch.zeros(B, G, dtype=torch.bool))
        for s in range(3):
            out[f"enc{s}"].append(enc.tokens[s].max(dim=1).values)
        out["dec"].append(model.forward_decoder(enc, groups).tokens.max(dim=1).values)
    return {p: torch.cat(v).numpy() for p, v in out.items()}


def probe(train_x, train_y, test_x, test_y) -> tuple[float, float, float]:
    """(test accuracy at C chosen by 3-fold CV on train, that C, test accuracy at the paper's C)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import SVC

    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(SVC(kernel="linear"), {"C": list(C_GRID)}, cv=folds).fit(train_x, train_y)
    paper = SVC(kernel="linear", C=PAPER_C).fit(train_x, train_y)
    return (
        float((search.predict(test_x) == test_y).mean()),
        float(search.best_params_["C"]),
        float((paper.predict(test_x) == test_y).mean()),
    )


def measure(model, store, n_points: int) -> dict[str, tuple[float, float, float, float]]:
    """{place: (accuracy at CV-chosen C, that C, accuracy at C = 0.01, feature std across objects)}."""
    from pipeline.evaluate.bnstats import protocol_applied

    train, test = store.split("train"), store.split("test")
    with protocol_applied(
        model, train, "reestimate", n_points=n_points, selection="first", batch_size=32, device="cpu"
    ):
        f_train, f_test = pooled(model, train.points[:], n_points), pooled(model, test.points[:], n_points)
    return {
        p: (*probe(f_train[p], train.labels, f_test[p], test.labels), float(f_train[p].std(axis=0).mean()))
        for p in PLACES
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store", type=Path, help="points store (its train and test splits)")
    ap.add_argument("ckpts", type=Path, nargs="+", help="pre-training checkpoints (whole model)")
    ap.add_argument("--random-seeds", type=int, nargs="*", default=[1], help="random inits of the same model")
    ap.add_argument("--points", type=int, default=2048, help="the first N stored points per object")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from i2pmae.model import I2PMAE
    from pipeline.evaluate.extract import points_store

    store = points_store(args.store)
    config = whole_model(args.ckpts[0]).cfg
    models = [(str(p), whole_model(p)) for p in args.ckpts]
    for seed in args.random_seeds:
        torch.manual_seed(seed)
        models.append((f"random init (seed {seed})", I2PMAE(config).eval()))
    n_test = len(store.split("test").labels)
    print(f"# {store.name}: test {n_test} objects; ±{100 * 1.96 * (0.25 / n_test) ** 0.5:.1f} points binomial "
          f"95 % half-width at 50 %; BatchNorm re-estimated on train; features max-pooled")  # fmt: skip
    print("| model | place | SVM, C by 3-fold CV on train | chosen C | SVM, C = 0.01 | feature std |")
    print("|---|---|---|---|---|---|")
    for name, model in models:
        for place, (acc, c, acc_paper, std) in measure(model, store, args.points).items():
            print(f"| {name} | {place} | {100 * acc:.1f} % | {c:g} | {100 * acc_paper:.1f} % | {std:.3f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
