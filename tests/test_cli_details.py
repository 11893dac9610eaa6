"""CLI details a user meets first: flags shown as they are accepted, errors naming what was typed, I2P_DEBUG."""

from __future__ import annotations

from typer.testing import CliRunner

from cli import app
from pipeline.core.params import TrainParams
from pipeline.core.stage_params import closest_key

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def option_rows(help_text: str, *names: str) -> list[str]:
    rows = [line for line in help_text.splitlines() if any(f"{n} " in line for n in names)]
    assert len(rows) == len(names), help_text
    return rows


def test_flags_are_shown_without_a_value_type_and_accepted_as_shown(tmp_path):
    text = invoke("run", "--help", env={"COLUMNS": "120"}).output
    for row in option_rows(text, "--quick", "--verbose", "--quiet", "--help"):
        assert "<bool>" not in row and "<int>" not in row, row
    assert "<str>" in option_rows(text, "--dataset")[0]  # options that take a value still say which
    assert "-vv" in text
    eval_help = invoke("eval", "svm", "--help", env={"COLUMNS": "120"}).output
    assert all("<bool>" not in row for row in option_rows(eval_help, "--help"))
    for flags in (["-v"], ["-vv"], ["-v", "-v"]):
        assert invoke("status", "--data-root", tmp_path, *flags).exit_code == 0


def test_typo_in_set_names_the_set_and_suggests_only_a_plausible_key(tmp_path):
    out = invoke("status", "--data-root", tmp_path, "--set", "train.lr_rate=0.1")
    assert out.exit_code == 2
    assert "unknown parameter train.lr_rate in --set train.lr_rate=0.1" in out.output
    assert "did you mean train.lr?" in out.output and "drop_path" not in out.output
    assert "overrides" not in out.output


def test_bad_flag_value_names_the_flag_not_stages_yaml(tmp_path):
    out = invoke("train", "--data-root", tmp_path, "--mask-ratio", "1.5")
    assert out.exit_code == 2
    assert "invalid value for train.mask_ratio in --mask-ratio" in out.output and "1.5" in out.output
    bad_set = invoke("status", "--data-root", tmp_path, "--set", "train.mask_ratio=1.5")
    assert "in --set train.mask_ratio=1.5" in bad_set.output


def test_closest_key_rule():
    known = list(TrainParams.model_fields)
    assert closest_key("lr_rate", known) == "lr"  # a known key is a prefix of the typo
    assert closest_key("mask_raito", known) == "mask_ratio"  # a close spelling
    assert closest_key("drop", known) == "drop_path"  # the typo is a prefix of a known key
    assert closest_key("learning_rate", known) is None  # nothing plausible: the hint lists valid keys


def test_debug_prints_the_traceback_and_the_red_line(tmp_path):
    plain = invoke("status", "--data-root", tmp_path, "--set", "train.lr_rate=0.1")
    assert "Traceback" not in plain.output
    debug = invoke("status", "--data-root", tmp_path, "--set", "train.lr_rate=0.1", env={"I2P_DEBUG": "1"})
    assert debug.exit_code == 2
    assert "Traceback" in debug.output and "params.py" in debug.output  # where it was raised
    assert (
        "error: unknown parameter train.lr_rate" in debug.output and "did you mean train.lr?" in debug.output
    )
