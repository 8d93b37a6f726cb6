"""monitor.png shows the random-init reference and names its subset; summary.png claims ± std only
where there is one and shows the random-init figures; report.md opens with the command that made it."""
from __future__ import annotations

import math
import shlex
from pathlib import Path

import pytest
import yaml

from specrep_cli.report import plots
from specrep_cli.report import report as reports

HISTORY = [{"epoch": e, "knn_top1": 20.0 + e, "effective_rank_representation": 5.0 + e,
            "effective_rank_projection": 3.0 + e, "projection_dim": 32} for e in (1, 2, 3)]
RANDOM = {"linear_probe_top1": 14.5, "knn_top1": 12.25}


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would save, kept for inspection."""
    kept = []

    def keep(fig, path):
        kept.append(fig)
        return Path(path)

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def test_monitor_shows_the_random_init_lines_and_its_subset(figures, tmp_path: Path):
    plots.plot_monitor(HISTORY, tmp_path / "monitor.png", RANDOM, monitor_images=2000)
    top = figures[0].axes[0]
    flat = {line.get_ydata()[0] for line in top.get_lines() if len(set(line.get_ydata())) == 1}
    assert {12.25, 14.5} <= flat
    title = top.get_title()
    assert "1000 validation images against up to 2000 others" in title and "final kNN on the full splits" in title
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert any("random init, final kNN top-1 (full splits): 12.2" in t for t in labels)


def test_the_prefix_curve_has_the_random_init_beside_it(figures, tmp_path: Path):
    ritz = {"values": [0.9, 0.5, 0.1], "effective_dim": 2.0, "kind": "views",
            "prefix": [{"k": 1, "probe_top1": 30.0, "knn_top1": 25.0}, {"k": 2, "probe_top1": 50.0, "knn_top1": 40.0}]}
    plots.plot_ritz(ritz, tmp_path / "ritz.png", RANDOM)
    curve = figures[0].axes[1]
    flat = {line.get_ydata()[0] for line in curve.get_lines() if len(set(line.get_ydata())) == 1}
    assert {12.25, 14.5} <= flat
    labels = [t.get_text() for t in curve.get_legend().get_texts()]
    assert any("random init, probe on all of h: 14.5 %" in t for t in labels)
    plots.plot_ritz(ritz, tmp_path / "ritz.png")   # no baseline (eval.random_init=false): the curves alone
    assert len(figures[1].axes[1].get_lines()) == 2


def test_bar_plot_claims_no_std_for_single_runs_and_draws_random_init(figures, tmp_path: Path):
    nan = math.nan
    plots.write_bar_plot(tmp_path / "summary.png", ["a", "b"],
                         {"linear probe top-1": ([40.0, 42.0], [nan, nan]), "kNN top-1": ([35.0, 36.0], [nan, nan])},
                         references={"linear probe top-1": [14.5, 15.0], "kNN top-1": [12.0, None]})
    ax = figures[0].axes[0]
    assert "±" not in ax.get_title() and "n = 1" in ax.get_title()
    refs = [c for c in ax.collections if list(c.get_linewidth()) == [2.0]]
    assert len(refs) == 3   # one random-init line per bar that has a figure
    assert "random init (same protocol)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert plots.spread_title([1.0, nan]) == "mean ± std over seeds (no error bar: n = 1)"
    assert plots.spread_title([1.0, 0.5], over="runs") == "mean ± std over runs"


def _report(run: dict) -> dict:
    return {"run": run, "linear_probe": {"top1": 50.0, "top5": 90.0, "protocol": "fast"},
            "knn": {"top1": 45.0, "k": 200}, "random_init": RANDOM, "history": HISTORY}


def test_report_md_opens_with_the_command_that_made_it(tmp_path: Path):
    overrides = ["objective=simclr", "dataset.num_train=256", "eval.zero_shot_templates=['a {}','the {}']"]
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"eval": {"monitor_images": 500}}))
    reports.write_report(tmp_path, _report({"objective": "simclr"}))
    text = (tmp_path / "report.md").read_text()
    command = text.split("```bash\n")[1].split("\n")[0]
    assert text.index(command) < text.index("| metric | value |")
    assert shlex.split(command) == ["specrep", "train", *overrides]
    assert (tmp_path / "plots" / "monitor.png").is_file()


def test_an_eval_report_gives_the_eval_command(tmp_path: Path):
    reports.write_report(tmp_path, _report({"checkpoint": "runs/a b/checkpoints/last.pt"}))
    command = (tmp_path / "report.md").read_text().split("```bash\n")[1].split("\n")[0]
    assert shlex.split(command) == ["specrep", "eval", "checkpoint=runs/a b/checkpoints/last.pt"]
