"""The top eigenpairs of a graph's K within a time budget (eval.truth_budget_s), for graph_truth.

    found = top_eigenpairs(kernel, k, budget_s)   # Eigenpairs(values, vectors, method), or why not (a str)
    dense_seconds(n)                              # a dense eigh's estimated time on this machine

A dense eigh is exact and costs ~ c n^3 (c timed once per process on a small matrix): within the
budget it is the answer (a log line gives its estimate first). Past it, a warning with the estimate,
then scipy's Lanczos (ARPACK's eigsh) on the sparse K, stopped when the budget has passed (every
product with K looks at the clock):
  - shift-invert around 1 + SHIFT, just above K's top eigenvalue (1), when its factorisation (without
    pivoting, in reverse Cuthill-McKee order: ~ n b^2 for a band b) is estimated to fit. A long ring's
    top eigenvalues lie ~1e-8 apart, where plain Lanczos restarts for minutes (152 s for 12,000
    nodes); inverted, they are far apart (0.2 s for 20,000 nodes).
  - else plain Lanczos (which="LA"): fast where the top eigenvalues stand apart (SBMs, random graphs),
    whose band is ~n, so that the factorisation would be as dense as K.
Without scipy, or when neither finishes in time, the truth is skipped (the str says why).
"""
from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np
import torch
from torch import Tensor

from ..progress import hms

log = logging.getLogger("specrep")
CALIBRATION_SIZE = 256   # the symmetric matrix whose eigh is timed to calibrate c in ~ c n^3 seconds
MARGIN = 2.0             # a large eigh runs up to ~2x slower per n^3 than that small one (memory-bound)
SHIFT = 1e-9             # shift-invert around 1 + SHIFT: K's top eigenvalues (<= 1) map to the largest


@dataclass(frozen=True)
class Kernel:
    """A symmetric n x n matrix by its entries: K[src, dst] = values (float64, both triangles)."""
    n: int
    src: Tensor
    dst: Tensor
    values: Tensor

    def dense(self) -> Tensor:
        out = torch.zeros(self.n, self.n, dtype=torch.float64)
        return out.index_put_((self.src, self.dst), self.values.double(), accumulate=True)


@dataclass(frozen=True)
class Eigenpairs:
    values: Tensor    # (k,) float64, descending
    vectors: Tensor   # (n, k) float64, orthonormal columns
    method: str       # how they were found, for the log


@dataclass(frozen=True)
class Deadline:
    """When a sparse solver must stop (a time.perf_counter() value): check() raises TimeoutError after."""
    at: float

    def left(self) -> float:
        return self.at - time.perf_counter()

    def check(self) -> None:
        if time.perf_counter() > self.at:
            raise TimeoutError


@functools.lru_cache(maxsize=1)
def seconds_per_cube() -> float:
    """c in a dense float64 eigh's ~ c n^3 seconds here: the best of up to 5 timed eighs of a
    CALIBRATION_SIZE matrix (~0.05 s in all; no new one after 0.5 s), times MARGIN; once. The best:
    the first call starts LAPACK's threads, and on a busy machine one run may take 100 times the next."""
    a = torch.randn(CALIBRATION_SIZE, CALIBRATION_SIZE, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    a = a + a.T
    best, began = math.inf, time.perf_counter()
    for _ in range(5):
        t0 = time.perf_counter()
        torch.linalg.eigh(a)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - began > 0.5:
            break
    return MARGIN * best / CALIBRATION_SIZE ** 3


def dense_seconds(n: int) -> float:
    """A dense eigh's estimated seconds for n x n on this machine."""
    return seconds_per_cube() * n ** 3


def took(seconds: float) -> str:
    """A duration for a log line: 0.02 s, 41 s, 1:02:03 (inf s: no end)."""
    return hms(seconds) if 60 <= seconds < math.inf else f"{seconds:.2g} s"


def top_eigenpairs(kernel: Kernel, k: int, budget_s: float) -> Eigenpairs | str:
    """The top k eigenpairs of `kernel` (module docstring): a dense eigh when estimated within
    budget_s, else a sparse solver stopped at budget_s; a str saying why not when there is none."""
    estimate, t0 = dense_seconds(kernel.n), time.perf_counter()
    what = f"the top {k} eigenpairs of K ({kernel.n:,} nodes)"
    if estimate <= budget_s:
        log.info(f"graph truth: {what} by a dense eigh, estimated {took(estimate)}")
        values, vectors = torch.linalg.eigh(kernel.dense())
        found: Eigenpairs | str = Eigenpairs(values.flip(0)[:k], vectors.flip(1)[:, :k], "dense eigh")
    else:
        log.warning(f"graph truth: a dense eigh of {kernel.n:,} nodes would take ~{took(estimate)} (estimated), "
                    f"over eval.truth_budget_s={budget_s:g}: {what} by sparse Lanczos instead, stopped at the budget")
        found = sparse_eigenpairs(kernel, k, Deadline(t0 + budget_s))
    if isinstance(found, str):
        found = (f"skipped: the exact truth (a dense eigh of {kernel.n:,} nodes) would take ~{took(estimate)}, "
                 f"over eval.truth_budget_s={budget_s:g}, and {found}")
        log.warning(f"graph truth {found}")
    else:
        log.info(f"graph truth: {found.method} took {took(time.perf_counter() - t0)}")
    return found


def sparse_eigenpairs(kernel: Kernel, k: int, deadline: Deadline) -> Eigenpairs | str:
    """The top k eigenpairs by scipy's Lanczos on the sparse K (module docstring), stopped at
    `deadline`; why not (a str) without scipy, past the deadline or when ARPACK fails."""
    try:
        import scipy.sparse
        from scipy.sparse.linalg import ArpackError
    except ImportError:
        return "the sparse solver needs scipy: pip install 'specrep[graph]'"
    matrix = scipy.sparse.csr_matrix((kernel.values.double().numpy(), (kernel.src.numpy(), kernel.dst.numpy())),
                                     shape=(kernel.n, kernel.n))
    order, band = banded_order(matrix)
    inverted = seconds_per_cube() * kernel.n * band ** 2 <= deadline.left()
    method = "shift-invert Lanczos" if inverted else "Lanczos"
    try:
        values, vectors = shift_invert(matrix, k, order, deadline) if inverted else lanczos(matrix, k, deadline)
    except TimeoutError:
        return f"{method} on the sparse K did not finish within it: raise eval.truth_budget_s"
    except ArpackError as err:
        return f"{method} on the sparse K failed ({str(err).splitlines()[0]})"
    descending = np.argsort(-values)
    return Eigenpairs(torch.from_numpy(values[descending]), torch.from_numpy(vectors[:, descending]), method)


def banded_order(matrix: Any) -> Tuple[np.ndarray, int]:
    """Reverse Cuthill-McKee's order of the rows, and the band b it leaves (the largest |i - j| of an
    entry): factorised without pivoting in that order, the fill stays inside the band (~ n b^2)."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee
    order = reverse_cuthill_mckee(matrix, symmetric_mode=True)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    entries = matrix.tocoo()
    return order, int(np.abs(rank[entries.row] - rank[entries.col]).max(initial=0))


def start_vector(n: int) -> np.ndarray:
    """ARPACK's start, seeded (its default is random): the same truth every run."""
    return np.random.default_rng(0).standard_normal(n)


def lanczos(matrix: Any, k: int, deadline: Deadline) -> Tuple[np.ndarray, np.ndarray]:
    """ARPACK's Lanczos for the k largest eigenvalues, each product with K checking the deadline."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    def product(x: np.ndarray) -> np.ndarray:
        deadline.check()
        return matrix @ x

    operator = LinearOperator(matrix.shape, matvec=product, dtype=np.float64)
    return eigsh(operator, k=k, which="LA", v0=start_vector(matrix.shape[0]))


def shift_invert(matrix: Any, k: int, order: np.ndarray, deadline: Deadline) -> Tuple[np.ndarray, np.ndarray]:
    """ARPACK's Lanczos on (K - sigma I)^-1, sigma = 1 + SHIFT: the eigenvalues of K nearest sigma are
    its largest. K - sigma I is negative definite: factorised in `order` without pivoting (inside its
    band); each solve checks the deadline."""
    from scipy.sparse import identity
    from scipy.sparse.linalg import LinearOperator, eigsh, splu
    sigma = 1.0 + SHIFT
    shifted = (matrix[order][:, order] - sigma * identity(matrix.shape[0])).tocsc()
    factors = splu(shifted, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})

    def solve(x: np.ndarray) -> np.ndarray:
        deadline.check()
        out = np.empty_like(x, dtype=np.float64)
        out[order] = factors.solve(np.ascontiguousarray(x[order], dtype=np.float64))
        return out

    inverse = LinearOperator(matrix.shape, matvec=solve, dtype=np.float64)
    return eigsh(matrix, k=k, sigma=sigma, which="LM", OPinv=inverse, v0=start_vector(matrix.shape[0]))
