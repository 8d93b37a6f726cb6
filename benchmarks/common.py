"""What the benchmark scripts share: the machine's name and the real CIFAR-10 images."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

CIFAR_JPEG = Path(os.environ.get("SPECREP_CIFAR_JPEG",
                                 Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def cifar10_train(subset: int | None = None):
    """The real CIFAR-10 train split (JPEG ImageFolder at CIFAR_JPEG, or $SPECREP_CIFAR_JPEG) as ImageData,
    decoded once and cached; None with the reason printed when it is absent."""
    from omegaconf import OmegaConf

    from specrep_cli.config import ImageFolderConfig
    from specrep_cli.data import load_dataset
    if not CIFAR_JPEG.is_dir():
        print(f"CIFAR-10 JPEG folder not found at {CIFAR_JPEG} (set SPECREP_CIFAR_JPEG)")
        return None
    cfg = OmegaConf.merge(OmegaConf.structured(ImageFolderConfig),
                          {"root": str(CIFAR_JPEG), "subset": subset, "image_size": 32})
    return load_dataset(cfg)
