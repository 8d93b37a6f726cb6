"""`specrep train resume=...`: the run continues in its own directory and ends where an uninterrupted run ends."""
from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_line_error, run_cli, start_train, wait_for

TWO_EPOCHS = [o for o in TINY if not o.startswith("trainer.epochs")] + [
    "trainer.epochs=2", "trainer.checkpoint_every_n_epochs=1", "eval.random_init=false"]


def test_resume_from_an_epoch_checkpoint_ends_bit_identical(tmp_path: Path):
    objective = "spectral_byol"   # its EMA target and Lambda_t must come back too
    full = tmp_path / "full"
    proc = run_cli("train", *TWO_EPOCHS, f"objective={objective}", f"hydra.run.dir={full}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # A run "stopped" after epoch 1: the same dir with only epoch 1's checkpoint and metrics.
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for name in ("checkpoints/last.pt", "checkpoints/epoch_0002.pt", "report.json"):
        (part / name).unlink()
    lines = (part / "metrics.jsonl").read_text().splitlines()
    first_epoch = [line for line in lines if json.loads(line)["epoch"] == 1]
    (part / "metrics.jsonl").write_text("\n".join(first_epoch) + "\n")

    proc = run_cli("train", *TWO_EPOCHS, f"objective={objective}",
                   f"resume={part / 'checkpoints' / 'epoch_0001.pt'}",
                   f"hydra.run.dir={tmp_path / 'resume-invocation'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    assert b["epoch"] == 2 and b["step"] == a["step"]
    for section in ("encoder", "objective"):
        assert a[section].keys() == b[section].keys()
        for key in a[section]:
            assert torch.equal(a[section][key], b[section][key]), f"{section}.{key}"
    # metrics.jsonl was appended, not rewritten; the report lands in the run's own directory
    resumed = (part / "metrics.jsonl").read_text().splitlines()
    assert resumed[:len(first_epoch)] == first_epoch
    assert [json.loads(line)["epoch"] for line in resumed] == [json.loads(line)["epoch"] for line in lines]
    assert (part / "report.json").is_file()


def test_resume_refuses_a_different_architecture_and_says_which_keys(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", *TINY, "eval.random_init=false", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    before = (run / "checkpoints" / "last.pt").read_bytes()
    proc = run_cli("train", *TINY, "encoder.width=16", "objective=simclr", f"resume={run}",
                   f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert_one_line_error(proc, "encoder.width (checkpoint 8, config 16)", "objective.name")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


# A run long enough to be interrupted: 6 epochs of 8 steps of 32 images.
LONG = [o for o in TINY if not o.startswith(("trainer.epochs", "trainer.batch_size"))] + [
    "trainer.epochs=6", "trainer.batch_size=32", "eval.random_init=false", "eval.probe.fast.steps=5"]


def _weights(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return {**{f"encoder.{k}": v for k, v in ckpt["encoder"].items()}, **ckpt["objective"]}


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("full")
    proc = run_cli("train", *LONG, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return _weights(tmp / "run")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_writes_a_checkpoint_says_how_to_resume_and_resume_ends_identical(signum, tmp_path,
                                                                                 uninterrupted):
    run = tmp_path / "run"
    proc = start_train([*LONG, f"hydra.run.dir={run}"], tmp_path)
    wait_for(proc, "epoch 1/")   # inside the training loop
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: stopped by {signal.Signals(signum).name} after step")
    command = line.split("resume with: ")[1].split()
    assert command[:2] == ["specrep", "train"] and command[-1] == f"resume={run}"
    proc = run_cli(*command[1:], f"hydra.run.dir={tmp_path / 'resume'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _assert_same_weights(uninterrupted, _weights(run))


def test_a_second_sigint_stops_at_once_without_a_traceback(tmp_path):
    # resnet18 steps take long enough on a CPU for the second Ctrl-C to land inside one
    slow = [*LONG, "encoder=resnet18", "encoder.width=16", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = start_train(slow, tmp_path)
    wait_for(proc, "epoch 1/")
    proc.send_signal(signal.SIGINT)
    for line in proc.stderr:
        if "finishing the step" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    # Usually the second Ctrl-C lands inside the step: "interrupted". If the step ended first, the
    # first one's checkpoint-and-exit won the race; both are a clean stop.
    last = err.strip().splitlines()[-1]
    assert last == "interrupted" or last.startswith("error: stopped by SIGINT"), err


def test_sigkill_at_random_moments_then_resume_ends_identical(tmp_path, uninterrupted):
    run = tmp_path / "run"
    rng = random.Random(0)
    for attempt in range(3):
        resume = [f"resume={run}"] if (run / "checkpoints" / "last.pt").exists() else []
        proc = start_train([*LONG, *resume, f"hydra.run.dir={tmp_path / f'inv{attempt}' if resume else run}"],
                      tmp_path)
        wait_for(proc, "steps/epoch")   # the last line before the training loop
        deadline = time.monotonic() + 120
        while not resume and not (run / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)   # the first kill needs a checkpoint to resume from, however busy the CPU
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.communicate()
        torch.load(run / "checkpoints" / "last.pt", weights_only=True)   # always a complete file
    proc = run_cli("train", *LONG, f"resume={run}", f"hydra.run.dir={tmp_path / 'last'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _assert_same_weights(uninterrupted, _weights(run))


def test_a_run_dir_with_a_checkpoint_is_resumed_not_overwritten(tmp_path):
    """What a requeued SLURM job does: the same command and run dir again, without resume=."""
    run = tmp_path / "run"
    job = [o for o in TINY if not o.startswith("trainer.epochs")] + ["trainer.epochs=2",
                                                                      "trainer.checkpoint_every_n_epochs=1"]
    first = run_cli("train", *job, f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # the job as SLURM preempted it after epoch 1: epoch 1's checkpoint as last.pt, no report yet
    shutil.copy(run / "checkpoints" / "epoch_0001.pt", run / "checkpoints" / "last.pt")
    (run / "report.json").unlink()
    again = run_cli("train", *job, f"hydra.run.dir={run}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already holds checkpoints/last.pt: resuming it" in (run / "train.log").read_text()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 8   # 2 epochs of 4 steps
    assert (run / "report.json").is_file()


@pytest.mark.parametrize("name", ["my run", "it's", "a$HOME", 'say "hi"', "a,b[1]=c"])
def test_the_printed_resume_command_survives_the_shell_and_hydra(name, tmp_path, monkeypatch):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from specrep_cli.train.processes import OVERRIDES_ENV
    from specrep_cli.train.stop import resume_command
    overrides = [f"dataset.path={tmp_path / name}", "trainer.epochs=2", "resume=old"]
    monkeypatch.setenv(OVERRIDES_ENV, json.dumps(overrides))
    run = tmp_path / name / "run"
    words = subprocess.run(["bash", "-c", f"set -- {resume_command(run)}; printf '%s\\0' \"$@\""],
                           capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert words[:4] == ["specrep", "train", f"dataset.path={tmp_path / name}", "trainer.epochs=2"]
    assert len(words) == 5 and OverridesParser.create().parse_override(words[4]).value() == str(run)
