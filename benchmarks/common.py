"""What the benchmark scripts share: the machine's name, the real CIFAR-10 images, and a method and
optimizer built from the train config as `specrep train` builds them."""
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


def compose_train(overrides: list[str]):
    """The `specrep train` config with these overrides."""
    from hydra import compose, initialize_config_module

    from specrep_cli import config
    config.register()
    with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def build_training(cfg, device: torch.device, in_channels: int = 3):
    """(method, optimizer, channels_last, lr) as train.py builds them: seed 0, channels_last when
    convolutional, the lr of the linear scaling rule."""
    from specrep_cli.encoders import build_encoder, uses_channels_last
    from specrep_cli.methods import build_method
    from specrep_cli.optimizers import applied_lr, build_optimizer
    torch.manual_seed(0)
    method = build_method(cfg.objective, lambda tower="x": build_encoder(cfg.encoder, in_channels),
                          cfg.trainer.batch_size).to(device)
    channels_last = uses_channels_last(method)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    lr = applied_lr(cfg.optim, cfg.trainer.batch_size)
    return method, build_optimizer(method, cfg.optim, lr), channels_last, lr
