"""Where and how a run computes: the device, bf16 autocast, this process's rank, the code's git sha.

    compute = resolve_compute("auto", "auto")   # Compute(device=cpu|cuda, bf16=True|False)
    with compute.autocast(): ...                # bf16 autocast when on, else nothing
    ranks = from_torchrun() or Ranks()          # rank, world size, local rank
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import SpecrepError


def resolve_device(name: str) -> torch.device:
    """cpu, cuda, or auto (cuda when visible)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecrepError("trainer.device=cuda but no CUDA device is visible: use device=auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast: on CUDA, and on CPUs with native bf16 (AVX512-BF16 or AMX); fp32 otherwise."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` when asked, else nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class Compute:
    """The device a run computes on and whether it does so under bf16 autocast."""
    device: torch.device
    bf16: bool

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        return autocast(self.device, self.bf16)

    def synchronize(self) -> None:
        """Wait for the device (a no-op on the CPU, whose ops are synchronous)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def resolve_compute(device: str, precision: str) -> Compute:
    resolved = resolve_device(device)
    return Compute(resolved, resolve_bf16(precision, resolved))


@dataclass(frozen=True)
class Ranks:
    rank: int = 0          # this process in the run
    world: int = 1         # processes in the run
    local_rank: int = 0    # this process on its node: its GPU index

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_torchrun() -> Ranks | None:
    """The ranks torchrun (or any launcher setting RANK/WORLD_SIZE/LOCAL_RANK) gave this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def git_sha() -> str | None:
    """The commit of the specrep source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
