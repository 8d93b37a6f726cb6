"""Evaluation of a frozen encoder: features once per split, then probes, kNN and spectral diagnostics.

    h, z = extract_features(encoder, images, mean, std, ...)   # eval mode, no augmentation, on the device
    linear_probe(train_h, train_y, test_h, test_y, ...)         # `fast`: L-BFGS logistic regression
    standard_probe(encoder, data, ...)                          # `standard`: SGD on augmented images
    knn_top1(train_h, train_y, test_h, test_y, k, temperature)  # cosine, weighted votes
    spectrum(h), alignment(f_a, f_b), uniformity(f)             # what the representation looks like

The probe's L2 strength is chosen on a held-out part of the train split, never on the test split.
Accuracies are percentages (0 to 100).
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import augment, make_views, normalize
from .config import ViewConfig
from .data import Images, batches
from .encoders import build_encoder, uses_channels_last

VARIANCE_SHARE_TOPS = (1, 10, 100)   # report the share of variance in the top 1, 10 and 100 directions
UNIFORMITY_T = 2.0                   # Wang & Isola's t
# The standard protocol's augmentation: random resized crop and horizontal flip only.
STANDARD_VIEW = ViewConfig(crop_scale=[0.08, 1.0], crop_ratio=[3 / 4, 4 / 3], flip_p=0.5, jitter_p=0.0,
                           brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0,
                           blur_p=0.0, solarize_p=0.0)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` when asked, else nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# -------------------------------------------------------------------------------------- features
@contextlib.contextmanager
def frozen(encoder: nn.Module) -> Iterator[bool]:
    """The encoder in eval mode (restored afterwards), in the training loop's memory format; yields
    whether inputs must be channels_last."""
    was_training = encoder.training
    encoder.eval()
    channels_last = uses_channels_last(encoder)   # the same rule as training
    if channels_last:
        encoder.to(memory_format=torch.channels_last)
    try:
        yield channels_last
    finally:
        encoder.train(was_training)


def _encode(encoder: nn.Module, x: Tensor, device: torch.device, bf16: bool, channels_last: bool,
            project: bool = True) -> Tuple[Tensor, Tensor | None]:
    """Normalised float images (B, C, H, W) -> h (B, D) and z (B, d) (None unless `project`), float32."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, bf16):
        h = encoder.backbone(x)
        z = encoder.projector(h) if project else None
    return h.float(), (z.float() if project else None)


@torch.no_grad()
def extract_features(encoder: nn.Module, images: Images, mean: Tensor, std: Tensor, batch_size: int,
                     device: torch.device, bf16: bool, order: Tensor | None = None) -> Tuple[Tensor, Tensor]:
    """Representation h (N, D) and projection z (N, d), float32 on `device`, encoder in eval mode.

    images: a uint8 tensor (N, C, H, W) or ImageFiles; order: the indices to extract (default all).
    """
    mean, std = mean.to(device), std.to(device)
    reps, projs = [], []
    if order is None:
        order = torch.arange(images.shape[0])
    with frozen(encoder) as channels_last:
        for batch in batches(images, order, batch_size, device):
            h, z = _encode(encoder, normalize(batch, mean, std), device, bf16, channels_last)
            reps.append(h)
            projs.append(z)
    return torch.cat(reps), torch.cat(projs)


@torch.no_grad()
def view_features(encoder: nn.Module, images: Images, order: Tensor, views: Any, mean: Tensor, std: Tensor,
                  batch_size: int, device: torch.device, bf16: bool, seed: int = 0
                  ) -> Tuple[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor]]:
    """(h_a, z_a), (h_b, z_b): features of two augmented views (views.view_a, views.view_b) of
    images[order], drawn from a generator seeded with `seed` (the same views on every device)."""
    g = torch.Generator().manual_seed(seed)
    mean, std = mean.to(device), std.to(device)
    out: Dict[str, list] = {"ha": [], "za": [], "hb": [], "zb": []}
    with frozen(encoder) as channels_last:
        for batch in batches(images, order, batch_size, device):
            view_a, view_b = make_views(batch, views, mean, std, generator=g)
            for name, view in (("a", view_a), ("b", view_b)):
                h, z = _encode(encoder, view, device, bf16, channels_last)
                out[f"h{name}"].append(h)
                out[f"z{name}"].append(z)
    cat = {k: torch.cat(v) for k, v in out.items()}
    return (cat["ha"], cat["za"]), (cat["hb"], cat["zb"])


# ------------------------------------------------------------------------------ fast linear probe
def _standardize(train_x: Tensor, *others: Tensor) -> Tuple[Tensor, ...]:
    """(x - mean) / std per dimension, with the train split's mean and std, for every tensor given."""
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True).clamp_min(1e-6)
    return tuple((x - mean) / std for x in (train_x, *others))


def whitener(x: Tensor, rel_eps: float = 1e-3) -> Tuple[Tensor, Tensor]:
    """P = (C + eps I)^(-1/2) and M = P^T P = (C + eps I)^(-1), C the covariance of x (N, D), eps =
    rel_eps x the mean eigenvalue of C (P stays finite for rank-deficient features); float32 like x."""
    evals, evecs = torch.linalg.eigh(torch.atleast_2d(torch.cov(x.double().T)))
    evals = evals.clamp_min(0) + rel_eps * evals.clamp_min(0).mean() + 1e-12
    p = (evecs * evals.rsqrt()) @ evecs.T
    m = (evecs * evals.reciprocal()) @ evecs.T
    return p.to(x.dtype), m.to(x.dtype)


def _fit_logistic(z: Tensor, y: Tensor, num_classes: int, weight_decay: float, steps: int,
                  init: Tensor | None = None, penalty: Tensor | None = None) -> Tuple[Tensor, int]:
    """Multinomial logistic regression by full-batch L-BFGS: minimises
    CE(z V + b, y) + (weight_decay / 2) tr(V^T M V), M = `penalty` (identity when None); returns
    ([V; b] (D+1, K), the bias the last row; the L-BFGS iterations taken)."""
    zb = torch.cat([z, torch.ones(z.shape[0], 1, device=z.device, dtype=z.dtype)], dim=1)
    w = (init.clone() if init is not None else
         torch.zeros(zb.shape[1], num_classes, device=z.device, dtype=z.dtype)).requires_grad_(True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v = w[:-1]
        reg = (v * (penalty @ v)).sum() if penalty is not None else v.pow(2).sum()
        loss = F.cross_entropy(zb @ w, y) + 0.5 * weight_decay * reg
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), int(opt.state[w].get("n_iter", 0))


def _predict(w: Tensor, x: Tensor) -> Tensor:
    return x @ w[:-1] + w[-1]


def _topk_accuracy(logits: Tensor, y: Tensor, k: int) -> float:
    """Share (%) of rows whose label is among the k largest logits."""
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
    """The fast protocol: top-1/top-5 (%) of a logistic-regression probe on standardised features x,
    minimising CE(x W + b, y) + (weight_decay / 2) ||W||_F^2.

    Each L2 strength is fitted (full-batch L-BFGS, on the device) on the train split minus a held-out
    part (probe_split) and scored on that part; the best is refitted on the whole train split, warm
    started from its held-out fit, and scored on the test split. The test split is only scored.

    The fits run in whitened coordinates z = x P, W = P V, with P = whitener(train x): the same
    minimiser (the penalty becomes tr(V^T P^T P V)), but the loss is far better conditioned, so L-BFGS
    converges in tens of iterations instead of stalling for hundreds on correlated features.
    """
    train_x, test_x = _standardize(train_x, test_x)
    p, m = whitener(train_x)   # unlabelled statistics of the train split only
    train_z, test_z = train_x @ p, test_x @ p
    fit_idx, val_idx = probe_split(train_z.shape[0], val_fraction, seed)
    fit_idx, val_idx = fit_idx.to(train_z.device), val_idx.to(train_z.device)
    best_wd, best_acc, best_w, w = weight_decays[0], -1.0, None, None
    for wd in sorted(weight_decays, reverse=True):  # strong to weak, each warm-started from the last
        w, _ = _fit_logistic(train_z[fit_idx], train_y[fit_idx], num_classes, wd, steps, init=w, penalty=m)
        acc = _topk_accuracy(_predict(w, train_z[val_idx]), train_y[val_idx], 1)
        if acc > best_acc:
            best_wd, best_acc, best_w = wd, acc, w
    w, iterations = _fit_logistic(train_z, train_y, num_classes, best_wd, steps, init=best_w, penalty=m)
    logits = _predict(w, test_z)
    return {"top1": _topk_accuracy(logits, test_y, 1), "top5": _topk_accuracy(logits, test_y, 5),
            "weight_decay": best_wd, "val_top1": best_acc, "iterations": iterations}


# -------------------------------------------------------------------------- the standard protocol
def standard_lr(lr: float, epoch: int, epochs: int) -> float:
    """The step schedule at 0-based `epoch`: lr x 0.1 from round(0.6 epochs), x 0.01 from round(0.8 epochs)
    (epochs 60 and 80 of 100, as in MoCo's linear evaluation)."""
    return lr * 0.1 ** sum(epoch >= m for m in (round(0.6 * epochs), round(0.8 * epochs)))


def train_linear_sgd(epoch_batches: Callable[[int], Iterable[Tuple[Tensor, Tensor]]], dim: int,
                     num_classes: int, epochs: int, lr: float, weight_decay: float,
                     device: torch.device, momentum: float = 0.9) -> nn.Linear:
    """A linear classifier (zero init) trained by SGD with momentum on cross-entropy, for `epochs` passes
    over epoch_batches(epoch) -> (features (B, dim), labels (B,)), lr stepped by standard_lr."""
    linear = nn.Linear(dim, num_classes).to(device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.SGD(linear.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    with torch.enable_grad():
        for epoch in range(epochs):
            for group in opt.param_groups:
                group["lr"] = standard_lr(lr, epoch, epochs)
            for x, y in epoch_batches(epoch):
                loss = F.cross_entropy(linear(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return linear.eval()


def _scores(logits: Tensor, y: Tensor) -> Dict[str, float]:
    return {"top1": _topk_accuracy(logits, y, 1), "top5": _topk_accuracy(logits, y, 5)}


def standard_probe_on_features(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                               num_classes: int, epochs: int = 100, batch_size: int = 256, lr: float = 0.03,
                               weight_decay: float = 0.0, seed: int = 0) -> Dict[str, float]:
    """The standard protocol's classifier on ready-made features, without augmentation: standardised
    features, shuffled mini-batches, train_linear_sgd; top-1/top-5 (%) on the test split."""
    train_x, test_x = _standardize(train_x, test_x)
    g = torch.Generator().manual_seed(seed)
    n = train_x.shape[0]

    def epoch_batches(epoch: int) -> Iterator[Tuple[Tensor, Tensor]]:
        perm = torch.randperm(n, generator=g).to(train_x.device)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            yield train_x[idx], train_y[idx]

    linear = train_linear_sgd(epoch_batches, train_x.shape[1], num_classes, epochs, lr, weight_decay,
                              train_x.device)
    with torch.no_grad():
        return _scores(linear(test_x), test_y)


def standard_probe(encoder: nn.Module, data: Any, train_h: Tensor, test_h: Tensor, cfg: Any,
                   device: torch.device, bf16: bool, seed: int) -> Dict[str, float]:
    """The papers' protocol: a linear layer on the frozen backbone's features of train images augmented
    afresh every epoch (random resized crop, scale [0.08, 1], and horizontal flip only), SGD with
    momentum 0.9, batch cfg.standard_batch_size, lr cfg.standard_lr stepped x0.1 at 60% and 80% of
    cfg.standard_epochs; scored on the clean test features test_h.

    Features are standardised with the clean train features' (train_h) per-dimension mean and std
    (a BatchNorm without affine parameters, frozen). Each epoch is a forward pass of the backbone over
    the whole train split: slow.
    """
    mu, sd = train_h.mean(0, keepdim=True), train_h.std(0, keepdim=True).clamp_min(1e-6)
    mean, std = data.mean.to(device), data.std.to(device)
    labels = data.train_labels.to(device)
    images = data.train_images
    n = images.shape[0]
    g = torch.Generator().manual_seed(seed)
    bs = cfg.standard_batch_size

    def epoch_batches(epoch: int) -> Iterator[Tuple[Tensor, Tensor]]:
        order = torch.randperm(n, generator=g)
        label_order = order.to(device)
        if isinstance(images, Tensor):
            order = order.to(images.device)
        with frozen(encoder) as channels_last:   # module state only: grad mode must not leak past the yield
            for i, batch in enumerate(batches(images, order, bs, device)):
                with torch.no_grad():
                    x = augment(batch, STANDARD_VIEW, mean, std, generator=g)
                    h, _ = _encode(encoder, x, device, bf16, channels_last, project=False)
                yield (h - mu) / sd, labels[label_order[i * bs:(i + 1) * bs]]

    linear = train_linear_sgd(epoch_batches, train_h.shape[1], len(data.classes), cfg.standard_epochs,
                              cfg.standard_lr, cfg.standard_weight_decay, device)
    with torch.no_grad():
        return _scores(linear((test_h - mu) / sd), data.test_labels.to(device))


# ------------------------------------------------------------------------------------------- kNN
@torch.no_grad()
def knn_top1(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
             k: int = 200, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Weighted kNN (Wu et al. 2018): the k train features of highest cosine similarity s_i vote for
    their class with weight exp(s_i / temperature); top-1 (%) of the class with the most weight."""
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


# ------------------------------------------------------------------------- spectral diagnostics
def covariance_eigenvalues(features: Tensor) -> Tensor:
    """Eigenvalues of the covariance (1 / (N - 1)) sum_i (f_i - mean)(f_i - mean)^T of features (N, D),
    descending, float64, clamped at 0 (all 0 when N < 2)."""
    x = features.double()
    if x.shape[0] < 2:
        return torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    cov = torch.atleast_2d(torch.cov(x.T))
    return torch.linalg.eigvalsh(cov).clamp_min(0).flip(0)


def effective_rank_of(eigenvalues: Tensor) -> float:
    """exp(-sum_i p_i log p_i) with p_i = lambda_i / sum_j lambda_j (Roy & Vetterli 2007); 1 when all are 0."""
    p = eigenvalues.double() / eigenvalues.double().sum().clamp_min(1e-300)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def effective_rank(features: Tensor) -> float:
    """Effective rank of the feature covariance: d for isotropic features, 1 for features on a line."""
    return effective_rank_of(covariance_eigenvalues(features))


def top_variance_share(eigenvalues: Tensor, tops: Sequence[int] = VARIANCE_SHARE_TOPS) -> Dict[str, float]:
    """{str(k): sum_{i<=k} lambda_i / sum_i lambda_i} for descending eigenvalues (1 when k >= D; 0 when all are 0)."""
    total = float(eigenvalues.sum())
    return {str(k): float(eigenvalues[:k].sum()) / total if total > 0 else 0.0 for k in tops}


def orthonormality_error(features: Tensor) -> float:
    """||E[psi psi^T] - I||_F / sqrt(d) over the rows psi of features (N, d): 0 when the second moment
    (1/N) sum_i psi_i psi_i^T is the identity."""
    x = features.double()
    second = x.T @ x / x.shape[0]
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return float(torch.linalg.matrix_norm(second - eye) / math.sqrt(x.shape[1]))


def spectrum(features: Tensor) -> Dict[str, Any]:
    """eigenvalues (descending), effective_rank, top_variance_share and orthonormality_error of features (N, D)."""
    eig = covariance_eigenvalues(features)
    return {"eigenvalues": eig.tolist(), "effective_rank": effective_rank_of(eig),
            "top_variance_share": top_variance_share(eig), "orthonormality_error": orthonormality_error(features)}


def alignment(f_a: Tensor, f_b: Tensor) -> float:
    """Wang & Isola (2020): (1/N) sum_i ||u_a_i - u_b_i||^2 with u = f / ||f||, for the two views' features
    (N, D) of the same N images (0: the views map to the same point; at most 4)."""
    u_a, u_b = F.normalize(f_a.double(), dim=1), F.normalize(f_b.double(), dim=1)
    return float((u_a - u_b).pow(2).sum(1).mean())


def uniformity(f: Tensor, t: float = UNIFORMITY_T) -> float:
    """Wang & Isola (2020): log of the mean over pairs i < j of exp(-t ||u_i - u_j||^2), u = f / ||f||
    (N >= 2 rows); lower is more uniform on the sphere, 0 when every u is the same point."""
    u = F.normalize(f.double(), dim=1)
    sq = torch.pdist(u).pow(2)                                          # (N (N - 1) / 2,)
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel()))


# ---------------------------------------------------------------------------------- monitoring
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


# ------------------------------------------------------------------------------------ evaluation
def evaluate_encoder(encoder: nn.Module, data: Any, cfg: Any, device: torch.device, bf16: bool,
                     seed: int, views: Any = None, diagnostics: bool = True) -> Dict[str, Any]:
    """Features of the train and test splits once (kept on the device), then, on the representation h:
    the probe of cfg.protocol and the kNN; with `diagnostics`, the spectrum of h and of the projection z
    (train split) and, given `views` (an augmentation config), alignment and uniformity of h and z over
    two views of a fixed subset of cfg.alignment_images test images."""
    train_h, train_z = extract_features(encoder, data.train_images, data.mean, data.std, cfg.batch_size,
                                        device, bf16)
    test_h, _ = extract_features(encoder, data.test_images, data.mean, data.std, cfg.batch_size, device, bf16)
    train_y, test_y = data.train_labels.to(device), data.test_labels.to(device)
    k = len(data.classes)
    t0 = time.perf_counter()
    if cfg.protocol == "standard":
        probe = standard_probe(encoder, data, train_h, test_h, cfg, device, bf16, seed)
        probe["epochs"] = cfg.standard_epochs
    else:
        probe = linear_probe(train_h, train_y, test_h, test_y, k, cfg.probe_weight_decays,
                             cfg.probe_val_fraction, cfg.probe_steps, seed)
    probe = {**probe, "protocol": cfg.protocol, "seconds": time.perf_counter() - t0}
    knn = knn_top1(train_h, train_y, test_h, test_y, k, cfg.knn_k, cfg.knn_temperature)
    results: Dict[str, Any] = {"linear_probe": probe, "knn": {"top1": knn, "k": min(cfg.knn_k, len(train_y)),
                                                              "temperature": cfg.knn_temperature}}
    if not diagnostics:
        return results
    results["spectrum"] = {"representation": spectrum(train_h), "projection": spectrum(train_z)}
    n = min(cfg.alignment_images, data.test_images.shape[0])
    if views is not None and n >= 2:
        order = torch.randperm(data.test_images.shape[0], generator=torch.Generator().manual_seed(0))[:n]
        (h_a, z_a), (h_b, z_b) = view_features(encoder, data.test_images, order, views, data.mean, data.std,
                                               cfg.batch_size, device, bf16, seed=0)
        results["alignment"] = {"representation": alignment(h_a, h_b), "projection": alignment(z_a, z_b)}
        results["uniformity"] = {"representation": (uniformity(h_a) + uniformity(h_b)) / 2,
                                 "projection": (uniformity(z_a) + uniformity(z_b)) / 2}
    return results


def evaluate_with_baseline(encoder: nn.Module, make_random_encoder, data: Any, cfg: Any,
                           device: torch.device, bf16: bool, seed: int, views: Any = None) -> Dict[str, Any]:
    """evaluate_encoder on `encoder`, and (probe and kNN only, same protocol) on a random initialisation
    of it when cfg.random_init."""
    results = evaluate_encoder(encoder, data, cfg, device, bf16, seed, views)
    if cfg.random_init:
        baseline = evaluate_encoder(make_random_encoder(), data, cfg, device, bf16, seed, diagnostics=False)
        results["random_init"] = {"linear_probe_top1": baseline["linear_probe"]["top1"],
                                  "knn_top1": baseline["knn"]["top1"]}
    return results


# --------------------------------------------------------------------------------- specrep eval
def _state_mismatch(expected: Dict[str, Any], found: Dict[str, Any]) -> Tuple[list, list]:
    return sorted(set(expected) - set(found)), sorted(set(found) - set(expected))


def _views_config(cfg: Any, trained: Dict[str, Any]) -> Any:
    """The augmentation whose two views alignment and uniformity compare: the one given on the command
    line (`augmentation=...`), else the checkpoint's training augmentation. (A dataset option can bring
    an augmentation default along; only the user's own choice replaces the checkpoint's.)"""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from .config import AugmentationConfig

    chosen = cfg.augmentation is not None
    if chosen and HydraConfig.initialized():
        chosen = any(o.split("=")[0].lstrip("+~").split(".")[0] == "augmentation"
                     for o in HydraConfig.get().overrides.task)
    if chosen:
        return cfg.augmentation
    return OmegaConf.merge(OmegaConf.structured(AugmentationConfig), trained["augmentation"])


def _load_strict(module: nn.Module, state: Dict[str, Any], path: Path, what: str) -> nn.Module:
    """module with `state` loaded strictly; a CheckpointError naming what does not fit otherwise."""
    from .checkpoint import CheckpointError
    missing, unexpected = _state_mismatch(module.state_dict(), state)
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not fit the {what} its config describes "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:   # same keys, other shapes
        raise CheckpointError(f"{path}: the weights do not fit the {what} its config describes "
                              f"({str(err).strip().splitlines()[-1].strip()})") from None
    return module


def evaluate_checkpoint(cfg: Any, run_dir: Path) -> Dict[str, Any]:
    """`specrep eval`: rebuild the encoder from the checkpoint's own config, load it strictly, probe it.

    The dataset is the checkpoint's unless the eval config selects one (`dataset=...`); so are the
    views of alignment and uniformity (the training augmentation) unless `augmentation=...` is given.
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
        views = _views_config(cfg, trained)
    except Exception as err:
        raise CheckpointError(f"{path} holds a config this specrep cannot read "
                              f"({str(err).splitlines()[0]})") from None
    in_channels = ckpt["data"]["in_channels"]
    tower_input = ckpt["data"].get("input", "rgb")   # lab_l: a Lab-split run's phi takes RGB in [0, 1]
    try:
        encoder = build_encoder(enc_cfg, in_channels, tower_input)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: its encoder cannot be built ({err})") from None
    encoder = _load_strict(encoder, ckpt["encoder"], path, "encoder").to(device)
    text_tower = None
    if "tokenizer" in ckpt:   # an image-text run: its text tower comes back for zero-shot and retrieval
        from .text import Tokenizer, text_encoder
        try:
            tokenizer = Tokenizer.from_state(ckpt["tokenizer"])
            text_cfg = OmegaConf.create(trained["objective"]["text"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{path}: its tokenizer or text-tower config cannot be read ({err})") from None
        weights = {k[len("encoder_y."):]: v for k, v in ckpt["objective"].items() if k.startswith("encoder_y.")}
        text_tower = _load_strict(text_encoder(text_cfg, enc_cfg, len(tokenizer)), weights, path,
                                  "text tower").to(device)
    data = load_dataset(data_cfg, device)
    if data.in_channels != in_channels:
        raise DatasetError(f"dataset {data_cfg.name} has {data.in_channels}-channel images but the "
                           f"checkpoint's encoder takes {in_channels} channels")

    t0 = time.perf_counter()
    if "mean" in ckpt["data"]:   # normalise as in training (Lab-split towers: none), whatever the dataset
        data.mean, data.std = torch.tensor(ckpt["data"]["mean"]), torch.tensor(ckpt["data"]["std"])
    results = evaluate_with_baseline(encoder, lambda: seeded_encoder(enc_cfg, in_channels, cfg.seed,
                                                                     tower_input).to(device),
                                     data, cfg.eval, device, bf16, cfg.seed, views)
    if text_tower is not None:
        from .zeroshot import evaluate_two_towers
        results.update(evaluate_two_towers(encoder, text_tower, tokenizer, text_cfg.context_length, data,
                                           cfg.eval, device, bf16))
    report = {
        "run": {"checkpoint": str(path), "objective": trained["objective"]["name"],
                "encoder": enc_cfg.name, "augmentation": trained["augmentation"]["name"],
                "dataset": data_cfg.name, "trained_on": trained["dataset"]["name"],
                "epochs": ckpt.get("epoch"), "batch_size": trained["trainer"]["batch_size"],
                "seed": trained.get("seed"), "views": views.name, "device": str(device),
                "precision": "bf16" if bf16 else "fp32"},
        **results,
        "history": ckpt.get("history", []),   # the training run's monitoring, up to this checkpoint
        "timing": {"eval_seconds": time.perf_counter() - t0},
    }
    write_report(run_dir, report)
    print_report(report)
    return report
