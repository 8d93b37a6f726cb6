"""What an evaluation scores: the towers of a run, built once, from the run that trained them or from
a checkpoint alone, and not changed afterwards.

    towers = Towers.from_run(cfg, method, in_channels, input, tokenizer, device)   # the end of training
    towers = Towers.from_checkpoint(model, enc_cfg, objective, seed, device, path)   # `specrep eval`
    towers.fresh()   # the random initialisation a run with this seed starts from (the baseline)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..checkpoint import Trained, load_strict
from ..config import EncoderConfig, ObjectiveConfig, SpectralCLIPConfig, SpectralConfig, TrainConfig, TwoTowerConfig
from ..data.tokenizer import Tokenizer, tokenizer_from_state
from ..errors import CheckpointError
from ..models.encoders import build_encoder, seeded_encoder
from ..models.text import text_encoder
from ..objectives.methods import Method


def norm_cap(objective: ObjectiveConfig) -> float | None:
    """The cap |phi(x)|^2 <= mu of objective=spectral and spectral_clip (their rows are projected onto that
    ball); None otherwise."""
    return float(objective.mu) if isinstance(objective, (SpectralConfig, SpectralCLIPConfig)) else None


@dataclass(frozen=True)
class TextTower:
    """An image-text run's second tower, with what turns text into its input."""
    encoder: nn.Module
    tokenizer: Tokenizer
    context_length: int


@dataclass(frozen=True)
class Towers:
    """phi (the probed tower), a maker of its random initialisation (the baseline: a fresh encoder
    at every call), the text tower of an image-text run, the norm cap mu phi was trained under
    (objective=spectral or spectral_clip; a graph's report reads it), and nu, the second tower of
    two towers on two views (a bipartite graph's report scores it at the y nodes)."""
    encoder: nn.Module
    fresh: Callable[[], nn.Module]
    text: TextTower | None = None
    mu: float | None = None
    nu: nn.Module | None = None

    @classmethod
    def from_run(cls, cfg: TrainConfig, method: Method, in_channels: int, input: str,
                 tokenizer: Tokenizer | None, device: torch.device) -> Towers:
        """The towers of a trained method: its encoder, and with a tokenizer (image-text pairs) its
        second tower as the text tower; the baseline is models.seeded_encoder, the run's start."""
        text, nu = None, getattr(method, "encoder_y", None)
        if tokenizer is not None:
            text, nu = TextTower(method.encoder_y, tokenizer, cfg.objective.text.context_length), None
        return cls(method.encoder, partial(_fresh, cfg.encoder, in_channels, cfg.seed, input, device),
                   text, norm_cap(cfg.objective), nu)

    @classmethod
    def from_checkpoint(cls, model: Trained, enc_cfg: EncoderConfig, objective: ObjectiveConfig, seed: int,
                        device: torch.device, path: Path, second: bool = False) -> Towers:
        """phi (and the text tower with its tokenizer, for an image-text run; with `second`, a bipartite
        graph's, nu) rebuilt from their configs and loaded strictly from the checkpoint `model` read at
        `path`."""
        try:
            encoder = build_encoder(enc_cfg, model.in_channels, model.input)
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{path}: its encoder cannot be built ({err})") from None
        encoder = load_strict(encoder, model.encoder, path, "encoder").to(device)
        text = _text_tower(model, enc_cfg, objective, device, path) if model.text_tower is not None else None
        nu = _second_tower(model, enc_cfg, device, path) if second and model.second_tower is not None else None
        return cls(encoder, partial(_fresh, enc_cfg, model.in_channels, seed, model.input, device),
                   text, norm_cap(objective), nu)


def _second_tower(model: Trained, enc_cfg: EncoderConfig, device: torch.device, path: Path) -> nn.Module:
    """nu of two towers on two views (a bipartite graph's y tower), loaded strictly from the checkpoint."""
    try:
        nu = build_encoder(enc_cfg, model.in_channels, model.input)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: its second tower cannot be built ({err})") from None
    return load_strict(nu, model.second_tower, path, "second tower").to(device)


def _fresh(cfg: EncoderConfig, in_channels: int, seed: int, input: str, device: torch.device) -> nn.Module:
    return seeded_encoder(cfg, in_channels, seed, input).to(device)


def _text_tower(model: Trained, enc_cfg: EncoderConfig, objective: ObjectiveConfig, device: torch.device,
                path: Path) -> TextTower:
    """The checkpoint's text tower (loaded strictly) and tokenizer, for zero-shot and retrieval."""
    try:
        tokenizer = tokenizer_from_state(model.tokenizer)
        if not isinstance(objective, TwoTowerConfig):
            raise ValueError(f"objective {objective.name} has no text tower")
        text_cfg = objective.text
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: its tokenizer or text-tower config cannot be read ({err})") from None
    text = text_encoder(text_cfg, enc_cfg, len(tokenizer), tokenizer.pad_id)
    return TextTower(load_strict(text, model.text_tower, path, "text tower").to(device), tokenizer,
                     text_cfg.context_length)
