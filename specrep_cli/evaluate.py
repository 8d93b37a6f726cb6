"""Evaluation of a frozen encoder: features once per split, then a linear probe and a kNN classifier.

    features = extract_features(encoder, images, mean, std, ...)   # eval mode, no augmentation
    linear_probe(train_x, train_y, test_x, test_y, ...)             # multinomial logistic regression
    knn_top1(train_x, train_y, test_x, test_y, k, temperature)      # cosine, weighted votes

The probe's L2 strength is chosen on a held-out part of the train split, never on the test split.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import normalize
from .data import Images, batches
from .encoders import build_encoder, uses_channels_last


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` when asked, else nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def extract_features(encoder: nn.Module, images: Images, mean: Tensor, std: Tensor, batch_size: int,
                     device: torch.device, bf16: bool, order: Tensor | None = None) -> Tuple[Tensor, Tensor]:
    """Representation h (N, D) and projection z (N, d), float32 on `device`, encoder in eval mode.

    images: a uint8 tensor (N, C, H, W) or ImageFiles; order: the indices to extract (default all).
    """
    was_training = encoder.training
    encoder.eval()
    channels_last = uses_channels_last(encoder)   # the same rule as training
    if channels_last:
        encoder.to(memory_format=torch.channels_last)
    mean, std = mean.to(device), std.to(device)
    reps, projs = [], []
    if order is None:
        order = torch.arange(images.shape[0])
    for batch in batches(images, order, batch_size, device):
        x = normalize(batch, mean, std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            h = encoder.backbone(x)
            z = encoder.projector(h)
        reps.append(h.float())
        projs.append(z.float())
    encoder.train(was_training)
    return torch.cat(reps), torch.cat(projs)


def _standardize(train_x: Tensor, *others: Tensor) -> Tuple[Tensor, ...]:
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True).clamp_min(1e-6)
    return tuple((x - mean) / std for x in (train_x, *others))


def _fit_logistic(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, steps: int,
                  init: Tensor | None = None) -> Tensor:
    """Multinomial logistic regression by full-batch L-BFGS; returns W (D+1, K) with the bias last row."""
    xb = torch.cat([x, torch.ones(x.shape[0], 1, device=x.device)], dim=1)
    w = (init.clone() if init is not None else
         torch.zeros(xb.shape[1], num_classes, device=x.device)).requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + 0.5 * weight_decay * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach()


def _predict(w: Tensor, x: Tensor) -> Tensor:
    return x @ w[:-1] + w[-1]


def _topk_accuracy(logits: Tensor, y: Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1)
    return 100.0 * hits.float().mean().item()


def probe_split(n: int, val_fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """Indices (fit, held_out) of the labelled train split for choosing the probe's L2 strength."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:], perm[:n_val]


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
                 weight_decays: Sequence[float], val_fraction: float = 0.1, steps: int = 300,
                 seed: int = 0) -> Dict[str, float]:
    """Top-1/top-5 (%) of a logistic-regression probe on standardised features.

    Each L2 strength is fitted on the train split minus a held-out part and scored on that part; the
    best is refitted on the whole train split and scored on the test split.
    """
    train_x, test_x = _standardize(train_x, test_x)
    fit_idx, val_idx = probe_split(train_x.shape[0], val_fraction, seed)
    fit_idx, val_idx = fit_idx.to(train_x.device), val_idx.to(train_x.device)
    best_wd, best_acc, w = weight_decays[0], -1.0, None
    for wd in sorted(weight_decays, reverse=True):  # strong to weak, each warm-started from the last
        w = _fit_logistic(train_x[fit_idx], train_y[fit_idx], num_classes, wd, steps, init=w)
        acc = _topk_accuracy(_predict(w, train_x[val_idx]), train_y[val_idx], 1)
        if acc > best_acc:
            best_wd, best_acc = wd, acc
    w = _fit_logistic(train_x, train_y, num_classes, best_wd, steps)
    logits = _predict(w, test_x)
    return {"top1": _topk_accuracy(logits, test_y, 1), "top5": _topk_accuracy(logits, test_y, 5),
            "weight_decay": best_wd, "val_top1": best_acc}


@torch.no_grad()
def knn_top1(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
             k: int = 200, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Weighted kNN (Wu et al. 2018): cosine neighbours vote with weight exp(sim / temperature)."""
    train_u = F.normalize(train_x, dim=1)
    k = min(k, train_u.shape[0])
    correct = 0
    for start in range(0, test_x.shape[0], chunk):
        sim = F.normalize(test_x[start:start + chunk], dim=1) @ train_u.T   # (b, N)
        top_sim, top_idx = sim.topk(k, dim=1)                               # (b, k)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        correct += (votes.argmax(1) == test_y[start:start + chunk]).sum().item()
    return 100.0 * correct / test_x.shape[0]


def effective_rank(features: Tensor) -> float:
    """exp of the entropy of the normalised eigenvalues of the feature covariance (Roy & Vetterli 2007):
    d for isotropic features, 1 for features on a line."""
    x = features.double()
    eig = torch.linalg.eigvalsh(torch.cov(x.T)).clamp_min(0)    # (D,)
    p = eig / eig.sum().clamp_min(1e-300)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def monitor(encoder: nn.Module, data: Any, cfg: Any, device: torch.device, bf16: bool) -> Dict[str, float]:
    """The cheap in-training check: kNN top-1 on a fixed subset, effective rank of h and z."""
    n_train = min(cfg.monitor_images, data.train_images.shape[0])
    n_test = min(max(1, cfg.monitor_images // 2), data.test_images.shape[0])
    g = torch.Generator().manual_seed(0)   # the same subset at every epoch and in every run
    train_idx = torch.randperm(data.train_images.shape[0], generator=g)[:n_train]
    test_idx = torch.randperm(data.test_images.shape[0], generator=g)[:n_test]
    h_train, z_train = extract_features(encoder, data.train_images, data.mean, data.std,
                                        cfg.batch_size, device, bf16, order=train_idx)
    h_test, _ = extract_features(encoder, data.test_images, data.mean, data.std,
                                 cfg.batch_size, device, bf16, order=test_idx)
    knn = knn_top1(h_train, data.train_labels[train_idx].to(device), h_test,
                   data.test_labels[test_idx].to(device), len(data.classes), cfg.knn_k, cfg.knn_temperature)
    return {"knn_top1": knn, "effective_rank_representation": effective_rank(h_train),
            "effective_rank_projection": effective_rank(z_train), "projection_dim": z_train.shape[1]}


def evaluate_encoder(encoder: nn.Module, data: Any, cfg: Any, device: torch.device, bf16: bool,
                     seed: int) -> Dict[str, Any]:
    """Linear probe and kNN on the representation of `encoder` for the train/test splits of `data`."""
    feats = {}
    for split in ("train", "test"):
        images = getattr(data, f"{split}_images")
        feats[split], _ = extract_features(encoder, images, data.mean, data.std, cfg.batch_size, device, bf16)
    train_y, test_y = data.train_labels.to(device), data.test_labels.to(device)
    k = len(data.classes)
    probe = linear_probe(feats["train"], train_y, feats["test"], test_y, k, cfg.probe_weight_decays,
                         cfg.probe_val_fraction, cfg.probe_steps, seed)
    knn = knn_top1(feats["train"], train_y, feats["test"], test_y, k, cfg.knn_k, cfg.knn_temperature)
    return {"linear_probe": probe, "knn": {"top1": knn, "k": min(cfg.knn_k, len(train_y)),
                                           "temperature": cfg.knn_temperature}}


def evaluate_with_baseline(encoder: nn.Module, make_random_encoder, data: Any, cfg: Any,
                           device: torch.device, bf16: bool, seed: int) -> Dict[str, Any]:
    """evaluate_encoder on `encoder`, and on a random initialisation of it when cfg.random_init."""
    results = evaluate_encoder(encoder, data, cfg, device, bf16, seed)
    if cfg.random_init:
        baseline = evaluate_encoder(make_random_encoder(), data, cfg, device, bf16, seed)
        results["random_init"] = {"linear_probe_top1": baseline["linear_probe"]["top1"],
                                  "knn_top1": baseline["knn"]["top1"]}
    return results


# --------------------------------------------------------------------------------- specrep eval
def _state_mismatch(expected: Dict[str, Any], found: Dict[str, Any]) -> Tuple[list, list]:
    return sorted(set(expected) - set(found)), sorted(set(found) - set(expected))


def evaluate_checkpoint(cfg: Any, run_dir: Path) -> Dict[str, Any]:
    """`specrep eval`: rebuild the encoder from the checkpoint's own config, load it strictly, probe it.

    The dataset is the checkpoint's unless the eval config selects one (`dataset=...`).
    """
    from omegaconf import OmegaConf

    from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint_path
    from .config import DATASET_SCHEMAS, EncoderConfig
    from .data import DatasetError, load_dataset
    from .report import print_report, write_report
    from .train import resolve_bf16, resolve_device, seeded_encoder

    device = resolve_device(cfg.device)
    bf16 = resolve_bf16(cfg.precision, device)
    path = resolve_checkpoint_path(cfg.checkpoint)
    ckpt = load_checkpoint(path)
    trained = ckpt["config"]
    try:
        enc_cfg = OmegaConf.merge(OmegaConf.structured(EncoderConfig), trained["encoder"])
        if cfg.dataset is not None:
            data_cfg = cfg.dataset
        else:
            data_cfg = OmegaConf.merge(OmegaConf.structured(DATASET_SCHEMAS[trained["dataset"]["name"]]),
                                       trained["dataset"])
    except Exception as err:
        raise CheckpointError(f"{path} holds a config this specrep cannot read "
                              f"({str(err).splitlines()[0]})") from None
    in_channels = ckpt["data"]["in_channels"]
    encoder = build_encoder(enc_cfg, in_channels)
    missing, unexpected = _state_mismatch(encoder.state_dict(), ckpt["encoder"])
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not fit the encoder its config describes "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    try:
        encoder.load_state_dict(ckpt["encoder"], strict=True)
    except RuntimeError as err:   # same keys, other shapes
        raise CheckpointError(f"{path}: the weights do not fit the encoder its config describes "
                              f"({str(err).strip().splitlines()[-1].strip()})") from None
    encoder.to(device)
    data = load_dataset(data_cfg)
    if data.in_channels != in_channels:
        raise DatasetError(f"dataset {data_cfg.name} has {data.in_channels}-channel images but the "
                           f"checkpoint's encoder takes {in_channels} channels")

    t0 = time.perf_counter()
    results = evaluate_with_baseline(encoder, lambda: seeded_encoder(enc_cfg, in_channels, cfg.seed).to(device),
                                     data, cfg.eval, device, bf16, cfg.seed)
    report = {
        "run": {"checkpoint": str(path), "objective": trained["objective"]["name"],
                "encoder": enc_cfg.name, "augmentation": trained["augmentation"]["name"],
                "dataset": data_cfg.name, "trained_on": trained["dataset"]["name"],
                "epochs": ckpt.get("epoch"), "batch_size": trained["trainer"]["batch_size"],
                "seed": trained.get("seed"), "device": str(device), "precision": "bf16" if bf16 else "fp32"},
        **results,
        "timing": {"eval_seconds": time.perf_counter() - t0},
    }
    write_report(run_dir, report)
    print_report(report)
    return report
