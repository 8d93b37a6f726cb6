"""Self-supervised objectives as pure loss functions of embeddings.

Each function takes plain tensors and returns a 0-dim loss. Nothing here holds state, builds a
module or reads a config: heads, EMA targets, running second moments and learnable scales belong
to the caller (methods.py). Each docstring states its formula exactly.

Convention: every loss takes a keyword-only ``return_terms=False``. With ``return_terms=True`` it
returns ``(loss, terms)``, where ``terms`` maps a name to a detached 0-dim tensor for logging (no
``.item()``, so no host sync). When ``terms`` is non-empty its values sum to ``loss``: weights such
as ``lam`` or ``1/mu`` are already applied inside each term. info_nce, clip_loss and byol_loss have
no terms (an empty dict).

Notation: ``z_a``, ``z_b`` are (B, d) projector outputs for view a and view b of the same B samples
(row i of both comes from sample i). "Normalized" means rows are L2-normalised first, so dot products
are cosines. ``sg`` is stop-gradient (detach). ``<X, Y>_F`` is the Frobenius inner product.

Precision: every loss runs with autocast disabled and its floating tensor arguments promoted to at
least float32 (bf16/fp16 -> fp32, fp64 stays fp64), so similarity matrices and Grams are never bf16.

Global batch. With N > 1 processes (torch.distributed initialised), each rank passes its own B rows and
every loss is the loss of the global batch of n = N B rows (rank-major: row i of rank r is global row
r B + i), the same value on every rank. In the formulas below B is that global n; sums over samples
are local sums all-reduced (distributed.all_reduce_sum, distributed.global_mean), and losses that pair
every sample with every other gather the other ranks' embeddings with gradients
(distributed.all_gather_with_grad) and compute only the rows of the rank's own samples against them.
Both collectives have exact-adjoint backwards, so DDP's gradient average gives exactly the
single-process gradient (the distributed module docstring has the argument). With one process every
collective is the identity and the code below is the plain single-batch computation.
"""

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .distributed import all_gather_with_grad, all_reduce_sum, global_mean, global_size, rank_offset


def _fp32(loss_fn):
    """Run ``loss_fn`` with autocast off and its floating tensor arguments promoted to >= float32."""

    def promote(x):
        if isinstance(x, Tensor) and x.is_floating_point():
            return x.to(torch.promote_types(x.dtype, torch.float32))
        return x

    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        device = next(x for x in (*args, *kwargs.values()) if isinstance(x, Tensor)).device
        with torch.autocast(device_type=device.type, enabled=False):
            return loss_fn(*map(promote, args), **{k: promote(v) for k, v in kwargs.items()})

    return wrapper


def _result(loss: Tensor, terms: dict[str, Tensor], return_terms: bool):
    if return_terms:
        return loss, {name: t.detach() for name, t in terms.items()}
    return loss


def _sum_off_diagonal(m: Tensor) -> Tensor:
    """sum_{i != j} m_ij of a square matrix."""
    eye = torch.eye(m.shape[0], dtype=torch.bool, device=m.device)
    return m.masked_fill(eye, 0).sum()


def _own_columns(local: Tensor) -> Tensor:
    """(B,) global indices r B + i of this rank's B rows: where each sits in a gathered (N B, ...) batch."""
    B = local.shape[0]
    return rank_offset(B) + torch.arange(B, device=local.device)


def _drop_own_pairs(m: Tensor, own: Tensor, value: float) -> Tensor:
    """m (B, n) with m[i, own[i]] = value: each local row's entry against its own sample, removed."""
    return m.scatter(1, own[:, None], value)


def _second_moment(psi_a: Tensor, psi_b: Tensor) -> Tensor:
    """(psi_a^T psi_a + psi_b^T psi_b) / (2B), shape (d, d); sums over the global batch."""
    n = global_size(psi_a.shape[0])
    return all_reduce_sum(psi_a.T @ psi_a + psi_b.T @ psi_b) / (2 * n)


def _cross_sq_off_diagonal(a: Tensor, b: Tensor, via_gram: bool) -> Tensor:
    """sum_{i != j} (a_i . b_j)^2 over the global batch.

    via_gram=True:  <A^T A, B^T B>_F - sum_i (a_i . b_i)^2, two (d, d) Grams, O(B d^2) (for B > d);
                    the Grams and the diagonal sum are sums over samples: all-reduced, never gathered.
    via_gram=False: through the rows of A B^T, O(B^2 d) (for B <= d); B gathered, own rows here.
    """
    if via_gram:
        grams = all_reduce_sum(torch.stack([a.T @ a, b.T @ b]))  # (2, d, d)
        return (grams[0] * grams[1]).sum() - all_reduce_sum((a * b).sum(1).pow(2).sum())
    rows = (a @ all_gather_with_grad(b).T).pow(2)  # (B_local, B), (a_i . b_j)^2
    return all_reduce_sum(_drop_own_pairs(rows, _own_columns(a), 0.0).sum())


def _logistic_pairs(a: Tensor, b: Tensor, bias, k: int) -> tuple[Tensor, Tensor]:
    """Shared by binary_nce and siglip_loss: a (B, d) carries the scale, b (B, d) is normalized.

    s(i, j) = a_i . b_j + bias
    positive = -(1/B) sum_i log sigmoid(s(i, i))
    negative = -(1/B) sum_i sum_{m=1..k} log sigmoid(-s(i, (i + m) mod B))   (k = B - 1: all j != i)
    Rows i are this rank's samples; j runs over the gathered global batch.
    """
    # below, -log sigmoid(x) = softplus(-x) and -log sigmoid(-x) = softplus(x)
    b_all = all_gather_with_grad(b)  # (B, d), the global batch
    n, own = b_all.shape[0], _own_columns(a)
    positive = global_mean(F.softplus(-((a * b).sum(1) + bias)))
    if k == n - 1:  # all pairs: one (B_local, B) matrix is cheaper than B - 1 rolls
        logits = _drop_own_pairs(a @ b_all.T + bias, own, float("-inf"))  # softplus(-inf) = 0
        negative = global_mean(F.softplus(logits).sum(1))
    else:  # k shifted rows of the global b, never a (B, B) matrix
        negative = 0
        for m in range(1, k + 1):
            s_m = (a * b_all[(own + m) % n]).sum(1) + bias  # (B_local,), s(i, (i + m) mod B)
            negative = negative + F.softplus(s_m)
        negative = global_mean(negative)
    return positive, negative


@_fp32
def info_nce(z_a: Tensor, z_b: Tensor, temperature, *, return_terms: bool = False):
    """Ranking NCE (SimCLR's NT-Xent). Normalized. Cost O(B^2 d).

    z = [z_a; z_b] (2B, d), rows normalized; s(n, m) = z_n . z_m / temperature; p(n) = n + B for
    n < B, n - B otherwise (the other view of the same sample).
    loss = -(1/2B) sum_{n=1..2B} log( exp s(n, p(n)) / sum_{m != n} exp s(n, m) )
    """
    B = z_a.shape[0]  # this rank's samples
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)  # (2B, d), this rank's anchors
    candidates = all_gather_with_grad(z)  # (N 2B, d): [a_0; b_0; a_1; b_1; ...]
    own = _own_columns(z)  # (2B,), where each anchor sits among the candidates
    logits = _drop_own_pairs((z / temperature) @ candidates.T, own, float("-inf"))  # (2B, N 2B)
    positives = own - own % (2 * B) + (own + B) % (2 * B)  # p(n): the other view, same block
    loss = global_mean(F.cross_entropy(logits, positives, reduction="none"))
    return _result(loss, {}, return_terms)


@_fp32
def binary_nce(z_a: Tensor, z_b: Tensor, temperature, bias, num_negatives: int | None = None,
               *, return_terms: bool = False):
    """Binary (logistic) NCE. Normalized. Cost O(B k d); with k = B - 1 it is SigLIP's all-pairs loss.

    s(i, j) = a_i . b_j / temperature + bias;  k = num_negatives (1 <= k <= B - 1, None means B - 1)
    positive = -(1/B) sum_i log sigmoid(s(i, i))
    negative = -(1/B) sum_i sum_{m=1..k} log sigmoid(-s(i, (i + m) mod B))
    loss = positive + negative
    ``temperature`` and ``bias`` may be floats or 0-dim tensors (gradients flow to them).
    Raises ValueError when k is out of range.
    """
    B = global_size(z_a.shape[0])
    k = B - 1 if num_negatives is None else num_negatives
    if not 1 <= k <= B - 1:
        raise ValueError(f"num_negatives must be in [1, B - 1] = [1, {B - 1}], got {k}")
    a = F.normalize(z_a, dim=1) / temperature  # (B, d), temperature folded in
    positive, negative = _logistic_pairs(a, F.normalize(z_b, dim=1), bias, k)
    return _result(positive + negative, {"positive": positive, "negative": negative}, return_terms)


@_fp32
def spectral_contrastive(z_a: Tensor, z_b: Tensor, mu: float = 1.0, *, return_terms: bool = False):
    """Spectral contrastive loss (HaoChen et al. 2021). Requires B >= 2.

    Rows are first projected onto the ball of radius sqrt(mu): a_i = z_a_i * min(1, sqrt(mu) / |z_a_i|),
    likewise b_i. Then
    attract = -(2/B) sum_i a_i . b_i / mu
    repel = sum_{i != j} (a_i . b_j)^2 / (B (B - 1)) / mu
    loss = attract + repel
    The repel sum goes through two (d, d) Grams, O(B d^2), when B > d, else the (B, B) matrix.
    """
    B, d = global_size(z_a.shape[0]), z_a.shape[1]
    if B < 2:
        raise ValueError(f"spectral_contrastive needs B >= 2 rows, got B={B}")
    r = math.sqrt(mu)
    a = z_a * (r / z_a.norm(dim=1, keepdim=True).clamp_min(r))  # (B, d), |a_i| <= sqrt(mu)
    b = z_b * (r / z_b.norm(dim=1, keepdim=True).clamp_min(r))
    attract = -2 * global_mean((a * b).sum(1)) / mu
    repel = _cross_sq_off_diagonal(a, b, via_gram=B > d) / (B * (B - 1)) / mu
    return _result(attract + repel, {"attract": attract, "repel": repel}, return_terms)


def nested_weights(d: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(w, W) of a nested loss over the prefixes k = 1..d: w_c = d - c, the number of prefixes holding
    coordinate c (0-based), and W_cc' = d - max(c, c'), the number of leading k x k blocks holding (c, c')."""
    c = torch.arange(d, device=device)
    return (d - c).to(dtype), (d - torch.maximum(c[:, None], c[None, :])).to(dtype)


@_fp32
def nested_spectral_contrastive(z_a: Tensor, z_b: Tensor, mu: float = 1.0, *, return_terms: bool = False):
    """Nested spectral contrastive loss: the sum over the prefixes phi_{1:k}, k = 1..d, of
    spectral_contrastive restricted to the first k coordinates. Requires B >= 2.

    Rows are projected onto the ball of radius sqrt(mu) once, as a whole (a, b as in spectral_contrastive); then
    attract = sum_k -(2/B) sum_i a_i[:k] . b_i[:k] / mu = -(2/B) sum_i sum_c (d - c) a_ic b_ic / mu
    repel = sum_k sum_{i != j} (a_i[:k] . b_j[:k])^2 / (B (B - 1)) / mu
          = [sum_{c,c'} (d - max(c, c')) (A^T A)_cc' (B^T B)_cc' - sum_i sum_k (sum_{c<k} a_ic b_ic)^2]
            / (B (B - 1)) / mu
    loss = attract + repel: O(B d^2) through the two Grams' elementwise product summed over the leading
    k x k blocks, and the cumulative sums of a_i * b_i. Its minimiser orders the coordinates: phi_{1:k}
    spans the top-k eigenfunctions for every k, so coordinate k follows the k-th one.
    """
    B, d = global_size(z_a.shape[0]), z_a.shape[1]
    if B < 2:
        raise ValueError(f"nested_spectral_contrastive needs B >= 2 rows, got B={B}")
    r = math.sqrt(mu)
    a = z_a * (r / z_a.norm(dim=1, keepdim=True).clamp_min(r))  # (B, d)
    b = z_b * (r / z_b.norm(dim=1, keepdim=True).clamp_min(r))
    w, W = nested_weights(d, a.device, a.dtype)
    attract = -2 * global_mean(((a * b) * w).sum(1)) / mu
    grams = all_reduce_sum(torch.stack([a.T @ a, b.T @ b]))     # (2, d, d)
    own = all_reduce_sum(torch.cumsum(a * b, dim=1).pow(2).sum())   # sum_i sum_k (a_i[:k] . b_i[:k])^2
    repel = ((grams[0] * grams[1] * W).sum() - own) / (B * (B - 1)) / mu
    return _result(attract + repel, {"attract": attract, "repel": repel}, return_terms)


@_fp32
def spectral_byol(phi_a: Tensor, nu_b: Tensor, second_moment: Tensor, *, return_terms: bool = False):
    """Non-contrastive spectral loss with a fixed Lambda = second_moment (d, d).

    attract = -(2/B) sum_i phi_a_i . sg(nu_b_i)
    repel = (1/B) sum_i phi_a_i^T sg(Lambda) phi_a_i
    loss = attract + repel
    """
    attract = -2 * global_mean((phi_a * nu_b.detach()).sum(1))
    repel = global_mean(((phi_a @ second_moment.detach()) * phi_a).sum(1))  # mean of quad forms
    return _result(attract + repel, {"attract": attract, "repel": repel}, return_terms)


@_fp32
def pca_penalty(psi_a: Tensor, psi_b: Tensor, lam: float, second_moment: Tensor | None = None,
                *, nested: bool = False, return_terms: bool = False):
    """PCA with the orthonormality penalty (C estimated from the batch: a biased gradient estimate).

    alignment = -(1/B) sum_i psi_a_i . psi_b_i
    penalty = lam * ||C - I||_F^2, C = second_moment (d, d) if given (used as is, not detached),
              else (psi_a^T psi_a + psi_b^T psi_b) / (2B)
    loss = alignment + penalty
    nested: the sum over the prefixes k = 1..d of that loss on psi_{1:k}:
    alignment = -(1/B) sum_i sum_c (d - c) psi_a_ic psi_b_ic, penalty = lam sum_{c,c'} (d - max(c, c')) (C - I)_cc'^2
    """
    d = psi_a.shape[1]
    w, W = nested_weights(d, psi_a.device, psi_a.dtype) if nested else (1.0, 1.0)
    alignment = -global_mean(((psi_a * psi_b) * w).sum(1))
    c = _second_moment(psi_a, psi_b) if second_moment is None else second_moment  # (d, d)
    eye = torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    penalty = lam * ((c - eye).pow(2) * W).sum()
    return _result(alignment + penalty, {"alignment": alignment, "penalty": penalty}, return_terms)


@_fp32
def pca_penalty_surrogate(psi_a: Tensor, psi_b: Tensor, lam: float, second_moment_ema: Tensor,
                          *, nested: bool = False, return_terms: bool = False):
    """Surrogate of pca_penalty whose gradient uses a running estimate C_ema of C (the "ema" estimate).

    alignment = -(1/B) sum_i psi_a_i . psi_b_i
    penalty = lam * 2 <sg(C_ema) - I, C_batch>_F, C_batch = (psi_a^T psi_a + psi_b^T psi_b) / (2B)
    loss = alignment + penalty
    Its value is not pca_penalty's; its gradient equals pca_penalty's when C_ema = sg(C_batch). It
    is an unbiased estimate of the population gradient only when E[C_ema] equals C at the current
    parameters and C_ema is independent of the batch; an EMA over earlier batches lags behind the
    parameters, so in training it trades the batch estimate's bias for a smaller, lagged one.
    nested: weighted as in pca_penalty (w_c = d - c on the alignment, W_cc' = d - max(c, c') on the penalty).
    """
    w, W = nested_weights(psi_a.shape[1], psi_a.device, psi_a.dtype) if nested else (1.0, 1.0)
    alignment = -global_mean(((psi_a * psi_b) * w).sum(1))
    c_ema = second_moment_ema.detach()  # (d, d)
    eye = torch.eye(c_ema.shape[0], dtype=c_ema.dtype, device=c_ema.device)
    penalty = lam * 2 * ((c_ema - eye) * _second_moment(psi_a, psi_b) * W).sum()
    return _result(alignment + penalty, {"alignment": alignment, "penalty": penalty}, return_terms)


@_fp32
def clip_loss(z_x: Tensor, z_y: Tensor, logit_scale, *, return_terms: bool = False):
    """CLIP's symmetric cross-entropy. Normalized.

    logits = exp(logit_scale) * u_x u_y^T  (B, B), u = rows normalized
    loss = (CE(logits, arange(B)) + CE(logits^T, arange(B))) / 2
    ``logit_scale`` is the log of the multiplier, used as given: CLIP's cap (exp(s) <= 100) is the
    caller's, who clamps the parameter after each optimizer step (methods.CLIP, as open_clip does), so
    that its gradient never vanishes.
    """
    scale = torch.as_tensor(logit_scale, dtype=z_x.dtype, device=z_x.device).exp()
    u_x, u_y = F.normalize(z_x, dim=1), F.normalize(z_y, dim=1)  # (B_local, d), this rank's rows
    labels = _own_columns(u_x)  # the positive of local row i is global column r B + i
    # this rank's rows of logits and of logits^T, each (B_local, B) against the gathered other tower
    x_rows = F.cross_entropy(scale * u_x @ all_gather_with_grad(u_y).T, labels, reduction="none")
    y_rows = F.cross_entropy(scale * u_y @ all_gather_with_grad(u_x).T, labels, reduction="none")
    loss = global_mean(x_rows + y_rows) / 2
    return _result(loss, {}, return_terms)


@_fp32
def siglip_loss(z_x: Tensor, z_y: Tensor, log_t, bias, *, return_terms: bool = False):
    """SigLIP (Zhai et al. 2023): all-pairs binary NCE across two modalities. Normalized. O(B^2 d).

    logits_ij = exp(log_t) u_x_i . u_y_j + bias  (B, B), u = rows normalized
    z_ij = +1 if i == j else -1
    positive = -(1/B) sum_i log sigmoid(logits_ii)
    negative = -(1/B) sum_{i != j} log sigmoid(-logits_ij)
    loss = positive + negative = -(1/B) sum_ij log sigmoid(z_ij logits_ij)
    Symmetric in (z_x, z_y). ``log_t`` (the log of the multiplier t) and ``bias`` may be floats or
    0-dim tensors (gradients flow to them); no cap on t. Equals binary_nce(z_x, z_y, 1/t, bias).
    """
    t = torch.as_tensor(log_t, dtype=z_x.dtype, device=z_x.device).exp()
    a = t * F.normalize(z_x, dim=1)  # (B, d), t folded in
    positive, negative = _logistic_pairs(a, F.normalize(z_y, dim=1), bias, global_size(a.shape[0]) - 1)
    return _result(positive + negative, {"positive": positive, "negative": negative}, return_terms)


def spectral_clip_loss(z_x: Tensor, z_y: Tensor, mu: float = 1.0, *, nested: bool = False,
                       return_terms: bool = False):
    """Spectral contrastive loss across two towers. Requires B >= 2.

    From p(x, y) = p(x) p(y) phi(x)^T nu(y), the L2 fit of phi^T nu to p(x, y) / (p(x) p(y)):
    L(phi, nu) = -2 E_{p(x,y)}[phi(x)^T nu(y)] + E_{p(x)p(y)}[(phi(x)^T nu(y))^2],
    minimised by the top-d left (phi) and right (nu) singular functions of p(x, y) / sqrt(p(x) p(y)).
    On B pairs, rows projected onto the ball of radius sqrt(mu): a_i from z_x_i, b_i from z_y_i, then
    attract = -(2/B) sum_i a_i . b_i / mu
    repel = sum_{i != j} (a_i . b_j)^2 / (B (B - 1)) / mu = (<A^T A, B^T B>_F - sum_i (a_i . b_i)^2) / (B (B - 1)) / mu
    loss = attract + repel
    That is spectral_contrastive(z_x, z_y, mu) (nested: nested_spectral_contrastive), whose batch
    estimate never assumes that a and b come from one encoder; it is reused, not copied. O(B d^2).
    """
    loss = nested_spectral_contrastive if nested else spectral_contrastive
    return loss(z_x, z_y, mu, return_terms=return_terms)


@_fp32
def byol_loss(p_a: Tensor, t_b: Tensor, *, return_terms: bool = False):
    """BYOL: loss = (1/B) sum_i (2 - 2 cos(p_a_i, sg(t_b_i)))."""
    cos = (F.normalize(p_a, dim=1) * F.normalize(t_b.detach(), dim=1)).sum(1)  # (B,)
    return _result(global_mean(2 - 2 * cos), {}, return_terms)


@_fp32
def barlow_twins_loss(z_a: Tensor, z_b: Tensor, lam: float = 0.0051, *, return_terms: bool = False):
    """Barlow Twins.

    Each column is standardised over the batch as BatchNorm without affine does:
    x_hat = (x - mean) / sqrt(var + 1e-5), var biased (divides by B). C = z_a_hat^T z_b_hat / B (d, d).
    invariance = sum_i (1 - C_ii)^2
    redundancy = lam * sum_{i != j} C_ij^2
    loss = invariance + redundancy
    """
    B = global_size(z_a.shape[0])

    def standardise(z):  # mean and variance over the global batch
        z = z - global_mean(z)
        return z / torch.sqrt(global_mean(z.pow(2)) + 1e-5)

    c = all_reduce_sum(standardise(z_a).T @ standardise(z_b)) / B  # (d, d)
    invariance = (1 - c.diagonal()).pow(2).sum()
    redundancy = lam * _sum_off_diagonal(c.pow(2))
    return _result(invariance + redundancy, {"invariance": invariance, "redundancy": redundancy},
                   return_terms)


@_fp32
def vicreg_loss(z_a: Tensor, z_b: Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0,
                *, return_terms: bool = False):
    """VICReg. Requires B >= 2.

    invariance = sim * (1/(B d)) sum_{i,j} (z_a_ij - z_b_ij)^2
    variance = var * (1/2) sum_{z in (z_a, z_b)} (1/d) sum_j relu(1 - sqrt(Var_j(z) + 1e-4))
    covariance = cov * sum_{z in (z_a, z_b)} (1/d) sum_{i != j} Cov_ij(z)^2
    loss = invariance + variance + covariance
    Var and Cov are over the batch with the unbiased 1/(B - 1). The variance term averages the two
    views' hinges (the 1/2), as the authors' code does (facebookresearch/vicreg, and lightly); the
    paper's formula sums them, twice this.
    """
    B, d = global_size(z_a.shape[0]), z_a.shape[1]
    if B < 2:
        raise ValueError(f"vicreg_loss needs B >= 2 rows, got B={B}")
    invariance = sim * global_mean((z_a - z_b).pow(2).mean(1))
    variance = covariance = 0
    for z in (z_a, z_b):
        z = z - global_mean(z)  # (B, d)
        cov_matrix = all_reduce_sum(z.T @ z) / (B - 1)  # (d, d)
        std = torch.sqrt(cov_matrix.diagonal() + 1e-4)  # (d,), Var_j = Cov_jj
        variance = variance + F.relu(1 - std).mean() / 2
        covariance = covariance + _sum_off_diagonal(cov_matrix.pow(2)) / d
    variance, covariance = var * variance, cov * covariance
    terms = {"invariance": invariance, "variance": variance, "covariance": covariance}
    return _result(invariance + variance + covariance, terms, return_terms)
