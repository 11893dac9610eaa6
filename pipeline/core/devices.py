"""Which torch device a command runs on (torch is imported only when a device is resolved)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.errors import ConfigError


def resolve_device(device: str) -> str:
    """ "auto" → "cuda" when available, else "cpu"; a CUDA device without CUDA is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but CUDA is not available", "use --device cpu")
    return device


def cuda_expected(device: str) -> bool:
    """Whether ``device`` will be a CUDA device, without importing torch (for fingerprints and status):
    ``auto`` means CUDA when an NVIDIA driver is loaded."""
    from pathlib import Path

    if device == "auto":
        return Path("/proc/driver/nvidia/version").exists()
    return device.startswith("cuda")


def resolve_precision(precision: str, device: str) -> str:
    """The teacher's precision: ``auto`` → fp16 on CUDA (the paper's teacher runs in fp16, method §6), fp32
    elsewhere. Reduced precision on a CPU is an error (bf16 autocast is ≈ 8× slower on these CPUs)."""
    cuda = cuda_expected(device)
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if precision != "fp32" and not cuda:
        raise ConfigError(
            f"cache-features.precision={precision} needs CUDA, the device is {device}",
            "use --set cache-features.precision=fp32 on CPU (reduced-precision autocast is slow on CPUs)",
        )
    return precision


def check_training_precision(precision: str, device: str, stage: str = "train") -> None:
    """Training precision (method §9.1: the official runs are fp32): ``fp32``, or ``bf16`` autocast of the
    forward on CUDA or the CPU (a speed option: a fine-tuning step at batch 8 × 1,024 points took 0.57× the
    fp32 time on the project's 2-core CPU). ``bf16`` on any other device is an error naming the key."""
    if precision == "bf16" and not (str(device).startswith("cuda") or str(device) == "cpu"):
        raise ConfigError(
            f"{stage}.precision=bf16 needs a CUDA device or the CPU; this {stage} runs on {device}",
            f"use --set {stage}.precision=fp32 (the paper's precision)",
        )


@dataclass(frozen=True)
class Distributed:
    """What torchrun says about this process (read by the CLI from WORLD_SIZE / RANK / LOCAL_RANK)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
