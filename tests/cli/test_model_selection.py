"""Model selection never reads the test split, run for real: a search gets the validation figure (here
the fast probe's held-out part of the train split), report.json and report.md name that split, the
monitor that picks best.pt scores validation images, and a search on a figure that only the test
split has is refused before any job."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY, assert_one_line_error, run_cli

from specrep_cli import cli

# 127 test images against 26 validation images: the two accuracies can only agree at 0 or 100 %.
RUN = [o if not o.startswith("dataset.num_test=") else "dataset.num_test=127" for o in TINY] + [
    "eval.random_init=false", "eval.alignment_images=0", "eval.every_n_epochs=1"]


def test_a_search_gets_the_validation_figure_and_the_report_says_so(tmp_path: Path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'specrep[tune]'")
    sweep = tmp_path / "search"
    proc = run_cli("train", "--multirun", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1",
                   "hydra.sweeper.sampler.seed=0", "objective.mu=interval(1.0,8.0)", *RUN,
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((sweep / "0" / "report.json").read_text())
    probe = report["linear_probe"]
    assert report["objective"] == {"metric": "linear_probe.top1", "from": "linear_probe.val_top1",
                                   "split": "validation", "value": probe["val_top1"]}
    returned = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    assert returned == pytest.approx(probe["val_top1"]) and returned != pytest.approx(probe["top1"])
    assert "reads linear_probe.val_top1" in (sweep / "0" / "report.md").read_text()
    monitored = [json.loads(line)["monitor"] for line in (sweep / "0" / "metrics.jsonl").read_text().splitlines()
                 if '"monitor"' in line]
    assert monitored and all(m["validation_images"] == 85 and m["memory_bank_images"] == 171 for m in monitored)
    assert "monitor: validation kNN top-1" in (sweep / "0" / "train.log").read_text()


def test_a_search_on_a_figure_only_the_test_split_has_is_refused(tmp_path: Path):
    sweep = tmp_path / "search"
    proc = run_cli("train", "--multirun", "hydra/sweeper=optuna", "eval.objective_metric=linear_probe.top5",
                   "objective.mu=interval(1.0,8.0)", *RUN, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert_one_line_error(proc, "a search must not select on the test split", "add dataset.holdout=0.1")
    assert proc.stderr.count("\n") == 1 and not sweep.exists()
    held_out = ["--multirun", "hydra/sweeper=optuna", "eval.objective_metric=linear_probe.top5",
                "dataset.holdout=0.1", f"hydra.sweep.dir={sweep}"]
    assert cli.preflight("train", held_out) is None   # held-out train images stand in for the test split
    assert cli.preflight("train", held_out[:3] + held_out[4:]) is not None
    assert "standard probe" in cli.preflight("train", ["--multirun", "hydra/sweeper=optuna",
                                                       "eval.probe.protocol=standard"])
