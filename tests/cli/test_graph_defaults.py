"""The plain graph command, run for real on a graph of the user's own (an edge list written here, not
one the defaults were tuned on): conf/tuned/graph/ brings a schedule under which spectral and pca find
the top-d eigenspace, and a run cut short says "not converged" with its loss trend."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import run_cli


def edge_list(folder: Path, blocks: int = 3, size: int = 60, p_in: float = 0.3, p_out: float = 0.02) -> Path:
    """A planted partition drawn with a fixed seed, as `a,b` lines with string node names."""
    n = blocks * size
    g = torch.Generator().manual_seed(11)
    block = torch.arange(n) // size
    p = torch.where(block[:, None] == block[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    path = folder / "edges.csv"
    path.write_text("".join(f"node{a},node{b}\n" for a, b in upper.nonzero().tolist()))
    return path


def test_the_plain_command_finds_the_eigenspace_of_a_graph_it_was_not_tuned_on(tmp_path: Path):
    edges = edge_list(tmp_path)
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "--multirun", "objective=spectral,pca", "dataset=graph", "dataset.source=file",
                   f"dataset.path={edges}", "encoder.dim=3", "trainer.device=cpu", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for job in ("0", "1"):
        report = json.loads((sweep / job / "report.json").read_text())
        graph = report["graph"]
        assert graph["subspace_alignment"] >= 0.95, (job, graph["subspace_alignment"])
        assert graph["convergence"]["converged"] is True and report["run"]["epochs"] == 72


def test_a_run_cut_short_says_not_converged_with_its_loss_trend(tmp_path: Path):
    edges, run = edge_list(tmp_path), tmp_path / "run"
    proc = run_cli("train", "dataset=graph", "dataset.source=file", f"dataset.path={edges}", "encoder.dim=3",
                   "optim.lr=0.001", "trainer.epochs=4", "trainer.device=cpu", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    convergence = json.loads((run / "report.json").read_text())["graph"]["convergence"]
    assert convergence["converged"] is False and list(convergence["losses"]) == ["epoch 1", "epoch 3", "epoch 4"]
    losses = list(convergence["losses"].values())
    assert losses[0] > losses[1] > losses[2]
    assert "not converged" in (run / "train.log").read_text()
    assert "**not converged**" in (run / "report.md").read_text()
