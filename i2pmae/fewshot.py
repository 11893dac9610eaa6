"""Few-shot episodes (method §1.5): ``way`` classes × ``shot`` train objects, 20 unseen test objects per class.

The paper's script (Point-BERT's ``generate_few_shot_data.py``) shuffles the class list, takes the
first ``way`` classes, then per class ``shot`` objects of the train split and ``n_test`` objects of
the test split, relabelled 0..way-1; it is not seeded. Here the same construction is drawn from a
NumPy generator seeded with (seed, way, shot, fold), so every episode is reproducible and folds
differ. Without a test split the test objects are drawn from the train split's remaining objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from i2pmae.errors import InputError


@dataclass(frozen=True)
class Episode:
    way: int
    shot: int
    fold: int
    classes: tuple[int, ...]  # original class index of episode label 0..way-1
    train_idx: np.ndarray  # (way·shot,) rows of the train split
    train_label: np.ndarray  # (way·shot,) episode labels 0..way-1
    test_idx: np.ndarray  # (way·n_test,) rows of the test split (or of the train split, see test_split)
    test_label: np.ndarray  # (way·n_test,)
    test_split: str  # "test", or "train" when the dataset has no test split


def make_episode(
    train_labels: np.ndarray,
    test_labels: np.ndarray | None,
    way: int,
    shot: int,
    fold: int,
    seed: int = 0,
    n_test: int = 20,
) -> Episode:
    """One episode; classes are eligible when they have ``shot`` train and ``n_test`` test objects.

    train_labels (S_train,), test_labels (S_test,) or None: class index per row, −1 = unlabelled.
    """
    train_labels = np.asarray(train_labels)
    same = test_labels is None
    test_labels = train_labels if same else np.asarray(test_labels)
    rng = np.random.default_rng([seed, way, shot, fold])
    need_train = shot + n_test if same else shot
    counts_tr = np.bincount(train_labels[train_labels >= 0], minlength=1)
    counts_te = np.bincount(test_labels[test_labels >= 0], minlength=len(counts_tr))
    eligible = [
        c
        for c in range(len(counts_tr))
        if counts_tr[c] >= need_train and (same or (c < len(counts_te) and counts_te[c] >= n_test))
    ]
    if len(eligible) < way:
        raise InputError(
            f"{way}-way {shot}-shot needs {way} classes with ≥{need_train} train"
            + ("" if same else f" and ≥{n_test} test")
            + f" objects; only {len(eligible)} qualify"
        )
    classes = rng.permutation(eligible)[:way]
    tr_idx, tr_lab, te_idx, te_lab = [], [], [], []
    for k, c in enumerate(classes):
        rows = rng.permutation(np.flatnonzero(train_labels == c))
        tr_idx.append(rows[:shot])
        if same:
            te_idx.append(rows[shot : shot + n_test])
        else:
            te_idx.append(rng.permutation(np.flatnonzero(test_labels == c))[:n_test])
        tr_lab.append(np.full(shot, k))
        te_lab.append(np.full(n_test, k))
    return Episode(
        way,
        shot,
        fold,
        tuple(int(c) for c in classes),
        np.concatenate(tr_idx),
        np.concatenate(tr_lab),
        np.concatenate(te_idx),
        np.concatenate(te_lab),
        "train" if same else "test",
    )


def make_episodes(
    train_labels: np.ndarray,
    test_labels: np.ndarray | None,
    way: int,
    shot: int,
    folds: int = 10,
    seed: int = 0,
    n_test: int = 20,
) -> list[Episode]:
    """Folds 0..folds-1 of ``make_episode``."""
    return [make_episode(train_labels, test_labels, way, shot, f, seed, n_test) for f in range(folds)]
