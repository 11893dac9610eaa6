"""Evaluation on tiny real stores: SVM, embeddings, fine-tuning, few-shot, and the reports they write."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from i2pmae.augment import rotate_y
from i2pmae.evaluate import select_points, svm_accuracy
from i2pmae.fewshot import make_episode, make_episodes
from i2pmae.finetune import FinetuneConfig, build_classifier, smooth_cross_entropy
from i2pmae.finetune_inputs import train_sample
from i2pmae.model import I2PMAE, I2PMAEConfig
from i2pmae.recipes import RECIPES, classifier_config
from i2pmae.schedule import epoch_lr
from pipeline.evaluate.extract import EvaluationError, PointsStore, feature_points
from pipeline.evaluate.finetune_loop import finetune
from pipeline.sources.fewshot_pickles import read_fewshot_pickle
from tests.builders import TINY_ENCODER, invoke, toy_cloud, write_store

TINY = I2PMAEConfig(**TINY_ENCODER)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A run directory with one of our (tiny) checkpoints and two small labelled datasets."""
    root = tmp_path_factory.mktemp("data")
    write_store(root, "toys", {"train": 6, "test": 3})
    write_store(root, "fs", {"train": 4, "test": 20}, P=32)
    torch.manual_seed(0)
    run_dir = root / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"params": {"points": 64}}))
    torch.save(
        {
            "model": I2PMAE(TINY).state_dict(),
            "model_config": asdict(TINY),
            "train_params": {"points": 64},
            "epoch": 2,
            "step": 6,
            "optimizer": {},
            "scheduler": None,
            "rng": {},
        },
        run_dir / "ckpt-last.pt",
    )
    return root


# ---- linear SVM ----------------------------------------------------------------------------------


def test_svm_is_high_on_separable_features_and_near_chance_on_shuffled_labels():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(4, 16))
    y_tr, y_te = np.repeat(np.arange(4), 50), np.repeat(np.arange(4), 100)
    x_tr = centres[y_tr] + rng.normal(size=(200, 16))
    x_te = centres[y_te] + rng.normal(size=(400, 16))
    assert svm_accuracy(x_tr, y_tr, x_te, y_te, c=0.01).accuracy > 0.95
    shuffled = svm_accuracy(x_tr, rng.permutation(y_tr), x_te, y_te, c=0.01)
    assert shuffled.accuracy < 0.45
    assert (shuffled.n_train, shuffled.n_test, shuffled.n_classes) == (200, 400, 4)
    x_tr[3, 5] = np.nan
    with pytest.raises(ValueError, match="1 objects have non-finite features"):
        svm_accuracy(x_tr, y_tr, x_te, y_te, c=0.01)


def test_point_selection_rules():
    xyz = torch.rand(2, 50, 3)
    assert torch.equal(select_points(xyz, 10, "first"), xyz[:, :10])
    fps = select_points(xyz, 10, "fps")
    assert fps.shape == (2, 10, 3) and torch.equal(fps[:, 0], xyz[:, 0])  # FPS starts at index 0
    h5 = PointsStore(
        "modelnet40", Path("x"), {"handling": {"layout": "modelnet40_ply_hdf5_2048", "n_points": 2048}}
    )
    assert (
        feature_points(h5, None, 2048)[:2] == (1024, "first") and "§1.3" in feature_points(h5, None, 2048)[2]
    )
    scan = PointsStore(
        "s", Path("x"), {"handling": {"layout": "scanobjectnn_h5", "point_order": "stored", "n_points": 2048}}
    )
    assert feature_points(scan, None, 2048)[:2] == (2048, "first")  # all points
    assert feature_points(scan, 1024, 2048)[:2] == (1024, "fps")
    meshes = PointsStore(
        "m", Path("x"), {"handling": {"layout": "folder", "point_order": "fps", "n_points": 8192}}
    )
    assert feature_points(meshes, None, 2048)[:2] == (2048, "first")
    with pytest.raises(EvaluationError, match="exceeds the 2048 points"):
        feature_points(scan, 4096, 2048)


def test_eval_svm_appends_every_field_to_the_run_report(data_root):
    for _ in range(2):
        out = invoke("eval", "svm", "--run", "tiny", "-d", "toys", "--data-root", data_root, "--c", "0.5")
        assert out.exit_code == 0, out.output
    assert "linear SVM on toys" in out.output
    report = (data_root / "runs" / "tiny" / "report.md").read_text()
    assert report.count("## Linear SVM") == 2
    for field in (
        "run tiny, ckpt-last.pt",
        "toys (",
        "train 18, test 9 objects; 3 classes",
        "64: all stored points",
        "max-pooled",
        "C=0.5",
        "**test accuracy**",
    ):
        assert field in report, field
    assert not list((data_root / "runs" / "tiny").glob(".*tmp*"))  # atomic: no temporary left


def test_random_init_baseline_and_errors(data_root, tmp_path):
    target = tmp_path / "baseline.md"
    out = invoke(
        "eval",
        "svm",
        "--run",
        "tiny",
        "--random-init",
        "--seed",
        "3",
        "-d",
        "toys",
        "--data-root",
        data_root,
        "--points",
        "32",
        "--set",
        "eval.batch_size=4",
        "--report",
        target,
    )
    assert out.exit_code == 0, out.output
    report = target.read_text()
    assert "random initialisation (seed 3, architecture of run tiny, ckpt-last.pt" in report
    assert "32: the first 32 of 64 stored points (stored in FPS order" in report
    paper = invoke("eval", "svm", "--random-init", "-d", "toys", "--data-root", data_root, "--report", target)
    assert paper.exit_code == 2 and "needs at least 512 points per object" in paper.output
    bad = invoke("eval", "svm", "--run", "tiny", "-d", "nope", "--data-root", data_root)
    assert (
        bad.exit_code == 2
        and "dataset 'nope' has not been prepared" in bad.output
        and "Traceback" not in bad.output
    )
    both = invoke("eval", "svm", "--run", "tiny", "--ckpt", "x.pt", "-d", "toys", "--data-root", data_root)
    assert both.exit_code == 2 and "either --run NAME or --ckpt FILE" in both.output


def test_embed_writes_one_row_per_object_in_store_order(data_root, tmp_path):
    target = tmp_path / "emb" / "toys-test.npy"
    out = invoke(
        "embed", "--run", "tiny", "-d", "toys", "--split", "test", "--out", target, "--data-root", data_root
    )
    assert out.exit_code == 0, out.output
    rows = np.load(target)
    assert rows.shape == (9, 64) and rows.dtype == np.float32
    import zarr

    store = next((data_root / "points").glob("toys-*.zarr"))
    first = torch.from_numpy(zarr.open_group(str(store), mode="r")["test/points"][:1])
    model = I2PMAE(TINY)
    model.load_state_dict(torch.load(data_root / "runs/tiny/ckpt-last.pt", weights_only=False)["model"])
    assert np.allclose(rows[0], model.global_feature(first)[0].numpy(), atol=1e-5)


# ---- fine-tuning ----------------------------------------------------------------------------------


def test_finetune_reports_last_best_voted_unvoted_and_seeds(data_root):
    out = invoke(
        "finetune",
        "--run",
        "tiny",
        "-d",
        "toys",
        "--data-root",
        data_root,
        "--epochs",
        "1",
        "--seeds",
        "2",
        "--points",
        "32",
        "--batch-size",
        "6",
        "--votes",
        "2",
    )
    assert out.exit_code == 0, out.output
    report = (data_root / "runs" / "tiny" / "report.md").read_text()
    section = report[report.index("## Fine-tuning on toys") :]
    for field in (
        "train 18, test 9 objects, 3 classes; no validation split",
        "| seeds | 0, 1 |",
        "label smoothing 0.2",
        "| last epoch | best epoch (epoch) | last epoch, voted | best epoch, voted |",
        "**mean ± std**",
        "(n=2)",
        "Best epochs were chosen on the test split",
        "one pass of 2 votes",
        "never the maximum over repeated passes",
        "grad-norm clip 10",
        "lr 0.0005",
    ):
        assert field in section, field
    metrics = json.loads(
        next((data_root / "runs" / "tiny").glob("finetune-toys-modelnet40-*.json")).read_text()
    )
    assert [len(r["history"]) for r in metrics["results"]] == [1, 1] and metrics["finetune"]["epochs"] == 1


def test_finetune_loop_follows_the_schedule_and_skips_voting_without_votes():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    y = np.arange(12) % 3
    x = torch.from_numpy(np.stack([toy_cloud(int(c), rng, 48) for c in y]))
    ccfg = classifier_config(RECIPES["obj-bg"], 3, TINY, 48)
    assert (
        ccfg.pooling == "concat" and ccfg.group_sizes == (8, 4, 4) and ccfg.local_radius == (0.32, 0.64, 1.28)
    )
    cfg = FinetuneConfig(
        epochs=2, batch_size=6, points=48, label_smoothing=0.0, augment="scale-rotate", votes=0
    )
    model = build_classifier(ccfg, I2PMAE(TINY).state_dict(), seed=0)
    res = finetune(model, x, torch.from_numpy(y), x[:6], torch.from_numpy(y[:6]), cfg)
    assert (
        [m.epoch for m in res.history] == [0, 1] and res.last_vote_acc is None and res.best_vote_acc is None
    )
    assert [m.lr for m in res.history] == [epoch_lr(e, 5e-4, 2, 10, 2) for e in (0, 1)] == [1e-6, 1e-6]  # lag
    assert res.best_acc == max(m.test_acc for m in res.history) and res.last_acc == res.history[-1].test_acc
    assert all(np.isfinite(m.loss) for m in res.history)


def test_smoothed_loss_and_training_sampling():
    logits, target = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    soft = torch.full((5, 4), 0.2 / 3).scatter_(1, target[:, None], 0.8)
    expected = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(smooth_cross_entropy(logits, target, 0.2), expected)
    assert torch.allclose(
        smooth_cross_entropy(logits, target, 0.0), torch.nn.functional.cross_entropy(logits, target)
    )
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(3, 100, 3)
    sub = train_sample(xyz, 32, g)  # FPS to round(32·75/64) = 38, then 32 of them
    assert sub.shape == (3, 32, 3)
    for b in range(3):  # every chosen point is one of the object's own points
        assert (sub[b][:, None, :] == xyz[b][None]).all(dim=-1).any(dim=-1).all()
    rot = rotate_y(xyz, g)
    assert torch.allclose(rot[..., 1], xyz[..., 1]) and torch.allclose(
        rot.norm(dim=-1), xyz.norm(dim=-1), atol=1e-6
    )


# ---- few-shot -------------------------------------------------------------------------------------


def test_fewshot_episodes_are_deterministic_balanced_and_disjoint():
    train = np.repeat(np.arange(12), 25)
    test = np.repeat(np.arange(12), 22)
    eps = make_episodes(train, test, way=5, shot=10, folds=4, seed=3)
    again = make_episodes(train, test, way=5, shot=10, folds=4, seed=3)
    for a, b in zip(eps, again, strict=True):
        assert (
            a.classes == b.classes
            and np.array_equal(a.train_idx, b.train_idx)
            and np.array_equal(a.test_idx, b.test_idx)
        )
    assert len({e.classes for e in eps}) > 1  # folds differ
    for e in eps:
        assert len(set(e.classes)) == 5 and e.test_split == "test"
        assert (
            np.bincount(e.train_label).tolist() == [10] * 5 and np.bincount(e.test_label).tolist() == [20] * 5
        )
        assert np.array_equal(
            np.array(e.classes)[e.train_label], train[e.train_idx]
        )  # relabelled consistently
        assert np.array_equal(np.array(e.classes)[e.test_label], test[e.test_idx])
        assert len(set(e.train_idx)) == 50 and len(set(e.test_idx)) == 100
    alone = make_episode(train, None, way=5, shot=3, fold=0)
    assert alone.test_split == "train" and not set(alone.train_idx) & set(
        alone.test_idx
    )  # disjoint, same split
    with pytest.raises(ValueError, match="only 0 qualify"):
        make_episode(train, test, way=5, shot=30, fold=0)


def test_fewshot_command_reports_mean_and_std_over_folds(data_root):
    out = invoke(
        "fewshot",
        "--run",
        "tiny",
        "-d",
        "fs",
        "--data-root",
        data_root,
        "--way",
        "2",
        "--shot",
        "2",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--points",
        "32",
    )
    assert out.exit_code == 0, out.output
    report = (data_root / "runs" / "tiny" / "report.md").read_text()
    section = report[report.index("## Few-shot classification") :]
    assert "| 2-way 2-shot | 2 |" in section and "(n=2)" in section and "20 test objects per class" in section
    assert "Best epochs were chosen on each fold's test objects** (episodes have no validation" in section


def test_point_bert_fewshot_pickles_are_read_and_normalised(tmp_path):
    rng = np.random.default_rng(0)
    item = lambda lab, cls: (rng.normal(3, 2, size=(64, 6)).astype(np.float32), lab, cls)  # noqa: E731
    folder = tmp_path / "ModelNetFewshot" / "5way_10shot"
    folder.mkdir(parents=True)
    with open(folder / "0.pkl", "wb") as f:
        pickle.dump({"train": [item(0, 7), item(1, 3)], "test": [item(1, 3)] * 3}, f)
    train_x, train_y, test_x, test_y, classes = read_fewshot_pickle(tmp_path, 5, 10, 0)
    assert train_x.shape == (2, 64, 3) and test_x.shape == (3, 64, 3) and classes == (3, 7)
    assert train_y.tolist() == [0, 1] and torch.allclose(train_x.norm(dim=-1).amax(dim=1), torch.ones(2))
    assert torch.allclose(train_x.mean(dim=1), torch.zeros(2, 3), atol=1e-5)


def test_svm_c_chosen_by_cross_validation_on_the_train_split_is_an_option(data_root):
    from i2pmae.evaluate import svm_c_by_cv

    rng = np.random.default_rng(0)

    def split():  # class in a quiet feature, a loud one beside it: a small C follows the loud one
        y = np.repeat([0, 1], 30)
        return np.stack([y + rng.normal(0, 10, 60), y + rng.normal(0, 0.1, 60)], 1), y

    (x, y), (x_test, y_test) = split(), split()
    chosen = svm_c_by_cv(x, y)
    assert chosen == svm_c_by_cv(x, y) >= 0.1  # seeded folds: the same C again
    assert (
        svm_accuracy(x, y, x_test, y_test, 0.001).accuracy
        < 0.7
        < svm_accuracy(x, y, x_test, y_test, chosen).accuracy
    )
    out = invoke("eval", "svm", "--run", "tiny", "-d", "toys", "--data-root", data_root, "--svm-c-cv")
    assert out.exit_code == 0, out.output
    report = (data_root / "runs" / "tiny" / "report.md").read_text()
    assert "chosen by 3-fold cross-validation on the train split from (0.001, 0.01, 0.1, 1.0, 10.0)" in report
    assert "(eval.svm_c_cv; the paper's: " in report
    both = invoke(
        "eval", "svm", "--run", "tiny", "-d", "toys", "--data-root", data_root, "--c", "0.5", "--svm-c-cv"
    )
    assert both.exit_code == 2 and "svm_c and svm_c_cv both choose the SVM's C" in both.output
