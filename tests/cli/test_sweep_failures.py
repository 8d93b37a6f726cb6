"""A --multirun sweep goes on past a failed job, records why it failed, exits non-zero at the end,
and `specrep report` names every failed, stopped and missing job."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import TINY, assert_one_line_error, run_cli

from specrep_cli.cli import run_command

# Cheap jobs: no monitoring, no baseline, no alignment.
QUICK = [o for o in TINY if not o.startswith(("dataset.num_train", "trainer.batch_size"))] + [
    "trainer.batch_size=128", "eval.random_init=false", "eval.every_n_epochs=0", "eval.alignment_images=0"]


def test_a_failed_job_does_not_stop_the_sweep_and_report_names_failed_and_missing_jobs(tmp_path: Path, capsys):
    sweep = tmp_path / "sweep"
    # job 0: 100 images for a batch of 128 fails; jobs 1 and 2 are valid
    proc = run_cli("train", "--multirun", "dataset.num_train=100,256,300", *QUICK, f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error: job 0 (dataset.num_train=100" in proc.stderr and "larger than the training set" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 job(s) of the sweep failed") and str(sweep / "0") in last, proc.stderr
    record = json.loads((sweep / "0" / "failed.json").read_text())
    assert record["kind"] == "failed" and "larger than the training set" in record["error"]
    assert "dataset.num_train=100" in record["overrides"]
    for job in ("1", "2"):   # the jobs after the failed one ran
        assert (sweep / job / "report.json").is_file() and not (sweep / job / "failed.json").exists()

    shutil.rmtree(sweep / "2")   # a job that never ran (the sweep was killed before it)
    assert run_command("report", [str(sweep)]) == 0
    err = capsys.readouterr().err
    assert f"failed: {sweep / '0'} (dataset.num_train=100" in err and "larger than the training set" in err
    assert f"missing: {sweep / '2'} (dataset.num_train=300" in err, err
    md = (sweep / "summary.md").read_text()
    assert "## Jobs without a report" in md and "larger than the training set" in md


def test_multirun_mode_with_an_impossible_sweep_dir_is_one_line(tmp_path: Path):
    (tmp_path / "file").write_text("not a directory")
    proc = run_cli("train", "hydra.mode=MULTIRUN", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'file' / 'sweep'}",
                   cwd=tmp_path)
    assert_one_line_error(proc, "cannot create the output directory")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
