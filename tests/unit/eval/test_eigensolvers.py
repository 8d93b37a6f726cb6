"""The graph truth within eval.truth_budget_s: the dense eigh's estimate grows as n^3, both sparse
solvers give a ring's closed-form eigenvalues and the dense eigh's subspace, a long ring (where plain
Lanczos took minutes) takes a fraction of a second, and past the budget a warning names the estimate
and the truth is skipped, in the log and in report.json's graph section."""
from __future__ import annotations

import logging
import math
import sys
import time

import pytest
import torch

from specrep_cli.data.graphs import ring, sbm
from specrep_cli.eval import eigensolvers
from specrep_cli.eval.eigensolvers import Deadline, dense_seconds, sparse_eigenpairs, top_eigenpairs
from specrep_cli.eval.graph_truth import graph_report, kernel, subspace_alignment
from specrep_cli.report.report import graph_lines

NO_DEADLINE = Deadline(math.inf)


def ring_values(n: int, k: int) -> torch.Tensor:
    """A ring's (hops=1) top k eigenvalues in closed form: cos(2 pi m / n), m and n - m alike, descending."""
    return torch.cos(2 * math.pi * torch.arange(n, dtype=torch.float64) / n).sort(descending=True).values[:k]


def test_the_dense_estimate_grows_as_n_cubed_from_a_calibration_made_once():
    c = eigensolvers.seconds_per_cube()
    assert 0 < c < 1e-3 and eigensolvers.seconds_per_cube() == c   # timed once per process
    assert dense_seconds(2000) == pytest.approx(8 * dense_seconds(1000), rel=1e-12)
    assert dense_seconds(3000) / dense_seconds(1000) == pytest.approx(27, rel=1e-12)
    assert [eigensolvers.took(s) for s in (0.021, 3723, math.inf)] == ["0.021 s", "1:02:03", "inf s"]


@pytest.mark.parametrize("per_cube, method", [(0.0, "shift-invert Lanczos"), (1e9, "Lanczos")])
def test_each_sparse_solver_gives_the_closed_form_and_the_dense_subspace(monkeypatch, per_cube, method):
    """A factorisation estimated free takes shift-invert, one estimated forever plain Lanczos."""
    pytest.importorskip("scipy", reason="the sparse solvers are the [graph] extra")
    monkeypatch.setattr(eigensolvers, "seconds_per_cube", lambda: per_cube)
    graph = ring(400, 1)
    found = sparse_eigenpairs(kernel(graph), 9, Deadline(time.perf_counter() + 60))
    assert found.method == method
    assert torch.allclose(found.values, ring_values(400, 9), atol=1e-10)
    assert torch.allclose(found.vectors.T @ found.vectors, torch.eye(9, dtype=torch.float64), atol=1e-8)
    _, dense = torch.linalg.eigh(kernel(graph).dense())
    assert subspace_alignment(found.vectors, dense.flip(1)[:, :9]) == pytest.approx(1.0, abs=1e-8)


def test_sparse_lanczos_matches_the_dense_eigh_on_an_sbm():
    pytest.importorskip("scipy", reason="the sparse solvers are the [graph] extra")
    graph = sbm(3, 40, 0.4, 0.02, seed=1)
    dense_values, dense_vectors = torch.linalg.eigh(kernel(graph).dense())
    found = sparse_eigenpairs(kernel(graph), 4, NO_DEADLINE)
    assert torch.allclose(found.values, dense_values.flip(0)[:4], atol=1e-10)
    assert subspace_alignment(found.vectors, dense_vectors.flip(1)[:, :4]) == pytest.approx(1.0, abs=1e-8)


def test_a_long_ring_takes_shift_invert_and_a_fraction_of_a_second(caplog):
    """20,000 nodes, one hop: a dense eigh would take hours and plain Lanczos minutes (its top
    eigenvalues lie 5e-8 apart); shift-invert finds them exactly."""
    pytest.importorskip("scipy", reason="the sparse solvers are the [graph] extra")
    caplog.set_level(logging.INFO, logger="specrep")
    t0 = time.perf_counter()
    found = top_eigenpairs(kernel(ring(20_000, 1)), 9, budget_s=60)
    assert time.perf_counter() - t0 < 30
    assert found.method == "shift-invert Lanczos"
    assert torch.allclose(found.values, ring_values(20_000, 9), atol=1e-12)
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "a dense eigh of 20,000 nodes would take ~" in warning and "eval.truth_budget_s=60" in warning


def test_within_the_budget_the_dense_eigh_runs_and_its_estimate_is_logged_first(caplog):
    caplog.set_level(logging.INFO, logger="specrep")
    found = top_eigenpairs(kernel(ring(60, 1)), 5, budget_s=math.inf)
    assert found.method == "dense eigh"
    assert torch.allclose(found.values, ring_values(60, 5), atol=1e-12)
    assert "by a dense eigh, estimated" in caplog.records[0].getMessage()


def test_a_zero_budget_warns_with_the_estimate_and_skips_the_truth(caplog):
    caplog.set_level(logging.INFO, logger="specrep")
    graph = ring(400, 1)
    found = top_eigenpairs(kernel(graph), 9, budget_s=0)
    assert isinstance(found, str) and found.startswith("skipped: ") and "eval.truth_budget_s=0" in found
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "would take ~" in warnings[0] and "(estimated)" in warnings[0]
    assert warnings[-1] == f"graph truth {found}"   # one line says it was skipped


def test_without_scipy_past_the_budget_the_truth_is_skipped_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)   # import scipy.sparse raises ImportError
    found = top_eigenpairs(kernel(ring(400, 1)), 9, budget_s=0)
    assert isinstance(found, str) and "pip install 'specrep[graph]'" in found


def test_a_skipped_truth_is_a_graph_section_without_numbers_and_a_line_in_report_md():
    graph = ring(400, 1)
    phi = torch.randn(400, 4, generator=torch.Generator().manual_seed(0))
    section = graph_report(graph, phi, budget_s=0)
    assert section["skipped"].startswith("skipped: ") and section["nodes"] == 400 and section["d"] == 4
    assert "subspace_alignment" not in section and "true_spectrum" not in section
    assert section["skipped"] in graph_lines(section)
    assert "subspace_alignment" in graph_report(graph, phi, budget_s=math.inf)
