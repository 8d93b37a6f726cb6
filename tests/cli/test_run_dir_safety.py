"""A finished run's dir is never rewritten by accident: a new run into it is refused, a refused resume
leaves its record as it was, a resume keeps its .hydra/, an older checkpoint goes on as a new run in
a new dir, and two runs whose timestamped dir is the same get one each."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, assert_one_line_error, run_cli

TWO_EPOCHS = [o for o in TINY if not o.startswith("trainer.epochs")] + [
    "trainer.epochs=2", "trainer.checkpoint_every_n_epochs=1", "eval.random_init=false"]   # 4 steps an epoch


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-epoch run (seed 0): checkpoints of both epochs, last.pt, report.json."""
    work = tmp_path_factory.mktemp("finished")
    proc = run_cli("train", *TWO_EPOCHS, f"hydra.run.dir={work / 'run'}", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work / "run"


def _copy(finished: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "R"))


def _files(run_dir: Path, lock: bool = False) -> dict:
    """Every file's bytes by its path in run_dir (the lock file's holder line left out unless `lock`)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and (lock or p.name != ".specrep.lock")}


@pytest.mark.parametrize("change", [["seed=1"], ["optim.lr=0.01"], []], ids=["seed", "lr", "same-command"])
def test_a_new_run_into_a_dir_that_holds_a_run_is_refused_and_changes_nothing(change, finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    before = _files(run_dir)
    proc = run_cli("train", *TWO_EPOCHS, *change, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert_one_line_error(proc, f"error: {run_dir} already holds a run: pass resume={run_dir} to continue it, "
                                "or choose another hydra.run.dir")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert _files(run_dir) == before   # .hydra/config.yaml still says seed 0 and lr 0.2; no failed.json


@pytest.mark.parametrize("resume, needles", [
    (lambda r: ["seed=1", f"resume={r}"], ["cannot resume", "seed (checkpoint 0, config 1)"]),
    (lambda r: [f"resume={r / 'checkpoints' / 'epoch_0001.pt'}"],
     ["is not the latest of its run (checkpoints/last.pt is at step 8, this one at step 4)",
      "leave hydra.run.dir out or choose an empty one"]),
], ids=["changed-seed", "older-checkpoint"])
def test_a_refused_resume_into_the_run_dir_leaves_its_record_as_it_was(resume, needles, finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    before = _files(run_dir)
    proc = run_cli("train", *TWO_EPOCHS, *resume(run_dir), f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert_one_line_error(proc, *needles)
    after = _files(run_dir)
    assert after.pop("train.log").startswith(before.pop("train.log"))   # this invocation's lines, appended
    assert after == before   # .hydra/ as the run wrote it, no failed.json, the same report and checkpoints


def test_a_resume_into_the_run_dir_keeps_its_hydra_record(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    record = {name: data for name, data in _files(run_dir).items() if name.startswith(".hydra")}
    proc = run_cli("train", *TWO_EPOCHS, "eval.probe.fast.steps=10", f"resume={run_dir}",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {name: data for name, data in _files(run_dir).items() if name.startswith(".hydra")} == record
    report = json.loads((run_dir / "report.json").read_text())   # what the resume changed is the report's
    assert report["run"]["changed_on_resume"][0]["changed"] == ["eval.probe.fast.steps (checkpoint 20, now 10)"]


def test_resume_without_a_run_dir_goes_on_in_the_resumed_run_and_leaves_no_other_dir(finished, tmp_path):
    run_dir = _copy(finished, tmp_path / "with space")   # the run dir given to Hydra, quoted
    proc = run_cli("train", *TWO_EPOCHS, f"resume={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"run dir: {run_dir}" in proc.stdout + proc.stderr
    assert not (tmp_path / "outputs").exists()   # no outputs/<date>/<time> holding half a train.log
    assert "resuming" in (run_dir / "train.log").read_text()


def test_an_older_checkpoint_goes_on_as_a_new_run_and_leaves_its_run_alone(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    before = _files(run_dir, lock=True)
    parent = run_dir / "checkpoints" / "epoch_0001.pt"
    proc = run_cli("train", *TWO_EPOCHS, f"resume={parent}", cwd=tmp_path)   # the default run dir
    assert proc.returncode == 0, proc.stderr
    assert _files(run_dir, lock=True) == before
    [new] = (tmp_path / "outputs").glob("*/*")
    assert (f"{parent} is not the latest of its run (checkpoints/last.pt is at step 8, this one at step 4): "
            f"continuing from it as a new run in {new}; {run_dir} is left as it is") in (new / "train.log").read_text()
    assert json.loads((new / "report.json").read_text())["run"]["parent_checkpoint"] == str(parent)
    steps = [json.loads(line)["step"] for line in (new / "metrics.jsonl").read_text().splitlines()]
    assert min(steps) > 4 and max(steps) == 8   # epoch 2 only, in its own metrics.jsonl
    assert torch.load(new / "checkpoints" / "last.pt", weights_only=True)["step"] == 8


def test_a_timestamped_run_dir_another_run_holds_gives_this_run_a_fresh_one(tmp_path):
    taken = tmp_path / "runs" / time.strftime("%Y")   # a timestamp a year long: both runs start in it
    code = textwrap.dedent(f"""
        import time
        from specrep_cli import rundir
        rundir.lock({str(taken)!r})
        print("locked", flush=True)
        time.sleep(600)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"   # the first run, still running
        proc = run_cli("train", *TINY, "hydra.run.dir=runs/${now:%Y}", cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in taken.iterdir()) == [".specrep.lock"]
    assert (taken.with_name(f"{taken.name}-1") / "report.json").is_file()
