"""What only a GPU can show: no host sync inside the training step, and a killed-and-resumed run on
CUDA ending with the weights of an uninterrupted one. Marked `cuda`: `python -m pytest -m cuda`
(benchmarks/device_check.sh runs them on a lent GPU); skipped, with the reason, on a machine without one.
The augmentation's CUDA-equals-CPU check is tests/unit/data/test_augment.py::test_cuda_matches_cpu_and_never_syncs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli

from specrep_cli import config
from specrep_cli.train.loop import Meter, epoch_batches, epoch_permutation, take_step
from specrep_cli.train.setup import LoopState, RunDirs, build_run

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA device (benchmarks/device_check.sh runs these on a GPU)")]

STEP = ["dataset.num_train=512", "dataset.num_test=128", "trainer.batch_size=64", "trainer.device=cuda",
        "encoder.width=16", "trainer.epochs=2"]


def cuda_run(tmp_path: Path, overrides: list[str]):
    cfg = config.compose_config("train", STEP + overrides)
    return build_run(cfg, RunDirs.of(cfg, tmp_path))


@pytest.mark.parametrize("overrides", [
    ["objective=spectral"], ["objective=simclr"], ["objective=spectral_byol"],
    ["objective=pca", "objective.penalty_estimate=ema"], ["objective=binary_nce", "objective.num_negatives=4"],
    ["objective=clip"],                                  # image-text: a caption drawn per sample on the device
    ["objective=clip", "augmentation=lab_split"],        # the Lab conversion inside the towers
    ["encoder=resnet18", "objective=vicreg"],
], ids=lambda o: " ".join(o))
def test_the_training_step_never_syncs_with_the_host(tmp_path, overrides):
    """Batches drawn by the on-device permutation, both inputs made on the device, forward, backward,
    the optimizer step, after_step and the on-device sums of the loss terms: any host sync raises."""
    run = cuda_run(tmp_path, overrides)
    state, meter = LoopState(), Meter()
    perm = epoch_permutation(run.data.ssl_images.shape[0], run.cfg.seed, 1, run.perm_device)
    batches = epoch_batches(run, perm, 0)
    i, batch, index = next(batches)
    meter.add(take_step(run, state, batch, index))   # warm-up: cuDNN autotuning, lazy initialisations
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _i, batch, index in batches:
            meter.add(take_step(run, state, batch, index))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert state.progress.step == run.steps_per_epoch and torch.isfinite(torch.tensor(meter.mean()["loss"]))


LONG = [o for o in TINY if not o.startswith(("dataset.num_train", "trainer.epochs", "trainer.batch_size"))] + [
    "dataset.num_train=4096", "trainer.epochs=4", "trainer.batch_size=32", "eval.random_init=false",
    # 128 steps an epoch: a kill lands inside one
    "eval.probe.fast.steps=5", "trainer.device=cuda", "trainer.deterministic=true"]


def _weights(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return {**{f"encoder.{k}": v for k, v in ckpt["encoder"].items()}, **ckpt["objective"]}


def test_kill_and_resume_on_cuda_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    full = run_cli("train", *LONG, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "specrep_cli", "train", *LONG, f"hydra.run.dir={run}"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()       # inside epoch 2, the first one's last.pt written
    proc.wait()
    killed = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert killed["epoch"] < 4 and not (run / "report.json").exists(), "the kill came after training ended"
    resumed = run_cli("train", *LONG, f"resume={run}", f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "full"), _weights(run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
