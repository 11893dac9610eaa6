"""Writes the filesystem refuses (docs/pipeline.md, "Read-only data roots, full disks, memory"): a read-only data
root or a full disk is one line naming the file, with the working layout or the free space, and no
temporary file is left behind. Read-only and full filesystems are real: a read-only bind mount or
``chmod`` and a small tmpfs (mounts need root; without it those cases are skipped)."""

from __future__ import annotations

import os
import subprocess

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.storage.store import atomic_write_bytes


def _mount(*args) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def read_only_root(tmp_path):
    """An empty data root nobody may write to: a read-only bind mount as root, else no write permission."""
    src, root = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    root.mkdir()
    if os.geteuid() == 0:
        if not (_mount("--bind", str(src), str(root)) and _mount("-o", "remount,ro,bind", str(root))):
            pytest.skip("no read-only bind mount here")
        yield root
        subprocess.run(["umount", "-l", str(root)], check=False)
    else:
        root.chmod(0o555)
        yield root
        root.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)):
        pytest.skip("mounting a small tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _prepare(root):
    args = ["prepare", "synthetic", "--data-root", str(root), "--set", "prepare.synthetic_per_class=2"]
    return CliRunner().invoke(app, [*args, "--set", "prepare.points=1024"])


def test_a_read_only_data_root_is_one_line_with_the_working_layout(read_only_root):
    result = _prepare(read_only_root)
    assert result.exit_code == 2, result.output
    assert "error: cannot write" in result.output or "error: permission denied on" in result.output
    assert str(read_only_root) in result.output
    assert "is read-only: runs, records and locks need a writable one" in " ".join(result.output.split())
    assert "--store-root" in result.output and "Traceback" not in result.output


def test_a_full_disk_is_one_line_with_the_free_space_and_leaves_no_temporary_file(small_disk):
    result = _prepare(small_disk / "data")
    assert result.exit_code == 2, result.output
    assert "error: no space left" in result.output and "GB free" in result.output, result.output
    assert "Traceback" not in result.output
    assert not [p for p in small_disk.rglob("*") if ".tmp-" in p.name]


def test_an_atomic_write_that_fails_removes_its_temporary_file(tmp_path):
    target = tmp_path / "report.md"
    target.mkdir()  # a folder where the file should go: the rename fails
    (target / "keep").write_text("x")
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_gc_lists_and_removes_temporaries_whose_writer_is_gone(tmp_path):
    """A killed writer's `.<name>.tmp-<pid>` is garbage once its process is gone and it is an hour old; a
    live writer's and a young one are not touched."""
    import sys
    import time

    from pipeline.runner.gc import collect, remove

    gone = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    stale, young, live = (
        run / f".ckpt-last.pt.tmp-{gone}",
        run / f".report.md.tmp-{gone}",
        run / f".x.tmp-{os.getpid()}",
    )
    for path, size in ((stale, 100), (young, 1), (live, 1)):
        path.write_bytes(b"x" * size)
    hour_ago = time.time() - 7200
    for path in (stale, live):
        os.utime(path, (hour_ago, hour_ago))
    found = collect(tmp_path)
    assert [(g.path, g.kind) for g in found] == [(stale, "temporary")] and f"process {gone}" in found[0].why
    assert remove(found) == 100
    assert not stale.exists() and young.exists() and live.exists()
