"""Many processes, one loss: 2 gloo processes holding 4 samples each give the loss, the parameter
gradients and the running estimates of 1 process holding all 8, for every objective.

The reference is the single-process computation (the objectives are tested against their formulas in
test_losses.py). The 2-process run wraps each method in DistributedDataParallel, so the gradients
compared are DDP's averages. One spawned process group runs every case (spawning costs seconds); each
rank saves what it saw and the tests below compare it with the single-process run in this process.

The tiny encoder has no BatchNorm: BN statistics are per-process unless synchronised, and
torch.nn.SyncBatchNorm refuses CPU inputs. BYOL's predictor keeps its BN, in eval mode (running
statistics, so a per-sample map).
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from specrep_cli import config
from specrep_cli.config import from_dict
from specrep_cli.models.encoders import Encoder
from specrep_cli.objectives import distributed as D
from specrep_cli.objectives.methods import METHODS, build_method

pytestmark = pytest.mark.integration   # a spawned 2-process group
WORLD, BATCH, STEPS, LR = 2, 8, 2, 0.1
DTYPES = {"float64": torch.float64, "float32": torch.float32}
# case id -> (objective, overrides, embedding dimension d)
CASES = {
    "simclr": ("simclr", {}, 4),
    "binary_nce_all_pairs": ("binary_nce", {"learn_temperature": True}, 4),
    "binary_nce_k3": ("binary_nce", {"num_negatives": 3, "learn_temperature": True}, 4),  # rolls cross ranks
    "spectral_grams": ("spectral", {"mu": 1.0}, 4),   # B = 8 > d: all-reduced Grams
    "spectral_rows": ("spectral", {"mu": 1.0}, 8),    # B = 8 <= d: gathered rows
    "spectral_byol_ema": ("spectral_byol", {"second_moment_momentum": 0.5}, 4),
    "spectral_byol_other_view": ("spectral_byol", {"lambda_source": "other_view", "target_momentum": 0.0}, 4),
    "pca_batch": ("pca", {"penalty_estimate": "batch", "lam": 0.7}, 4),
    "pca_ema": ("pca", {"penalty_estimate": "ema", "second_moment_momentum": 0.5, "lam": 0.7}, 4),
    "clip": ("clip", {}, 4),
    "siglip": ("siglip", {}, 4),
    "spectral_clip_grams": ("spectral_clip", {"mu": 1.0}, 4),   # B = 8 > d: all-reduced Grams
    "spectral_clip_rows": ("spectral_clip", {"mu": 1.0}, 8),    # B = 8 <= d: gathered rows
    "spectral_clip_nested": ("spectral_clip", {"mu": 1.0, "nested": True}, 4),
    "byol": ("byol", {"predictor_hidden_dim": 8, "target_momentum": 0.5}, 4),
    "barlow_twins": ("barlow_twins", {"lam": 0.1}, 4),
    "vicreg": ("vicreg", {}, 4),
}


class TinyBackbone(nn.Module):
    """(B, 3, 2, 2) -> (B, 6): flatten, linear, tanh. No BatchNorm."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh())
        self.out_dim = 6

    def forward(self, x):
        return self.net(x)


def build(case: str, dtype: torch.dtype):
    name, overrides, d = CASES[case]
    cfg = from_dict(config.OBJECTIVE_SCHEMAS[name], overrides)
    torch.manual_seed(0)   # the same initial weights in every process
    make_encoder = lambda tower="x": Encoder(TinyBackbone(), nn.Linear(6, d, bias=False), d)  # noqa: E731
    method = build_method(cfg, make_encoder, BATCH).to(dtype)
    if name == "byol":
        method.predictor.eval()
    return method


def batches(dtype: torch.dtype):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, 2, 2, generator=g, dtype=dtype),
             torch.randn(BATCH, 3, 2, 2, generator=g, dtype=dtype)) for _ in range(STEPS)]


def train(method: nn.Module, forward, dtype: torch.dtype, rows: slice) -> dict:
    """STEPS steps of forward, backward, p -= LR grad, after_step on samples `rows` of each batch."""
    steps = []
    for view_a, view_b in batches(dtype):
        terms = forward(view_a[rows], view_b[rows])
        terms["loss"].backward()
        grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.requires_grad}
        steps.append({"terms": {k: v.detach().clone() for k, v in terms.items()}, "grads": grads})
        with torch.no_grad():
            for p in method.parameters():
                if p.grad is not None:
                    p.sub_(LR * p.grad)
                    p.grad = None
        method.after_step(0.5)
    state = {k: v.detach().clone() for k, v in method.state_dict().items()}   # EMA targets, Lambda_t, C_ema
    return {"steps": steps, "state": state}


def check_collectives() -> dict:
    """Values and gradients of the two collectives on this rank."""
    r = D.rank()
    x = (torch.arange(6, dtype=torch.float64).reshape(3, 2) + 10 * r).requires_grad_()
    w = torch.arange(12, dtype=torch.float64).reshape(6, 2)   # the same weights on every rank
    gathered = D.all_gather_with_grad(x)
    (w * gathered).sum().backward()
    s = torch.full((2,), r + 1.0, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([3.0, -1.0], dtype=torch.float64)
    summed = D.all_reduce_sum(s)
    (c * summed).sum().backward()
    return {"world_size": D.world_size(), "rank": r, "is_main": D.is_main(), "rank_offset": D.rank_offset(4),
            "global_size": D.global_size(4), "gathered": gathered.detach(), "x_grad": x.grad,
            "summed": summed.detach(), "s_grad": s.grad,
            "global_mean": D.global_mean(x.detach() * (r + 1))}


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        results = {"collectives": check_collectives()}
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)   # rank-major
        for dtype_name, dtype in DTYPES.items():
            for case in CASES:
                method = build(case, dtype)
                # no buffer sync before each forward: every rank must keep identical running estimates
                # (Lambda_t, C_ema, EMA targets) on its own
                ddp = nn.parallel.DistributedDataParallel(method, forward_sync_buffers=False)
                results[case, dtype_name] = train(method, ddp, dtype, shard)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """What each of the 2 ranks saved: one process group for every case."""
    tmp = tmp_path_factory.mktemp("distributed")
    mp.spawn(worker, args=(str(tmp / "rendezvous"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


def assert_equal(got: torch.Tensor, want: torch.Tensor, dtype_name: str, what: str) -> None:
    """float64: elementwise to 1e-9; float32: relative difference |got - want| / |want| <= 1e-5."""
    if dtype_name == "float64" or not want.is_floating_point():
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=lambda m: f"{what}: {m}")
    else:
        diff, scale = (got - want).double().norm(), want.double().norm()
        assert diff <= 1e-5 * scale + 1e-10, f"{what}: relative difference {diff / scale:.3g} > 1e-5"


def test_every_objective_has_a_case():
    assert {name for name, _, _ in CASES.values()} == set(METHODS)


def test_a_single_process_is_a_world_of_one():
    assert not dist.is_initialized()
    assert (D.world_size(), D.rank(), D.is_main(), D.rank_offset(5), D.global_size(5)) == (1, 0, True, 0, 5)
    x = torch.randn(3, 2)
    assert D.all_gather_with_grad(x) is x and D.all_reduce_sum(x) is x
    torch.testing.assert_close(D.global_mean(x), x.mean(0))


def test_collectives_values_and_gradients(ranks):
    """gather: [x_0; x_1] everywhere, x_r's gradient = sum over ranks of its rows' gradient (= 2 w_r);
    all-reduce: sum_r s_r everywhere, s_r's gradient = sum over ranks of the output gradient (= 2 c)."""
    xs = [torch.arange(6, dtype=torch.float64).reshape(3, 2) + 10 * r for r in range(WORLD)]
    w = torch.arange(12, dtype=torch.float64).reshape(6, 2)
    for r, seen in enumerate(ranks):
        c = seen["collectives"]
        assert (c["world_size"], c["rank"], c["is_main"]) == (WORLD, r, r == 0)
        assert (c["rank_offset"], c["global_size"]) == (4 * r, 8)
        torch.testing.assert_close(c["gathered"], torch.cat(xs))
        torch.testing.assert_close(c["x_grad"], WORLD * w[3 * r:3 * r + 3])
        torch.testing.assert_close(c["summed"], torch.full((2,), 3.0, dtype=torch.float64))
        torch.testing.assert_close(c["s_grad"], WORLD * torch.tensor([3.0, -1.0], dtype=torch.float64))
        torch.testing.assert_close(c["global_mean"], torch.cat([xs[0], 2 * xs[1]]).mean(0))


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_two_ranks_give_the_single_process_loss_gradients_and_state(ranks, case, dtype_name):
    """Every rank: the same loss and terms, DDP-averaged gradients and buffers as 1 process, step by step."""
    method = build(case, DTYPES[dtype_name])
    reference = train(method, method, DTYPES[dtype_name], slice(None))
    for r, seen in enumerate(ranks):
        got = seen[case, dtype_name]
        for step, (g, want) in enumerate(zip(got["steps"], reference["steps"])):
            assert g["terms"].keys() == want["terms"].keys()
            for k in want["terms"]:
                assert_equal(g["terms"][k], want["terms"][k], dtype_name, f"rank {r} step {step} term {k}")
            assert g["grads"].keys() == want["grads"].keys()
            for k in want["grads"]:
                assert_equal(g["grads"][k], want["grads"][k], dtype_name, f"rank {r} step {step} grad {k}")
        assert got["state"].keys() == reference["state"].keys()
        for k in reference["state"]:
            assert_equal(got["state"][k], reference["state"][k], dtype_name, f"rank {r} final {k}")
