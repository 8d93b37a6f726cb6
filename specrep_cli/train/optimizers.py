"""Optimizers and the learning-rate schedule: SGD, AdamW and LARS; warm-up then cosine, per step.

    lr = applied_lr(cfg.optim, batch_size)        # the linear scaling rule, when on
    optimizer = build_optimizer(method, cfg.optim, lr)
    lrs = lr_schedule(lr, total_steps, warmup_steps, min_ratio)   # lrs[step]: computed per step

Biases, normalisation weights and scalars (every parameter with ndim <= 1) get no weight decay and,
under LARS, no layer-wise adaptation (as in SimCLR and Barlow Twins).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import AdamWConfig, LARSConfig, OptimConfig, SGDConfig
from ..errors import SpecrepError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017).

    For a parameter w with gradient g in a group with `adapt=True`:
        d = g + weight_decay * w
        trust = eta * ||w|| / ||d||   (1 where either norm is 0)
        with clip_lr: trust <- min(trust / lr, 1)   (solo-learn's clip_lr: the layer's rate lr * trust
                                                     becomes min(eta ||w|| / ||d||, lr))
        v <- momentum * v + lr * trust * d;   w <- w - v
    Groups with `adapt=False` (biases, norms) take plain SGD steps with momentum. The trust ratio
    stays a tensor on the device: no host sync.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001, clip_lr: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      clip_lr=clip_lr, adapt=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                d = w.grad.add(w, alpha=group["weight_decay"]) if group["weight_decay"] else w.grad.clone()
                if group["adapt"]:
                    w_norm, d_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm,
                                        torch.ones_like(w_norm))
                    if group["clip_lr"]:
                        trust = (trust / group["lr"]).clamp(max=1.0)
                    d.mul_(trust)
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(w)
                v = state["momentum_buffer"]
                v.mul_(group["momentum"]).add_(d, alpha=group["lr"])
                w.sub_(v)
        return loss


def applied_lr(optim: OptimConfig, batch_size: int) -> float:
    """The linear scaling rule, when on: lr = optim.lr * batch_size / 256."""
    return optim.lr * batch_size / 256 if optim.scale_lr else optim.lr


@dataclass(frozen=True)
class Schedule:
    """The learning rate of every step, computed when asked (`schedule[step]`), never stored: linear
    warm-up from 0 over warmup_steps, then cosine decay to min_ratio * base_lr at total_steps."""
    base_lr: float
    total_steps: int
    warmup_steps: int
    min_ratio: float

    def __len__(self) -> int:
        return self.total_steps

    def __getitem__(self, step: int) -> float:
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} is outside the schedule's {self.total_steps} steps")
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        t = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.base_lr * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def lr_schedule(base_lr: float, total_steps: int, warmup_steps: int, min_ratio: float) -> Schedule:
    """Per-step learning rates: linear warm-up from 0, then cosine decay to min_ratio * base_lr."""
    return Schedule(base_lr, total_steps, warmup_steps, min_ratio)


def build_optimizer(module: nn.Module, optim: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD, AdamW or LARS over the trainable parameters; with optim.exclude_bias_and_norm the ndim <= 1
    ones (biases, normalisation weights, scalars) get no decay (nor adaptation). On CUDA, SGD and
    AdamW use torch's fused kernels."""
    params = [p for p in module.parameters() if p.requires_grad]
    excluded = (lambda p: p.ndim <= 1) if optim.exclude_bias_and_norm else (lambda p: False)
    groups = [{"params": [p for p in params if not excluded(p)], "weight_decay": optim.weight_decay},
              {"params": [p for p in params if excluded(p)], "weight_decay": 0.0}]
    fused = bool(params) and all(p.is_cuda for p in params)   # torch's fused CUDA kernels: one launch a step
    if isinstance(optim, SGDConfig):
        return torch.optim.SGD(groups, lr=lr, momentum=optim.momentum, nesterov=optim.nesterov,
                               fused=fused or None)
    if isinstance(optim, AdamWConfig):
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(optim.betas), fused=fused or None)
    if isinstance(optim, LARSConfig):
        groups[1]["adapt"] = False
        return LARS(groups, lr=lr, momentum=optim.momentum, eta=optim.eta, clip_lr=optim.clip_lr)
    raise SpecrepError(f"unknown optimizer {optim.name!r}: use optim=sgd, adamw or lars")
