"""Sweeps that search: the figure `specrep train` returns to Hydra, a real Optuna search end to end,
the preflight of sweeps it cannot enumerate, and `specrep report` on a search."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import TINY, run_cli

from specrep_cli import cli, config
from specrep_cli.report.report import metric, objective_value

optuna_sweeper = pytest.importorskip("hydra_plugins.hydra_optuna_sweeper",
                                     reason="the Optuna sweeper is an extra: pip install 'specrep[tune]'")


def _preflight(tmp_path: Path, *overrides: str) -> str | None:
    return cli.preflight("train", ["--multirun", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides])


def test_preflight_accepts_interval_glob_and_tag_sweeps(tmp_path: Path):
    assert _preflight(tmp_path, "hydra/sweeper=optuna", "objective.mu=interval(1.0,4.0)") is None
    assert _preflight(tmp_path, "hydra/sweeper=optuna", "objective.mu=tag(log,interval(0.5,4.0))",
                      "optim.lr=tag(log,interval(0.01,1.0))") is None
    assert _preflight(tmp_path, "objective=glob(simclr*,spectral*)") is None
    assert _preflight(tmp_path, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                      "trainer.batch_size=int(interval(32,64))") is None


@pytest.mark.parametrize("overrides, needle", [
    (["hydra/sweeper=optuna", "objective.muu=interval(1.0,4.0)"], "objective.muu"),   # a typo in the key
    (["hydra/sweeper=optuna", "objective.mu=interval(-1.0,4.0)"], "objective.mu must be > 0"),  # an end out of range
    (["hydra/sweeper=optuna", "objective.mu=interval(1.0,abc)"], "interval"),           # not a number
    (["hydra/sweeper=optuna", "trainer.batch_size=interval(32,64)"], "trainer.batch_size"),  # floats for an int
    (["objective=glob(simcrl*)"], "objective=glob(simcrl*) matches no option of objective"),
    (["objective=glob(*)", "objective.mu=2"], "mu"),          # every option the glob matches is composed
    (["objective.mu=interval(1.0,4.0)"], "add hydra/sweeper=optuna"),   # the basic sweeper cannot search
    (["hydra/sweeper=optuna", "eval.objective_metric=linear_probe.topp1"], "eval.objective_metric must be"),
])
def test_a_mistake_inside_a_sweep_is_one_line(tmp_path: Path, overrides, needle):
    problem = _preflight(tmp_path, *overrides)
    assert problem is not None and needle in problem and "\n" not in problem


def test_objective_value_is_the_dotted_figure_or_nan(tmp_path: Path):
    # no dataset.holdout: a search reads the probe's validation figure, and a test-only figure is NaN
    report = {"linear_probe": {"top1": 50.0, "val_top1": 41.5}, "retrieval": {"image_to_text": {"r1": 7.0}}}
    assert objective_value(report, "linear_probe.top1", tmp_path) == 41.5
    assert math.isnan(objective_value(report, "retrieval.image_to_text.r1", tmp_path))
    assert math.isnan(objective_value(report, "zero_shot.top1", tmp_path))
    (tmp_path / "report.json").write_text(json.dumps(report))   # a spawned rank wrote it
    assert objective_value(None, "linear_probe.top1", tmp_path) == 41.5


def test_every_objective_metric_is_in_a_runs_report(trained_run: Path):
    report = json.loads((trained_run / "report.json").read_text())
    other_runs_only = ("zero_shot.", "retrieval.", "graph.")   # image-text runs; dataset=graph
    for key in config.REPORT_METRICS:
        if not key.startswith(other_runs_only):
            assert metric(report, key.split(".")) is not None, key


def test_a_two_trial_optuna_search_and_its_report(tmp_path: Path, capsys):
    sweep = tmp_path / "search"
    proc = run_cli("train", "--multirun", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                   "hydra.sweeper.sampler.seed=0", "objective.mu=interval(1.0,8.0)", *TINY,
                   "eval.random_init=false", "eval.every_n_epochs=0", "eval.alignment_images=0",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hydra.sweeper.direction=maximize" in proc.stderr   # the note: optuna minimises by default
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = {d.name: json.loads((d / "report.json").read_text())["objective"]["value"]
              for d in sweep.iterdir() if (d / "report.json").is_file()}
    assert sorted(trials) == ["0", "1"]
    assert results["best_value"] == pytest.approx(max(trials.values()))   # Hydra got each run's validation probe
    best = max(trials, key=trials.get)
    mus = {name: yaml.safe_load((sweep / name / ".hydra" / "overrides.yaml").read_text()) for name in trials}
    assert f"objective.mu={results['best_params']['objective.mu']}" in mus[best]
    assert all(1.0 <= float(next(o for o in v if o.startswith("objective.mu=")).split("=")[1]) <= 8.0
               for v in mus.values())

    assert cli.run_command("report", [str(sweep)]) == 0   # `specrep report SWEEP_DIR`, in this process
    assert "2 trials by linear_probe.top1 (maximize), best first" in capsys.readouterr().out
    lines = (sweep / "search.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert rows[0].split(" | ")[1] == best and float(rows[0].split(" | ")[2]) >= float(rows[1].split(" | ")[2])
    command = next(line for line in lines if line.startswith("specrep train "))
    assert f"objective.mu={results['best_params']['objective.mu']}" in command and "dataset.num_train=256" in command
