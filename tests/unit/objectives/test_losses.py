"""Tests of specrep_cli.objectives against brute-force references written from each formula.

The references loop over i, j in float64 and share no code with the module, so a test never
compares the code with its own output. Gradients are compared too (autograd through the loops).
"""

import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from specrep_cli.objectives import losses as obj

SHAPES = [(2, 1), (3, 5), (8, 3), (17, 4), (5, 16)]
F64 = torch.float64


def randn(*shape, seed, scale=1.0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=F64, generator=g) * scale
    return x.requires_grad_(requires_grad)


def mixed_rows(B, d, seed):
    """Rows of very different lengths, so a ball projection moves some rows and not others."""
    g = torch.Generator().manual_seed(seed + 1000)
    lengths = torch.rand(B, 1, dtype=F64, generator=g) * 2 + 0.1
    return (randn(B, d, seed=seed, requires_grad=False) * lengths).requires_grad_()


# ---------------------------------------------------------------- references (float64, loops)

def unit(v):
    return v / torch.sqrt((v * v).sum())


def log_sigmoid(x):
    return -torch.log1p(torch.exp(-x))


def logsumexp(xs):
    m = max(x.detach() for x in xs)
    return m + torch.log(sum(torch.exp(x - m) for x in xs))


def ref_info_nce(za, zb, t):
    B = za.shape[0]
    z = [unit(v) for v in torch.cat([za, zb])]
    losses = []
    for n in range(2 * B):
        p = n + B if n < B else n - B
        s = {m: z[n] @ z[m] / t for m in range(2 * B) if m != n}
        losses.append(logsumexp(list(s.values())) - s[p])
    return sum(losses) / (2 * B), {}


def ref_binary_nce(za, zb, t, bias, num_negatives=None):
    B = za.shape[0]
    k = B - 1 if num_negatives is None else num_negatives
    a, b = [unit(v) for v in za], [unit(v) for v in zb]

    def s(i, j):
        return a[i] @ b[j] / t + bias

    positive = -sum(log_sigmoid(s(i, i)) for i in range(B)) / B
    negative = -sum(log_sigmoid(-s(i, (i + m) % B)) for i in range(B) for m in range(1, k + 1)) / B
    return positive + negative, {"positive": positive, "negative": negative}


def ref_spectral(za, zb, mu=1.0, project=True):
    B = za.shape[0]
    r = math.sqrt(mu)

    def ball(v):
        n = torch.sqrt((v * v).sum())
        return v * (r / n) if project and n > r else v

    a, b = [ball(v) for v in za], [ball(v) for v in zb]
    part1 = -2 / B * sum(a[i] @ b[i] for i in range(B))
    part2 = sum((a[i] @ b[j]) ** 2 for i in range(B) for j in range(B) if i != j) / (B * (B - 1))
    return (part1 + part2) / mu, {"attract": part1 / mu, "repel": part2 / mu}


def ref_spectral_byol(phi, nu, lam):
    B = phi.shape[0]
    lam = lam.detach()
    attract = -2 / B * sum(phi[i] @ nu[i].detach() for i in range(B))
    repel = sum(phi[i] @ lam @ phi[i] for i in range(B)) / B
    return attract + repel, {"attract": attract, "repel": repel}


def ref_batch_second_moment(pa, pb):
    B = pa.shape[0]
    return sum(torch.outer(pa[i], pa[i]) + torch.outer(pb[i], pb[i]) for i in range(B)) / (2 * B)


def ref_pca(pa, pb, lam, second_moment=None):
    B, d = pa.shape
    alignment = -sum(pa[i] @ pb[i] for i in range(B)) / B
    c = ref_batch_second_moment(pa, pb) if second_moment is None else second_moment
    penalty = lam * sum((c[p, q] - float(p == q)) ** 2 for p in range(d) for q in range(d))
    return alignment + penalty, {"alignment": alignment, "penalty": penalty}


def ref_pca_surrogate(pa, pb, lam, c_ema):
    B, d = pa.shape
    alignment = -sum(pa[i] @ pb[i] for i in range(B)) / B
    c, c_ema = ref_batch_second_moment(pa, pb), c_ema.detach()
    penalty = lam * 2 * sum((c_ema[p, q] - float(p == q)) * c[p, q] for p in range(d) for q in range(d))
    return alignment + penalty, {"alignment": alignment, "penalty": penalty}


def ref_clip(zx, zy, logit_scale):
    B = zx.shape[0]
    scale = torch.exp(logit_scale)
    ux, uy = [unit(v) for v in zx], [unit(v) for v in zy]
    L = [[scale * (ux[i] @ uy[j]) for j in range(B)] for i in range(B)]
    rows = sum(logsumexp([L[i][j] for j in range(B)]) - L[i][i] for i in range(B)) / B
    cols = sum(logsumexp([L[i][j] for i in range(B)]) - L[j][j] for j in range(B)) / B
    return (rows + cols) / 2, {}


def ref_byol(p, t):
    B = p.shape[0]
    return sum(2 - 2 * unit(p[i]) @ unit(t[i].detach()) for i in range(B)) / B, {}


def ref_barlow(za, zb, lam=0.0051):
    B, d = za.shape

    def standardise(z):
        mean = z.sum(0) / B
        var = ((z - mean) ** 2).sum(0) / B
        return (z - mean) / torch.sqrt(var + 1e-5)

    a, b = standardise(za), standardise(zb)
    C = [[a[:, p] @ b[:, q] / B for q in range(d)] for p in range(d)]
    invariance = sum((1 - C[p][p]) ** 2 for p in range(d))
    redundancy = lam * sum(C[p][q] ** 2 for p in range(d) for q in range(d) if p != q)
    return invariance + redundancy, {"invariance": invariance, "redundancy": redundancy}


def ref_vicreg(za, zb, sim=25.0, var=25.0, cov=1.0):
    B, d = za.shape
    invariance = sim * ((za - zb) ** 2).sum() / (B * d)
    variance = covariance = 0
    for z in (za, zb):
        m = z.sum(0) / B
        C = [[(z[:, p] - m[p]) @ (z[:, q] - m[q]) / (B - 1) for q in range(d)] for p in range(d)]
        variance += sum(torch.clamp(1 - torch.sqrt(C[p][p] + 1e-4), min=0) for p in range(d)) / d / 2
        covariance += sum(C[p][q] ** 2 for p in range(d) for q in range(d) if p != q) / d
    variance, covariance = var * variance, cov * covariance
    terms = {"invariance": invariance, "variance": variance, "covariance": covariance}
    return invariance + variance + covariance, terms


# ---------------------------------------------------------------- cases: (fn, ref, args, kwargs)

def scalar(value):
    return torch.tensor(value, dtype=F64, requires_grad=True)


def binary_case(k):
    def case(B, d):
        args = (randn(B, d, seed=1), randn(B, d, seed=2), scalar(0.3), scalar(-1.5))
        return obj.binary_nce, ref_binary_nce, args, {"num_negatives": k}
    return case


CASES = {
    "info_nce": lambda B, d: (obj.info_nce, ref_info_nce,
                              (randn(B, d, seed=1), randn(B, d, seed=2), 0.2), {}),
    "binary_nce_k1": binary_case(1),
    "binary_nce_k2": binary_case(2),
    "binary_nce_all": binary_case(None),
    "spectral_mu0.5": lambda B, d: (obj.spectral_contrastive, ref_spectral,
                                    (mixed_rows(B, d, 1), mixed_rows(B, d, 2)), {"mu": 0.5}),
    "spectral_mu4": lambda B, d: (obj.spectral_contrastive, ref_spectral,
                                  (mixed_rows(B, d, 3), mixed_rows(B, d, 4), 4.0), {}),
    "spectral_byol": lambda B, d: (obj.spectral_byol, ref_spectral_byol,
                                   (randn(B, d, seed=1), randn(B, d, seed=2), randn(d, d, seed=3)), {}),
    "pca_batch": lambda B, d: (obj.pca_penalty, ref_pca,
                               (randn(B, d, seed=1), randn(B, d, seed=2), 0.7), {}),
    "pca_given": lambda B, d: (obj.pca_penalty, ref_pca,
                               (randn(B, d, seed=1), randn(B, d, seed=2), 0.7),
                               {"second_moment": randn(d, d, seed=3)}),
    "pca_surrogate": lambda B, d: (obj.pca_penalty_surrogate, ref_pca_surrogate,
                                   (randn(B, d, seed=1), randn(B, d, seed=2), 0.7,
                                    randn(d, d, seed=3)), {}),
    "clip": lambda B, d: (obj.clip_loss, ref_clip,
                          (randn(B, d, seed=1), randn(B, d, seed=2), scalar(math.log(10))), {}),
    "byol": lambda B, d: (obj.byol_loss, ref_byol, (randn(B, d, seed=1), randn(B, d, seed=2)), {}),
    "barlow": lambda B, d: (obj.barlow_twins_loss, ref_barlow,
                            (randn(B, d, seed=1), randn(B, d, seed=2, scale=3.0), 0.02), {}),
    "vicreg": lambda B, d: (obj.vicreg_loss, ref_vicreg,
                            (randn(B, d, seed=1, scale=0.5), randn(B, d, seed=2)),
                            {"sim": 2.0, "var": 3.0, "cov": 0.5}),
}
VALID = [(name, shape) for name in CASES for shape in SHAPES
         if not (name == "binary_nce_k2" and shape[0] < 3)]


def leaves(args, kwargs):
    return [x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor) and x.requires_grad]


def grads(loss, inputs):
    gs = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(gs, inputs)]


def assert_close(got, want, rtol=1e-9, atol=1e-10):
    torch.testing.assert_close(got, torch.as_tensor(want, dtype=got.dtype), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,shape", VALID, ids=[f"{n}-{B}x{d}" for n, (B, d) in VALID])
def test_matches_reference(name, shape):
    fn, ref, args, kwargs = CASES[name](*shape)
    loss, terms = fn(*args, **kwargs, return_terms=True)
    want, want_terms = ref(*args, **kwargs)
    assert loss.dtype == F64 and loss.ndim == 0
    assert_close(loss, want)
    assert terms.keys() == want_terms.keys()
    for key in terms:
        assert_close(terms[key], want_terms[key])
    inputs = leaves(args, kwargs)
    for got, expected in zip(grads(loss, inputs), grads(want, inputs)):
        assert_close(got, expected)


EXPECTED_TERMS = {
    "info_nce": set(), "binary_nce_k1": {"positive", "negative"},
    "binary_nce_all": {"positive", "negative"}, "spectral_mu4": {"attract", "repel"},
    "spectral_byol": {"attract", "repel"}, "pca_batch": {"alignment", "penalty"},
    "pca_surrogate": {"alignment", "penalty"}, "clip": set(), "byol": set(),
    "barlow": {"invariance", "redundancy"}, "vicreg": {"invariance", "variance", "covariance"},
}


@pytest.mark.parametrize("name", EXPECTED_TERMS)
def test_terms_convention(name):
    fn, _, args, kwargs = CASES[name](8, 3)
    plain = fn(*args, **kwargs)
    loss, terms = fn(*args, **kwargs, return_terms=True)
    assert isinstance(plain, torch.Tensor) and plain.ndim == 0
    assert_close(plain, loss)
    assert set(terms) == EXPECTED_TERMS[name]
    for t in terms.values():
        assert t.ndim == 0 and not t.requires_grad
    if terms:
        assert_close(sum(terms.values()), loss)


# ---------------------------------------------------------------- identities

@pytest.mark.parametrize("B,d", [(2, 1), (6, 3), (4, 9)])
def test_spectral_byol_gradient_identity(B, d):
    a, b = randn(B, d, seed=1), randn(B, d, seed=2)
    lam_a, lam_b = a.T @ a / B, b.T @ b / B  # not detached: spectral_byol must stop their gradient
    loss = obj.spectral_byol(a, b, lam_b) + obj.spectral_byol(b, a, lam_a)
    target = (-2 / B * sum(a[i] @ b[i] for i in range(B))
              + sum((a[i] @ b[j]) ** 2 for i in range(B) for j in range(B)) / B**2)
    for got, want in zip(grads(loss, [a, b]), grads(target, [a, b])):
        assert_close(got, want)


@pytest.mark.parametrize("B,d", [(2, 1), (7, 3), (3, 8)])
def test_pca_surrogate_gradient_equals_penalty_gradient(B, d):
    a, b = randn(B, d, seed=1), randn(B, d, seed=2)
    c_batch = ((a.T @ a + b.T @ b) / (2 * B)).detach()
    surrogate = obj.pca_penalty_surrogate(a, b, 0.8, c_batch)
    exact = obj.pca_penalty(a, b, 0.8)
    for got, want in zip(grads(surrogate, [a, b]), grads(exact, [a, b])):
        assert_close(got, want)


# ---------------------------------------------------------------- invariances

@pytest.mark.parametrize("fn,extra", [(obj.info_nce, (0.1,)), (obj.clip_loss, (torch.tensor(2.0),))],
                         ids=["info_nce", "clip"])
def test_invariant_to_positive_row_scaling(fn, extra):
    za, zb = randn(9, 4, seed=1, requires_grad=False), randn(9, 4, seed=2, requires_grad=False)
    sa = torch.rand(9, 1, dtype=F64) * 10 + 0.01
    sb = torch.rand(9, 1, dtype=F64) * 10 + 0.01
    assert_close(fn(za * sa, zb * sb, *extra), fn(za, zb, *extra))


def test_spectral_ball_projection():
    mu = 2.0
    za, zb = randn(10, 4, seed=1), randn(10, 4, seed=2)
    # every row strictly inside the ball: the projection must leave the loss unchanged
    inside_a = za / za.norm(dim=1, keepdim=True) * 0.9 * math.sqrt(mu)
    inside_b = zb / zb.norm(dim=1, keepdim=True) * 0.5 * math.sqrt(mu)
    unprojected, _ = ref_spectral(inside_a, inside_b, mu, project=False)
    assert_close(obj.spectral_contrastive(inside_a, inside_b, mu), unprojected)
    # rows outside: the loss is the projected one, not the raw formula
    outside_a, outside_b = 3 * inside_a, 3 * inside_b
    got = obj.spectral_contrastive(outside_a, outside_b, mu)
    assert_close(got, ref_spectral(outside_a, outside_b, mu)[0])
    assert not torch.isclose(got, ref_spectral(outside_a, outside_b, mu, project=False)[0])


# ---------------------------------------------------------------- spectral: the two repel paths

@pytest.mark.parametrize("B", [7, 8, 9])
def test_spectral_around_b_equals_d(B):
    za, zb = mixed_rows(B, 8, 1), mixed_rows(B, 8, 2)
    assert_close(obj.spectral_contrastive(za, zb, 0.5), ref_spectral(za, zb, 0.5)[0])


@pytest.mark.parametrize("B,d", [(2, 1), (5, 16), (17, 4), (64, 8)])
@pytest.mark.parametrize("dtype,rtol", [(F64, 1e-12), (torch.float32, 1e-5)])
def test_spectral_gram_and_dense_paths_agree(B, d, dtype, rtol):
    a = randn(B, d, seed=1, requires_grad=False).to(dtype).requires_grad_()
    b = randn(B, d, seed=2, requires_grad=False).to(dtype).requires_grad_()
    gram = obj._cross_sq_off_diagonal(a, b, via_gram=True)
    dense = obj._cross_sq_off_diagonal(a, b, via_gram=False)
    torch.testing.assert_close(gram, dense, rtol=rtol, atol=rtol)
    for g1, g2 in zip(grads(gram, [a, b]), grads(dense, [a, b])):
        torch.testing.assert_close(g1, g2, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------- memory: no B x B tensor

def largest_allocation(fn):
    """Bytes of the largest single CPU allocation made by any op while fn() runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.self_cpu_memory_usage for e in prof.events())


def forward_backward(fn, B, d=64):
    za = torch.randn(B, d, requires_grad=True)
    zb = torch.randn(B, d, requires_grad=True)
    loss = fn(za, zb)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(za.grad).all()


def test_largest_allocation_sees_a_b_by_b_matrix():
    B = 1024  # info_nce builds a (2B, 2B) fp32 matrix: 16 MiB
    loss_fn = lambda a, b: obj.info_nce(a, b, 0.1)  # noqa: E731
    assert largest_allocation(lambda: forward_backward(loss_fn, B)) >= (2 * B) ** 2 * 4


LINEAR = {
    "spectral": lambda a, b: obj.spectral_contrastive(a, b),
    "binary_nce_k1": lambda a, b: obj.binary_nce(a, b, 0.1, -2.0, num_negatives=1),
    "binary_nce_k3": lambda a, b: obj.binary_nce(a, b, torch.tensor(0.1, requires_grad=True),
                                                 torch.tensor(-2.0, requires_grad=True), 3),
}


@pytest.mark.parametrize("name", LINEAR)
def test_no_b_by_b_allocation(name):
    fn = LINEAR[name]
    # B = 8192: a B x B fp32 matrix would be 256 MiB; fail here, fast, before trying B = 65536
    assert largest_allocation(lambda: forward_backward(fn, 8192)) < 64 * 2**20
    forward_backward(fn, 65536)  # a B x B matrix would be 16 GiB


# ---------------------------------------------------------------- learnable scales

@pytest.mark.parametrize("k", [1, None])
def test_binary_nce_gradients_reach_temperature_and_bias(k):
    t, bias = scalar(0.5), scalar(-1.0)
    obj.binary_nce(randn(6, 3, seed=1), randn(6, 3, seed=2), t, bias, k).backward()
    assert t.grad is not None and t.grad != 0
    assert bias.grad is not None and bias.grad != 0


def test_clip_logit_scale_keeps_its_gradient_above_the_cap():
    """The cap is the caller's (a clamp of the parameter after the step): inside the loss, the
    gradient with respect to the logit scale is never zero, also beyond log 100."""
    zx, zy = randn(6, 3, seed=1), randn(6, 3, seed=2)
    for value in (math.log(100) - 0.5, math.log(100) + 1.0):
        s = scalar(value)
        obj.clip_loss(zx, zy, s).backward()
        assert s.grad != 0


# ---------------------------------------------------------------- bf16 autocast

@pytest.mark.parametrize("name", EXPECTED_TERMS)
def test_bf16_autocast_computes_in_fp32(name):
    fn, _, args, kwargs = CASES[name](48, 16)

    def cast(x, dtype):
        return x.detach().to(dtype) if isinstance(x, torch.Tensor) else x

    bf16_args = [cast(x, torch.bfloat16) for x in args]
    bf16_kwargs = {k: cast(v, torch.bfloat16) for k, v in kwargs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(*bf16_args, **bf16_kwargs)
    # the same bf16 values, upcast, without autocast: only fp32 rounding may differ
    want = fn(*[cast(x, torch.float32) for x in bf16_args],
              **{k: cast(v, torch.float32) for k, v in bf16_kwargs.items()})
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- argument validation

@pytest.mark.parametrize("B,k", [(4, 0), (4, 4), (4, -1), (1, None), (1, 1)])
def test_binary_nce_rejects_k_out_of_range(B, k):
    with pytest.raises(ValueError, match="num_negatives"):
        obj.binary_nce(torch.randn(B, 3), torch.randn(B, 3), 0.1, 0.0, k)


@pytest.mark.parametrize("fn", [obj.spectral_contrastive, obj.vicreg_loss])
def test_rejects_single_row(fn):
    with pytest.raises(ValueError, match="B >= 2"):
        fn(torch.randn(1, 3), torch.randn(1, 3))
