"""Two towers on a bipartite graph through the CLI: spectral_clip on a small bipartite SBM recovers both
sides' singular vectors, `specrep eval` scores the checkpoint alike, embeddings.pt holds both towers,
and a bipartite edge file with a bad option is one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

SBM = ["dataset=graph", "dataset.source=bipartite_sbm", "dataset.blocks=3", "dataset.block_size=40",
       "dataset.block_size_y=20", "dataset.p_in=0.5", "dataset.p_out=0.02", "encoder.dim=3",
       "objective=spectral_clip", "trainer.epochs=24", "trainer.device=cpu", "trainer.precision=fp32",
       "eval.random_init=false", "eval.probe.fast.steps=20"]


def test_spectral_clip_recovers_both_sides_and_eval_agrees(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", *SBM, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run / "report.json").read_text())
    section = report["bipartite"]
    assert "graph" not in report and section["nodes_x"] == 120 and section["nodes_y"] == 60 and section["d"] == 3
    assert section["phi"]["subspace_alignment"] > 0.95 and section["nu"]["subspace_alignment"] > 0.95
    assert section["true_singular_values"][0] == pytest.approx(1.0)
    assert report["ritz"]["kind"] == "edges x-y" and report["ritz"]["values"][0] == pytest.approx(1.0, abs=0.02)
    assert "## The bipartite graph's singular vectors" in (run / "report.md").read_text()
    embeddings = torch.load(run / "embeddings.pt", weights_only=True)
    assert embeddings["phi"].shape == (120, 3) and embeddings["nu"].shape == (60, 3)
    assert embeddings["nodes_x"][0] == "x0" and embeddings["nodes_y"][0] == "y0"
    again = tmp_path / "eval"
    proc = run_cli("eval", f"checkpoint={run / 'checkpoints' / 'last.pt'}", "precision=fp32",
                   f"hydra.run.dir={again}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scored = json.loads((again / "report.json").read_text())["bipartite"]
    assert scored["nu"]["subspace_alignment"] == pytest.approx(section["nu"]["subspace_alignment"], abs=1e-6)


def test_bipartite_is_a_file_option_and_says_so(tmp_path: Path):
    proc = run_cli("train", "dataset=graph", "dataset.bipartite=true", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)
    assert proc.returncode != 0 and "use it with dataset.source=file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
