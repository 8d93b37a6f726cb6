"""objective=spectral_clip: spectral_clip_loss against a brute-force float64 reference written from its
formula (double loops, no code shared with the module), its gradient against finite differences, the
invariances that identify two towers, its minimiser on a known joint distribution, and the method's step.
"""
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from specrep_cli import config
from specrep_cli.config import ConfigError, from_dict
from specrep_cli.eval.towers import norm_cap
from specrep_cli.models.encoders import build_encoder
from specrep_cli.objectives import losses as obj
from specrep_cli.objectives.methods import build_method

F64 = torch.float64


def rows(B, d, seed, requires_grad=True):
    """Rows of lengths 0.1 to 2.1, so that a ball of radius 1 moves some of them and not others."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, d, dtype=F64, generator=g) * (torch.rand(B, 1, dtype=F64, generator=g) * 2 + 0.1)
    return z.requires_grad_(requires_grad)


def ref_spectral_clip(zx, zy, mu, nested=False):
    """-2 mean_i phi_i.nu_i + mean_{i != j} (phi_i.nu_j)^2, over the prefixes k = 1..d when nested; rows
    first scaled into the ball |v| <= sqrt(mu), everything divided by mu."""
    B, d = zx.shape
    r = math.sqrt(mu)

    def ball(v):
        n = torch.sqrt((v * v).sum())
        return v * (r / n) if n > r else v

    phi, nu = [ball(v) for v in zx], [ball(v) for v in zy]
    attract = repel = 0
    for k in range(1, d + 1) if nested else [d]:
        attract = attract - 2 / B * sum(phi[i][:k] @ nu[i][:k] for i in range(B)) / mu
        repel = repel + sum((phi[i][:k] @ nu[j][:k]) ** 2
                            for i in range(B) for j in range(B) if i != j) / (B * (B - 1)) / mu
    return attract + repel, {"attract": attract, "repel": repel}


def assert_close(got, want, rtol=1e-9, atol=1e-10):
    torch.testing.assert_close(got, torch.as_tensor(want, dtype=got.dtype), rtol=rtol, atol=atol)


# ---------------------------------------------------------------- the formula

# (B, d): B > d takes the d x d Grams, B <= d the B x B matrix
@pytest.mark.parametrize("B,d", [(2, 1), (3, 5), (8, 3), (17, 4), (5, 16), (8, 8)])
@pytest.mark.parametrize("mu", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("nested", [False, True])
def test_matches_reference(B, d, mu, nested):
    zx, zy = rows(B, d, seed=1), rows(B, d, seed=2)
    loss, terms = obj.spectral_clip_loss(zx, zy, mu, nested=nested, return_terms=True)
    want, want_terms = ref_spectral_clip(zx, zy, mu, nested)
    assert loss.dtype == F64 and loss.ndim == 0
    assert_close(loss, want)
    assert terms.keys() == want_terms.keys() == {"attract", "repel"}
    for key in terms:
        assert_close(terms[key], want_terms[key])
        assert not terms[key].requires_grad
    assert_close(sum(terms.values()), loss)
    for got, expected in zip(torch.autograd.grad(loss, [zx, zy]), torch.autograd.grad(want, [zx, zy])):
        assert_close(got, expected)


@pytest.mark.parametrize("B,d", [(9, 3), (4, 6)])
@pytest.mark.parametrize("nested", [False, True])
def test_gradient_matches_finite_differences(B, d, nested):
    zx, zy = rows(B, d, seed=3), rows(B, d, seed=4)
    mu = d / 2
    norms = torch.cat([zx, zy]).detach().norm(dim=1)
    assert (norms > math.sqrt(mu) + 0.01).any() and (norms < math.sqrt(mu) - 0.01).any()   # rows both sides
    assert torch.autograd.gradcheck(lambda a, b: obj.spectral_clip_loss(a, b, mu, nested=nested), (zx, zy))


def test_rejects_a_single_pair():
    with pytest.raises(ValueError, match="B >= 2"):
        obj.spectral_clip_loss(torch.randn(1, 3), torch.randn(1, 3))


def test_no_b_by_b_allocation():
    """B = 8192 pairs, d = 64: the largest allocation stays far below a B x B fp32 matrix (256 MiB)."""
    zx, zy = torch.randn(8192, 64, requires_grad=True), torch.randn(8192, 64, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        obj.spectral_clip_loss(zx, zy, 4.0).backward()
    assert max(e.self_cpu_memory_usage for e in prof.events()) < 64 * 2**20


# ---------------------------------------------------------------- what the loss sees of the towers

def test_symmetric_in_the_towers_and_sensitive_to_the_pairing():
    zx, zy = rows(10, 4, seed=5), rows(10, 4, seed=6)
    assert_close(obj.spectral_clip_loss(zx, zy, 1.0), obj.spectral_clip_loss(zy, zx, 1.0))
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert_close(obj.spectral_clip_loss(zx[perm], zy[perm], 1.0), obj.spectral_clip_loss(zx, zy, 1.0))
    aligned = obj.spectral_clip_loss(zx, zx, 1.0)   # on matched pairs, mismatching them costs
    assert obj.spectral_clip_loss(zx, zx.roll(1, 0), 1.0) > aligned


def test_depends_on_phi_and_nu_only_through_phi_transpose_nu():
    """phi -> M^T phi, nu -> M^-1 nu leaves every phi(x)^T nu(y) and so the loss unchanged (rows inside
    the ball): two towers are identified up to an invertible map of R^d. With rows outside the ball,
    an orthogonal M still leaves it unchanged (the projection commutes with it)."""
    zx, zy = rows(12, 4, seed=7, requires_grad=False), rows(12, 4, seed=8, requires_grad=False)
    m = torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(1)) + 3 * torch.eye(4, dtype=F64)
    mx, my = zx @ m, zy @ torch.linalg.inv(m).T
    big = 4 * max(zx.norm(dim=1).max(), zy.norm(dim=1).max(), mx.norm(dim=1).max(), my.norm(dim=1).max()) ** 2
    assert_close(obj.spectral_clip_loss(mx, my, big), obj.spectral_clip_loss(zx, zy, big))
    q = torch.linalg.qr(m).Q
    assert_close(obj.spectral_clip_loss(zx @ q, zy @ q, 1.0), obj.spectral_clip_loss(zx, zy, 1.0))


def _batch(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) indices of the batch holding every cell (x, y) counts[x, y] times."""
    x, y = torch.nonzero(torch.ones_like(counts)).T
    return x.repeat_interleave(counts.flatten()), y.repeat_interleave(counts.flatten())


def _minimise(counts: torch.Tensor, d: int, mu: float):
    """phi and nu, free tables (n, d) and (m, d), that minimise spectral_clip_loss on _batch(counts);
    returns (phi, nu, the loss at the minimum, times mu: the unscaled L)."""
    n, m = counts.shape
    x, y = _batch(counts)
    g = torch.Generator().manual_seed(0)
    phi = (0.1 * torch.randn(n, d, dtype=F64, generator=g)).requires_grad_()
    nu = (0.1 * torch.randn(m, d, dtype=F64, generator=g)).requires_grad_()
    opt = torch.optim.LBFGS([phi, nu], max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = mu * obj.spectral_clip_loss(phi[x], nu[y], mu)
        loss.backward()
        return loss

    opt.step(closure)
    return phi.detach(), nu.detach(), closure().detach()


@pytest.mark.parametrize("symmetric", [False, True], ids=["image-text", "one-modality"])
def test_minimiser_is_the_top_singular_pairs_of_the_cross_kernel(symmetric):
    """On a known joint p(x, y) (a batch holding each pair as often as p says), the minimiser gives
    sqrt(p(x)) phi(x)^T nu(y) sqrt(p(y)) = the rank-d truncated SVD of K = p(x, y) / sqrt(p(x) p(y)),
    and the loss -sum_{k <= d} s_k^2, up to the O(1/B) of sampling without replacement. For a symmetric
    PSD joint one tower serves both: phi = nu attains the minimum (objective=spectral's case)."""
    g = torch.Generator().manual_seed(3)
    f = torch.rand(5, 3, dtype=F64, generator=g)
    joint = f @ f.T if symmetric else f @ torch.rand(3, 4, dtype=F64, generator=g)   # rank 3 > d = 2
    counts = (joint / joint.sum() * 2000).round().long()
    p = counts.double() / counts.sum()
    px, py = p.sum(1), p.sum(0)
    u, s, vh = torch.linalg.svd(p / torch.outer(px.sqrt(), py.sqrt()))
    d, mu = 2, 100.0
    assert s[d - 1] - s[d] > 0.05   # a gap: the top-d pairs are identified
    phi, nu, loss = _minimise(counts, d, mu)
    assert max(phi.pow(2).sum(1).max(), nu.pow(2).sum(1).max()) < mu   # the ball capped nothing
    fitted = (px.sqrt()[:, None] * phi) @ (py.sqrt()[:, None] * nu).T
    truncated = u[:, :d] @ torch.diag(s[:d]) @ vh[:d]
    assert (fitted - truncated).norm() < 1e-2 * s[1]   # s[0] = 1 is the constant pair; s[1] the first real one
    assert_close(loss, -(s[:d] ** 2).sum(), rtol=1e-3, atol=0)
    if symmetric:
        w, q = torch.linalg.eigh(truncated)   # PSD: one factor for both towers
        shared = q[:, -d:] * w[-d:].sqrt() / px.sqrt()[:, None]
        x, y = _batch(counts)
        assert_close(mu * obj.spectral_clip_loss(shared[x], shared[y], mu), loss, rtol=1e-5, atol=0)


# ---------------------------------------------------------------- the schema and the method

def test_schema_is_a_two_tower_one_with_a_norm_cap():
    assert "spectral_clip" in config.TWO_TOWER_OBJECTIVES
    cfg = from_dict(config.SpectralCLIPConfig, {"mu": 2.5})
    assert norm_cap(cfg) == 2.5 and cfg.pairs == "auto"
    with pytest.raises(ConfigError, match="objective.mu must be > 0"):
        from_dict(config.SpectralCLIPConfig, {"mu": 0.0})
    with pytest.raises(ConfigError, match="objective.pairs"):
        from_dict(config.SpectralCLIPConfig, {"pairs": "captions"})


ENCODER = from_dict(config.ImageEncoderConfig,
                    {"name": "convnet", "width": 2, "projector_hidden_dim": 8, "projector_out_dim": 4})


@pytest.mark.parametrize("nested", [False, True])
def test_training_steps_move_both_towers_and_lower_the_loss(nested):
    torch.manual_seed(0)
    towers = []

    def make_encoder(tower="x"):
        towers.append(tower)
        return build_encoder(ENCODER, 3).double()

    cfg = from_dict(config.SpectralCLIPConfig, {"mu": 1.0, "nested": nested})
    method = build_method(cfg, make_encoder, 8).double()
    assert towers == ["x", "y"] and method.encoder is not method.encoder_y
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 8, 8, dtype=F64, generator=g)
    y = x + 0.1 * torch.randn(8, 3, 8, 8, dtype=F64, generator=g)   # paired inputs
    opt = torch.optim.SGD(method.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        terms = method(x, y)
        assert terms.keys() == {"loss", "attract", "repel"}
        assert_close(terms["attract"] + terms["repel"], terms["loss"].detach())
        opt.zero_grad()
        terms["loss"].backward()
        for tower in (method.encoder, method.encoder_y):
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tower.parameters())
        opt.step()
        method.after_step(0.5)
        losses.append(terms["loss"].item())
    assert losses[-1] < losses[0]
