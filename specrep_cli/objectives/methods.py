"""Objective modules: what each objective owns beyond the two projections, and the objective registry.

A method is an nn.Module holding the online encoder phi (`self.encoder`, the one that is probed) and
whatever its loss needs besides: EMA targets, a predictor, Lambda_t, learnable temperatures or scales.
The training loop knows nothing else about it:

    method = build_method(cfg.objective, make_encoder, batch_size)  # make_encoder() -> an Encoder
    terms = method(view_a, view_b)                       # {"loss": ..., "<term>": ...}, 0-dim tensors
    terms["loss"].backward(); optimizer.step()
    method.after_step(progress)                          # EMA updates; progress in [0, 1]

Two-tower objectives (clip, siglip, spectral_clip) build their second tower nu with `make_encoder("y")`: an image
encoder like phi for two views, a text encoder for image-text pairs (train/setup.py decides).

Many processes: each rank calls the method (wrapped in DistributedDataParallel) on its own shard of the
batch; every loss and every running estimate (Lambda_t, C_ema) is then computed from the global batch,
identical on every rank (losses.py and distributed.py say how, and why DDP's gradient average is
exactly the single-process gradient). `batch_size` is the global batch size.

Every method is built the same way, `cls(cfg, make_encoder, batch_size)` with cfg its typed schema
(config.py), and is registered under its objective's name. Its whole state_dict (encoder included) is
the objective's state in a checkpoint. To add an objective, write a Method subclass decorated with
`@METHODS.register("name")`, its loss as a function in losses.py, a schema in config.py and a YAML
under conf/objective/.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..config import (
    BarlowTwinsConfig,
    BinaryNCEConfig,
    BYOLConfig,
    CLIPConfig,
    ObjectiveConfig,
    PCAConfig,
    SigLIPConfig,
    SimCLRConfig,
    SpectralBYOLConfig,
    SpectralCLIPConfig,
    SpectralConfig,
    VICRegConfig,
)
from ..models.encoders import Encoder, projector
from ..registry import Registry
from . import distributed, losses

Terms = dict[str, Tensor]
MakeEncoder = Callable[..., Encoder]   # make_encoder() -> phi; make_encoder("y") -> a second tower nu
METHODS: Registry[type[Method]] = Registry("objective")   # objective=<name> -> its Method subclass


def build_method(cfg: ObjectiveConfig, make_encoder: MakeEncoder, batch_size: int) -> Method:
    """The objective `cfg.name`; batch_size is the number of samples one loss sees (all ranks together)."""
    return METHODS.get(cfg.name)(cfg, make_encoder, batch_size)


def _with_loss(loss: Tensor, terms: Terms) -> Terms:
    return {"loss": loss, **terms}


class Method(nn.Module):
    """Base: one online encoder applied to both views in a single forward pass.

    Running estimates (Lambda_t, C_ema) are computed in forward but only committed by after_step,
    which the loop calls for steps it takes: a step skipped as non-finite (trainer.max_bad_steps)
    leaves them as they were.

    Built as `cls(cfg, make_encoder, batch_size)`: cfg the objective's typed schema, make_encoder the
    encoder factory (called first, for phi, so every method draws phi's initialisation before its own
    modules'), batch_size the global batch size.
    """

    def __init__(self, cfg: ObjectiveConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__()
        self.encoder = make_encoder()

    def embed_pair(self, view_a: Tensor, view_b: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encoder(torch.cat([view_a, view_b]))   # (2B, d): one pass, BN sees both views
        return z.chunk(2)

    def forward(self, view_a: Tensor, view_b: Tensor) -> Terms:
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Called after every optimizer step; progress = finished steps / total steps."""

    @property
    def moving_target(self) -> bool:
        """Whether the loss compares phi with estimates carried over from earlier steps (an EMA target
        network, a running second moment): then its value is not a fixed function of phi, and its
        trend says nothing of the distance to an optimum (eval/convergence.py)."""
        return False


class EMATarget(nn.Module):
    """A stop-gradient copy of an encoder, updated as nu <- m nu + (1 - m) phi (m = 0: nu = sg(phi))."""

    def __init__(self, online: Encoder):
        super().__init__()
        self.net = copy.deepcopy(online).requires_grad_(False)

    @torch.no_grad()
    def update(self, online: Encoder, momentum: float) -> None:
        target = list(self.net.parameters()) + list(self.net.buffers())
        source = list(online.parameters()) + list(online.buffers())
        floats = [(t, s) for t, s in zip(target, source) if t.is_floating_point()]
        torch._foreach_lerp_([t for t, _ in floats], [s for _, s in floats], 1.0 - momentum)
        for t, s in zip(target, source):
            if not t.is_floating_point():
                t.copy_(s)   # BN's num_batches_tracked

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# --------------------------------------------------------------------------------- contrastive
@METHODS.register("simclr")
class SimCLR(Method):
    def __init__(self, cfg: SimCLRConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.temperature = cfg.temperature

    def forward(self, view_a, view_b):
        z_a, z_b = self.embed_pair(view_a, view_b)
        return {"loss": losses.info_nce(z_a, z_b, self.temperature)}


@METHODS.register("binary_nce")
class BinaryNCE(Method):
    """Logistic NCE with a learnable bias (init -log k) and a fixed or learnable temperature; k is
    num_negatives, or B - 1 where the batch has no more (None: always B - 1)."""

    def __init__(self, cfg: BinaryNCEConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.num_negatives = cfg.num_negatives
        k = min(cfg.num_negatives or batch_size, batch_size - 1)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(cfg.temperature)),
                                            requires_grad=cfg.learn_temperature)
        self.bias = nn.Parameter(torch.tensor(-math.log(k)))

    def forward(self, view_a, view_b):
        z_a, z_b = self.embed_pair(view_a, view_b)
        k = None if self.num_negatives is None else min(self.num_negatives,
                                                         distributed.global_size(z_b.shape[0]) - 1)
        loss, terms = losses.binary_nce(z_a, z_b, self.log_temperature.exp(), self.bias, k, return_terms=True)
        return _with_loss(loss, terms)


@METHODS.register("spectral")
class Spectral(Method):
    """spectral_contrastive, or (nested) nested_spectral_contrastive: coordinate k -> eigenfunction k."""

    def __init__(self, cfg: SpectralConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.mu, self.nested = cfg.mu, cfg.nested

    def forward(self, view_a, view_b):
        z_a, z_b = self.embed_pair(view_a, view_b)
        loss = losses.nested_spectral_contrastive if self.nested else losses.spectral_contrastive
        return _with_loss(*loss(z_a, z_b, self.mu, return_terms=True))


# ----------------------------------------------------------------------------- non-contrastive
def _finite_or(new: Tensor, old: Tensor) -> Tensor:
    """`new`, unless it holds a non-finite value (a bad batch): then `old`. No host sync."""
    return torch.where(torch.isfinite(new).all(), new, old)


def _batch_second_moment(z: Tensor) -> Tensor:
    """E[z z^T] over the global batch, detached, in at least fp32: (B, d) -> (d, d).

    (1 / (N B)) sum_r z_r^T z_r: all-reduced, so every rank holds the same estimate.
    """
    z = z.detach().to(torch.promote_types(z.dtype, torch.float32))
    with torch.autocast(device_type=z.device.type, enabled=False):
        return distributed.all_reduce_sum(z.T @ z) / distributed.global_size(z.shape[0])


class RunningSecondMoment(Method):
    """A Method with a d x d running estimate (buffers second_moment, second_moment_initialized, in
    the checkpoint): forward uses the estimate and proposes its update; after_step commits it (with
    momentum objective.second_moment_momentum)."""

    def __init__(self, cfg: SpectralBYOLConfig | PCAConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        d = self.encoder.out_dim
        self.second_moment_momentum = cfg.second_moment_momentum
        self.register_buffer("second_moment", torch.zeros(d, d))
        self.register_buffer("second_moment_initialized", torch.tensor(False))
        self._pending: Tensor | None = None

    def running_estimate(self, batch: Tensor) -> Tensor:
        """The estimate this step uses (the batch's own on the very first step); the proposal
        m * estimate + (1 - m) * batch (kept only when finite) waits for after_step."""
        current = torch.where(self.second_moment_initialized, self.second_moment, batch)
        with torch.no_grad():
            m = self.second_moment_momentum
            self._pending = _finite_or(m * current + (1 - m) * batch, current)
        return current

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        if self._pending is not None:
            self.second_moment.copy_(self._pending)
            self.second_moment_initialized.fill_(True)
            self._pending = None


@METHODS.register("spectral_byol")
class SpectralBYOL(RunningSecondMoment):
    """Spectral contrastive loss without negatives: a target nu and Lambda_t ~ E[nu nu^T].

    loss = spectral_byol(phi(a), nu(b), Lambda) + spectral_byol(phi(b), nu(a), Lambda')
    with Lambda = Lambda' = the running estimate from earlier batches (lambda_source=ema; the first
    batch uses its own estimate), or the batch second moment of the other view's targets
    (lambda_source=other_view: Lambda = E_b[nu nu^T], Lambda' = E_a[nu nu^T]).
    """

    def __init__(self, cfg: SpectralBYOLConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.target_momentum = cfg.target_momentum
        self.lambda_source = cfg.lambda_source
        self.target = EMATarget(self.encoder) if cfg.target_momentum > 0 else None

    @property
    def moving_target(self) -> bool:
        return self.target is not None or self.lambda_source == "ema"

    def forward(self, view_a, view_b):
        phi_a, phi_b = self.embed_pair(view_a, view_b)
        if self.target is None:
            nu_a, nu_b = phi_a.detach(), phi_b.detach()
        else:
            nu_a, nu_b = self.target(torch.cat([view_a, view_b])).chunk(2)
        lam_a, lam_b = _batch_second_moment(nu_a), _batch_second_moment(nu_b)
        if self.lambda_source == "other_view":
            lam_for_a, lam_for_b = lam_b, lam_a
        else:   # Lambda_t from earlier batches; this batch's targets update it once the step is taken
            lam_for_a = lam_for_b = self.running_estimate((lam_a + lam_b) / 2)
        loss_a, terms_a = losses.spectral_byol(phi_a, nu_b, lam_for_a, return_terms=True)
        loss_b, terms_b = losses.spectral_byol(phi_b, nu_a, lam_for_b, return_terms=True)
        return _with_loss(loss_a + loss_b, {k: terms_a[k] + terms_b[k] for k in terms_a})

    @torch.no_grad()
    def after_step(self, progress):
        if self.target is not None:
            self.target.update(self.encoder, self.target_momentum)
        super().after_step(progress)


@METHODS.register("pca")
class PCA(RunningSecondMoment):
    """max E[psi(x)^T psi(x')] - lam ||C - I||_F^2, C from the batch or from a running estimate.

    penalty_estimate=ema uses the surrogate 2 <sg(C_ema) - I, C_batch>_F with C_ema from earlier
    batches (this batch updates it once the step is taken): independent of the batch, but lagging
    behind the parameters (losses.pca_penalty_surrogate says when that is unbiased).
    """

    def __init__(self, cfg: PCAConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.lam = cfg.lam
        self.penalty_estimate = cfg.penalty_estimate
        self.nested = cfg.nested   # the nested loss over the prefixes psi_{1:k} (losses.pca_penalty)

    @property
    def moving_target(self) -> bool:
        return self.penalty_estimate == "ema"

    def forward(self, view_a, view_b):
        psi_a, psi_b = self.embed_pair(view_a, view_b)
        if self.penalty_estimate == "batch":
            return _with_loss(*losses.pca_penalty(psi_a, psi_b, self.lam, nested=self.nested, return_terms=True))
        c_ema = self.running_estimate((_batch_second_moment(psi_a) + _batch_second_moment(psi_b)) / 2)
        return _with_loss(*losses.pca_penalty_surrogate(psi_a, psi_b, self.lam, c_ema, nested=self.nested,
                                                        return_terms=True))


@METHODS.register("clip")
class CLIP(Method):
    """Two encoders phi (x, the probed one) and nu (y) and a learnable logit scale s, clamped to
    [0, log 100] after every optimizer step (open_clip's way: the multiplier exp(s) stays in
    [1, 100] and s keeps its gradient); the logged logit_scale is the value the step applied."""

    MAX_LOGIT_SCALE = math.log(100)

    def __init__(self, cfg: CLIPConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.encoder_y = make_encoder("y")
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale_init)),
                                        requires_grad=cfg.learn_logit_scale)

    def forward(self, x, y):
        z_x, z_y = self.encoder(x), self.encoder_y(y)
        return {"loss": losses.clip_loss(z_x, z_y, self.logit_scale), "logit_scale": self.logit_scale.detach()}

    @torch.no_grad()
    def after_step(self, progress):
        self.logit_scale.clamp_(0, self.MAX_LOGIT_SCALE)


@METHODS.register("siglip")
class SigLIP(Method):
    """Two encoders phi (x, the probed one) and nu (y), all-pairs sigmoid loss, learnable log t and b."""

    def __init__(self, cfg: SigLIPConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.encoder_y = make_encoder("y")
        self.log_t = nn.Parameter(torch.tensor(float(cfg.log_t_init)), requires_grad=cfg.learn_t_and_bias)
        self.bias = nn.Parameter(torch.tensor(float(cfg.bias_init)), requires_grad=cfg.learn_t_and_bias)

    def forward(self, x, y):
        loss, terms = losses.siglip_loss(self.encoder(x), self.encoder_y(y), self.log_t, self.bias,
                                         return_terms=True)
        return {"loss": loss, **terms, "t": self.log_t.detach().exp(), "bias": self.bias.detach()}


@METHODS.register("spectral_clip")
class SpectralCLIP(Method):
    """Two encoders phi (x, the probed one) and nu (y) with the spectral loss across them: phi(x)^T nu(y)
    fits p(x, y) / (p(x) p(y)), rows in the ball of radius sqrt(mu); no temperature, nothing learned
    besides the towers. nested: coordinate k -> the k-th pair of singular functions."""

    def __init__(self, cfg: SpectralCLIPConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.encoder_y = make_encoder("y")
        self.mu, self.nested = cfg.mu, cfg.nested

    def forward(self, x, y):
        return _with_loss(*losses.spectral_clip_loss(self.encoder(x), self.encoder_y(y), self.mu,
                                                     nested=self.nested, return_terms=True))


@METHODS.register("byol")
class BYOL(Method):
    """Online encoder + predictor vs an EMA target; the momentum follows a cosine schedule to 1."""

    def __init__(self, cfg: BYOLConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.base_momentum = cfg.target_momentum
        d = self.encoder.out_dim
        self.predictor = projector(d, cfg.predictor_hidden_dim, d, 2)
        self.target = EMATarget(self.encoder)

    @property
    def moving_target(self) -> bool:
        return True

    def forward(self, view_a, view_b):
        z_a, z_b = self.embed_pair(view_a, view_b)
        p_a, p_b = self.predictor(torch.cat([z_a, z_b])).chunk(2)
        t_a, t_b = self.target(torch.cat([view_a, view_b])).chunk(2)
        return {"loss": losses.byol_loss(p_a, t_b) + losses.byol_loss(p_b, t_a)}

    @torch.no_grad()
    def after_step(self, progress):
        m = 1 - (1 - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2
        self.target.update(self.encoder, m)


@METHODS.register("barlow_twins")
class BarlowTwins(Method):
    """Barlow Twins' loss times scale_loss (solo-learn's recipes scale it; the terms are scaled too)."""

    def __init__(self, cfg: BarlowTwinsConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.lam, self.scale_loss = cfg.lam, cfg.scale_loss

    def forward(self, view_a, view_b):
        z_a, z_b = self.embed_pair(view_a, view_b)
        loss, terms = losses.barlow_twins_loss(z_a, z_b, self.lam, return_terms=True)
        return _with_loss(self.scale_loss * loss, {k: self.scale_loss * v for k, v in terms.items()})


@METHODS.register("vicreg")
class VICReg(Method):
    def __init__(self, cfg: VICRegConfig, make_encoder: MakeEncoder, batch_size: int):
        super().__init__(cfg, make_encoder, batch_size)
        self.weights = (cfg.sim, cfg.var, cfg.cov)

    def forward(self, view_a, view_b):
        z_a, z_b = self.embed_pair(view_a, view_b)
        return _with_loss(*losses.vicreg_loss(z_a, z_b, *self.weights, return_terms=True))
