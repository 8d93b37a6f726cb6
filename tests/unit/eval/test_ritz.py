"""Rayleigh-Ritz against closed forms: the ring's Fourier modes, a random span that holds the top
eigenfunctions exactly, and the SVD of a known cross kernel."""
from __future__ import annotations

import math

import pytest
import torch

from specrep_cli.data.graphs import ring
from specrep_cli.eval.ritz import cross_ritz, effective_dim, pair_moments, prefix_sizes, ritz


def ring_values(n: int, hops: int) -> torch.Tensor:
    """The eigenvalues of the ring's normalised adjacency, written from the Fourier modes: mode k has
    (1 / hops) sum_{j=1..hops} cos(2 pi k j / n), the same for k and n - k. Descending."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(1, hops + 1, dtype=torch.float64)[None, :]
    return torch.cos(2 * math.pi * k * j / n).mean(1).sort(descending=True).values


def fourier(n: int, modes: int) -> torch.Tensor:
    """Columns 1, cos(2 pi k x / n), sin(2 pi k x / n) for k = 1..modes, as functions of the node x."""
    x = torch.arange(n, dtype=torch.float64)[:, None]
    k = torch.arange(1, modes + 1, dtype=torch.float64)[None, :]
    return torch.cat([torch.ones(n, 1, dtype=torch.float64), torch.cos(2 * math.pi * k * x / n),
                      torch.sin(2 * math.pi * k * x / n)], dim=1)


def exact_moments(graph, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """M = sum p(x, x') f(x) f(x')^T and C = sum p(x) f(x) f(x)^T under the graph's kernel, exactly."""
    joint, p = graph.dense(), graph.node_weights()
    return f.T @ joint @ f, f.T @ (p[:, None] * f)


def test_the_ring_fourier_modes_give_the_ring_spectrum_exactly():
    n, hops, modes = 60, 3, 4
    graph = ring(n, hops)
    result = ritz(*exact_moments(graph, fourier(n, modes)))
    truth = ring_values(n, hops)
    # the span holds modes 0..4: the constant (1) and the pairs of modes 1..4, the ring's top 9
    assert torch.allclose(result.values, truth[:2 * modes + 1], atol=1e-10)
    assert not result.ill_conditioned


def test_a_random_span_holding_the_top_eigenfunctions_recovers_them_in_order():
    n, hops, d = 48, 2, 5
    graph = ring(n, hops)
    g = torch.Generator().manual_seed(0)
    top = fourier(n, 2)[:, [0, 1, 3, 2, 4]]   # the top 5 eigenfunctions: 1, cos 1, sin 1, cos 2, sin 2
    noise = torch.randn(n, 3, generator=g, dtype=torch.float64)           # and 3 other directions
    mixing = torch.randn(8, 8, generator=g, dtype=torch.float64)          # an arbitrary basis of the span
    f = torch.cat([top, noise], dim=1) @ mixing
    result = ritz(*exact_moments(graph, f))
    assert torch.allclose(result.values[:d], ring_values(n, hops)[:d], atol=1e-9)
    ordered = result.ordered(f)[:, :d]
    p = graph.node_weights()
    # C-orthonormal: E_p[phi_j phi_k] = delta_jk
    assert torch.allclose(ordered.T @ (p[:, None] * ordered), torch.eye(d, dtype=torch.float64), atol=1e-6)
    # each group of equal eigenvalues is spanned by the ordered functions in the same positions
    for lo, hi in ((0, 1), (1, 3), (3, 5)):
        truth = top[:, lo:hi] * p.sqrt()[:, None]
        mine = ordered[:, lo:hi] * p.sqrt()[:, None]
        q_t, q_m = torch.linalg.qr(truth).Q, torch.linalg.qr(mine).Q
        assert torch.linalg.svdvals(q_t.T @ q_m).pow(2).mean() == pytest.approx(1.0, abs=1e-9)


def test_pair_moments_from_sampled_edges_converge_to_the_exact_ones():
    n, hops = 40, 2
    graph = ring(n, hops)
    f = fourier(n, 3)
    g = torch.Generator().manual_seed(1)
    pick = torch.multinomial(graph.weight / graph.weight.sum(), 200_000, replacement=True, generator=g)
    m, c = pair_moments(f[graph.src[pick]], f[graph.dst[pick]])
    exact_m, exact_c = exact_moments(graph, f)
    assert torch.allclose(m, m.T) and torch.allclose(c, exact_c, atol=1e-2) and torch.allclose(m, exact_m, atol=1e-2)
    assert torch.allclose(ritz(m, c).values, ring_values(n, hops)[:7], atol=2e-2)


def test_cross_ritz_gives_the_singular_values_of_the_cross_kernel():
    g = torch.Generator().manual_seed(2)
    joint = torch.rand(5, 4, generator=g, dtype=torch.float64) ** 3
    joint /= joint.sum()
    px, py = joint.sum(1), joint.sum(0)
    truth = torch.linalg.svdvals(joint / (px[:, None] * py[None, :]).sqrt())
    draws = torch.multinomial(joint.flatten(), 400_000, replacement=True, generator=g)
    x, y = draws // 4, draws % 4
    mix_x = torch.randn(5, 5, generator=g, dtype=torch.float64)
    mix_y = torch.randn(4, 4, generator=g, dtype=torch.float64)
    result = cross_ritz(torch.eye(5, dtype=torch.float64)[x] @ mix_x, torch.eye(4, dtype=torch.float64)[y] @ mix_y)
    assert torch.allclose(result.values, truth, atol=1e-2) and result.values[0] == pytest.approx(1.0, abs=1e-6)
    assert result.vectors.shape == (5, 4) and result.vectors_y.shape == (4, 4)


def test_dependent_coordinates_are_reported_as_ill_conditioned():
    f = torch.randn(100, 3, dtype=torch.float64)
    f = torch.cat([f, f[:, :1] * 2], dim=1)   # the fourth coordinate is twice the first
    result = ritz(*pair_moments(f, f))
    assert result.ill_conditioned and torch.isfinite(result.values).all()


def test_effective_dim_and_prefix_sizes():
    assert effective_dim(torch.tensor([1.0, 1.0, 1.0, 0.0, -0.5])) == pytest.approx(3.0)
    assert effective_dim(torch.tensor([-1.0, 0.0])) == 0.0
    assert prefix_sizes(8) == [1, 2, 4, 8] and prefix_sizes(10) == [1, 2, 4, 8, 10] and prefix_sizes(1) == [1]
