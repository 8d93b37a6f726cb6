"""Rayleigh-Ritz in the report, on a ring whose eigenfunctions are known: features that are an arbitrary
mix of its top Fourier modes give back its top eigenvalues, in order, and a prefix curve that rises
once the modes that tell its arcs apart are in; the section's keys and shapes; the pairs' draws; a
graph's exact moments."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from specrep_cli.config import EvalConfig, FastProbeConfig, KNNConfig
from specrep_cli.data.graphs import ring
from specrep_cli.errors import ConfigError
from specrep_cli.eval.graph_truth import top_eigenpairs
from specrep_cli.eval.ritz import prefix_sizes, ritz
from specrep_cli.eval.ritz_report import (
    Scorer,
    edge_moments,
    graph_ritz,
    pair_order,
    pick_captions,
    prefix_probe,
    ritz_section,
    solve,
)

N, HOPS = 200, 10


def modes(n: int, count: int) -> torch.Tensor:
    """The ring's top eigenfunctions: 1, then cos and sin of 2 pi k x / n for k = 1..count, in that order."""
    x = torch.arange(n, dtype=torch.float64)[:, None]
    cols = [torch.ones(n, 1, dtype=torch.float64)]
    for k in range(1, count + 1):
        cols += [torch.cos(2 * math.pi * k * x / n), torch.sin(2 * math.pi * k * x / n)]
    return torch.cat(cols, dim=1)


def mixed(d_modes: int = 3, seed: int = 0) -> torch.Tensor:
    """Node features h (n, 2 d_modes + 1): the top 2 d_modes + 1 eigenfunctions under a random invertible mix."""
    top = modes(N, d_modes)
    mix = torch.randn(top.shape[1], top.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return top @ mix


def exact(graph, f: torch.Tensor):
    """Ritz from the exact moments of the graph's kernel (no sampling)."""
    joint, p = graph.dense(), graph.node_weights()
    return ritz(f.T @ joint @ f, f.T @ (p[:, None] * f))


def test_a_mix_of_the_top_eigenfunctions_gives_the_top_eigenvalues_and_each_eigenspace_in_order():
    graph, h = ring(N, HOPS), mixed()
    result = exact(graph, h)
    truth, _ = top_eigenpairs(graph, h.shape[1])
    assert torch.allclose(result.values, truth, rtol=0, atol=1e-6)   # up to C's ridge
    extra = graph_ritz(graph, h, result, budget_s=60)
    assert extra["ritz_spectrum"] == pytest.approx(truth.tolist(), abs=1e-6)
    assert extra["ritz_true_spectrum"] == pytest.approx(truth.tolist(), abs=1e-12)
    spaces = extra["ritz_eigenspaces"]
    assert [s["coordinates"] for s in spaces] == [[0, 1], [1, 3], [3, 5], [5, 7]]   # 1, then pairs cos/sin
    assert all(s["alignment"] == pytest.approx(1.0, abs=1e-6) for s in spaces)


def test_the_edge_moments_are_the_dense_kernel_s_and_give_the_ring_spectrum_exactly():
    graph, h = ring(N, HOPS), mixed()
    m, c = edge_moments(graph, h.float(), chunk=999)   # chunks that do not divide the edges
    joint, p = graph.dense(), graph.node_weights()
    f = h.float().double()
    assert torch.allclose(m, f.T @ joint @ f, atol=1e-10) and torch.allclose(c, f.T @ (p[:, None] * f), atol=1e-10)
    result = ritz(m, c)
    truth, _ = top_eigenpairs(graph, h.shape[1])
    assert torch.allclose(result.values, truth, atol=1e-5)
    assert all(s["alignment"] > 0.9999 for s in graph_ritz(graph, h, result, 60)["ritz_eigenspaces"])


def scorer(h: torch.Tensor, labels: torch.Tensor, steps: int = 50) -> Scorer:
    """Every other node trains the prefix probes, the rest is their test split."""
    train, test = torch.arange(0, N, 2), torch.arange(1, N, 2)
    return Scorer(h[train].float(), labels[train], h[test].float(), labels[test], int(labels.max()) + 1,
                  FastProbeConfig(weight_decays=[1e-4], steps=steps), KNNConfig(k=10), seed=0)


def test_the_prefix_curve_rises_once_the_modes_that_tell_the_arcs_apart_are_in():
    graph, h = ring(N, HOPS), mixed()
    section = ritz_section(exact(graph, h), "edges", 1000, scorer(h, graph.labels))
    curve = {p["k"]: p for p in section["prefix"]}
    assert list(curve) == prefix_sizes(7) == [1, 2, 4, 7]
    assert curve[1]["knn_top1"] is None   # one coordinate's cosine is its sign: every neighbour a tie, no kNN
    assert curve[4]["probe_top1"] >= 90 and curve[4]["knn_top1"] >= 90   # 1, cos 1, sin 1 and one of mode 2
    assert curve[1]["probe_top1"] < curve[2]["probe_top1"] < curve[4]["probe_top1"]


def test_the_section_keys_shapes_and_a_warning_for_dependent_coordinates():
    graph, h = ring(N, HOPS), mixed()
    section = ritz_section(exact(graph, h), "edges", 1000, None, why_not="no labels")
    assert {"features", "pairs", "kind", "values", "effective_dim", "condition", "warnings", "prefix",
            "prefix_skipped"} <= set(section)
    assert len(section["values"]) == 7 and section["values"] == sorted(section["values"], reverse=True)
    assert 1 < section["effective_dim"] <= 7 and section["prefix"] == [] and section["warnings"] == []
    twice = torch.cat([h, h[:, :1] * 2], dim=1)   # the eighth coordinate is twice the first
    dependent = ritz_section(ritz(*edge_moments(graph, twice)), "edges", 5000, None, "")
    assert dependent["warnings"] and "ill-conditioned" in dependent["warnings"][0]
    assert dependent["condition"] is None or dependent["condition"] >= 1e8


def test_the_prefix_probes_take_the_main_probes_strength_and_fewer_steps():
    cfg = FastProbeConfig(weight_decays=[0.0, 1e-3], steps=300)
    assert prefix_probe(cfg, 1e-3).weight_decays == [1e-3] and prefix_probe(cfg, 1e-3).steps == 10
    assert prefix_probe(cfg, None).weight_decays == [0.0, 1e-3]
    assert prefix_probe(FastProbeConfig(steps=5), None).steps == 5


def test_the_draws_are_fixed_balanced_and_captions_are_their_image_s():
    order = pair_order(10, 25)
    assert torch.equal(order, pair_order(10, 25)) and torch.bincount(order).tolist().count(2) == 5
    assert pair_order(10, 4).unique().numel() == 4
    owner = torch.tensor([0, 2, 2, 1, 2])   # captions of images 0, 2, 2, 1, 2
    picks = pick_captions(owner, torch.tensor([2, 0, 1] * 300), torch.Generator().manual_seed(0))
    assert torch.equal(owner[picks], torch.tensor([2, 0, 1] * 300))
    assert set(picks[::3].tolist()) == {1, 2, 4}   # image 2's three captions are all drawn


def test_the_cross_form_gives_a_vector_map_for_each_tower():
    g = torch.Generator().manual_seed(3)
    f, other = torch.randn(500, 6, generator=g), torch.randn(500, 4, generator=g)
    result = solve(f, other + f[:, :4], cross=True)
    assert result.values.shape == (4,) and result.vectors.shape == (6, 4) and result.vectors_y.shape == (4, 4)
    assert len(ritz_section(result, "image-text", 500, None, "")["values"]) == 4


def test_dims_for_95_is_the_first_k_within_5_percent_of_the_full_curve():
    from specrep_cli.eval.ritz_report import dims_for
    curve = [{"k": 1, "probe_top1": 30.0}, {"k": 2, "probe_top1": 60.0}, {"k": 4, "probe_top1": 76.0},
             {"k": 8, "probe_top1": 80.0}]
    assert dims_for(curve) == 4                       # 76 >= 0.95 * 80, 60 is not
    assert dims_for(curve, share=0.96) == 8
    assert dims_for(curve[:1]) == 1                   # one function: itself
    dips = [{"k": 1, "probe_top1": 50.0}, {"k": 2, "probe_top1": 90.0}, {"k": 4, "probe_top1": 85.0}]
    assert dims_for(dips) == 2                        # the curve need not rise: the first k that reaches it


def test_variance_order_is_h_s_principal_directions_by_variance():
    from specrep_cli.eval.ritz_report import variance_order
    g = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    scales = torch.tensor([0.5, 3.0, 1.0, 2.0], dtype=torch.float64)   # the variances, out of order
    h = 7.0 + (torch.randn(20_000, 4, generator=g, dtype=torch.float64) * scales) @ rotation.T
    vectors = variance_order(h)
    expected = rotation[:, [1, 3, 2, 0]]                               # by variance: 3, 2, 1, 0.5
    assert torch.allclose((vectors.T @ expected).abs(), torch.eye(4, dtype=torch.float64), atol=0.02)


def test_the_pca_prefix_rides_along_only_when_asked():
    graph, h = ring(N, HOPS), mixed()
    asked = replace(scorer(h, graph.labels), pca=True)
    section = ritz_section(exact(graph, h), "edges", 1000, asked)
    assert [p["k"] for p in section["pca_prefix"]] == [p["k"] for p in section["prefix"]]
    assert all(set(p) == {"k", "probe_top1"} for p in section["pca_prefix"])   # the probe alone: no kNN
    assert section["pca_dims_for_95"] in prefix_sizes(7)
    assert "pca_prefix" not in ritz_section(exact(graph, h), "edges", 1000, scorer(h, graph.labels))


def test_the_prefix_knn_classifies_a_fixed_subset_of_the_test_split_when_asked():
    graph, h = ring(N, HOPS), mixed()
    full = scorer(h, graph.labels)
    some = replace(full, knn_images=40)
    queries = some.knn_queries()
    assert queries.numel() == 40 and torch.equal(queries, some.knn_queries())   # fixed
    assert torch.equal(queries, queries.sort().values) and queries.unique().numel() == 40
    assert torch.equal(replace(full, knn_images=10_000).knn_queries(), torch.arange(full.test_h.shape[0]))
    others = torch.ones(full.test_h.shape[0], dtype=torch.bool)
    others[queries] = False
    wrong = full.test_y.clone()
    wrong[others] = (wrong[others] + 1) % (int(graph.labels.max()) + 1)   # mislabel every test row left out
    result = exact(graph, h)
    kept = ritz_section(result, "edges", 1000, some)["prefix"]
    relabelled = ritz_section(result, "edges", 1000, replace(some, test_y=wrong))["prefix"]
    assert [p["knn_top1"] for p in kept] == [p["knn_top1"] for p in relabelled]   # those rows never voted on
    assert [p["probe_top1"] for p in kept] != [p["probe_top1"] for p in relabelled]   # the probe reads them all
    with pytest.raises(ConfigError, match="ritz_knn_images"):
        EvalConfig(ritz_knn_images=0)
