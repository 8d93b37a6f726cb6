"""Objective modules: every one trains a step; targets, running moments and learnable scales behave."""
from __future__ import annotations

import math

import pytest
import torch

from specrep_cli import config
from specrep_cli.config import from_dict
from specrep_cli.models.encoders import build_encoder
from specrep_cli.objectives.methods import METHODS, build_method

ENCODER = from_dict(config.ImageEncoderConfig,
                    {"name": "convnet", "width": 2, "projector_hidden_dim": 8, "projector_out_dim": 4})


def make_method(name: str, batch_size: int = 6, **overrides):
    cfg = from_dict(config.OBJECTIVE_SCHEMAS[name], overrides)
    return build_method(cfg, lambda tower="x": build_encoder(ENCODER, 3).double(), batch_size).double()


def views(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 8, 8, generator=g, dtype=torch.float64), \
        torch.randn(b, 3, 8, 8, generator=g, dtype=torch.float64)


def grads(module) -> list:
    return [p.grad.clone() for p in module.encoder.parameters()]


def test_every_schema_has_a_method_and_a_yaml():
    from pathlib import Path
    yamls = {p.stem for p in (Path(__file__).resolve().parents[3] / "conf" / "objective").glob("*.yaml")}
    assert set(config.OBJECTIVE_SCHEMAS) == set(METHODS) == yamls


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_gives_finite_terms_and_encoder_gradients(name):
    torch.manual_seed(0)
    method = make_method(name)
    terms = method(*views())
    assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
    parts = {k: v for k, v in terms.items() if k not in ("loss", "logit_scale", "t", "bias")}   # shown, not summed
    if parts:   # named terms add up to the loss
        assert sum(parts.values()).item() == pytest.approx(terms["loss"].item(), rel=1e-9, abs=1e-12)
    terms["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in method.encoder.parameters())
    method.after_step(0.5)


def test_spectral_byol_without_target_and_other_view_lambda_is_the_spectral_gradient():
    """nu = sg(phi), Lambda = the other view's batch second moment: same gradient as
    -(2/B) sum_i a_i.b_i + (1/B^2) sum_{i,j} (a_i.b_j)^2 (the objectives issue, item 4)."""
    torch.manual_seed(0)
    method = make_method("spectral_byol", target_momentum=0.0, lambda_source="other_view")
    va, vb = views()
    method(va, vb)["loss"].backward()
    ours = grads(method)
    method.zero_grad()
    a, b = method.embed_pair(va, vb)
    n = a.shape[0]
    reference = -(2 / n) * (a * b).sum() + (a @ b.T).pow(2).sum() / n ** 2
    reference.backward()
    for g, r in zip(ours, grads(method)):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_pca_ema_estimate_equals_the_batch_estimate_on_the_first_step():
    """Before any running estimate exists, C_ema is the batch's C: both estimates, same gradient."""
    va, vb = views()
    results = []
    for estimate in ("batch", "ema"):
        torch.manual_seed(0)
        method = make_method("pca", penalty_estimate=estimate, lam=0.7)
        method(va, vb)["loss"].backward()
        results.append(grads(method))
    for g_batch, g_ema in zip(*results):
        torch.testing.assert_close(g_batch, g_ema, rtol=1e-9, atol=1e-12)


def test_pca_ema_updates_its_running_second_moment():
    method = make_method("pca", penalty_estimate="ema", second_moment_momentum=0.5)
    va, vb = views()
    method(va, vb)
    method.after_step(0.5)
    a, b = (z.detach() for z in method.embed_pair(va, vb))
    batch_c = (a.T @ a + b.T @ b) / (2 * a.shape[0])
    # first step: C_ema = C_batch, then m * C_ema + (1 - m) * C_batch = C_batch
    torch.testing.assert_close(method.second_moment.double(), batch_c, rtol=1e-5, atol=1e-6)


def test_ema_target_moves_towards_the_online_encoder():
    method = make_method("byol", target_momentum=0.9)
    online = [p.detach().clone() for p in method.encoder.parameters()]
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)
    before = [p.detach().clone() for p in method.target.net.parameters()]
    method.after_step(0.0)   # cosine schedule at progress 0: momentum = target_momentum
    for t, b, o in zip(method.target.net.parameters(), before, online):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * (o + 1.0))
    assert all(not p.requires_grad for p in method.target.net.parameters())


def test_byol_momentum_reaches_one_at_the_end():
    method = make_method("byol", target_momentum=0.5)
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)
    before = [p.detach().clone() for p in method.target.net.parameters()]
    method.after_step(1.0)
    for t, b in zip(method.target.net.parameters(), before):
        torch.testing.assert_close(t, b)


def test_binary_nce_bias_starts_at_minus_log_k():
    assert make_method("binary_nce", batch_size=9).bias.item() == pytest.approx(-math.log(8))
    assert make_method("binary_nce", num_negatives=3).bias.item() == pytest.approx(-math.log(3))
    assert not make_method("binary_nce").log_temperature.requires_grad
    assert make_method("binary_nce", learn_temperature=True).log_temperature.requires_grad


def test_clip_has_two_towers_and_a_learnable_scale():
    method = make_method("clip")
    assert method.encoder is not method.encoder_y
    assert method.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    method(*views())["loss"].backward()
    assert method.logit_scale.grad is not None
    assert all(p.grad is not None for p in method.encoder_y.parameters())


def test_spectral_byol_lambda_is_taken_from_earlier_batches():
    method = make_method("spectral_byol", target_momentum=0.0, second_moment_momentum=0.5)
    assert not method.second_moment_initialized
    method(*views(seed=0))
    method.after_step(0.5)
    first = method.second_moment.clone()
    assert method.second_moment_initialized and first.abs().sum() > 0
    method(*views(seed=1))
    method.after_step(0.5)
    assert not torch.equal(first, method.second_moment)


@pytest.mark.parametrize("name, settings", [("spectral_byol", {"target_momentum": 0.0}),
                                            ("pca", {"penalty_estimate": "ema"})])
def test_a_step_that_is_not_taken_leaves_the_running_estimate_as_it_was(name, settings):
    """Lambda_t / C_ema move only when after_step follows (a step skipped by trainer.max_bad_steps
    calls forward but not after_step): the next forward sees the same estimate and the same loss."""
    method = make_method(name, second_moment_momentum=0.5, **settings)
    method(*views(seed=0))
    method.after_step(0.5)
    estimate = method.second_moment.clone()
    loss_before = method(*views(seed=2))["loss"]
    method(*views(seed=1))   # a forward whose step is skipped: no after_step
    assert torch.equal(estimate, method.second_moment)
    torch.testing.assert_close(method(*views(seed=2))["loss"], loss_before, rtol=0, atol=0)


def test_clip_clamps_its_logit_scale_after_the_step():
    method = make_method("clip")
    with torch.no_grad():
        method.logit_scale.fill_(math.log(100) + 2.0)   # momentum carried it past the cap
    method.after_step(0.5)
    assert method.logit_scale.item() == pytest.approx(math.log(100))
    method(*views())["loss"].backward()
    assert method.logit_scale.grad != 0   # a gradient even at the cap: it can come back down


def test_binary_nce_takes_at_most_b_minus_1_negatives():
    # the default k = 64 on a batch of 6: all 5 others, the bias initialised to -log 5, the loss of k = B-1
    torch.manual_seed(0)
    capped = make_method("binary_nce")
    torch.manual_seed(0)
    every = make_method("binary_nce", num_negatives=None)
    assert capped.num_negatives == 64 and capped.bias.item() == pytest.approx(-math.log(5))
    x, y = views()
    torch.testing.assert_close(capped(x, y)["loss"], every(x, y)["loss"])
