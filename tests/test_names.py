"""Dataset and run names are one path component (pipeline/core/names.py): nothing is written outside the
data root whatever name a command is given, and names in any script are welcome."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.core.errors import ConfigError
from pipeline.core.names import as_name, check_name
from pipeline.storage import datasets, rundir
from pipeline.storage.store import store_path


@pytest.mark.parametrize("name", ["../../escape", "x/y", "/abs/dir", "..", ".hidden", "a\\b", "", "a b"])
def test_names_that_are_not_one_path_component_are_refused_with_the_rule(name, tmp_path):
    for build in (
        lambda: rundir.run_dir(tmp_path, name),
        lambda: datasets.record_path(tmp_path, name),
        lambda: store_path(tmp_path, "prepare", name, "0" * 16),
    ):
        with pytest.raises(
            ConfigError, match=r"not allowed: a name starts with a letter, digit or '_'"
        ) as err:
            build()
        assert repr(name) in err.value.message and check_name("run", as_name(name, "run"))  # the fix is valid


@pytest.mark.parametrize("name", ["synthetic", "données-3d", "模型40", "scanobjectnn-obj-bg", "run_1.2+b"])
def test_names_in_any_script_are_allowed_and_stay_under_the_data_root(name, tmp_path):
    for path in (rundir.run_dir(tmp_path, name), datasets.record_path(tmp_path, name)):
        assert path.resolve().parent.parent == tmp_path.resolve()


def test_commands_refuse_a_name_that_leaves_the_data_root_and_write_nothing_outside(tmp_path):
    root = tmp_path / "a" / "b" / "root"
    for args in (
        ["prepare", "synthetic", "--dataset", "../../escape_ds"],
        ["train", "--run", "../../escape_run", "--max-steps", "1"],
        ["train", "--run", str(tmp_path / "abs_run"), "--max-steps", "1"],
    ):
        result = CliRunner().invoke(app, [*args, "--data-root", str(root)])
        assert result.exit_code != 0, args
        assert "is not allowed" in result.output, (args, result.output)
    outside = [p for p in tmp_path.rglob("*") if root not in (p, *p.parents) and p not in root.parents]
    assert outside == []


def test_records_made_before_names_were_checked_are_still_listed_and_read(tmp_path):
    """`i2p gc` and status must see every record, or gc would take a used store for an unused one."""
    from pipeline.storage.datasets import DatasetRecord

    folder = tmp_path / "datasets"
    folder.mkdir()
    datasets.save(tmp_path, DatasetRecord("valid", {"source": "synthetic"}, {}, None))
    (folder / "my=data.json").write_text((folder / "valid.json").read_text().replace('"valid"', '"my=data"'))
    assert "my=data" in datasets.names(tmp_path)
    assert datasets.load(tmp_path, "my=data").name == "my=data"
    with pytest.raises(ConfigError):
        datasets.load(tmp_path, "../datasets/my=data")  # a name that leaves the folder is never read
