"""The truth for two towers on a bipartite graph, and how far phi(x), nu(y) are from it.

    found = singular_truth(graph, k)                     # top-k SVD of K = D_x^-1/2 A D_y^-1/2, or why not
    section = bipartite_report(graph, phi, nu, found)    # report.json's "bipartite" section

With p(x, y) = A_xy / sum(A) over the edges x -> y and p(x), p(y) its marginals, the two-tower spectral
loss -2 E_p(x,y)[phi(x)^T nu(y)] + E_p(x)p(y)[(phi(x)^T nu(y))^2] is the Eckart-Young error
||K - U V^T||_F^2 less a constant, with U = D_x^1/2 Phi, V = D_y^1/2 N: at its minimum U V^T is K's best
rank-d approximation, so span(U) and span(V) are the top-d left and right singular vectors of K and
the singular values of U V^T are K's top d. Every figure here is computed for those U and V.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import torch
from torch import Tensor

from ..data.graphs import Graph
from .graph_truth import subspace_alignment

DENSE_ENTRIES = 25_000_000   # n_x * n_y up to this: a dense SVD (200 MB in float64); past it, scipy's svds


def cross_kernel(graph: Graph) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(x, y, K_xy, p_x, p_y): the edges x -> y (x in [0, n_x), y in [0, n_y)), K on them, float64,
    and the marginals p(x) (n_x,), p(y) (n_y,)."""
    e = graph.cross_edges()
    n_x, n_y = graph.num_x, graph.num_nodes - graph.num_x
    x, y, w = graph.src[e], graph.dst[e] - n_x, graph.weight[e] / graph.weight[e].sum()
    p_x = torch.zeros(n_x, dtype=torch.float64).index_add_(0, x, w)
    p_y = torch.zeros(n_y, dtype=torch.float64).index_add_(0, y, w)
    return x, y, w / (p_x[x] * p_y[y]).sqrt(), p_x, p_y


def singular_truth(graph: Graph, k: int) -> Tuple[Tensor, Tensor, Tensor] | str:
    """K's top min(k, n_x, n_y) singular values (descending) and left (n_x, k) and right (n_y, k)
    singular vectors, float64: a dense SVD when n_x n_y <= DENSE_ENTRIES, else scipy's svds (the graph
    extra); why not, as a str, when neither is possible."""
    x, y, k_xy, p_x, p_y = cross_kernel(graph)
    n_x, n_y = p_x.numel(), p_y.numel()
    k = min(k, n_x, n_y)
    if n_x * n_y <= DENSE_ENTRIES:
        dense = torch.zeros(n_x, n_y, dtype=torch.float64).index_put_((x, y), k_xy, accumulate=True)
        u, s, vh = torch.linalg.svd(dense, full_matrices=False)
        return s[:k], u[:, :k], vh[:k].T
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import svds
    except ImportError:
        return (f"skipped: a {n_x} x {n_y} cross kernel is too large for a dense SVD and scipy is not installed "
                "(pip install 'specrep[graph]')")
    u, s, vh = svds(coo_matrix((k_xy.numpy(), (x.numpy(), y.numpy())), shape=(n_x, n_y)).tocsr(), k=k)
    order = torch.from_numpy(s.copy()).argsort(descending=True)
    return (torch.from_numpy(s.copy())[order], torch.from_numpy(u.copy())[:, order],
            torch.from_numpy(vh.copy()).T[:, order])


def reconstruction(kernel: Tuple[Tensor, ...], u: Tensor, v: Tensor, values: Tensor, d: int) -> Dict[str, float]:
    """Eckart-Young against `kernel` (cross_kernel's): ||K - U V^T||_F^2 / ||K||_F^2 (relative_error)
    beside the best rank-d value, sum_{i>d} s_i^2 / ||K||_F^2 (best), and their difference (excess, 0 at
    the optimum). ||K - U V^T||^2 = ||K||^2 - 2 sum_edges K_xy u_x.v_y + tr(U^T U V^T V): no n_x x n_y product."""
    x, y, k_xy, _, _ = kernel
    total = float(k_xy.pow(2).sum())
    cross = float((k_xy * (u[x] * v[y]).sum(1)).sum())
    error = total - 2 * cross + float(((u.T @ u) * (v.T @ v)).sum())
    best = max(total - float(values[:d].pow(2).sum()), 0.0)
    return {"relative_error": error / total, "best": best / total, "excess": (error - best) / total}


def bipartite_report(graph: Graph, phi: Tensor, nu: Tensor,
                     found: Tuple[Tensor, Tensor, Tensor] | str) -> Dict[str, Any]:
    """report.json's "bipartite" section for phi (n_x, d) at the x nodes and nu (n_y, d) at the y nodes
    against `found` (singular_truth: at least K's top d + 1 singular triplets where there are; or why
    not): each tower's subspace alignment with the top-d singular vectors of its side, the learned
    singular values (of U V^T) against the true, and Eckart-Young."""
    n_x, d = phi.shape
    n_y = nu.shape[0]
    head = {"nodes_x": n_x, "nodes_y": n_y, "edges": int(graph.cross_edges().numel()), "d": d}
    if d >= min(n_x, n_y):
        return {**head, "skipped": f"d={d} is not below the smaller side ({min(n_x, n_y)} nodes): nothing to compare"}
    if isinstance(found, str):
        return {**head, "skipped": found}
    values, left, right = found
    kernel = cross_kernel(graph)
    p_x, p_y = kernel[3], kernel[4]
    u = p_x.sqrt()[:, None] * phi.double().cpu()   # (n_x, d): u_x = sqrt(p(x)) phi(x)
    v = p_y.sqrt()[:, None] * nu.double().cpu()    # (n_y, d)
    _, r_u = torch.linalg.qr(u)
    _, r_v = torch.linalg.qr(v)
    learned = torch.linalg.svdvals(r_u @ r_v.T)    # the singular values of U V^T
    gap = float(values[d - 1] - values[d]) if values.numel() > d else math.nan
    return {**head, "phi": {"subspace_alignment": subspace_alignment(u, left[:, :d])},
            "nu": {"subspace_alignment": subspace_alignment(v, right[:, :d])},
            "learned_singular_values": learned.tolist(), "true_singular_values": values[:d].tolist(),
            "singular_value_error": float((learned - values[:d]).abs().mean()),
            "eckart_young": reconstruction(kernel, u, v, values, d), "singular_gap": gap, "warnings": []}
