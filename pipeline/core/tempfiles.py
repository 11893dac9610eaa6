"""Temporary files of atomic writes: a file is written as ``.<name>.tmp-<pid>`` beside its place and renamed
into it when complete (:func:`pipeline.storage.store.atomic_write_bytes`, the export's staging folder), so a
killed writer's leftover is recognised by its name (``i2p gc``; error messages name the real file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TEMPORARY = re.compile(r"\.(.+)\.tmp-(\d+)")


def temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place (``.<name>.tmp-<pid>``); a killed
    writer's leftover is recognised by :data:`TEMPORARY` (``i2p gc``, error messages name the real file)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")
