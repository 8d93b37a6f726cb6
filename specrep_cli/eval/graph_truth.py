"""The truth on a graph, and how far a trained phi is from it.

    values, vectors = top_eigenpairs(graph, k)         # of K = D^-1/2 A D^-1/2 (float64, descending)
    found = truth(graph, k, budget_s)                  # the same, within a time budget, or why not (a str)
    section = graph_report(graph, phi, mu, found=found)   # report.json's "graph" section
    alignment = subspace_alignment(u, v)               # mean squared cosine of the principal angles

The truth takes at most about budget_s seconds (eval.truth_budget_s; eigensolvers.py): a dense eigh
when estimated to fit, else sparse Lanczos stopped at the budget, else the section says "skipped".

HaoChen et al. (2021): with p(x, x') = A / sum(A) and p(x) its row sums, the minimiser of the spectral
contrastive loss makes the rows u_x = sqrt(p(x)) phi(x) span the top-d eigenvectors U_d of K, and the
eigenvalues of sum_x p(x) phi(x) phi(x)^T = U^T U are K's top d (when positive and mu does not cap
the norms |phi(x)|^2 <= mu). Every figure here is computed for U = diag(sqrt(p)) Phi of every node.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor

from ..config import EvalConfig
from ..data.graphs import Graph
from ..errors import DatasetError
from . import eigensolvers
from .eigensolvers import Eigenpairs, Kernel

log = logging.getLogger("specrep")
GROUP_TOL = 1e-3       # true eigenvalues closer than this form one (near-)degenerate eigenspace


def kernel_entries(graph: Graph) -> Tensor:
    """K[src, dst] = p(x, x') / sqrt(p(x) p(x')) on the graph's edges, float64 (E,)."""
    p = graph.node_weights()
    return graph.weight / graph.weight.sum() / (p[graph.src] * p[graph.dst]).sqrt()


def kernel(graph: Graph) -> Kernel:
    """K = D^-1/2 A D^-1/2 of the graph, by its entries on the edges."""
    return Kernel(graph.num_nodes, graph.src, graph.dst, kernel_entries(graph))


def top_eigenpairs(graph: Graph, k: int, budget_s: float = EvalConfig.truth_budget_s) -> Tuple[Tensor, Tensor]:
    """The top k eigenvalues (descending, (k,)) and orthonormal eigenvectors ((n, k)) of K, float64:
    a dense eigh when estimated within budget_s, else sparse Lanczos (eigensolvers.py). DatasetError
    saying why when neither is possible within budget_s."""
    found = truth(graph, k, budget_s)
    if isinstance(found, str):
        raise DatasetError(f"the truth of a graph of {graph.num_nodes} nodes was {found}")
    return found.values, found.vectors


def orthonormal_basis(u: Tensor, rtol: float = 1e-8) -> Tensor:
    """An orthonormal basis (n, r) of the column span of u (n, d), r its numerical rank."""
    left, s, _ = torch.linalg.svd(u.double(), full_matrices=False)
    return left[:, s > rtol * max(float(s.max()), 1e-300)] if s.numel() else left


def subspace_alignment(u: Tensor, v: Tensor) -> float:
    """Mean of cos^2 of the principal angles between span(u) and span(v) (columns; v's d columns
    orthonormal): ||Q_u^T v||_F^2 / d, in [0, 1]: 1 when span(v) lies in span(u), 0 when orthogonal.
    A rank-deficient u (collapsed coordinates) scores its rank's share at most."""
    q = orthonormal_basis(u)
    return float((q.T @ v.double()).pow(2).sum() / v.shape[1])


def eigenspaces(values: Tensor, tol: float = GROUP_TOL) -> List[Tuple[int, int]]:
    """[start, end) index ranges of consecutive eigenvalues within tol of their neighbour."""
    groups, start = [], 0
    for i in range(1, values.numel() + 1):
        if i == values.numel() or float(values[i - 1] - values[i]) > tol:
            groups.append((start, i))
            start = i
    return groups


def reconstruction(graph: Graph, u: Tensor, values: Tensor, d: int) -> Dict[str, float]:
    """Eckart-Young: ||K - U U^T||_F^2 / ||K||_F^2 (relative_error) beside the best rank-d value,
    sum_{i>d} lambda_i^2 / ||K||_F^2 (best), and their difference (excess, 0 at the optimum).
    ||K - U U^T||_F^2 = ||K||_F^2 - 2 sum_edges K_xx' u_x.u_x' + ||U^T U||_F^2: no n x n product."""
    k = kernel_entries(graph)
    total = float(k.pow(2).sum())
    cross = float((k * (u[graph.src] * u[graph.dst]).sum(1)).sum())
    error = total - 2 * cross + float((u.T @ u).pow(2).sum())
    best = max(total - float(values[:d].pow(2).sum()), 0.0)
    return {"relative_error": error / total, "best": best / total, "excess": (error - best) / total}


def per_coordinate(u: Tensor, vectors: Tensor, values: Tensor, d: int) -> Tuple[List[float], List[Dict[str, Any]]]:
    """cos^2 between coordinate k of U and eigenvector k, and per eigenspace (a degenerate group of
    true eigenvalues, e.g. a ring's cosine and sine): the alignment of span(U[:, group]) with it."""
    norms = u.pow(2).sum(0).clamp_min(1e-300)
    coords = ((u * vectors[:, :d]).sum(0).pow(2) / norms).tolist()
    spaces = [{"coordinates": [s, e], "eigenvalue": float(values[s:e].mean()),
               "alignment": subspace_alignment(u[:, s:e], vectors[:, s:e])}
              for s, e in eigenspaces(values[:d])]
    return coords, spaces


def truth(graph: Graph, k: int, budget_s: float = EvalConfig.truth_budget_s) -> Eigenpairs | str:
    """K's top min(k, n - 1) eigenpairs within about budget_s seconds (eigensolvers.top_eigenpairs),
    or why not: computed once per evaluation, read by graph_report and the Ritz comparison."""
    return eigensolvers.top_eigenpairs(kernel(graph), min(k, graph.num_nodes - 1), budget_s)


def graph_report(graph: Graph, phi: Tensor, mu: float | None = None,
                 budget_s: float = EvalConfig.truth_budget_s, found: Eigenpairs | str | None = None) -> Dict[str, Any]:
    """report.json's "graph" section for phi (n, d), the projection of every node (row order), against
    `found` (truth(): at least K's top d + 1 eigenpairs, or why not), computed here within budget_s
    seconds when not given; a section saying why it was skipped when the truth is out of reach."""
    n, d = phi.shape
    if d >= n:
        return {"skipped": f"phi has d={d} dimensions for {n} nodes: nothing to compare (lower encoder.dim)"}
    found = truth(graph, d + 1, budget_s) if found is None else found
    if isinstance(found, str):
        return {"nodes": n, "edges": graph.num_edges, "d": d, "skipped": found}
    values, vectors = found.values, found.vectors
    p = graph.node_weights()
    u = p.sqrt()[:, None] * phi.double().cpu()                    # (n, d): u_x = sqrt(p(x)) phi(x)
    learned = torch.linalg.eigvalsh(u.T @ u).flip(0)              # of sum_x p(x) phi(x) phi(x)^T
    true = values[:d]
    coords, spaces = per_coordinate(u, vectors, values, d)
    gap = float(values[d - 1] - values[d]) if values.numel() > d else math.nan
    section = {"nodes": n, "edges": graph.num_edges, "d": d,
               "subspace_alignment": subspace_alignment(u, vectors[:, :d]),
               "learned_spectrum": learned.tolist(), "true_spectrum": true.tolist(),
               "eigenvalue_error": float((learned - true).abs().mean()),
               "eckart_young": reconstruction(graph, u, values, d),
               "per_coordinate": coords, "eigenspaces": spaces,
               "eigengap": gap, "next_eigenvalue": float(values[d]) if values.numel() > d else None,
               "warnings": warnings(phi, gap, d, mu)}
    for line in section["warnings"]:
        log.warning(line)
    return section


def warnings(phi: Tensor, gap: float, d: int, mu: float | None) -> List[str]:
    """d splitting a near-degenerate group (the alignment is not identifiable), and mu capping norms."""
    out = []
    if not gap > GROUP_TOL:
        out.append(f"d={d} splits a near-degenerate eigenspace: the eigengap lambda_d - lambda_(d+1) is {gap:.3g}, "
                   "so the top-d eigenspace is not identifiable and the alignment means little; pick a d at a gap")
    if mu is not None:
        capped = float((phi.double().pow(2).sum(1) > mu).double().mean())
        if capped > 0:
            out.append(f"objective.mu={mu:g} caps the norm |phi(x)|^2 of {100 * capped:.1f} % of the nodes: "
                       "the learned spectrum is then below the truth; raise objective.mu")
    return out
