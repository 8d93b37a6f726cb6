"""The benchmark scripts still run against the current code (smoke runs: tiny sizes, figures ignored)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CIFAR, REPO, TINY

BENCH = REPO / "benchmarks"
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason=f"CIFAR-10 JPEG copy not found at {CIFAR}")


def run(script: str, *args: str, tmp_path) -> subprocess.CompletedProcess:
    import os
    env = {**os.environ, "SPECREP_CACHE": str(tmp_path / "cache"), "SPECREP_CIFAR_JPEG": str(CIFAR)}
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH, env=env,
                          capture_output=True, text=True, timeout=600)


@needs_cifar
@pytest.mark.parametrize("script, args", [
    ("augment.py", ["--images", "512", "--workers", "1"]),
    ("train_step.py", ["--encoder", "convnet", "--batch-size", "64", "--steps", "1", "--warmup", "0"]),
])
def test_cifar_benchmarks_run(script, args, tmp_path):
    proc = run(script, *args, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratio" in proc.stdout


def test_loss_scaling_benchmark_runs(tmp_path):
    proc = run("loss_scaling.py", "--quick", "--repeats", "1", "--dim", "16", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_runs_benchmark_runs(tmp_path):
    proc = run("default_runs.py", "--objectives", "spectral", "clip", "--", *TINY, tmp_path=tmp_path)
    assert proc.returncode == 0 and "failed" not in proc.stdout, proc.stdout + proc.stderr


def test_probe_benchmark_runs(tmp_path):
    proc = run("probe.py", "--synthetic", "--standard-epochs", "2", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gpu_epoch_benchmark_runs_on_the_cpu(tmp_path):
    # random data: decoding the real CIFAR-10 split into a fresh cache would take longer than the run;
    # compile on is left to a machine with a GPU (inductor on a CPU takes minutes)
    proc = run("gpu_epoch.py", "--device", "cpu", "--max-steps", "1", "--batch-size", "32", "--compile", "off",
               "--data", "random", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data: random uint8" in proc.stdout
    for objective in ("simclr", "spectral"):
        assert f"verdict, {objective}: " in proc.stdout


def test_decode_benchmark_runs(tmp_path):
    proc = run("decode.py", "--images", "16", "--repeats", "1", "--sizes", "32", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "as 384 x 288 photos" in proc.stdout and "speed-up" in proc.stdout
