"""Trained encoders in Python, loaded as `specrep eval` and `specrep export` load them.

    from specrep_cli import load_backbone, load_encoder
    backbone = load_backbone("outputs/2026-12-01/10-00-00")   # phi's backbone: images -> h
    encoder = load_encoder("outputs/2026-12-01/10-00-00/checkpoints/last.pt")   # images -> z; .backbone -> h

Both take a checkpoint file or a run directory (its checkpoints/best.pt, the epoch with the best
validation kNN, else checkpoints/last.pt; `checkpoint_path` says which, and the choice is logged on the
"specrep" logger). The checkpoint is read as `specrep eval` reads it (weights only, checked, loaded
strictly) and the modules come back in eval mode on the CPU. load_backbone's module is the one
`specrep export` writes (export.trained_backbone), so its features equal the exported weights' to the
last bit. Inputs are normalised images as in training: (x - mean) / std with the checkpoint's
data.mean and data.std (the export's JSON sidecar lists them).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from torch import nn

from .checkpoint import load_checkpoint, resolve_checkpoint_path, trained
from .export import trained_backbone, trained_encoder

log = logging.getLogger("specrep")


def checkpoint_path(run_dir_or_checkpoint: str | os.PathLike) -> Path:
    """The checkpoint file load_backbone and load_encoder read: the path itself, or in a run directory
    checkpoints/best.pt when it exists, else checkpoints/last.pt. Raises CheckpointError."""
    path = Path(run_dir_or_checkpoint).expanduser()
    if path.is_dir() and (path / "checkpoints" / "best.pt").is_file():
        return path / "checkpoints" / "best.pt"
    return resolve_checkpoint_path(path)


def _trained(run_dir_or_checkpoint: str | os.PathLike):
    path = checkpoint_path(run_dir_or_checkpoint)
    log.info(f"loading {path}")
    return trained(load_checkpoint(path, map_location="cpu"), path), path


def load_backbone(run_dir_or_checkpoint: str | os.PathLike) -> nn.Module:
    """phi's backbone (images -> representation h, `.out_dim` wide) with its trained weights, as a
    plain nn.Module in eval mode on the CPU. Raises CheckpointError."""
    model, path = _trained(run_dir_or_checkpoint)
    return trained_backbone(model, path)[0]


def load_encoder(run_dir_or_checkpoint: str | os.PathLike) -> nn.Module:
    """phi, the backbone and its projector (specrep_cli.models.encoders.Encoder: encoder(x) is the
    projection z the objective saw, encoder.backbone(x) the representation h), with its trained
    weights, in eval mode on the CPU. Raises CheckpointError."""
    model, path = _trained(run_dir_or_checkpoint)
    return trained_encoder(model, path)[0]
