"""Nothing a user hands us runs code while i2p reads it (docs/pipeline.md, "Files i2p reads safely").

Each crafted file carries a payload that, if unpickled in full, creates a marker file; every test asserts
the marker is absent and the file is refused with a message, while the honest file of the same kind reads.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
import yaml

from pipeline.core.errors import LayoutError, TeacherError, UnsafeFile
from pipeline.storage import rundir
from pipeline.storage.checkpoint_files import CheckpointError, open_checkpoint
from pipeline.storage.safe_load import load_pickle, torch_load
from pipeline.storage.train_state import rng_state, set_rng_state


class Payload:
    """Unpickling this runs ``touch MARKER``: what a hostile file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_a_checkpoint_in_a_run_directory_is_read_without_running_its_code(tmp_path):
    run = tmp_path / "runs" / "shared"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "PointTransformer", "epochs": 300}))
    assert rundir.read(run).exists  # a run directory as i2p sees one: it used to make the file "trusted"
    marker = tmp_path / "PWNED"
    torch.save({"base_model": {"h_encoder.x": torch.zeros(1)}, "meta": Payload(marker)}, run / "ckpt-last.pt")
    with pytest.raises(CheckpointError, match="reading them would run code") as err:
        open_checkpoint(run / "ckpt-last.pt")
    assert "os.system" in err.value.message or "posix.system" in err.value.message  # the global it asked for
    with pytest.raises(pickle.UnpicklingError):
        rundir.strip_optimizer_state(run)  # `i2p gc` and train.keep_optimizer=false read it too
    assert not marker.exists()


def test_our_checkpoints_rng_state_reads_with_weights_only_and_old_numpy_states_too(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    state = rng_state()
    torch.save({"rng": state}, tmp_path / "new.pt")
    old = {**state, "numpy": np.random.get_state()}  # checkpoints written before: a uint32 array
    torch.save({"rng": old}, tmp_path / "old.pt")
    expected = np.random.rand(5)
    for name in ("new.pt", "old.pt"):
        set_rng_state(torch_load(tmp_path / name)["rng"])
        assert np.array_equal(np.random.rand(5), expected), name


def test_pickled_dataset_files_read_arrays_and_refuse_code(tmp_path):
    honest = tmp_path / "episode.pkl"
    item = (np.zeros((8, 6), np.float32), np.int64(1), 3)
    honest.write_bytes(pickle.dumps({"train": [item], "test": [item]}))
    data = load_pickle(honest, "few-shot episode")
    assert data["train"][0][0].shape == (8, 6) and int(data["train"][0][1]) == 1
    marker = tmp_path / "PWNED"
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"train": [item], "x": Payload(marker)}))
    with pytest.raises(UnsafeFile, match=r"asks to run code .*system' is not allowed"):
        load_pickle(hostile, "few-shot episode")
    assert not marker.exists()


def test_few_shot_episodes_and_fps_caches_refuse_code(tmp_path):
    from typer.testing import CliRunner

    from cli import app
    from pipeline.sources.fewshot_pickles import read_fewshot_pickle

    marker = tmp_path / "PWNED"
    folder = tmp_path / "ModelNetFewshot" / "5way_10shot"
    folder.mkdir(parents=True)
    item = (np.zeros((8, 6), np.float32), 0, 0)
    (folder / "0.pkl").write_bytes(pickle.dumps({"train": [item], "test": [item], "x": Payload(marker)}))
    with pytest.raises(UnsafeFile, match="few-shot episode"):
        read_fewshot_pickle(tmp_path, 5, 10, 0)
    mn = tmp_path / "mn40" / "modelnet40_normal_resampled"
    mn.mkdir(parents=True)
    (mn / "modelnet40_shape_names.txt").write_text("chair\n")
    (mn / "modelnet40_train.txt").write_text("chair_0001\n")
    (mn / "modelnet40_test.txt").write_text("chair_0002\n")
    for split in ("train", "test"):
        (mn / f"modelnet40_{split}_8192pts_fps.dat").write_bytes(
            pickle.dumps((Payload(marker), [np.zeros(1)]))
        )
    args = ["prepare", "modelnet40", "--root", str(tmp_path / "mn40"), "--data-root", str(tmp_path / "d")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0  # not "test 0, train 0" with exit 0
    assert "ModelNet40 FPS cache" in result.output and "asks to run code" in result.output
    assert not marker.exists()


def test_an_unreadable_fps_cache_stops_prepare_instead_of_emptying_the_split(tmp_path):
    from pipeline.sources.base import Item
    from pipeline.sources.modelnet40 import read_cache_row

    path = tmp_path / "modelnet40_test_8192pts_fps.dat"
    path.write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(LayoutError, match="unreadable FPS cache"):
        read_cache_row(Item(id="chair/chair_0001", path=str(path), label=0, kind="pickle", index=0))


def _torchscript_lookalike(path, marker):
    """A torch.save zip with an extra entry ending in constants.pkl below the top of the archive."""
    buffer = io.BytesIO()
    torch.save({"meta": Payload(marker)}, buffer)
    src = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    prefix = src.infolist()[0].filename.split("/")[0]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr(f"{prefix}/extra/constants.pkl", b"")


def test_teacher_weights_are_torchscript_only_when_torch_says_so(tmp_path):
    from pipeline.features.teacher_weights import _is_torchscript
    from pipeline.features.teachers import load_teacher

    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    assert _is_torchscript(str(scripted))
    marker = tmp_path / "PWNED"
    lookalike = tmp_path / "clip_weights.pt"
    _torchscript_lookalike(lookalike, marker)
    assert not _is_torchscript(str(lookalike))
    with pytest.raises(TeacherError, match="cannot load weights"):
        load_teacher("tiny-random", weights=str(lookalike))
    assert not marker.exists()


def test_a_pickle_with_a_zip_appended_is_not_taken_for_torchscript(tmp_path):
    """zipfile finds a zip anywhere in a file; torch only at its start: the check follows torch."""
    from pipeline.features.teacher_weights import _is_torchscript
    from pipeline.features.teachers import load_teacher

    marker = tmp_path / "PWNED"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/constants.pkl", b"")
        z.writestr("archive/data.pkl", b"")
    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps({"meta": Payload(marker)}) + archive.getvalue())
    assert zipfile.is_zipfile(path) and not _is_torchscript(str(path))
    with pytest.raises(TeacherError):
        load_teacher("tiny-random", weights=str(path))
    assert not marker.exists()
