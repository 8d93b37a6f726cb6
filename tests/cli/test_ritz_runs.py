"""Rayleigh-Ritz in a run's report: the "ritz" section of an image run (two views) and of an image-text
run (the cross form), its report.md section and plot, and on a graph the Ritz-ordered functions against
the true eigenspaces."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY, run_cli

from specrep_cli.eval.ritz import prefix_sizes

GRAPH = ["dataset=graph", "dataset.blocks=4", "dataset.block_size=40", "dataset.p_in=0.4", "dataset.p_out=0.01",
         "encoder.dim=4", "objective.mu=100", "optim.lr=0.02", "optim.weight_decay=0", "trainer.batch_size=256",
         "dataset.pairs_per_epoch=5120", "trainer.epochs=10", "trainer.device=cpu", "trainer.precision=fp32",
         "eval.random_init=false", "eval.every_n_epochs=5", "eval.probe.fast.steps=30"]


def train(tmp_path: Path, *overrides: str) -> tuple[dict, Path]:
    run = tmp_path / "run"
    proc = run_cli("train", *overrides, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((run / "report.json").read_text()), run


def test_an_image_run_reports_the_ritz_values_and_the_prefix_curve(tmp_path: Path):
    report, run = train(tmp_path, *TINY, "eval.random_init=false", "eval.ritz_pairs=512")
    ritz, d = report["ritz"], len(report["spectrum"]["representation"]["eigenvalues"])
    assert ritz["kind"] == "views" and ritz["pairs"] == 512 and ritz["features"] == "representation h"
    assert len(ritz["values"]) == d and ritz["values"] == sorted(ritz["values"], reverse=True)
    assert [p["k"] for p in ritz["prefix"]] == prefix_sizes(d) == [1, 2, 4, 8, 16, 32, 64]
    assert all(0 <= p["probe_top1"] <= 100 for p in ritz["prefix"]) and ritz["prefix"][0]["knn_top1"] is None
    assert all(0 <= p["knn_top1"] <= 100 for p in ritz["prefix"][1:])   # k = 1: a sign, no kNN
    assert 0 < ritz["effective_dim"] <= d and ritz["seconds"] > 0
    assert "## Rayleigh-Ritz" in (run / "report.md").read_text() and (run / "plots" / "ritz.png").is_file()


def test_an_image_text_run_takes_the_cross_form(tmp_path: Path):
    report, _ = train(tmp_path, "objective=clip", *TINY, "objective.text.width=32", "objective.text.heads=2",
                      "eval.random_init=false", "eval.ritz_pairs=256")
    ritz, d = report["ritz"], len(report["spectrum"]["representation"]["eigenvalues"])
    assert ritz["kind"] == "image-text" and len(ritz["values"]) == min(d, 32)
    assert all(0 <= v <= 1 + 1e-6 for v in ritz["values"])   # singular values of a normalised kernel


def test_a_graph_run_has_the_ritz_eigenspaces(tmp_path: Path):
    report, run = train(tmp_path, *GRAPH)
    graph = report["graph"]
    assert len(graph["ritz_spectrum"]) == len(graph["ritz_true_spectrum"]) == 4
    assert [s["coordinates"][0] for s in graph["ritz_eigenspaces"]][0] == 0
    assert all(0 <= s["alignment"] <= 1 + 1e-9 for s in graph["ritz_eigenspaces"])
    assert report["ritz"]["kind"] == "edges" and "Ritz-ordered functions" in (run / "report.md").read_text()


def test_rayleigh_ritz_puts_un_nested_spectral_s_ring_eigenspaces_in_order(tmp_path: Path):
    report, _ = train(tmp_path, "experiment=spectral_graph", "dataset.source=ring", "encoder.dim=7")
    graph = report["graph"]
    assert graph["subspace_alignment"] >= 0.99   # the span is found ...
    assert min(s["alignment"] for s in graph["eigenspaces"]) < 0.5   # ... not the order of the coordinates ...
    assert all(s["alignment"] >= 0.95 for s in graph["ritz_eigenspaces"])   # ... which Rayleigh-Ritz recovers
