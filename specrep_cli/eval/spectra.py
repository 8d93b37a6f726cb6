"""What a representation looks like: the covariance spectrum, effective rank, variance shares,
orthonormality error, and Wang & Isola's alignment and uniformity. Plain functions of feature tensors.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

VARIANCE_SHARE_TOPS = (1, 10, 100)   # report the share of variance in the top 1, 10 and 100 directions
UNIFORMITY_T = 2.0                   # Wang & Isola's t


def covariance_eigenvalues(features: Tensor) -> Tensor:
    """Eigenvalues of the covariance (1 / (N - 1)) sum_i (f_i - mean)(f_i - mean)^T of features (N, D),
    descending, float64, clamped at 0 (all 0 when N < 2)."""
    x = features.double()
    if x.shape[0] < 2:
        return torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    cov = torch.atleast_2d(torch.cov(x.T))
    return torch.linalg.eigvalsh(cov).clamp_min(0).flip(0)


def effective_rank_of(eigenvalues: Tensor) -> float:
    """exp(-sum_i p_i log p_i) with p_i = lambda_i / sum_j lambda_j (Roy & Vetterli 2007); 1 when all are 0."""
    p = eigenvalues.double() / eigenvalues.double().sum().clamp_min(1e-300)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def effective_rank(features: Tensor) -> float:
    """Effective rank of the feature covariance: d for isotropic features, 1 for features on a line."""
    return effective_rank_of(covariance_eigenvalues(features))


def top_variance_share(eigenvalues: Tensor, tops: Sequence[int] = VARIANCE_SHARE_TOPS) -> Dict[str, float]:
    """{str(k): sum_{i<=k} lambda_i / sum_i lambda_i} for descending eigenvalues (1 when k >= D; 0 when all are 0)."""
    total = float(eigenvalues.sum())
    return {str(k): float(eigenvalues[:k].sum()) / total if total > 0 else 0.0 for k in tops}


def orthonormality_error(features: Tensor) -> float:
    """||E[psi psi^T] - I||_F / sqrt(d) over the rows psi of features (N, d): 0 when the second moment
    (1/N) sum_i psi_i psi_i^T is the identity."""
    x = features.double()
    second = x.T @ x / x.shape[0]
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return float(torch.linalg.matrix_norm(second - eye) / math.sqrt(x.shape[1]))


def spectrum(features: Tensor) -> Dict[str, Any]:
    """eigenvalues (descending), effective_rank, top_variance_share and orthonormality_error of features (N, D)."""
    eig = covariance_eigenvalues(features)
    return {"eigenvalues": eig.tolist(), "effective_rank": effective_rank_of(eig),
            "top_variance_share": top_variance_share(eig), "orthonormality_error": orthonormality_error(features)}


def alignment(f_a: Tensor, f_b: Tensor) -> float:
    """Wang & Isola (2020): (1/N) sum_i ||u_a_i - u_b_i||^2 with u = f / ||f||, for the two views' features
    (N, D) of the same N images (0: the views map to the same point; at most 4)."""
    u_a, u_b = F.normalize(f_a.double(), dim=1), F.normalize(f_b.double(), dim=1)
    return float((u_a - u_b).pow(2).sum(1).mean())


def uniformity(f: Tensor, t: float = UNIFORMITY_T) -> float:
    """Wang & Isola (2020): log of the mean over pairs i < j of exp(-t ||u_i - u_j||^2), u = f / ||f||
    (N >= 2 rows); lower is more uniform on the sphere, 0 when every u is the same point."""
    u = F.normalize(f.double(), dim=1)
    sq = torch.pdist(u).pow(2)                                          # (N (N - 1) / 2,)
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel()))
