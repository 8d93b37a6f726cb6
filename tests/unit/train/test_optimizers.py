"""Optimizers and the schedule: LARS against its formula, the warm-up + cosine schedule, no decay on vectors."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from specrep_cli import config
from specrep_cli.config import from_dict
from specrep_cli.train.optimizers import LARS, applied_lr, build_optimizer, lr_schedule


def test_lars_step_matches_its_formula():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    b = nn.Parameter(torch.randn(3, dtype=torch.float64))
    w.grad, b.grad = torch.randn_like(w), torch.randn_like(b)
    w0, b0, gw, gb = w.detach().clone(), b.detach().clone(), w.grad.clone(), b.grad.clone()
    lr, wd, eta, m = 0.5, 0.01, 0.02, 0.9
    opt = LARS([{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0, "adapt": False}],
               lr=lr, momentum=m, eta=eta)
    opt.step()
    d = gw + wd * w0
    trust = eta * w0.norm() / d.norm()
    torch.testing.assert_close(w.detach(), w0 - lr * trust * d)
    torch.testing.assert_close(b.detach(), b0 - lr * gb)          # not adapted: plain SGD
    w1 = w.detach().clone()
    opt.step()                                                     # momentum carries the first update
    d2 = gw + wd * w1
    v = m * lr * trust * d + lr * (eta * w1.norm() / d2.norm()) * d2
    torch.testing.assert_close(w.detach(), w1 - v)


def test_lars_keeps_zero_weights_finite():
    w = nn.Parameter(torch.zeros(3, 3))
    w.grad = torch.ones(3, 3)
    LARS([w], lr=0.1).step()
    assert torch.isfinite(w).all() and (w != 0).all()   # trust ratio 1 when ||w|| = 0


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = lr_schedule(1.0, total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    every = list(lrs)
    assert len(every) == 110 and min(every) >= 0.1 - 1e-12 and all(a >= b for a, b in zip(every[10:], every[11:]))
    with pytest.raises(IndexError):
        lrs[110]


def test_a_schedule_of_billions_of_steps_is_computed_per_step_not_stored():
    lrs = lr_schedule(1.0, total_steps=4 * 10**9, warmup_steps=10**6, min_ratio=0.0)   # a list: 32 GB
    assert len(lrs) == 4 * 10**9 and lrs[0] == pytest.approx(1e-6)
    assert lrs[4 * 10**9 - 1] == pytest.approx(0.0, abs=1e-12)
    assert lrs[10**6 - 1] == pytest.approx(1.0) and lrs[10**6 + (4 * 10**9 - 10**6) // 2] == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(config.OPTIM_SCHEMAS))
def test_vectors_get_no_weight_decay(name):
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    cfg = config.OPTIM_SCHEMAS[name]()
    opt = build_optimizer(model, cfg, applied_lr(cfg, 512))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight)}
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.lr * 2 if cfg.scale_lr else cfg.lr)


@pytest.mark.parametrize("name", sorted(config.OPTIM_SCHEMAS))
def test_every_parameter_is_decayed_when_asked(name):
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    cfg = from_dict(config.OPTIM_SCHEMAS[name], {"exclude_bias_and_norm": False})
    opt = build_optimizer(model, cfg, 0.1)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(p) for p in model.parameters()}


def test_lars_clip_lr_caps_the_layer_rate_at_lr():
    """solo-learn's clip_lr: the step is min(eta ||w|| / ||d||, lr) * d instead of lr * trust * d."""
    for w_scale in (1e-3, 1e3):   # a trust ratio far below and far above lr
        w = nn.Parameter(w_scale * torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
        w.grad = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        w0, d = w.detach().clone(), w.grad.clone()
        lr, eta = 0.5, 0.02
        LARS([w], lr=lr, momentum=0.9, eta=eta, clip_lr=True).step()
        rate = min(eta * w0.norm() / d.norm(), lr)
        torch.testing.assert_close(w.detach(), w0 - rate * d)
