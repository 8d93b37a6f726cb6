"""Shared helpers: run the real CLI in a subprocess, tiny configs that train in seconds; the folder markers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
import torch

# pytest-xdist runs one test process per core (pyproject's addopts): each computes on one thread, and
# so do the CLI runs it starts, so that the processes share the cores instead of oversubscribing them.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FOLDER_MARKS = {"cli": "integration", "benchmarks": "slow"}   # tests/<folder>/: pyproject's markers


def pytest_collection_modifyitems(items: list) -> None:
    """Mark each test of tests/cli/ `integration` and of tests/benchmarks/ `slow`, so that
    `pytest -m "not integration and not slow"` is the unit loop."""
    for item in items:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS).parts
        if parts and parts[0] in FOLDER_MARKS:
            item.add_marker(FOLDER_MARKS[parts[0]])
CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg"

# A run that takes seconds on a CPU: 256 training images, one epoch of 4 steps, a narrow encoder.
TINY = ["dataset.num_train=256", "dataset.num_test=128", "trainer.batch_size=64", "trainer.epochs=1",
        "encoder.width=8", "encoder.projector_hidden_dim=64", "encoder.projector_out_dim=32",
        "eval.probe.fast.steps=20", "eval.batch_size=256", "trainer.log_every_n_steps=2",
        "eval.ritz_pairs=256"]   # Rayleigh-Ritz on 2 x 256 views, not 2 x 2,048: seconds less per run


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            script: bool = False) -> subprocess.CompletedProcess:
    """`specrep ARGS` (the console script when script=True, else `python -m specrep_cli`)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["SPECREP_CACHE"] = str(Path(cwd or tempfile.gettempdir()) / ".specrep-cache")
    # the console script beside this interpreter (its venv's or conda's bin/, found with the venv not
    # activated), then PATH (a pip install --user)
    scripts = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    exe = [shutil.which("specrep", path=scripts)] if script else [sys.executable, "-m", "specrep_cli"]
    return subprocess.run([*exe, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def start_train(args: list, cwd: Path) -> subprocess.Popen:
    """`python -m specrep_cli train ARGS` started in the background, its stdout and stderr piped (text)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen([sys.executable, "-m", "specrep_cli", "train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, marker: str) -> None:
    """Block until the run prints a line containing `marker` on stdout (its stderr in the failure)."""
    for line in proc.stdout:
        if marker in line:
            return
    raise AssertionError(proc.stderr.read())


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A non-zero exit, no traceback, and the message naming what is wrong."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def train_into(work: Path, *overrides: str) -> Path:
    """`specrep train OVERRIDES` into work/run (it must succeed); the run dir."""
    proc = run_cli("train", *overrides, f"hydra.run.dir={work / 'run'}", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work / "run"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny `specrep train` run shared by the tests that read its outputs."""
    work = tmp_path_factory.mktemp("train")
    run_dir = work / "run"
    proc = run_cli("train", *TINY, f"hydra.run.dir={run_dir}", cwd=work, script=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run_dir


def edited_checkpoint(source: Path, target: Path, edit) -> Path:
    """A copy of the checkpoint `source` at `target`, changed by edit(ckpt) (a damaged checkpoint)."""
    ckpt = torch.load(source, weights_only=True)
    edit(ckpt)
    target.parent.mkdir(parents=True, exist_ok=True)   # as it is: save_checkpoint refuses non-finite weights
    torch.save(ckpt, target)
    return target
