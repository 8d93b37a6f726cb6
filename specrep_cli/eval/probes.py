"""Classifiers on frozen features: the fast linear probe, the papers' standard protocol, and kNN.

    linear_probe(train_h, train_y, test_h, test_y, ...)    # `fast`: L-BFGS logistic regression
    standard_probe(encoder, data, train_h, test_h, ...)    # `standard`: SGD on augmented images
    knn_top1(train_h, train_y, test_h, test_y, num_classes, cfg.knn)

The probe's L2 strength is chosen on a held-out part of the train split, never on the test split.
Accuracies are percentages (0 to 100).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import FastProbeConfig, KNNConfig, StandardProbeConfig, ViewConfig
from ..data.augment import augment, normalize
from ..data.batches import batches
from ..data.splits import ImageData, Images
from ..progress import phase, tracked
from .features import FeatureReader, encode, frozen

# The standard protocol's augmentation: random resized crop and horizontal flip only.
STANDARD_VIEW = ViewConfig(crop_scale=[0.08, 1.0], crop_ratio=[3 / 4, 4 / 3], flip_p=0.5, jitter_p=0.0,
                           brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0,
                           blur_p=0.0, solarize_p=0.0)


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


def _scores(logits: Tensor, y: Tensor) -> Dict[str, float]:
    return {"top1": _topk_accuracy(logits, y, 1), "top5": _topk_accuracy(logits, y, 5)}


def probe_split(n: int, val_fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """Indices (fit, held_out) of the labelled train split for choosing the probe's L2 strength."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:], perm[:n_val]


def _whitened(train_x: Tensor, test_x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(train z, test z, M): both splits standardised and whitened with the train split's statistics
    (unlabelled), z = x P, and the penalty M = P^T P that keeps the fit's minimiser that of x's."""
    train_x, test_x = _standardize(train_x, test_x)
    p, m = whitener(train_x)
    return train_x @ p, test_x @ p, m


def fixed_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
                weight_decay: float, steps: int) -> Dict[str, float]:
    """linear_probe's model at an L2 strength chosen already (no held-out fits): one fit on the whole
    train split from zero, at most `steps` L-BFGS iterations; top-1/top-5 (%) on the test split."""
    train_z, test_z, m = _whitened(train_x, test_x)
    with phase("fitting the linear probe", 1, "fits") as shown:
        w, _ = _fit_logistic(train_z, train_y, num_classes, weight_decay, steps, penalty=m)
        shown.advance()
    return _scores(_predict(w, test_z), test_y)


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
                 cfg: FastProbeConfig, seed: int = 0) -> Dict[str, float]:
    """The fast protocol: top-1/top-5 (%) of a logistic-regression probe on standardised features x,
    minimising CE(x W + b, y) + (weight_decay / 2) ||W||_F^2.

    Each L2 strength of cfg.weight_decays is fitted (at most cfg.steps iterations) (full-batch L-BFGS, on the
    device) on the train split minus a held-out
    part (probe_split, cfg.val_fraction) and scored on that part; the best is refitted on the whole train split, warm
    started from its held-out fit, and scored on the test split. The test split is only scored.

    The fits run in whitened coordinates z = x P, W = P V, with P = whitener(train x): the same
    minimiser (the penalty becomes tr(V^T P^T P V)), but the loss is far better conditioned, so L-BFGS
    converges in tens of iterations instead of stalling for hundreds on correlated features.
    """
    train_z, test_z, m = _whitened(train_x, test_x)
    fit_idx, val_idx = probe_split(train_z.shape[0], cfg.val_fraction, seed)
    fit_idx, val_idx = fit_idx.to(train_z.device), val_idx.to(train_z.device)
    best_wd, best_acc, best_w, w = cfg.weight_decays[0], -1.0, None, None
    with phase("fitting the linear probe", len(cfg.weight_decays) + 1, "fits") as shown:   # each L2 strength, the refit
        for wd in sorted(cfg.weight_decays, reverse=True):  # strong to weak, each warm-started from the last
            w, _ = _fit_logistic(train_z[fit_idx], train_y[fit_idx], num_classes, wd, cfg.steps, init=w, penalty=m)
            acc = _topk_accuracy(_predict(w, train_z[val_idx]), train_y[val_idx], 1)
            if acc > best_acc:
                best_wd, best_acc, best_w = wd, acc, w
            shown.advance()
        w, iterations = _fit_logistic(train_z, train_y, num_classes, best_wd, cfg.steps, init=best_w, penalty=m)
        shown.advance()
    logits = _predict(w, test_z)
    return {**_scores(logits, test_y), "weight_decay": best_wd, "val_top1": best_acc, "iterations": iterations}



# -------------------------------------------------------------------------- the standard protocol
def standard_lr(lr: float, epoch: int, epochs: int) -> float:
    """The step schedule at 0-based `epoch`: lr x 0.1 from round(0.6 epochs), x 0.01 from round(0.8 epochs)
    (epochs 60 and 80 of 100, as in MoCo's linear evaluation)."""
    return lr * 0.1 ** sum(epoch >= m for m in (round(0.6 * epochs), round(0.8 * epochs)))


def train_linear_sgd(epoch_batches: Callable[[int], Iterable[Tuple[Tensor, Tensor]]], dim: int,
                     num_classes: int, cfg: StandardProbeConfig, device: torch.device,
                     momentum: float = 0.9) -> nn.Linear:
    """A linear classifier (zero init) trained by SGD with momentum on cross-entropy, for cfg.epochs
    passes over epoch_batches(epoch) -> (features (B, dim), labels (B,)), cfg.lr stepped by standard_lr,
    L2 cfg.weight_decay."""
    linear = nn.Linear(dim, num_classes).to(device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.SGD(linear.parameters(), lr=cfg.lr, momentum=momentum, weight_decay=cfg.weight_decay)
    with torch.enable_grad():
        for epoch in tracked(range(cfg.epochs), "training the linear probe", cfg.epochs, "epochs"):
            for group in opt.param_groups:
                group["lr"] = standard_lr(cfg.lr, epoch, cfg.epochs)
            for x, y in epoch_batches(epoch):
                loss = F.cross_entropy(linear(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return linear.eval()


def standard_probe_on_features(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                               num_classes: int, cfg: StandardProbeConfig, seed: int = 0) -> Dict[str, float]:
    """The standard protocol's classifier on ready-made features, without augmentation: standardised
    features, shuffled mini-batches of cfg.batch_size, train_linear_sgd; top-1/top-5 (%) on the test
    split (cfg.standardize and cfg.test_resize do not apply: the features are given)."""
    train_x, test_x = _standardize(train_x, test_x)
    g = torch.Generator().manual_seed(seed)
    n = train_x.shape[0]

    def epoch_batches(epoch: int) -> Iterator[Tuple[Tensor, Tensor]]:
        perm = torch.randperm(n, generator=g).to(train_x.device)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            yield train_x[idx], train_y[idx]

    linear = train_linear_sgd(epoch_batches, train_x.shape[1], num_classes, cfg, train_x.device)
    with torch.no_grad():
        return _scores(linear(test_x), test_y)


def standard_probe(encoder: nn.Module, data: ImageData, train_h: Tensor, test_h: Tensor, cfg: StandardProbeConfig,
                   reader: FeatureReader, seed: int) -> Dict[str, float]:
    """The papers' protocol: a linear layer on the frozen backbone's features of train images augmented
    afresh every epoch (random resized crop, scale [0.08, 1], and horizontal flip only), SGD with
    momentum 0.9, batch cfg.batch_size, lr cfg.lr stepped x0.1 at 60% and 80% of cfg.epochs; scored
    on the clean test features test_h.

    With cfg.standardize the features are standardised with the clean train features'
    (train_h) per-dimension mean and std (a BatchNorm without affine parameters, frozen); without, the
    layer sees them raw (MoCo's and HaoChen et al.'s protocol, with their lr of 30). With
    cfg.test_resize = S, the test images are resized to S x S and centre-cropped back to their
    size before their features are taken (HaoChen et al.: 40 for CIFAR's 32 px). Each epoch is a forward
    pass of the backbone over the whole train split: slow.
    """
    device = reader.compute.device
    if cfg.test_resize:
        test_h = zoomed_features(encoder, data.test_images, cfg.test_resize, reader)
    mu, sd = train_h.mean(0, keepdim=True), train_h.std(0, keepdim=True).clamp_min(1e-6)
    if not cfg.standardize:
        mu, sd = torch.zeros_like(mu), torch.ones_like(sd)
    mean, std = reader.mean.to(device), reader.std.to(device)
    labels = data.train_labels.to(device)
    images = data.train_images
    n = images.shape[0]
    g = torch.Generator().manual_seed(seed)                          # the order: one draw an epoch
    g_view = torch.Generator(device=device).manual_seed(seed + 1)    # crops and flips, on the device: another stream
    bs = cfg.batch_size

    def epoch_batches(epoch: int) -> Iterator[Tuple[Tensor, Tensor]]:
        order = torch.randperm(n, generator=g)
        label_order = order.to(device)
        if isinstance(images, Tensor):
            order = order.to(images.device)
        with frozen(encoder) as channels_last:   # module state only: grad mode must not leak past the yield
            for i, batch in enumerate(batches(images, order, bs, device)):
                with torch.no_grad():
                    x = augment(batch, STANDARD_VIEW, mean, std, generator=g_view)
                    h, _ = encode(encoder, x, reader.compute, channels_last, project=False)
                yield (h - mu) / sd, labels[label_order[i * bs:(i + 1) * bs]]

    linear = train_linear_sgd(epoch_batches, train_h.shape[1], len(data.classes), cfg, device)
    with torch.no_grad():
        return _scores(linear((test_h - mu) / sd), data.test_labels.to(device))


def zoom(batch: Tensor, size: int) -> Tensor:
    """uint8 (B, C, H, H) resized to size x size (bilinear, antialiased) and centre-cropped back to
    H x H: torchvision's Resize(size) then CenterCrop(H), on a whole batch."""
    side = batch.shape[-1]
    top = int(round((size - side) / 2.0))
    x = F.interpolate(batch.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[..., top:top + side, top:top + side].round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def zoomed_features(encoder: nn.Module, images: Images, size: int, reader: FeatureReader) -> Tensor:
    """Representations h of `zoom(images, size)` (eval mode, normalised as training was)."""
    device = reader.compute.device
    mean, std = reader.mean.to(device), reader.std.to(device)
    out = []
    with frozen(encoder) as channels_last, phase("encoding the zoomed test split", images.shape[0], "images") as shown:
        for batch in batches(images, torch.arange(images.shape[0]), reader.batch_size, device):
            x = normalize(zoom(batch, size), mean, std)
            out.append(encode(encoder, x, reader.compute, channels_last, project=False)[0])
            shown.advance(batch.shape[0])
    return torch.cat(out)


# ------------------------------------------------------------------------------------------- kNN
@torch.no_grad()
def knn_top1(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int,
             cfg: KNNConfig, chunk: int = 1024) -> float:
    """Weighted kNN (Wu et al. 2018): the k = cfg.k train features of highest cosine similarity s_i vote
    for their class with weight exp(s_i / cfg.temperature); top-1 (%) of the class with the most weight."""
    train_u, temperature = F.normalize(train_x, dim=1), cfg.temperature
    k = min(cfg.k, train_u.shape[0])
    correct = 0
    buffer = train_u.new_empty(min(chunk, test_x.shape[0]), train_u.shape[0])   # one (b, N) block, reused:
    with phase("classifying by kNN", test_x.shape[0], "images") as shown:       # no fresh pages per chunk
        for start in range(0, test_x.shape[0], chunk):
            query = F.normalize(test_x[start:start + chunk], dim=1)
            sim = torch.mm(query, train_u.T, out=buffer[:query.shape[0]])       # (b, N)
            top_sim, top_idx = sim.topk(k, dim=1, sorted=False)                 # (b, k), any order
            votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
            votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
            correct += (votes.argmax(1) == test_y[start:start + chunk]).sum().item()
            shown.advance(sim.shape[0])
    return 100.0 * correct / test_x.shape[0]
