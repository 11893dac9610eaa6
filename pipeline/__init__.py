"""Offline stages and everything that touches disk: stores, sources, the stage runner."""

__version__ = "0.1.0"

from pathlib import Path as _Path

PACKAGED_STAGES = (
    _Path(__file__).resolve().parent / "stages.yaml"
)  # the one stages.yaml, shipped in the package
