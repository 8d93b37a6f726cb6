"""`specrep eval checkpoint=PATH`: rebuild the towers from the checkpoint alone, load them strictly,
and score them with the same evaluate_run as the end of training.

The dataset is the checkpoint's unless the eval config selects one (`dataset=...`); so are the views
of alignment and uniformity (the training augmentation) unless `augmentation=...` is given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from hydra.core.hydra_config import HydraConfig
from ..checkpoint import Trained, load_checkpoint, load_strict, resolve_checkpoint_path, trained
from ..config import (DATASET_SCHEMAS, OBJECTIVE_SCHEMAS, AugmentationConfig, DatasetConfig, EncoderConfig,
                      EvalAppConfig, ObjectiveConfig, TwoTowerConfig, encoder_schema, from_dict)
from ..data.datasets import load_dataset
from ..data.tokenizer import Tokenizer
from ..errors import CheckpointError, DatasetError
from ..models.encoders import build_encoder, seeded_encoder
from ..models.text import text_encoder
from ..runtime import Compute, resolve_compute, use_threads
from .features import FeatureReader
from .suite import Towers, evaluate_run, norm_cap


def _views_config(cfg: EvalAppConfig, config: Dict[str, Any]) -> AugmentationConfig:
    """The augmentation whose two views alignment and uniformity compare: the one given on the command
    line (`augmentation=...`), else the checkpoint's training augmentation. (A dataset option can bring
    an augmentation default along; only the user's own choice replaces the checkpoint's.)"""
    chosen = cfg.augmentation is not None
    if chosen and HydraConfig.initialized():
        chosen = any(o.split("=")[0].lstrip("+~").split(".")[0] == "augmentation"
                     for o in HydraConfig.get().overrides.task)
    if chosen:
        return cfg.augmentation
    return from_dict(AugmentationConfig, config["augmentation"])


def _configs(cfg: EvalAppConfig, model: Trained,
             path: Path) -> Tuple[EncoderConfig, ObjectiveConfig, DatasetConfig, AugmentationConfig]:
    """(encoder, objective, dataset, views) configs: the checkpoint's (in today's shape: model.config is
    upgraded), typed, unless the eval config picks others."""
    try:
        enc_cfg = from_dict(encoder_schema(model.config["encoder"]["name"]), model.config["encoder"])
        objective = from_dict(OBJECTIVE_SCHEMAS[model.config["objective"]["name"]], model.config["objective"])
        if cfg.dataset is not None:
            data_cfg = cfg.dataset
        else:
            data_cfg = from_dict(DATASET_SCHEMAS[model.config["dataset"]["name"]], model.config["dataset"])
        return enc_cfg, objective, data_cfg, _views_config(cfg, model.config)
    except Exception as err:
        raise CheckpointError(f"{path} holds a config this specrep cannot read "
                              f"({str(err).splitlines()[0]})") from None


def _towers(model: Trained, enc_cfg: EncoderConfig, objective: ObjectiveConfig, seed: int, compute: Compute,
            path: Path) -> Towers:
    """phi (and the text tower with its tokenizer, for an image-text run) with their weights loaded."""
    try:
        encoder = build_encoder(enc_cfg, model.in_channels, model.input)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: its encoder cannot be built ({err})") from None
    device = compute.device
    towers = Towers(load_strict(encoder, model.encoder, path, "encoder").to(device),
                    lambda: seeded_encoder(enc_cfg, model.in_channels, seed, model.input).to(device),
                    mu=norm_cap(objective))
    if model.text_tower is not None:   # its text tower comes back for zero-shot and retrieval
        try:
            tokenizer = Tokenizer.from_state(model.tokenizer)
            if not isinstance(objective, TwoTowerConfig):
                raise ValueError(f"objective {objective.name} has no text tower")
            text_cfg = objective.text
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{path}: its tokenizer or text-tower config cannot be read ({err})") from None
        text = text_encoder(text_cfg, enc_cfg, len(tokenizer), tokenizer.pad_id)
        towers.text = load_strict(text, model.text_tower, path, "text tower").to(device)
        towers.tokenizer, towers.context_length = tokenizer, text_cfg.context_length
    return towers


def evaluate_checkpoint(cfg: EvalAppConfig, run_dir: Path) -> Dict[str, Any]:
    """`specrep eval`: the report of the checkpoint cfg.checkpoint, written into run_dir."""
    use_threads(cfg.threads, key="threads")
    compute = resolve_compute(cfg.device, cfg.precision)
    path = resolve_checkpoint_path(cfg.checkpoint)
    model = trained(load_checkpoint(path), path)   # checked: a checkpoint it cannot score is one line, here
    enc_cfg, objective, data_cfg, views = _configs(cfg, model, path)
    towers = _towers(model, enc_cfg, objective, cfg.seed, compute, path)
    data = load_dataset(data_cfg, compute.device)
    if data.in_channels != model.in_channels:
        what = (" nodes (or node features)", "nodes (or features)") if data_cfg.name == "graph" else \
            ("-channel images", "channels")
        raise DatasetError(f"dataset {data_cfg.name} has {data.in_channels}{what[0]} but the "
                           f"checkpoint's encoder takes {model.in_channels} {what[1]}")
    if model.mean is not None:   # normalise as in training (Lab-split towers: none), whatever the dataset
        data.mean, data.std = torch.tensor(model.mean), torch.tensor(model.std)
    trained_cfg = model.config
    run = {"checkpoint": str(path), "objective": trained_cfg["objective"]["name"],
           "encoder": enc_cfg.name, "augmentation": trained_cfg["augmentation"]["name"],
           "dataset": data_cfg.name, "trained_on": trained_cfg["dataset"]["name"],
           "epochs": model.epoch, "batch_size": trained_cfg["trainer"]["batch_size"],
           "seed": trained_cfg["seed"], "views": views.name, "device": str(compute.device),
           "precision": compute.precision}
    reader = FeatureReader(compute, data.mean, data.std, cfg.eval.batch_size)
    return evaluate_run(towers, data, cfg.eval, reader, cfg.seed, views, run_dir,
                        {"run": run, "history": model.history})
