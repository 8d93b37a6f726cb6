"""Rayleigh-Ritz: the ordered eigenfunctions that any trained encoder spans, without labels or retraining.

Take f(x) in R^d, trained by any objective. Inside span(f), the best rank-d approximation of the
positive-pair operator (the augmentation kernel) comes from the generalised eigenproblem

    M v = lambda C v,   M = (E_{p(x,x')}[f(x) f(x')^T] + transpose) / 2,   C = E_{p(x)}[f(x) f(x)^T]

Its eigenvalues (the Ritz values) estimate the operator's top d eigenvalues, largest first, and the
functions f(x)^T v_k are ordered estimates of its eigenfunctions (C-orthonormal: E[(f^T v_j)(f^T v_k)]
= delta_jk). When span(f) holds the top d eigenfunctions exactly, both are exact.

For two towers f(x), g(y) of paired data (x, y) the operator is the cross kernel p(x, y) / sqrt(p(x) p(y))
and the same argument gives a singular value problem: the SVD of C_f^-1/2 E[f(x) g(y)^T] C_g^-1/2.

    m, c = pair_moments(f_a, f_b)          # from the features of n pairs (x, x'), (n, d) each
    result = ritz(m, c)                    # .values (d,) descending, .vectors (d, d): f @ vectors
    result = cross_ritz(f_x, g_y)          # two towers: .values, .vectors (of f), .vectors_y (of g)

Everything is float64; a small ridge (relative to C's mean eigenvalue) keeps C invertible, and
`condition` says when C was ill-conditioned (nearly dependent coordinates of f).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

RIDGE = 1e-9            # added to C, times C's mean eigenvalue
ILL_CONDITIONED = 1e8   # C's condition number above which the Ritz values of its small directions are noise


@dataclass(frozen=True)
class Ritz:
    """The solution of M v = lambda C v: values (d,) descending; vectors (d, d), column k = v_k;
    condition: C's condition number before the ridge; vectors_y: the second tower's (cross_ritz)."""
    values: Tensor
    vectors: Tensor
    condition: float
    vectors_y: Tensor | None = None

    @property
    def ill_conditioned(self) -> bool:
        return not self.condition < ILL_CONDITIONED

    def ordered(self, f: Tensor) -> Tensor:
        """The ordered eigenfunction estimates at the rows of f (n, d): f @ vectors, float64."""
        return f.double() @ self.vectors


def pair_moments(f_a: Tensor, f_b: Tensor) -> tuple[Tensor, Tensor]:
    """(M, C) from the features of n positive pairs, float64: M = (F_a^T F_b + F_b^T F_a) / 2n (the
    symmetrised cross moment), C = (F_a^T F_a + F_b^T F_b) / 2n (both views are draws of p(x))."""
    a, b = f_a.double(), f_b.double()
    n = a.shape[0]
    cross = a.T @ b / n
    return (cross + cross.T) / 2, (a.T @ a + b.T @ b) / (2 * n)


def _inverse_root(c: Tensor) -> tuple[Tensor, float]:
    """(C + ridge)^-1/2 (symmetric) and C's condition number, float64."""
    c = (c + c.T) / 2
    evals, evecs = torch.linalg.eigh(c)
    top = evals.abs().max().clamp_min(1e-300)
    condition = float(top / evals.min()) if evals.min() > 0 else float("inf")
    floor = RIDGE * evals.clamp_min(0).mean().clamp_min(1e-300)
    return (evecs * (evals.clamp_min(0) + floor).rsqrt()) @ evecs.T, condition


def ritz(m: Tensor, c: Tensor) -> Ritz:
    """The generalised symmetric eigenproblem M v = lambda C v in float64, largest lambda first; the
    vectors are C-orthonormal (V^T C V = I, up to the ridge)."""
    m, c = m.double(), c.double()
    root, condition = _inverse_root(c)
    reduced = root @ ((m + m.T) / 2) @ root
    values, w = torch.linalg.eigh((reduced + reduced.T) / 2)
    order = values.argsort(descending=True)
    return Ritz(values[order], root @ w[:, order], condition)


def cross_ritz(f_x: Tensor, g_y: Tensor) -> Ritz:
    """Two towers: cross_moments_ritz over n pairs (x_i, y_i): M = E[f(x) g(y)^T], C_f = E[f f^T],
    C_g = E[g g^T], all estimated from the pairs, float64."""
    f, g = f_x.double(), g_y.double()
    n = f.shape[0]
    return cross_moments_ritz(f.T @ g / n, f.T @ f / n, g.T @ g / n)


def cross_moments_ritz(m: Tensor, c_f: Tensor, c_g: Tensor) -> Ritz:
    """Two towers: the SVD of C_f^-1/2 M C_g^-1/2, float64. values: the singular values, descending;
    vectors and vectors_y map f and g to their ordered left and right singular function estimates;
    condition: the worse of the two towers'."""
    root_f, cond_f = _inverse_root(c_f.double())
    root_g, cond_g = _inverse_root(c_g.double())
    u, s, vh = torch.linalg.svd(root_f @ m.double() @ root_g, full_matrices=False)
    return Ritz(s, root_f @ u, max(cond_f, cond_g), root_g @ vh.T)


def effective_dim(values: Tensor) -> float:
    """How many Ritz values carry the spectrum: exp of the entropy of the positive values normalised
    to sum 1 (as spectra.effective_rank for covariance spectra); 0 when none is positive."""
    positive = values.double().clamp_min(0)
    total = positive.sum()
    if total <= 0:
        return 0.0
    p = positive[positive > 0] / total
    return float(torch.exp(-(p * p.log()).sum()))


def prefix_sizes(d: int) -> list[int]:
    """k = 1, 2, 4, ..., and d itself: the prefixes of the ordered functions the prefix curve scores."""
    sizes, k = [], 1
    while k < d:
        sizes.append(k)
        k *= 2
    return [*sizes, d]
