"""The docs: the mkdocs site builds in strict mode, every "§N" the code cites is a heading of the method
page, the README's links into docs/ resolve, and code prose points at the docs, not at our tracker."""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")  # "§9.2." at the end of a sentence cites 9.2
HEADING = re.compile(r"^#{1,6} §(\d+(?:\.\d+)*)\s", re.M)
# What a tracker reference looks like in prose: "issue 9", "issues #12", "#12", "issue: …", 'issue "…"'.
TRACKER = re.compile(r"\bissues?\s*(?:#?\d|[:\"“])|(?<![\w&/#])#\d+\b", re.I)


def code_files() -> list[Path]:
    return [
        *ROOT.glob("cli*.py"),
        *(p for d in ("pipeline", "i2pmae", "benchmarks") for p in (ROOT / d).rglob("*.py")),
    ]


def other_test_files() -> list[Path]:
    return [
        p for p in ROOT.glob("tests/*.py") if p.name != Path(__file__).name
    ]  # this file quotes what it forbids


def prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and docstring of a Python file."""
    src = path.read_text()
    out = [
        (t.start[0], t.string)
        for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                out.append((node.body[0].lineno, doc))
    return out


def test_docs_site_builds_in_strict_mode(tmp_path):
    # strict: a warning fails the build; mkdocs.yml turns broken links and anchors into warnings
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    built = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert built >= {p.stem for p in DOCS.glob("*.md") if p.stem != "index"}, (
        f"pages left out of the site: {built}"
    )


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [p.name for p in DOCS.glob("*.md") if f": {p.name}" not in nav]
    assert missing == [], f"add these pages to nav in mkdocs.yml: {missing}"


def test_every_cited_section_is_a_heading_of_the_method_page():
    headings = set(HEADING.findall((DOCS / "method.md").read_text()))
    citing = [
        *code_files(),
        *other_test_files(),
        ROOT / "pipeline" / "stages.yaml",
        ROOT / "README.md",
        *DOCS.glob("*.md"),
    ]
    missing = sorted(
        {
            f"§{n} ({p.relative_to(ROOT)})"
            for p in citing
            for n in SECTION.findall(p.read_text())
            if n not in headings
        }
    )
    assert missing == [], f"docs/method.md needs a heading '## §N …' / '### §N.M …' for: {missing}"


def test_the_method_page_states_the_errata_where_they_apply():
    text = (DOCS / "method.md").read_text()
    sections = dict(re.findall(r"^#{2,3} §(\d+(?:\.\d+)*)[^\n]*\n(.*?)(?=^#{2,3} §|\Z)", text, re.M | re.S))
    assert "erratum" in sections["7"].lower() and "after the sum" in sections["7"]
    assert "erratum" in sections["9.2"].lower() and "**32**" in sections["9.2"]


def test_code_prose_cites_neither_design_md_nor_tracker_issues():
    hits = [
        f"{p.relative_to(ROOT)}:{line}: {m.group(0)!r}"
        for p in [*code_files(), *other_test_files()]
        for line, text in prose(p)
        for m in [*re.finditer(r"design\.md", text), *TRACKER.finditer(text)]
    ]
    assert hits == [], f"point to the docs page (docs/…md) or say what was meant instead: {hits}"


def test_code_prose_calls_the_method_page_method_not_spec():
    hits = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in [*code_files(), *other_test_files()]
        for line, text in prose(p)
        if re.search(r"\bspec(?:'s)? §", text, re.I)
    ]
    assert hits == [], f"write 'method §N' (docs/method.md): {hits}"


def test_readme_links_into_docs_resolve_and_ci_runs_its_test_command():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#\s]+)", readme)
    assert targets and all((ROOT / t).is_file() for t in targets), targets
    command = "HF_HUB_OFFLINE=1 python -m pytest -q"
    assert f"\n{command}\n" in readme
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == command
