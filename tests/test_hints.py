"""Messages that lead somewhere: a hint never names an option the command lacks.

Every ``--flag`` written in a string of the code must be an option of some ``i2p`` command, and one
written inside an ```i2p COMMAND ...``` example must be an option of that command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from cli import app
from tests.builders import write_classes_store

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
EXAMPLE = re.compile(r"`i2p ([a-z][a-z-]*)(?: ([a-z-]+))?([^`]*)`")
GLOBAL = {"--help"}
EXTERNAL = {
    "--porcelain",
    "--untracked-files",
    "--nproc-per-node",
    "--signal",
}  # git's (provenance.py), torchrun's and sbatch's own options


def commands() -> dict[str, set[str]]:
    """'prepare', 'eval svm', ... → the long options it takes (its own and the app's)."""
    out: dict[str, set[str]] = {}

    def walk(cmd, name: str, inherited: set[str]) -> None:
        opts = inherited | {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
        out[name] = opts | GLOBAL
        for sub, child in getattr(cmd, "commands", {}).items():
            walk(child, f"{name} {sub}".strip(), opts)

    walk(typer.main.get_command(app), "", set())
    return out


def code_strings() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string constant in cli.py and pipeline/ (f-string parts included)."""
    found = []
    for path in [*sorted(ROOT.glob("cli*.py")), *sorted((ROOT / "pipeline").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((str(path.relative_to(ROOT)), node.lineno, node.value))
    return found


def test_every_flag_named_in_the_code_exists():
    known = set().union(*commands().values())
    unknown = [
        (f, line, flag)
        for f, line, text in code_strings()
        for flag in FLAG.findall(text)
        if flag not in known | EXTERNAL
    ]
    assert unknown == []


def test_every_flag_in_an_i2p_example_belongs_to_that_command():
    cmds = commands()
    wrong = []
    for f, line, text in code_strings():
        for name, sub, rest in EXAMPLE.findall(text):
            command = f"{name} {sub}" if sub and f"{name} {sub}" in cmds else name
            if command not in cmds:
                wrong.append((f, line, f"i2p {command}: no such command"))
                continue
            rest = rest if command != name or not sub else f"{sub}{rest}"
            wrong += [
                (f, line, f"i2p {command} {flag}") for flag in FLAG.findall(rest) if flag not in cmds[command]
            ]
    assert wrong == []


def test_eval_svm_without_a_test_split_says_how_to_get_one(tmp_path):
    write_classes_store(tmp_path, "notest", {"train": 3}, n_classes=3, P=64)
    out = CliRunner().invoke(
        app, ["eval", "svm", "--random-init", "-d", "notest", "--data-root", str(tmp_path)]
    )
    assert out.exit_code == 2, out.output
    text = " ".join(out.output.split())
    assert "eval svm needs a train and a test split; dataset notest has train (missing: test)" in text
    assert "test/ sub-folder beside train/" in text and "prepare.test_fraction=0.2" in text
    hint = text.split("hint:", 1)[1]
    for name, _sub, rest in EXAMPLE.findall(hint):  # the example it gives is a real command line
        assert all(flag in commands()[name] for flag in FLAG.findall(rest)), hint
    assert "choose one of" not in text  # eval svm has no split option to choose with
