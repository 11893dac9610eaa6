"""The prepare stage and the stage runner on real files: schema, skip, resume, locks, bad inputs, dask."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
import zarr

from pipeline.core.errors import BadInput, LockError
from pipeline.core.params import PrepareParams
from pipeline.prepare.points import prepare
from pipeline.storage.store import StoreLock, read_state
from tests.builders import array_bytes, write_folder


def params(root, **kw):
    base = dict(source="folder", root=str(root), points=64, oversample=2, chunk=2)
    return PrepareParams(**{**base, **kw})


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "meshes")


def test_store_matches_the_schema(folder, tmp_path):
    result = prepare(params(folder), tmp_path / "data", "toys")
    assert result.path.name == f"toys-{result.fingerprint[:8]}.zarr"
    assert result.path.parent == tmp_path / "data" / "points"
    group = zarr.open_group(str(result.path), mode="r")
    attrs = dict(group.attrs)
    for key in (
        "fingerprint",
        "stage",
        "params",
        "upstream",
        "complete",
        "created_with",
        "classes",
        "failures",
    ):
        assert key in attrs, key
    assert attrs["complete"] is True and attrs["stage"] == "prepare"
    assert attrs["classes"] == ["ball", "box", "cone"]
    assert attrs["params"]["points"] == 64 and "workers" not in attrs["params"]
    for split, n in (("train", 9), ("test", 3)):
        pts, label, ids = group[f"{split}/points"], group[f"{split}/label"], group[f"{split}/id"]
        assert pts.shape == (n, 64, 3) and pts.dtype == np.float32
        assert label.shape == (n,) and label.dtype == np.int32
        assert ids.shape == (n,)
        assert pts.metadata.dimension_names == ("object", "point", "xyz")
        assert group[f"{split}/done"][:].all()
        values = pts[:]
        assert np.abs(values.mean(axis=1)).max() < 1e-5  # centred
        assert np.allclose(np.linalg.norm(values, axis=2).max(axis=1), 1.0, atol=1e-5)  # unit sphere
        assert set(label[:]) == {0, 1, 2}
        assert all(i.split("/")[0] in attrs["classes"] for i in ids[:])


def test_second_run_is_up_to_date_and_computes_nothing(folder, tmp_path):
    first = prepare(params(folder), tmp_path / "data", "toys")
    before = array_bytes(first.path)
    again = prepare(params(folder), tmp_path / "data", "toys")
    assert again.computed == 0 and again.path == first.path
    assert array_bytes(again.path) == before


def test_interrupted_run_resumes_only_missing_chunks_to_identical_bytes(folder, tmp_path):
    reference = prepare(params(folder), tmp_path / "ref", "toys")
    broken = prepare(params(folder), tmp_path / "data", "toys")
    group = zarr.open_group(str(broken.path), mode="r+")
    # The state a crash leaves: chunk 1 half-written and not done, the store not complete.
    group["train/done"][1] = False
    group["train/points"][2:4] = 7.0
    group.attrs["complete"] = False
    resumed = prepare(params(folder), tmp_path / "data", "toys")
    assert resumed.computed == 1
    assert array_bytes(resumed.path) == array_bytes(reference.path)
    assert read_state(resumed.path).complete


def test_parameter_change_makes_a_new_store_and_keeps_the_old(folder, tmp_path):
    old = prepare(params(folder), tmp_path / "data", "toys")
    new = prepare(params(folder, points=32), tmp_path / "data", "toys")
    assert new.path != old.path and old.path.exists()
    assert zarr.open_group(str(new.path), mode="r")["train/points"].shape[1] == 32
    # runtime-only params do not change the store
    same = prepare(params(folder, workers=1, strict=True), tmp_path / "data", "toys")
    assert same.path == old.path and same.computed == 0


def test_a_concurrent_writer_is_refused(folder, tmp_path):
    first = prepare(params(folder, chunk=4), tmp_path / "probe", "toys")  # learn the path
    target = tmp_path / "data" / "points" / first.path.name
    with StoreLock(target):
        with pytest.raises(LockError, match="another process"):
            prepare(params(folder, chunk=4), tmp_path / "data", "toys")
    assert not (target / "zarr.json").exists()  # nothing was written by the refused writer


def write_bad_inputs(root):
    """One of each bad mesh beside good ones, in class 'box'."""
    good = root / "box" / "train"
    (good / "empty.ply").write_bytes(trimesh.Trimesh().export(file_type="ply"))
    nan = trimesh.creation.box()
    nan.vertices[0] = [np.nan, 0, 0]
    (good / "nan.obj").write_text(nan.export(file_type="obj"))
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]], process=False)
    (good / "flat.obj").write_text(flat.export(file_type="obj"))
    whole = trimesh.creation.box().export(file_type="ply")
    (good / "cut.ply").write_bytes(whole[: len(whole) // 2])
    # a duplicate id: box/box_train0 exists as .ply already
    (good / "box_train0.obj").write_text(trimesh.creation.box().export(file_type="obj"))


def test_bad_inputs_are_recorded_and_skipped(folder, tmp_path):
    write_bad_inputs(folder)
    result = prepare(params(folder), tmp_path / "data", "toys")
    group = zarr.open_group(str(result.path), mode="r")
    failures = {f["id"]: f["reason"] for f in group.attrs["failures"]}
    assert set(failures) == {"box/empty", "box/nan", "box/flat", "box/cut", "box/box_train0"}, failures
    assert "duplicate" in failures["box/box_train0"]
    assert all(f["path"] for f in group.attrs["failures"])
    ids = list(group["train/id"][:])
    assert len(ids) == 9 and "" not in ids  # compacted: only the 9 good objects, no holes
    assert (group["train/label"][:] >= 0).all()
    assert np.isfinite(group["train/points"][:]).all()
    assert (np.abs(group["train/points"][:]).sum(axis=(1, 2)) > 0).all()
    assert group.attrs["counts"] == {"test": 3, "train": 9}


@pytest.mark.parametrize("swapped", [0, 1, 3], ids=["none-swapped", "one-swapped", "all-swapped"])
def test_an_interrupted_compaction_finishes_on_rerun(folder, tmp_path, swapped):
    write_bad_inputs(folder)
    reference = prepare(params(folder), tmp_path / "ref", "toys")
    result = prepare(params(folder), tmp_path / "data", "toys")
    # rewind to a state between the steps of `compaction.compact`: copies ready, `swapped` of 3 arrays refilled
    # from their copy (copy deleted); the others half refilled (their copy still there)
    group = zarr.open_group(str(result.path), mode="r+")
    group.attrs.update({"complete": False, "compacted/train": False})
    for name in ("points", "label", "id")[swapped:]:
        done = group[f"train/{name}"]
        copy = group["train"].create_array(
            f"_compact-{name}",
            shape=done.shape,
            chunks=done.chunks,
            shards=done.shards,
            dtype=done.dtype,
            fill_value=done.fill_value,
            dimension_names=done.metadata.dimension_names,
        )
        copy[:] = done[:]
        done[:1] = done.fill_value  # the refill stopped after its first write
    again = prepare(params(folder), tmp_path / "data", "toys")
    assert again.computed == 0 and read_state(again.path).complete
    assert array_bytes(again.path) == array_bytes(reference.path)


def test_strict_stops_at_the_first_bad_input(folder, tmp_path):
    write_bad_inputs(folder)
    with pytest.raises(BadInput, match="bad input box/"):
        prepare(params(folder, strict=True), tmp_path / "data", "toys")


def test_dask_local_cluster_equals_the_in_process_run(folder, tmp_path):
    local = prepare(params(folder), tmp_path / "a", "toys")
    distributed = prepare(params(folder, workers=2), tmp_path / "b", "toys")
    assert array_bytes(local.path) == array_bytes(distributed.path)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_or_preempted_mid_run_then_rerun_resumes_to_identical_bytes(tmp_path, sig):
    """kill -9 keeps every finished chunk silently; a scheduler's SIGTERM also says so and exits 143."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = write_folder(tmp_path / "meshes", n_per_class=20)  # 63 objects, one per chunk
    settings = {"points": 2048, "oversample": 4, "chunk": 1}
    reference = prepare(params(root, **settings), tmp_path / "ref", "toys")
    data = tmp_path / "data"
    cli = Path(__file__).resolve().parents[1] / "cli.py"
    sets = [a for k, v in settings.items() for a in ("--set", f"prepare.{k}={v}")]
    cmd = [
        sys.executable,
        str(cli),
        "prepare",
        "folder",
        "--root",
        str(root),
        "--name",
        "toys",
        "--data-root",
        str(data),
        "-q",
        *sets,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = data / "points" / reference.path.name
    done, deadline = 0, time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            done = int(zarr.open_group(str(store), mode="r")["train/done"][:].sum())
        except (FileNotFoundError, KeyError):
            done = 0
        if done >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(getattr(signal, sig))
    output = proc.communicate()[0]
    assert 3 <= done < 48, f"could not interrupt mid-run (done={done}, rc={proc.returncode})"
    if sig == "SIGTERM":
        assert proc.returncode == 143, output
        assert "interrupted by SIGTERM: finished chunks of stores are kept" in output
    state = read_state(store)
    assert not state.complete and 0 < state.progress[0] < state.progress[1]
    resumed = prepare(params(root, **settings), data, "toys")  # the killed writer's lock is gone
    assert 0 < resumed.computed < 63
    assert array_bytes(resumed.path) == array_bytes(reference.path)


def test_a_split_whose_every_object_failed_is_an_error_not_a_complete_empty_store(tmp_path):
    root = write_folder(tmp_path / "meshes", n_per_class=2)
    for mesh in (root / "box" / "test").iterdir():  # every test object of every class unreadable
        mesh.write_bytes(b"not a mesh")
    for cls in ("ball", "cone"):
        for mesh in (root / cls / "test").iterdir():
            mesh.write_bytes(b"not a mesh")
    with pytest.raises(BadInput, match=r"every one of the \d+ objects of the test split failed") as err:
        prepare(params(root), tmp_path / "data", "toys")
    assert "not marked complete" in err.value.hint
    store = next((tmp_path / "data" / "points").glob("toys-*.zarr"))
    assert not read_state(store).complete


def test_out_of_memory_stops_prepare_records_nothing_and_names_the_knobs(tmp_path):
    """A real MemoryError (the address space limited to 6 GiB, 1e9 surface samples asked per object)."""
    import resource
    import subprocess
    import sys
    from pathlib import Path

    root = write_folder(tmp_path / "meshes", n_per_class=1)
    data = tmp_path / "data"
    cli = Path(__file__).resolve().parents[1] / "cli.py"
    cmd = [sys.executable, str(cli), "prepare", "folder", "--root", str(root), "--name", "toys"]
    cmd += ["--data-root", str(data), "--set", "prepare.points=1024", "--set", "prepare.oversample=1000000"]

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    proc = subprocess.run(cmd, preexec_fn=limit, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "error: out of memory reading" in output and "prepare.oversample" in output, output
    store = next((data / "points").glob("toys-*.zarr"))
    state = read_state(store)
    assert not state.complete and not (state.attrs.get("chunk_failures") or {})  # nothing blamed on a file
