"""The stage contract stays typed: real Plan/Context types, no branch on a stage's name in the runner,
every stage body ``run(plan, ctx)``."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import get_type_hints

from pipeline.runner.stages import STAGES
from pipeline.storage.contract import Context, Plan

RUNNER = Path(__file__).resolve().parents[1] / "pipeline" / "runner"


def test_stages_declares_no_any_typed_plan_or_context():
    tree = ast.parse((RUNNER / "stages.py").read_text())
    aliases = [
        t.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for t in ast.walk(node)
        if isinstance(t, ast.Name) and t.id in ("Plan", "Context")
    ]
    assert aliases == []
    assert inspect.isclass(Plan) and inspect.isclass(Context)
    hints = get_type_hints(Plan)
    assert hints["needs"] == dict[str, Plan] and "Any" not in str(hints["params"])


def _string_comparisons(path: Path, names: set[str]) -> list[str]:
    """``x == "train"``, ``stage in ("prepare", …)``, ``match stage: case "eval"``: where a stage name is tested."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for part in (node.left, *node.comparators):
                consts = [part] if isinstance(part, ast.Constant) else list(getattr(part, "elts", []))
                hit = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
                found += [f"{path.name}:{node.lineno} {v!r}" for v in hit]
        elif (
            isinstance(node, ast.MatchValue)
            and isinstance(node.value, ast.Constant)
            and node.value.value in names
        ):
            found.append(f"{path.name}:{node.lineno} {node.value.value!r}")
    return found


def test_the_runner_compares_no_stage_name_or_kind():
    names = set(STAGES) | {spec.output.traits.kind for spec in STAGES.values()}
    found = [
        f
        for module in ("plan.py", "execute.py", "status.py")
        for f in _string_comparisons(RUNNER / module, names)
    ]
    assert found == []


def test_the_scan_finds_a_stage_name_comparison(tmp_path):
    code = tmp_path / "x.py"
    code.write_text('if stage == "train" or kind in ("store", "eval"):\n    pass\n')
    assert len(_string_comparisons(code, {"train", "store"})) == 2


def test_every_stage_body_is_run_plan_ctx():
    for spec in STAGES.values():
        body = spec.body_function()
        params = list(inspect.signature(body).parameters.values())
        assert [p.name for p in params] == ["plan", "ctx"], spec.name
        hints = get_type_hints(body)
        assert hints["plan"] is Plan and hints["ctx"] is Context and hints["return"] is Path, spec.name
        assert body.__doc__, spec.name
