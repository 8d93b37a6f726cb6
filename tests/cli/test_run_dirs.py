"""One run per run dir: a lock that a killed run does not leave behind, a second run refused in one
line before it writes anything, `specrep eval` kept out of training runs, and a checkpoint from
outside a run dir resumed into the current run dir."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY, assert_one_line_error, run_cli
from support import snapshot

from specrep_cli import config, rundir
from specrep_cli.errors import RunDirError
from specrep_cli.train.setup import RunDirs, build_run

config.register()


def _hold_in_another_process(run_dir: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from specrep_cli import rundir
        rundir.lock({str(run_dir)!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path):
    run_dir = tmp_path / "run"
    holder = _hold_in_another_process(run_dir)
    try:
        with pytest.raises(RunDirError, match=rf"in use by another specrep run \(pid {holder.pid} on "):
            rundir.lock(run_dir)
    finally:
        holder.kill()   # SIGKILL: no clean-up code runs
        holder.wait()
    with rundir.held(run_dir):   # the kernel dropped the killed process's lock
        pass


def test_a_second_run_into_a_run_dir_in_use_is_one_line_and_changes_nothing(tmp_path: Path, trained_run: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    before = snapshot(run_dir)
    holder = _hold_in_another_process(run_dir)   # what a running `specrep train` holds
    try:
        proc = run_cli("train", *TINY, "seed=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert_one_line_error(proc, f"{run_dir} is in use by another specrep run (pid {holder.pid}")
    after = snapshot(run_dir)
    after.pop(Path(".specrep.lock"), None)
    before.pop(Path(".specrep.lock"), None)
    assert after == before   # .hydra/config.yaml still says seed 0
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"] == 0


def test_eval_into_a_training_run_dir_is_refused(tmp_path: Path, trained_run: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    before = snapshot(run_dir)
    proc = run_cli("eval", f"checkpoint={run_dir}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert_one_line_error(proc, "holds a training run", "choose another hydra.run.dir")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(run_dir) == before


def test_a_checkpoint_outside_a_run_dir_resumes_into_the_current_run_dir(tmp_path: Path, trained_run: Path):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    shutil.copy(trained_run / "checkpoints" / "last.pt", downloads / "model.pt")
    job_dir = tmp_path / "job"
    cfg = config.compose_config("train", [*TINY, f"resume={downloads / 'model.pt'}"])
    run = build_run(cfg, RunDirs.of(cfg, job_dir))
    assert run.dirs.resume_from == downloads / "model.pt"
    assert run.run_dir == job_dir and run.ckpt_dir == job_dir / "checkpoints"
    # inside a run dir's checkpoints/ it goes on in that run dir, as before
    cfg = config.compose_config("train", [*TINY, f"resume={trained_run / 'checkpoints' / 'last.pt'}"])
    assert build_run(cfg, RunDirs.of(cfg, job_dir)).run_dir == trained_run
    assert rundir.run_dir_of(downloads / "model.pt") is None
    assert torch.load(downloads / "model.pt", weights_only=True)["epoch"] == 1
