"""`specrep eval` on a checkpoint it cannot use: one line, before any work (no dataset loaded, no
feature extracted); and `specrep report` piped into a file keeps every column."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, edited_checkpoint, run_cli
from support import config_of, fake_report, fake_run

from specrep_cli import config
from specrep_cli.errors import CheckpointError
from specrep_cli.eval import command

config.register()


def _edit(how: str):
    def edit(ckpt):
        if how == "no data.in_channels":
            del ckpt["data"]["in_channels"]
        elif how == "no config.trainer":
            del ckpt["config"]["trainer"]
        elif how == "no objective.name":
            del ckpt["config"]["objective"]["name"]
        elif how == "a 2-element mean":
            ckpt["data"]["mean"] = ckpt["data"]["mean"][:2]
        elif how == "NaN weights":
            key = next(k for k, v in ckpt["encoder"].items() if v.is_floating_point())
            ckpt["encoder"][key] = torch.full_like(ckpt["encoder"][key], float("nan"))
    return edit


def _variant(trained_run: Path, tmp_path: Path, how: str) -> Path:
    return edited_checkpoint(trained_run / "checkpoints" / "last.pt", tmp_path / f"{how.replace(' ', '_')}.pt",
                             _edit(how))


@pytest.mark.parametrize("how, needle", [
    ("no data.in_channels", "missing data.in_channels"),
    ("no config.trainer", "missing config.trainer"),
    ("no objective.name", "missing config.objective.name"),
    ("a 2-element mean", "data.mean has 2 values for 3 channels"),
    ("NaN weights", "non-finite weights"),
])
def test_an_unusable_checkpoint_is_one_line_before_any_work(how, needle, tmp_path, trained_run, monkeypatch):
    path = _variant(trained_run, tmp_path, how)

    def no_work(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the checkpoint was checked")

    monkeypatch.setattr(command, "load_dataset", no_work)
    cfg = config.compose_config("eval", [f"checkpoint={path}"])
    with pytest.raises(CheckpointError) as err:
        command.evaluate_checkpoint(cfg, tmp_path / "out")
    assert needle in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_nan_weights_in_eval_are_one_line_on_the_command_line(tmp_path, trained_run):
    proc = run_cli("eval", f"checkpoint={_variant(trained_run, tmp_path, 'NaN weights')}",
                   f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert_one_line_error(proc, "non-finite weights")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_report_piped_into_a_file_keeps_its_last_column(tmp_path: Path):
    long = "a-configuration-label-long-enough-to-need-more-than-eighty-columns"
    for job, width in enumerate((8, 16)):
        cfg = {**config_of("spectral", 0, width=width), "note": f"{long}-{job}"}
        fake_run(tmp_path / "sweep" / str(job), cfg, fake_report(90.0 + job, 80.0))
    proc = run_cli("report", str(tmp_path / "sweep"), cwd=tmp_path)   # stdout is a pipe
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "probe top-1" in line)
    assert header.rstrip().endswith("train s") and "…" not in proc.stdout, proc.stdout
    assert max(map(len, proc.stdout.splitlines())) > 80
