"""`specrep train resume=...`: the run continues in its own directory and ends where an uninterrupted run ends."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from conftest import TINY, assert_one_line_error, run_cli

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
    first_epoch = [l for l in lines if json.loads(l)["epoch"] == 1]
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
    assert [json.loads(l)["epoch"] for l in resumed] == [json.loads(l)["epoch"] for l in lines]
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
