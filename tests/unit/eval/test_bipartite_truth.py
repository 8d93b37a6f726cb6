"""Bipartite graphs and their two-tower truth: the SVD of D_x^-1/2 A D_y^-1/2 against a reference written
from the definition, the optimum scored as exact, and files read with a name on both sides as two nodes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from specrep_cli.config import GraphConfig
from specrep_cli.data.graphs import bipartite_sbm, make_graph
from specrep_cli.eval.bipartite_truth import bipartite_report, singular_truth


def reference(graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the definition: A[x, y] the edge weights x -> y, p = A / sum(A), K = p / sqrt(p(x) p(y)), SVD."""
    n_x = graph.num_x
    a = np.zeros((n_x, graph.num_nodes - n_x))
    for s, t, w in zip(graph.src.tolist(), graph.dst.tolist(), graph.weight.tolist()):
        if s < n_x:
            a[s, t - n_x] += w
    p = a / a.sum()
    k = p / np.sqrt(np.outer(p.sum(1), p.sum(0)))
    u, s, vt = np.linalg.svd(k)
    return s, u, vt.T


def test_the_truth_is_the_svd_of_the_normalised_cross_kernel():
    graph = bipartite_sbm(3, 12, 8, 0.6, 0.05, seed=0)
    s, u, v = reference(graph)
    values, left, right = singular_truth(graph, 4)
    assert np.allclose(values.numpy(), s[:4], atol=1e-12) and values[0] == pytest.approx(1.0)
    for ours, theirs in ((left, u[:, :4]), (right, v[:, :4])):   # each singular vector up to its sign
        assert np.allclose(np.abs((ours.numpy() * theirs).sum(0)), 1.0, atol=1e-9)


def test_the_optimum_scores_as_exact_and_a_wrong_tower_does_not():
    graph = bipartite_sbm(3, 12, 8, 0.6, 0.05, seed=1)
    found = singular_truth(graph, 4)
    values, left, right = found
    s, _, _ = reference(graph)
    p = graph.weight[graph.cross_edges()].sum()
    a = torch.zeros(graph.num_x, graph.num_nodes - graph.num_x, dtype=torch.float64)
    e = graph.cross_edges()
    a.index_put_((graph.src[e], graph.dst[e] - graph.num_x), graph.weight[e] / p, accumulate=True)
    p_x, p_y = a.sum(1), a.sum(0)
    d = 3   # phi(x) = p(x)^-1/2 U_d S_d^1/2 R, nu(y) = p(y)^-1/2 V_d S_d^1/2 R^-T: any invertible R
    r = torch.randn(d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    phi = (left[:, :d] * values[:d].sqrt()) / p_x.sqrt()[:, None] @ r
    nu = (right[:, :d] * values[:d].sqrt()) / p_y.sqrt()[:, None] @ torch.linalg.inv(r).T
    section = bipartite_report(graph, phi.float(), nu.float(), found)
    assert section["phi"]["subspace_alignment"] == pytest.approx(1.0, abs=1e-5)
    assert section["nu"]["subspace_alignment"] == pytest.approx(1.0, abs=1e-5)
    assert section["learned_singular_values"] == pytest.approx(s[:d].tolist(), abs=1e-5)
    assert section["eckart_young"]["excess"] == pytest.approx(0.0, abs=1e-5)
    assert section["eckart_young"]["best"] == pytest.approx(float((s[d:] ** 2).sum() / (s ** 2).sum()), abs=1e-9)
    assert section["singular_gap"] == pytest.approx(float(s[d - 1] - s[d]))
    wrong = bipartite_report(graph, phi.float(), torch.randn_like(nu).float(), found)
    assert wrong["nu"]["subspace_alignment"] < 0.5 and wrong["eckart_young"]["excess"] > 0.1


def test_a_bipartite_file_keeps_a_name_on_both_sides_as_two_nodes(tmp_path):
    (tmp_path / "e.csv").write_text("ann,party\nbob,party\nann,ann\nbob,gala,2\n")
    (tmp_path / "l.csv").write_text("ann,a\nbob,b\n")
    graph = make_graph(GraphConfig(source="file", path=str(tmp_path / "e.csv"), bipartite=True,
                                   labels_path=str(tmp_path / "l.csv")))
    assert graph.num_x == 2 and graph.names == ["ann", "bob", "party", "ann", "gala"]
    assert graph.labels.tolist() == [0, 1, -1, -1, -1]
    cross = sorted(zip(graph.src[graph.cross_edges()].tolist(), graph.dst[graph.cross_edges()].tolist(),
                       graph.weight[graph.cross_edges()].tolist()))
    assert cross == [(0, 2, 1.0), (0, 3, 1.0), (1, 2, 1.0), (1, 4, 2.0)]   # ann -> ann is an edge, not a loop
    assert graph.num_edges == 4
