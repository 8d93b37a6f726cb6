"""Many processes, one run: trainer.devices=2 with gloo on the CPU, torchrun, and their bad input.
(The losses' and gradients' equality with one process is tests/unit/objectives/test_distributed.py.)"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_line_error, run_cli

from specrep_cli.runtime import Ranks
from specrep_cli.train.loop import epoch_permutation, rank_shard


def test_each_rank_takes_its_slice_of_every_global_batch():
    order = torch.arange(10)                     # two full global batches of 4, and 2 left over
    assert rank_shard(order, 4, Ranks(0, 2)).tolist() == [0, 1, 4, 5]
    assert rank_shard(order, 4, Ranks(1, 2)).tolist() == [2, 3, 6, 7]
    assert rank_shard(order, 4, Ranks()).tolist() == list(range(8))
    a, b = epoch_permutation(100, 0, 3, torch.device("cpu")), epoch_permutation(100, 0, 3, torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a, epoch_permutation(100, 0, 4, torch.device("cpu")))


def test_two_processes_on_the_cpu_write_one_run(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", "trainer.devices=2", *TINY, "trainer.epochs=2", "trainer.checkpoint_every_n_epochs=1",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 processes (gloo), 32 images per process" in (run / "train.log").read_text()
    assert json.loads((run / "report.json").read_text())["linear_probe"]["top1"] >= 0
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 2 and ckpt["step"] == 8
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in steps if "lr" in r]) == len({r["step"] for r in steps if "lr" in r})   # one writer

    # resumed from epoch 1 (every rank's RNG state comes back), it ends at step 8 again, in a new run dir
    # (epoch 1 is not the run's latest checkpoint: the finished run is left as it is)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    more = run_cli("train", "trainer.devices=2", *TINY, "trainer.epochs=2", "trainer.checkpoint_every_n_epochs=1",
                   f"resume={run / 'checkpoints' / 'epoch_0001.pt'}", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    [new] = (tmp_path / "outputs").glob("*/*")
    assert torch.load(new / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_torchrun_ranks_come_from_the_environment(tmp_path: Path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                           "specrep_cli", "train", *TINY, f"hydra.run.dir={run}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 processes (gloo)" in (run / "train.log").read_text() and (run / "report.json").is_file()


def test_a_global_batch_that_does_not_split_and_cpu_sync_batchnorm_are_one_line(tmp_path: Path):
    small = [o for o in TINY if not o.startswith("trainer.batch_size")]
    assert_one_line_error(run_cli("train", "trainer.devices=3", *small, "trainer.batch_size=64", cwd=tmp_path),
                          "must be divisible by trainer.devices=3")
    assert not (tmp_path / "outputs").exists()   # caught before Hydra made a run dir
    assert_one_line_error(run_cli("train", "trainer.devices=2", "trainer.sync_batchnorm=true", *TINY, cwd=tmp_path),
                          "trainer.sync_batchnorm needs CUDA")


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                    reason="torch.compile on the CPU needs a C compiler (inductor)")
def test_compile_logs_its_time_and_keeps_the_checkpoint_keys(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", "trainer.compile=true", *TINY, "eval.every_n_epochs=0", "eval.random_init=false",
                   "eval.alignment_images=0", f"hydra.run.dir={run}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "first step (torch.compile):" in (run / "train.log").read_text()
    assert json.loads((run / "report.json").read_text())["timing"]["compile_seconds"] > 0
    keys = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["encoder"]
    assert not any("_orig_mod" in k for k in keys) and "projector.0.weight" in keys
