"""Defaults are written once, in the params models: CLI help and the shipped stages.yaml read or match them."""

from __future__ import annotations

import re
from pathlib import Path

import typer

import cli
from pipeline.core import params as P

ROOT = Path(__file__).resolve().parents[1]
COMMAND_STAGE = {
    "prepare": "prepare",
    "render": "render",
    "cache-features": "cache-features",
    "train": "train",
    "fewshot": "fewshot",
    "finetune": "finetune",
}


def command_options():
    """(command name, param name, help) of every option of the stage commands, sub-groups included."""
    group = typer.main.get_command(cli.app)
    out = []

    def walk(cmd, name):
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, sub_name if name == "i2p" else f"{name} {sub_name}")
        for p in getattr(cmd, "params", []):
            out.append((name, p.name, getattr(p, "help", "") or ""))

    walk(group, "i2p")
    return out


def test_cli_help_defaults_equal_the_params_defaults():
    checked, wrong = 0, []
    for command, name, text in command_options():
        stage = COMMAND_STAGE.get(command)
        match = re.search(r"default (\[[^\]]*\]|[^ ;)]+)\)", text)
        if stage is None or match is None or name not in P.STAGES[stage].model_fields:
            continue
        checked += 1
        if match.group(1) != str(P.STAGES[stage].model_fields[name].default):
            wrong.append(f"i2p {command} --{name}: help says {match.group(1)}")
    assert wrong == [] and checked >= 6


def test_teacher_training_help_defaults_equal_the_recipe():
    from pipeline.features.tiny_teachers import TeacherTraining

    helps = {name: text for command, name, text in command_options() if command == "teacher train"}
    for key in ("steps", "seed", "draws"):
        assert f"default {getattr(TeacherTraining(), key)})" in helps[key], key


def test_no_help_quotes_a_default_by_hand_from_stages_yaml():
    assert [t for _, _, t in command_options() if re.search(r"stages\.yaml: \d", t)] == []


def test_there_is_one_stages_yaml_and_it_holds_the_params_defaults():
    import yaml

    copies = sorted(
        p.relative_to(ROOT).as_posix() for p in ROOT.rglob("stages.yaml") if ".git" not in p.parts
    )
    assert copies == ["pipeline/stages.yaml"]
    declared = yaml.safe_load((ROOT / "pipeline" / "stages.yaml").read_text())["stages"]
    for stage, model in P.STAGES.items():
        defaults = {k: f.default for k, f in model.model_fields.items()}
        assert declared[stage]["params"] == defaults, stage
