"""eval.truth_budget_s on a real run: a 3,000-node ring whose exact truth (a dense eigh) is estimated
over a budget of a millisecond finishes fast, its log naming the estimate, and its report says what
became of the truth (numbers from the sparse solver, or "skipped: ..." and why)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import run_cli

RING = ["dataset=graph", "dataset.source=ring", "dataset.num_nodes=3000", "dataset.hops=1", "encoder.dim=4",
        "trainer.epochs=1", "trainer.batch_size=256", "dataset.pairs_per_epoch=512", "trainer.device=cpu",
        "eval.random_init=false", "eval.every_n_epochs=0", "eval.probe.fast.steps=10"]


def test_a_truth_over_budget_is_announced_with_its_estimate_and_does_not_hold_up_the_run(tmp_path: Path):
    t0 = time.perf_counter()
    proc = run_cli("train", *RING, "eval.truth_budget_s=0.001", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.perf_counter() - t0 < 120
    log = (tmp_path / "run" / "train.log").read_text()
    assert "graph truth: a dense eigh of 3,000 nodes would take ~" in log
    assert "(estimated), over eval.truth_budget_s=0.001" in log
    graph = json.loads((tmp_path / "run" / "report.json").read_text())["graph"]
    if "skipped" in graph:   # the sparse solver did not finish within the millisecond
        assert graph["skipped"].startswith("skipped: ") and "eval.truth_budget_s=0.001" in graph["skipped"]
        assert "graph truth skipped: " in log
        assert graph["skipped"] in (tmp_path / "run" / "report.md").read_text()
    else:
        assert len(graph["true_spectrum"]) == 4
