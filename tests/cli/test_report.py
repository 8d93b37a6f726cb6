"""Reports people read: report.json's diagnostics, plots/, report.md, and `specrep report` over sweeps."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import TINY, assert_one_line_error, run_cli
from PIL import Image
from support import config_of, fake_report, fake_run

from specrep_cli.cli import run_command
from specrep_cli.report.metrics import read_step_records
from specrep_cli.report.report import write_report
from specrep_cli.report.summary import find_runs, group_runs, mean_std, summarize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] >= 200 and img.size[1] >= 100


# ------------------------------------------------------------------------------------ one run
def test_write_report_draws_every_plot_and_embeds_them(tmp_path: Path):
    lines = [{"step": s, "epoch": 1, "lr": 0.1 * s, "loss": -s, "attract": -2.0 * s, "repel": 1.0}
             for s in (2, 4, 6)]
    lines.append({"step": 4, "epoch": 1, "lr": 9.0, "loss": 0.0, "attract": 0.0, "repel": 0.0})   # redone
    lines.append({"epoch": 1, "step": 6, "epoch_seconds": 1.0, "images_per_second": 5.0, "epoch_loss": -3})
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"step": 8, "lr": 0.1, "lo'   # killed mid-write
    (tmp_path / "metrics.jsonl").write_text(text)
    records = read_step_records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6] and records[1]["lr"] == 9.0   # the last record wins

    report = fake_report(90.0, 80.0)
    write_report(tmp_path, report)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    md = (tmp_path / "report.md").read_text()
    for name in ("loss", "lr", "monitor", "spectrum"):
        assert_png(tmp_path / "plots" / f"{name}.png")
        assert f"](plots/{name}.png)" in md
    assert "| effective rank | 3.0 | 3.0 |" in md and "| variance in the top 1 direction | 66.7 % | 66.7 % |" in md
    assert "| alignment (lower: views closer) | 0.300 | 0.200 |" in md


def test_a_report_without_metrics_or_diagnostics_gets_the_plots_it_has_data_for(tmp_path: Path):
    report = fake_report(90.0, 80.0)
    del report["spectrum"], report["alignment"], report["uniformity"]
    write_report(tmp_path, report)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["monitor.png"]
    assert "Spectral diagnostics" not in (tmp_path / "report.md").read_text()


def test_the_trained_run_reports_diagnostics_and_plots(trained_run: Path):
    report = json.loads((trained_run / "report.json").read_text())
    for side, dim in (("representation", 64), ("projection", 32)):   # convnet width 8: 8 * 8; projector 32
        spec = report["spectrum"][side]
        eig = spec["eigenvalues"]
        assert len(eig) == dim and eig == sorted(eig, reverse=True) and min(eig) >= 0
        assert 1.0 <= spec["effective_rank"] <= dim
        assert set(spec["top_variance_share"]) == {"1", "10", "100"}
        assert spec["top_variance_share"]["100"] == pytest.approx(1.0)
        assert spec["orthonormality_error"] >= 0
        assert 0 <= report["alignment"][side] <= 4 and -4 <= report["uniformity"][side] <= 0
    assert report["linear_probe"]["protocol"] == "fast"
    for name in ("loss", "lr", "monitor", "spectrum"):
        assert_png(trained_run / "plots" / f"{name}.png")


def test_eval_with_the_standard_protocol(trained_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    proc = run_cli("eval", f"checkpoint={trained_run}", "eval.probe.protocol=standard", "eval.probe.standard.epochs=2",
                   "eval.random_init=false", "eval.alignment_images=64", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["linear_probe"]["protocol"] == "standard" and report["linear_probe"]["epochs"] == 2
    assert 0 <= report["linear_probe"]["top1"] <= report["linear_probe"]["top5"] <= 100
    assert report["run"]["views"] == "shapes"   # the checkpoint's training augmentation
    assert report["history"] and (out / "plots" / "monitor.png").is_file()


# ------------------------------------------------------------------------------ specrep report
def test_mean_std_is_the_sample_std():
    assert mean_std([90.0, 92.0]) == (91.0, pytest.approx(math.sqrt(2.0)), 2)
    mean, std, n = mean_std([1.0, None])
    assert (mean, n) == (1.0, 1) and math.isnan(std)


def test_runs_differing_only_in_seed_are_pooled(tmp_path: Path):
    sweep = tmp_path / "sweep"
    probes = {("spectral", 0): 90.0, ("spectral", 1): 92.0, ("simclr", 0): 80.0, ("simclr", 1): 86.0}
    for job, ((objective, seed), probe) in enumerate(probes.items()):
        fake_run(sweep / str(job), config_of(objective, seed), fake_report(probe, probe - 10, seed, rank=seed + 2))
    (sweep / "4" / ".hydra").mkdir(parents=True)   # a job that never finished
    (sweep / "4" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config_of("spectral", 2)))

    runs, unfinished = find_runs([sweep])
    assert len(runs) == 4 and unfinished == [(sweep / "4").resolve()]
    groups = group_runs(runs)
    # objective.temperature and objective.mu follow from the objective option: not in the label
    assert [g.label for g in groups] == ["objective=spectral", "objective=simclr"]
    assert [len(g.runs) for g in groups] == [2, 2]

    summarize([sweep])
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["group"] for r in rows] == ["objective=spectral", "objective=simclr"]
    assert [int(r["n"]) for r in rows] == [2, 2]
    assert float(rows[0]["probe_top1_mean"]) == pytest.approx(91.0)
    assert float(rows[0]["probe_top1_std"]) == pytest.approx(math.sqrt(2.0), rel=1e-5)
    assert float(rows[1]["probe_top1_mean"]) == pytest.approx(83.0)
    assert float(rows[1]["probe_top1_std"]) == pytest.approx(math.sqrt(18.0), rel=1e-5)
    assert float(rows[1]["knn_top1_mean"]) == pytest.approx(73.0)
    assert float(rows[0]["effective_rank_mean"]) == pytest.approx(2.5)
    assert float(rows[0]["train_seconds_mean"]) == pytest.approx(10.5)
    md = (sweep / "summary.md").read_text()
    assert "| objective=spectral | 2 | 91.00 ± 1.41 | 81.00 ± 1.41 |" in md and "](summary.png)" in md
    assert_png(sweep / "summary.png")


def test_the_ritz_dims_for_95_column_appears_when_runs_have_a_prefix_curve(tmp_path: Path):
    sweep = tmp_path / "sweep"
    for job, (seed, dims) in enumerate([(0, 4), (1, 8)]):
        report = {**fake_report(90.0, 80.0, seed), "ritz": {"values": [1.0, 0.5], "dims_for_95": dims}}
        fake_run(sweep / str(job), config_of("spectral", seed), report)
    fake_run(tmp_path / "plain" / "0", config_of("simclr", 0), fake_report(85.0, 75.0))
    summarize([sweep])
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert float(rows[0]["ritz_dims_for_95_mean"]) == pytest.approx(6.0)
    assert "Ritz dims for 95 %" in (sweep / "summary.md").read_text()
    summarize([tmp_path / "plain"])   # no run with a prefix curve: no column
    assert "ritz_dims_for_95_mean" not in (tmp_path / "plain" / "summary.csv").read_text()


def test_a_repeated_seed_is_named_and_averaged_not_counted_twice(tmp_path: Path, capsys):
    sweep = tmp_path / "sweep"
    for job, (seed, probe) in enumerate([(0, 90.0), (1, 80.0), (0, 92.0)]):
        fake_run(sweep / str(job), config_of("spectral", seed), fake_report(probe, probe - 10, seed))
    summarize([sweep])
    row = next(csv.DictReader((sweep / "summary.csv").open()))
    assert int(row["n"]) == 2 and row["repeated_seeds"] == "0 (2 runs)"   # seeds 0 and 1; seed 0's runs averaged
    assert float(row["probe_top1_mean"]) == pytest.approx(85.5)
    assert float(row["probe_top1_std"]) == pytest.approx(statistics.stdev([91.0, 80.0]), rel=1e-5)
    err = capsys.readouterr().err
    assert "seed 0 ran 2 times" in err and "--pool-repeats" in err and len(err.strip().splitlines()) == 1
    assert "seed 0 ran 2 times" in (sweep / "summary.md").read_text()

    assert run_command("report", [str(sweep), "--pool-repeats"]) == 0   # on request: each run one sample
    row = next(csv.DictReader((sweep / "summary.csv").open()))
    assert int(row["n"]) == 3 and row["repeated_seeds"] == "0 (2 runs)"
    assert float(row["probe_top1_std"]) == pytest.approx(statistics.stdev([90.0, 80.0, 92.0]), rel=1e-5)
    assert "pooled" in capsys.readouterr().err


def test_two_paths_write_into_their_common_parent_and_the_label_names_every_difference(tmp_path: Path):
    a = fake_run(tmp_path / "runs" / "a", config_of("simclr", 0, width=8), fake_report(70.0, 60.0))
    b = fake_run(tmp_path / "runs" / "b", config_of("simclr", 0, width=16), fake_report(75.0, 65.0))
    groups = summarize([a, b])
    assert [(g.label, len(g.runs)) for g in groups] == [("encoder.width=8", 1), ("encoder.width=16", 1)]
    assert (tmp_path / "runs" / "summary.md").is_file() and not (a / "summary.md").exists()
    rows = list(csv.DictReader((tmp_path / "runs" / "summary.csv").open()))
    assert rows[0]["probe_top1_std"] == ""   # one run: no std


@pytest.mark.parametrize("setup, needle", [
    (lambda d: None, "no finished runs below"),
    (lambda d: fake_run(d / "0", config_of("spectral", 0), fake_report(1.0, 1.0))
     and (d / "0" / "report.json").write_text('{"run": {"objective": "spe'), "report.json is not a readable report"),
    (lambda d: fake_run(d / "0", config_of("spectral", 0), {"run": {}, "knn": {"top1": 3.0}}),
     "lacks run, linear_probe.top1"),
    (lambda d: fake_run(d / "0", config_of("spectral", 0), fake_report(1.0, 1.0))
     and (d / "0" / ".hydra" / "config.yaml").write_text("a: [1,"), "config.yaml is not readable YAML"),
], ids=["empty", "corrupt-json", "not-a-report", "corrupt-yaml"])
def test_report_bad_input_is_one_line(tmp_path: Path, capsys, setup, needle):
    setup(tmp_path)
    assert run_command("report", [str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1


def test_report_without_paths_or_with_a_missing_one(tmp_path: Path, capsys):
    assert run_command("report", []) == 1 and "needs at least one run or sweep directory" in capsys.readouterr().err
    assert run_command("report", [str(tmp_path / "nope")]) == 1 and "no such directory" in capsys.readouterr().err
    assert run_command("report", ["--help"]) == 0 and "usage: specrep report" in capsys.readouterr().out


def test_specrep_report_over_a_2x2_sweep_with_2_seeds(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "--multirun", "objective=spectral,simclr", "seed=0,1", *TINY, "eval.random_init=false",
                   "eval.alignment_images=64", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", str(sweep), cwd=tmp_path, script=True)
    assert proc.returncode == 0, proc.stderr
    assert "objective=spectral" in proc.stdout and "objective=simclr" in proc.stdout

    reports = {}
    for job in sweep.iterdir():
        if (job / "report.json").is_file():
            report = json.loads((job / "report.json").read_text())
            reports.setdefault(report["run"]["objective"], []).append(report)
    rows = {r["group"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert set(rows) == {"objective=spectral", "objective=simclr"}
    for objective, runs in reports.items():
        row = rows[f"objective={objective}"]
        assert int(row["n"]) == 2 and {r["run"]["seed"] for r in runs} == {0, 1}
        for col, get in (("probe_top1", lambda r: r["linear_probe"]["top1"]), ("knn_top1", lambda r: r["knn"]["top1"])):
            values = [get(r) for r in runs]
            assert float(row[f"{col}_mean"]) == pytest.approx(statistics.mean(values), rel=1e-5)
            assert float(row[f"{col}_std"] or 0) == pytest.approx(statistics.stdev(values), rel=1e-5, abs=1e-9)
    assert (sweep / "summary.md").is_file()
    assert_png(sweep / "summary.png")


def test_specrep_report_on_a_corrupt_report_has_no_traceback(tmp_path: Path):
    fake_run(tmp_path / "0", config_of("spectral", 0), fake_report(1.0, 1.0))
    (tmp_path / "0" / "report.json").write_text("{")
    assert_one_line_error(run_cli("report", str(tmp_path), cwd=tmp_path), "error: ", "not a readable report")
