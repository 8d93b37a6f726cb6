"""`specrep eval checkpoint=PATH`: rebuild the towers from the checkpoint alone, load them strictly,
and score them with the same evaluate_run as the end of training.

The dataset is the checkpoint's unless the eval config selects one (`dataset=...`); its keys alone
(`dataset.num_test=500`) change the checkpoint's dataset (eval_args: the option `dataset=checkpoint`).
So are the views of alignment and uniformity (the training augmentation) unless `augmentation=...` is
given. The encoder is always the checkpoint's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig

from ..checkpoint import Trained, load_checkpoint, resolve_checkpoint_path, trained
from ..config import (
    DATASET_SCHEMAS,
    OBJECTIVE_SCHEMAS,
    AugmentationConfig,
    DatasetConfig,
    EncoderConfig,
    EvalAppConfig,
    GraphConfig,
    ObjectiveConfig,
    encoder_schema,
    from_dict,
)
from ..data.datasets import load_dataset
from ..data.graphs import GraphData
from ..data.splits import ImageData
from ..errors import CheckpointError, ConfigError, DatasetError
from ..overrides import chosen as chosen_value
from ..overrides import command_line, last, parse, touches
from ..progress import stages
from ..runtime import resolve_compute, use_threads
from .features import FeatureReader
from .suite import Evaluation, evaluate_run
from .towers import Towers

CHECKPOINT_DATASET = "checkpoint"   # dataset=checkpoint: the checkpoint's own dataset, its keys changeable
# The groups conf/eval.yaml holds only for what a dataset option brings along (dataset=graph: encoder=embedding,
# optim=adamw), and why they cannot be set.
FIXED = {"encoder": "phi is rebuilt from the checkpoint, its encoder and all", "optim": "nothing is trained"}


def eval_args(args: List[str]) -> List[str]:
    """`specrep eval ARGS` checked and completed before Hydra composes them: an encoder or optimizer
    set is refused (FIXED); dataset keys set without choosing a dataset (`dataset.num_test=500`), or
    `dataset=checkpoint`, change the checkpoint's dataset: its dataset section becomes the option
    dataset=checkpoint (store_checkpoint_dataset), chosen here when the args do not name it."""
    line = command_line(args)
    if line is None:   # Hydra's own parser refuses it, and says why
        return args
    parsed = parse(line.overrides)
    for group, why in FIXED.items():
        if touches(parsed, group):
            raise ConfigError(f"specrep eval takes no {group} ({why}): drop {group} from the command line")
    choice = chosen_value(parsed, "dataset")
    if choice not in (None, CHECKPOINT_DATASET) or not touches(parsed, "dataset"):
        return args
    store_checkpoint_dataset(parsed)
    return args if choice == CHECKPOINT_DATASET else [*args, f"dataset={CHECKPOINT_DATASET}"]


def store_checkpoint_dataset(parsed: List[Any]) -> None:
    """The dataset section of the one checkpoint the overrides name, typed, stored in Hydra's
    ConfigStore (this process) as the option dataset=checkpoint, for dataset.KEY=VALUE to change."""
    given = last(parsed, "checkpoint")
    if given is None or given.is_delete() or given.is_sweep_override():
        raise ConfigError("dataset keys without dataset=NAME change the checkpoint's dataset: give one "
                          "checkpoint=PATH (to sweep over checkpoints, choose the dataset too: dataset=NAME ...)")
    path = resolve_checkpoint_path(str(given.value()))
    model = trained(load_checkpoint(path), path)   # its config upgraded to today's shape
    ConfigStore.instance().store(group="dataset", name=CHECKPOINT_DATASET, node=_checkpoint_dataset(model, path))


def _checkpoint_dataset(model: Trained, path: Path) -> DatasetConfig:
    """The checkpoint's dataset config, typed; CheckpointError when this specrep cannot read it."""
    try:
        return from_dict(DATASET_SCHEMAS[model.config["dataset"]["name"]], model.config["dataset"])
    except Exception as err:
        raise CheckpointError(f"{path} holds a dataset config this specrep cannot read "
                              f"({str(err).splitlines()[0]})") from None


def _views_config(cfg: EvalAppConfig, config: Dict[str, Any]) -> AugmentationConfig:
    """The augmentation whose two views alignment and uniformity compare: the one given on the command
    line (`augmentation=...`), else the checkpoint's training augmentation. (A dataset option can bring
    an augmentation default along; only the user's own choice replaces the checkpoint's.)"""
    chosen = cfg.augmentation is not None
    if chosen and HydraConfig.initialized():
        chosen = touches(parse(HydraConfig.get().overrides.task), "augmentation")
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
        views = _views_config(cfg, model.config)
    except Exception as err:
        raise CheckpointError(f"{path} holds a config this specrep cannot read "
                              f"({str(err).splitlines()[0]})") from None
    data_cfg = cfg.dataset if cfg.dataset is not None else _checkpoint_dataset(model, path)
    return enc_cfg, objective, data_cfg, views


def check_inputs(data: ImageData, taken: int, dataset: str, encoder: str) -> None:
    """DatasetError naming both counts when the dataset's inputs (image channels; a graph's nodes, or
    features per node) are not what the checkpoint's encoder takes (`taken`: its in_channels)."""
    given = data.in_channels
    if given == taken:
        return
    graph = isinstance(data, GraphData)
    if graph and encoder == "embedding":
        raise DatasetError(f"dataset graph has {given} nodes but the checkpoint's encoder=embedding has one row per "
                           f"node of the graph it trained on, {taken}: evaluate it on a graph of {taken} nodes "
                           "(rows and nodes are matched by position)")
    has = f"{given}-channel images"
    if graph and not data.images:
        has = f"{given} nodes (no features)" if data.inputs.ndim == 1 else f"{given} features per node"
    takes = {"embedding": "nodes", "mlp": "features per node"}.get(encoder, "channels")
    raise DatasetError(f"dataset {dataset} has {has} but the checkpoint's encoder={encoder} takes {taken} {takes}")


def evaluate_checkpoint(cfg: EvalAppConfig, run_dir: Path) -> Dict[str, Any]:
    """`specrep eval`: the report of the checkpoint cfg.checkpoint, written into run_dir; each of its
    stages announced as it begins, and the time they took at the end."""
    with stages("specrep eval", 3) as stage:
        return score_checkpoint(cfg, run_dir, stage)


def score_checkpoint(cfg: EvalAppConfig, run_dir: Path, stage: Callable[[str], None]) -> Dict[str, Any]:
    """The checkpoint's towers, the dataset, then evaluate_run; stage(name) as each begins."""
    use_threads(cfg.threads, key="threads")
    compute = resolve_compute(cfg.device, cfg.precision)
    path = resolve_checkpoint_path(cfg.checkpoint)
    stage(f"loading the checkpoint {path}")
    model = trained(load_checkpoint(path), path)   # checked: a checkpoint it cannot score is one line, here
    enc_cfg, objective, data_cfg, views = _configs(cfg, model, path)
    second = isinstance(data_cfg, GraphConfig) and data_cfg.two_sided   # a bipartite graph reads nu too
    towers = Towers.from_checkpoint(model, enc_cfg, objective, cfg.seed, compute.device, path, second)
    stage(f"loading the dataset ({data_cfg.name})")
    data = load_dataset(data_cfg, compute.device)
    check_inputs(data, model.in_channels, data_cfg.name, enc_cfg.name)
    trained_cfg = model.config
    run = {"checkpoint": str(path), "objective": trained_cfg["objective"]["name"],
           "encoder": enc_cfg.name, "augmentation": trained_cfg["augmentation"]["name"],
           "dataset": data_cfg.name, "trained_on": trained_cfg["dataset"]["name"],
           "epochs": model.epoch, "batch_size": trained_cfg["trainer"]["batch_size"],
           "seed": trained_cfg["seed"], "views": views.name, "device": str(compute.device),
           "precision": compute.precision}
    mean, std = data.mean, data.std   # older checkpoints: the dataset's own
    if model.mean is not None:        # normalised as in training (Lab-split towers: none), whatever the dataset
        mean, std = torch.tensor(model.mean), torch.tensor(model.std)
    reader = FeatureReader(compute, mean, std, cfg.eval.batch_size)
    evaluation = Evaluation(towers=towers, data=data, cfg=cfg.eval, reader=reader, seed=cfg.seed, run_dir=run_dir,
                            views=views)
    stage("evaluating")
    return evaluate_run(evaluation, {"run": run, "history": model.history})
