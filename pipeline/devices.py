"""Which torch device a command runs on (torch is imported only when a device is resolved)."""

from __future__ import annotations

from pipeline.errors import ConfigError


def resolve_device(device: str) -> str:
    """ "auto" → "cuda" when available, else "cpu"; a CUDA device without CUDA is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but CUDA is not available", "use --device cpu")
    return device
