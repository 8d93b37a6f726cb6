"""Resume continues only what it can: every change that breaks the continuation is refused in one
line naming the keys, what is safe is accepted and logged, a damaged checkpoint is one line; a
non-finite state never replaces a finite checkpoint; a stop at the last step or during the final
evaluation says that rerunning in the same dir finishes the run, and it does."""
from __future__ import annotations

import json
import logging
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import TINY, edited_checkpoint, run_cli, start_train, wait_for

from specrep_cli import config
from specrep_cli.errors import CheckpointError, TrainingError, TrainingInterrupted
from specrep_cli.train import loop
from specrep_cli.train.setup import RunDirs, build_run, start_state
from specrep_cli.train.stop import StopRequest

config.register()


def compose_train(overrides):
    return config.compose_config("train", [*TINY, *overrides])


def build(overrides, job_dir: Path):
    cfg = compose_train(overrides)
    return build_run(cfg, RunDirs.of(cfg, job_dir))


def resume_run(overrides, tmp_path: Path):
    run = build(overrides, tmp_path / "job")
    return run, start_state(run)


@pytest.mark.parametrize("override, named", [
    ("trainer.batch_size=32", "trainer.batch_size (checkpoint 64, config 32)"),
    ("trainer.epochs=3", "trainer.epochs (checkpoint 1, config 3)"),
    ("dataset.num_train=320", "dataset.num_train (checkpoint 256, config 320)"),
    ("dataset.seed=5", "dataset.seed (checkpoint 0, config 5)"),
    ("optim=adamw", "optim.name (checkpoint 'sgd', config 'adamw')"),
    ("seed=3", "seed (checkpoint 0, config 3)"),
    ("optim.exclude_bias_and_norm=false", "optim.exclude_bias_and_norm (checkpoint True, config False)"),
], ids=["batch", "epochs", "dataset-size", "dataset", "optimizer", "seed", "decay-groups"])
def test_resume_refuses_what_breaks_the_continuation_naming_the_keys(override, named, tmp_path, trained_run):
    with pytest.raises(CheckpointError, match="cannot resume") as err:
        resume_run([override, f"resume={trained_run}"], tmp_path)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_resume_accepts_a_new_lr_and_logs_it(tmp_path, trained_run, caplog):
    copy = tmp_path / "run"   # the resume appends to the run's metrics.jsonl: not the shared run's
    shutil.copytree(trained_run, copy)
    with caplog.at_level(logging.INFO, logger="specrep"):
        run, state = resume_run(["optim.lr=0.05", "trainer.log_every_n_steps=3", f"resume={copy}"], tmp_path)
    assert state.progress.epoch == 1
    changed = [r.message for r in caplog.records if "resuming with changed settings" in r.message]
    assert changed and "optim.lr (checkpoint 0.2, now 0.05)" in changed[0]
    assert "trainer.log_every_n_steps (checkpoint 2, now 3)" in changed[0]
    last = json.loads((copy / "metrics.jsonl").read_text().splitlines()[-1])   # the record the report reads
    assert last["changed"] == ["optim.lr (checkpoint 0.2, now 0.05)", "trainer.log_every_n_steps (checkpoint 2, now 3)"]
    assert last["step"] == state.progress.step and last["resumed_from"] == str(copy / "checkpoints" / "last.pt")


def _damaged(trained_run: Path, tmp_path: Path, how: str) -> Path:
    def edit(ckpt):
        key = next(k for k, v in ckpt["encoder"].items() if v.ndim == 4)
        if how == "missing tensor":
            del ckpt["encoder"][key]
        elif how == "mis-shaped tensor":
            ckpt["encoder"][key] = ckpt["encoder"][key][:, :1].clone()
        else:
            del ckpt[how.split()[1]]
    return edited_checkpoint(trained_run / "checkpoints" / "last.pt", tmp_path / "damaged" / "checkpoints" / "last.pt",
                             edit)


@pytest.mark.parametrize("how, needle", [
    ("missing tensor", "the weights do not fit the model its config describes (missing ["),
    ("mis-shaped tensor", "the weights do not fit the model its config describes (size mismatch"),
    ("no optimizer", "is an incomplete specrep checkpoint (missing optimizer)"),
    ("no rng", "is an incomplete specrep checkpoint (missing rng)"),
])
def test_a_damaged_checkpoint_on_resume_is_one_line(how, needle, tmp_path, trained_run):
    path = _damaged(trained_run, tmp_path, how)
    with pytest.raises(CheckpointError) as err:
        resume_run([f"resume={path}"], tmp_path)
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_diverged_state_is_never_written_over_a_finite_checkpoint(tmp_path):
    run = build(["optim.lr=1e30", "optim.warmup_epochs=0", "trainer.epochs=2"], tmp_path / "job")
    state = start_state(run)
    loop.save_epoch(run, state, 1, {})   # a good last.pt, as at the end of an epoch
    good = (run.ckpt_dir / "last.pt").read_bytes()
    perm = loop.epoch_permutation(256, 0, 1, run.perm_device)
    for i, batch, index in loop.epoch_batches(run, perm, 0):
        loop.take_step(run, state, batch, index)   # lr 1e30: the weights blow up, no logging step yet
        if i == 1:
            break
    assert not all(torch.isfinite(p).all() for p in run.method.parameters())
    with pytest.raises(TrainingError, match="not finite") as err:   # what a SIGINT now would write
        loop.save_position(run, state, (perm, 2), 0.0)
    assert str(run.ckpt_dir / "last.pt") in str(err.value)
    assert (run.ckpt_dir / "last.pt").read_bytes() == good
    assert sorted(p.name for p in run.ckpt_dir.iterdir()) == ["last.pt"]


def test_a_stop_during_the_last_step_stops_and_says_how_to_finish(tmp_path):
    (tmp_path / "job").mkdir()
    run = build(["dataset.num_train=64"], tmp_path / "job")   # one step, one epoch
    state = start_state(run)
    stop = StopRequest()
    stop.signum = signal.SIGTERM   # arrived during the only step
    epoch = loop.run_epoch(run, state, 1, stop)
    with pytest.raises(TrainingInterrupted) as err:
        loop.end_epoch(run, state, epoch, stop)
    message = str(err.value)
    assert err.value.exit_code == 128 + signal.SIGTERM
    assert "training is complete" in message and "final evaluation" in message and "resume=" in message
    assert torch.load(run.ckpt_dir / "last.pt", weights_only=True)["epoch"] == 1


def test_a_signal_during_the_final_evaluation_says_rerun_and_rerunning_finishes(tmp_path):
    run_dir = tmp_path / "run"
    slow_eval = [*TINY, "eval.probe.protocol=standard", "eval.probe.standard.epochs=500", "eval.random_init=false",
                 f"hydra.run.dir={run_dir}"]
    proc = start_train(slow_eval, tmp_path)
    wait_for(proc, "final evaluation")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert "during the final evaluation" in last and "training is complete" in last, err
    assert not (run_dir / "report.json").exists()
    command = last.split("finish it with: ")[1].split()
    assert command[:2] == ["specrep", "train"] and command[-1] == f"resume={run_dir}"
    again = run_cli(*command[1:], "eval.probe.protocol=fast", f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    report = json.loads((run_dir / "report.json").read_text())   # and says what the resume changed
    assert report["run"]["changed_on_resume"][0]["changed"] == [
        "eval.probe.protocol (checkpoint 'standard', now 'fast')"]
