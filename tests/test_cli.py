"""The `i2p` CLI end to end on small real data: prepare, status, run, errors, import cost."""

from __future__ import annotations

import subprocess
import sys

import pytest
import zarr
from typer.testing import CliRunner

from cli import app
from pipeline.core.config import load_config
from pipeline.core.errors import ConfigError
from tests.builders import write_folder

runner = CliRunner()
SMALL = ["--set", "prepare.points=64", "--set", "prepare.oversample=2", "--set", "prepare.chunk=4"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_prepare_then_status_then_rerun(tmp_path):
    root = write_folder(tmp_path / "meshes")
    data = tmp_path / "data"
    out = invoke("prepare", "folder", "--root", root, "--name", "toys", "--data-root", data, *SMALL)
    assert out.exit_code == 0, out.output
    stores = list((data / "points").glob("toys-*.zarr"))
    assert len(stores) == 1
    group = zarr.open_group(str(stores[0]), mode="r")
    assert group["train/points"].shape == (9, 64, 3)

    status = invoke("status", "--data-root", data, *SMALL)
    assert status.exit_code == 0
    assert "up to date" in status.output and "toys" in status.output

    changed = invoke("status", "--data-root", data, "--set", "prepare.points=32", *SMALL[2:])
    assert "changed: points 64 → 32" in changed.output

    again = invoke("prepare", "folder", "--root", root, "--name", "toys", "--data-root", data, "-v", *SMALL)
    assert again.exit_code == 0 and "up to date" in again.output


def test_status_quick_uses_the_quick_settings(tmp_path):
    out = invoke("status", "--quick", "--data-root", tmp_path)
    assert out.exit_code == 0 and "missing" in out.output  # nothing built yet, no error


def test_unknown_key_is_one_red_line_with_the_closest_key(tmp_path):
    out = invoke("prepare", "--data-root", tmp_path, "--set", "prepare.pionts=10")
    assert out.exit_code == 2
    assert "unknown parameter prepare.pionts" in out.output
    assert "did you mean prepare.points" in out.output
    assert "Traceback" not in out.output


def test_unknown_layout_names_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    out = invoke("prepare", "shapenet", "--root", tmp_path / "empty", "--data-root", tmp_path / "d")
    assert out.exit_code == 2
    assert "shapenet_pc" in out.output  # the layout it looked for


def test_several_datasets_need_a_choice(tmp_path):
    root = write_folder(tmp_path / "meshes")
    data = tmp_path / "data"
    for name in ("one", "two"):
        assert (
            invoke("prepare", "folder", "--root", root, "--name", name, "--data-root", data, *SMALL).exit_code
            == 0
        )
    out = invoke("render", "--data-root", data, *SMALL)
    assert out.exit_code == 2 and "one, two" in out.output and "--dataset" in out.output


def test_overrides_validate_against_stages_yaml():
    config = load_config(overrides=["train.mask_ratio=0.7", "prepare.points=1024"])
    assert config.params("train").mask_ratio == 0.7
    assert config.params("prepare").points == 1024
    assert config.declared("prepare")["points"] == 8192
    with pytest.raises(ConfigError, match="did you mean train.mask_ratio"):
        load_config(overrides=["train.mask_raito=0.7"])
    with pytest.raises(ConfigError, match="stage.key=value"):
        load_config(overrides=["mask_ratio"])
    from pipeline.runner.stages import STAGES

    assert list(STAGES)[:3] == ["prepare", "render", "cache-features"]


def test_stages_yaml_defaults_equal_the_param_models():
    from pipeline.core.params import STAGES

    config = load_config()
    for name, model in STAGES.items():
        assert model.build(config.declared(name)) == model(), name


@pytest.mark.parametrize("command", [["--help"], ["status", "--data-root", "/nonexistent-i2p"]])
def test_help_and_status_do_not_import_torch(command):
    code = (
        "import sys\nfrom cli import app\n"
        f"try:\n    app({command!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'open_clip' not in sys.modules\n"
    )
    if command == ["--help"]:  # help texts read the packaged stages.yaml, not the params models
        code += "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_quick_settings_sit_under_the_users_own_set_values():
    from pipeline.core.config import load_config
    from pipeline.core.quick import QUICK, with_quick

    config = with_quick(load_config(None, ["train.run=mine", "eval.bn_stats=running"]))
    assert config.params("train").run == "mine" and config.params("eval").bn_stats == "running"
    assert config.params("cache-features").teacher == QUICK["cache-features"]["teacher"] == "tiny-synthetic"
    assert config.params("prepare").synthetic_version == 3 and config.params("train").max_steps == 15


def test_version_prints_the_installed_package_version():
    from importlib.metadata import version

    from typer.testing import CliRunner

    from cli import app
    from pipeline import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"i2p {__version__}\n"
    assert version("i2p") == __version__  # pyproject.toml reads it from pipeline/__init__.py
