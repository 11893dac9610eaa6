"""Where a result came from: the provenance header of a run's ``report.md`` (and its config.yaml).

A number in a report means little without the teacher that made its targets (and whether that
teacher's weights were random), the stores it read (fingerprints), the seed, the code and the
machine. :func:`provenance_header` writes them from plain dicts, without touching disk;
:func:`code_version` and :func:`machine_info` collect the last two once, where a run starts.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.storage.remote import location

STAGE_ORDER = ("prepare", "render", "cache-features")


def teacher_record(store_attrs: Mapping[str, Mapping[str, Any]], config: Mapping[str, Any]) -> dict:
    """The teacher a run learned from: the features store's ``teacher`` attr, or the online teacher
    named in config.yaml's params, or none (3D targets only and no 2D-guided masking)."""
    features = store_attrs.get("cache-features") or {}
    if features.get("teacher"):
        t = features["teacher"]
        keep = ("name", "model_name", "pretrained_tag", "weights_sha256", "random_weights")
        return {k: t.get(k) for k in keep}
    online = (config.get("params") or {}).get("online_teacher")
    if online:
        return {"name": online, "online": True, "random_weights": online == "tiny-random"}
    return {"name": None, "random_weights": False}


def _teacher_text(t: Mapping[str, Any]) -> str:
    if not t.get("name"):
        return "none"
    model = f"open_clip `{t['model_name']}`" if t.get("model_name") else "open_clip"
    if t.get("random_weights"):
        weights = "**random weights** (no pre-trained weights loaded)"
    elif t.get("weights_sha256"):
        weights = f"weights file sha256 `{t['weights_sha256']}`"
    elif t.get("pretrained_tag"):
        weights = f"pre-trained weights `{t['pretrained_tag']}`"
    else:
        weights = "weights not recorded"
    online = ", run online inside each step" if t.get("online") else ""
    return f"{t['name']} ({model}, {weights}{online})"


def _stores_text(config: Mapping[str, Any], store_attrs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per store: stage, full fingerprint, path, dataset, complete or not."""
    stores = {s: v for s, v in (config.get("stores") or {}).items() if isinstance(v, Mapping)}
    fingerprints = {s: v.get("fingerprint") for s, v in stores.items()}
    paths = {s: v.get("path") for s, v in stores.items()}
    lines = []
    for stage in sorted(set(fingerprints) | set(store_attrs), key=lambda s: (s not in STAGE_ORDER, s)):
        attrs = store_attrs.get(stage) or {}
        fp = attrs.get("fingerprint") or fingerprints.get(stage)
        if (
            fingerprints.get(stage)
            and attrs.get("fingerprint")
            and fingerprints[stage] != attrs["fingerprint"]
        ):
            fp = f"{fingerprints[stage]} (the store there now holds {attrs['fingerprint']})"
        where = f" at `{paths[stage]}`" if paths.get(stage) else ""
        dataset = f", dataset {attrs['dataset']}" if attrs.get("dataset") else ""
        state = "" if attrs.get("complete", True) else ", **incomplete**"
        lines.append(f"{stage} `{fp}`{where}{dataset}{state}")
    return lines


def _views_text(config: Mapping[str, Any], store_attrs: Mapping[str, Mapping[str, Any]]) -> str:
    """Which views the teacher saw (docs/training.md, "Which views the teacher sees")."""
    params = config.get("params") or {}
    if params.get("online_teacher"):
        return (
            "online: each step's augmented input, projected and run through the teacher (the official step)"
        )
    render = store_attrs.get("render") or {}
    if not render:
        return "none"
    if render.get("draws"):
        fed = (
            "the draw's own cloud"
            if params.get("input_subset", "draw") == "draw"
            else "a fresh subset with the draw's scale and shift"
        )
        return f"augmented: {render['draws']} seeded draws per object; 3D input: {fed}"
    return "fixed: one unaugmented subset per object (2D targets do not follow the 3D augmentation)"


def provenance_header(
    config: Mapping[str, Any],
    store_attrs: Mapping[str, Mapping[str, Any]],
    code: Mapping[str, Any],
    machine: Mapping[str, Any],
) -> str:
    """Markdown for the top of ``report.md``.

    config: a run's config.yaml as a dict (``params``, ``seed``, ``stores`` with paths and
    ``fingerprints``); store_attrs: stage → the root attrs of each store the run read; code:
    :func:`code_version`; machine: :func:`machine_info`. A random teacher is said in the first line,
    before any number. Pure: reads nothing, so the same inputs give the same text.
    """
    teacher = teacher_record(store_attrs, config)
    lines = []
    if teacher.get("random_weights"):
        lines += [
            f"> **Random teacher**: {teacher['name']} has random weights, so its 2D targets and saliency "
            "carry no learned knowledge; the numbers below are for smoke tests, not for comparison.",
            "",
        ]
    commit = code.get("commit")
    code_text = f"i2p {code.get('package', '?')}" + (
        f", git {commit}{' (uncommitted changes)' if code.get('dirty') else ''}"
        if commit
        else ", git commit unknown"
    )
    cuda = machine.get("cuda") or "none"
    machine_text = (
        f"{machine.get('hostname', '?')}: {machine.get('cpu', '?')} ({machine.get('cpus', '?')} CPUs), "
        f"Python {machine.get('python', '?')}, torch {machine.get('torch') or 'not installed'}, CUDA device {cuda}"
    )
    rows = [
        ("teacher", _teacher_text(teacher)),
        ("views", _views_text(config, store_attrs)),
        ("stores", "<br>".join(_stores_text(config, store_attrs)) or "none recorded"),
        ("seed", str(config.get("seed", (config.get("params") or {}).get("seed", "not recorded")))),
        ("trainable parameters", _parameters_text(config.get("parameters"))),
        ("code", code_text),
        ("machine", machine_text),
    ]
    lines += ["## Provenance", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + "\n"


def code_version(where: Path | None = None) -> dict[str, Any]:
    """{"package": i2p's version, "commit": git HEAD of the checkout holding the code (or None),
    "dirty": uncommitted changes (None when unknown)}."""
    from pipeline import __version__

    folder = Path(where or Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"package": __version__, "commit": commit, "dirty": None if status is None else bool(status)}


def machine_info() -> dict[str, Any]:
    """{"hostname", "cpu" (model name), "cpus", "python", "torch" (version or None), "cuda" (device
    name or None)}. Imports torch when it is installed."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        version = torch.__version__
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        version, cuda = None, None
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": version,
        "cuda": cuda,
    }


def start_report(run: Path) -> Path:
    """The run's report.md, created with its title and provenance header when it does not exist yet."""
    from pipeline.storage import rundir
    from pipeline.storage.store import atomic_write_bytes, read_state

    report = rundir.report(run)
    if report.is_file():
        return report
    config = rundir.read(run).config or {}
    attrs = {}
    for stage, store in (config.get("stores") or {}).items():
        state = read_state(location(store["path"]), progress=False) if isinstance(store, Mapping) else None
        if state is not None:
            attrs[stage] = {**state.attrs, "complete": state.complete}
    header = provenance_header(
        config, attrs, config.get("code") or code_version(), config.get("machine") or machine_info()
    )
    atomic_write_bytes(report, f"# Evaluation report: {Path(run).name}\n\n{header}".encode())
    return report


def _parameters_text(counts: Mapping[str, int] | None) -> str:
    """``17,622,808 (encoder 12,654,976)``, or ``not recorded`` for runs written before the count was kept."""
    if not counts:
        return "not recorded"
    return f"{counts['model']:,} (encoder {counts['encoder']:,})"
