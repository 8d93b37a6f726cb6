"""Process-group queries and the two collectives the losses need, with gradients.

In a single process (torch.distributed not initialised, or a world of size 1) every function here is a
no-op: ``world_size() = 1``, ``rank() = 0``, and the collectives return their argument unchanged, so
code written for the global batch runs unchanged, and at no cost, on one device.

The global batch. N ranks each hold B samples; sample i of rank r is sample ``r * B + i`` of the global
batch of N B samples (rank-major, ``rank_offset(B) + i``). Every rank must hold the same B.

Why the gradients come out right under DDP. Both collectives have the exact adjoint as backward:

    all_reduce_sum:        y = sum_r x_r on every rank;       dL/dx_r = sum_r' dL/dy_r'
    all_gather_with_grad:  y = [x_0; ...; x_{N-1}] everywhere; dL/dx_r = (sum_r' dL/dy_r')[rows of r]

so when every rank calls ``backward()`` on its own loss_r, rank r receives the gradient of the joint
J = sum_r loss_r with respect to its own inputs, as if the N processes were one autograd graph. The
objectives make every rank's loss the global-batch loss L itself (the same value on every rank), so
J = N L, and DDP's average over ranks gives (1/N) dJ/dtheta = dL/dtheta: the single-process gradient.
The factor N that compensates DDP's 1/N is the N in J = N L; nothing is rescaled anywhere. Hence:
do not divide the loss by the world size, and do not turn DDP's gradient average into a sum.
(torch.nn.SyncBatchNorm's backward is the same exact adjoint, so it composes with this.)

Every call is a collective: once a process group of size > 1 exists, every rank must make the same
calls in the same order (a loss computed on rank 0 alone waits forever).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """The number of processes in the default group; 1 when torch.distributed is not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group; 0 when torch.distributed is not initialised."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (the one that writes files and logs), and in a single process."""
    return rank() == 0


def rank_offset(b: int) -> int:
    """rank * b: the global index of this rank's first sample when every rank holds b samples."""
    return rank() * b


def global_size(b: int) -> int:
    """world_size * b: the number of samples of the global batch when every rank holds b samples."""
    return world_size() * b


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        g = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g, op=dist.ReduceOp.SUM)   # the adjoint of a sum broadcast to every rank
        return g


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.rows = x.shape[0]
        parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)   # (N B, ...), rank-major

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        g = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(g, op=dist.ReduceOp.SUM)   # sum_r' dL/dy_r' ...
        start = rank() * ctx.rows
        return g[start:start + ctx.rows]           # ... restricted to this rank's rows


def all_reduce_sum(x: Tensor) -> Tensor:
    """sum_r x_r, the same tensor on every rank; backward all-reduces (sums) the gradient too.

    Identity in a single process. Differentiable: rank r's x_r receives sum_r' dL_r'/dy, the gradient
    of the joint loss J = sum_r L_r (see the module docstring).
    """
    if world_size() == 1:
        return x
    return _AllReduceSum.apply(x)


def all_gather_with_grad(x: Tensor) -> Tensor:
    """(B, ...) on each rank -> (N B, ...) = [x_0; x_1; ...; x_{N-1}] on every rank (rank order).

    Identity in a single process. Backward: the incoming (N B, ...) gradient is all-reduced (summed)
    over ranks and each rank keeps its own B rows. This is the exact adjoint, i.e. a reduce-scatter;
    it is written as all_reduce + slice because gloo has no reduce_scatter, and the gradient is only
    embedding-sized (torch.distributed.nn.functional.all_gather does the same job with all-to-all on
    gloo; one explicit Function keeps the gradient convention visible next to all_reduce_sum's).
    Every rank must pass the same shape.
    """
    if world_size() == 1:
        return x
    return _AllGather.apply(x)


def global_mean(x: Tensor) -> Tensor:
    """(1 / (N B)) sum_r sum_i x_r[i]: the mean over dim 0 of the global batch, (B, ...) -> (...).

    Differentiable (through all_reduce_sum); x.mean(0) in a single process.
    """
    return all_reduce_sum(x.sum(0)) / global_size(x.shape[0])
