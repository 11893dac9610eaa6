"""Reading a checkpoint file (pipeline.storage.checkpoints verifies what it holds).

A file is checked to be a PyTorch checkpoint before it is unpickled (an HTML page or a truncated
download is diagnosed with "download it again"); the state dict is found under the usual wrapper
keys, stray non-tensor entries are left out with a warning, and the wrapper prefixes ``module.``
(DataParallel / DDP) and ``_orig_mod.`` (torch.compile) are stripped. Only checkpoints inside a run
directory (a ``config.yaml`` beside them) are unpickled in full; any other file is read with
``torch.load(weights_only=True)``, which the paper's files pass.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import I2PError
from pipeline.storage.export import is_exported, read_exported
from pipeline.storage.safe_load import torch_load

log = logging.getLogger("i2p")

WRAPPERS = ("base_model", "model", "state_dict", "net")  # where a state dict may sit inside the file


class CheckpointError(I2PError):
    """A checkpoint is missing, unreadable, or does not hold the weights it should."""


def read_checkpoint(path: Path) -> Any:
    """The checkpoint's object, loaded on the CPU with ``weights_only=True``."""
    path = Path(path)
    if is_exported(path):  # an `i2p export` folder: safetensors and JSON
        return read_exported(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", "pass an existing .pt / .pth file")
    check_signature(path)
    try:
        return torch_load(path)
    except Exception as err:
        raise _read_error(path, err) from None


def _read_error(path: Path, err: Exception) -> CheckpointError:
    import pickle

    first = str(err).splitlines()[0][:160] if str(err) else ""
    cut = isinstance(err, EOFError) or any(w in str(err) for w in ("central directory", "truncated", "EOF"))
    if cut:
        return CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size / 1e6:.1f} MB): the file ends early, "
            f"a truncated download ({type(err).__name__}: {first})",
            "download it again (compare its size with the published one)",
        )
    if isinstance(err, pickle.UnpicklingError):
        asked = re.search(
            r"(?:Unsupported global|unsupported GLOBAL)[^A-Za-z_]*(?:GLOBAL )?([\w.]+)", str(err)
        )
        return CheckpointError(
            f"{path} holds Python objects besides tensors, and reading them would run code"
            f"{f' ({asked.group(1)})' if asked else ''}; i2p reads tensors, numbers and plain containers only",
            "re-save just the weights: torch.save({'base_model': state_dict}, 'weights.pth')",
        )
    return CheckpointError(
        f"cannot read checkpoint {path}: {type(err).__name__}: {first}",
        "if it was downloaded, download it again; else re-save it with torch.save",
    )


def check_signature(path: Path, what_file: str = "a PyTorch checkpoint") -> None:
    """A PyTorch checkpoint is a zip archive (``PK``) or, in the legacy format, a pickle (``\\x80``); a
    safetensors file is an 8-byte header length then its JSON header (``{``). Anything else (an HTML page a
    browser saved, a quota message, an empty file) is diagnosed before anything reads it: CheckpointError."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK") or head[:1] == b"\x80" or head[8:9] == b"{":
        return
    text = head.decode("utf-8", errors="replace").strip()
    what = "an HTML page" if text.lower().startswith(("<!doctype html", "<html")) else "not a zip or pickle"
    if not head:
        what = "an empty file"
    raise CheckpointError(
        f"{path} is not {what_file} ({what}: it starts with {text[:40]!r}); the download failed",
        "download it again (a browser may have saved a sign-in, quota or virus-scan page instead)",
    )


def unwrap(obj: Any, path: Path) -> tuple[dict[str, Any], str]:
    """The state dict inside a loaded checkpoint and the key it sat under ("" for a bare state dict)."""

    if isinstance(obj, Mapping):
        for key in WRAPPERS:
            inner = obj.get(key)
            if _mostly_tensors(inner):
                return _tensors_only(inner, path, key), key
        if _mostly_tensors(obj) and not any(k in obj for k in WRAPPERS):
            return _tensors_only(obj, path, ""), ""
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{path} holds no state dict (looked under {', '.join(WRAPPERS)} and at the top; found {keys})",
        "pass a pre-training checkpoint (ours: runs/NAME/ckpt-last.pt; the paper's: pre-train.pth)",
    )


def _mostly_tensors(obj: Any) -> bool:
    """A state dict: a mapping whose values are tensors, but for a few stray entries (an int version)."""
    import torch

    if not isinstance(obj, Mapping) or not obj:
        return False
    tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
    return tensors > 0 and tensors >= 0.9 * len(obj)


def _tensors_only(state: Mapping[str, Any], path: Path, key: str) -> dict[str, Any]:
    """The tensor entries; the others are named in a warning and left out."""
    import torch

    other = [f"{k} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if other:
        where = f"'{key}'" if key else "the state dict"
        log.warning(
            "%s: %s holds %d non-tensor entries, left out: %s",
            path.name,
            where,
            len(other),
            ", ".join(other[:5]) + (" ..." if len(other) > 5 else ""),
        )
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


WRAPPER_PREFIX = re.compile(r"^((module|_orig_mod)\.)+")


def strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove every leading ``module.`` (DataParallel / DDP, method §12.1) and ``_orig_mod.`` (torch.compile)."""
    return {WRAPPER_PREFIX.sub("", k): v for k, v in state.items()}


@dataclass
class Opened:
    """A checkpoint read once: the loaded object, its state dict (prefixes stripped), where it sat."""

    path: Path
    obj: Any
    state: dict[str, Any]
    wrapper: str


def open_checkpoint(path: Path) -> Opened:
    path = Path(path)
    obj = read_checkpoint(path)
    state, wrapper = unwrap(obj, path)
    return Opened(path, obj, strip_prefixes(state), wrapper)
