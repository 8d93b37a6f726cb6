"""The collapse warning waits for collapse.MIN_STEPS optimizer steps, judges against what the
monitoring subset can show, and says on what it judged."""
from __future__ import annotations

from dataclasses import replace

from specrep_cli.config import EvalConfig
from specrep_cli.train.collapse import MIN_STEPS, collapse_warning


def watched(rank: float, dim: int = 128) -> dict:
    return {"knn_top1": 20.0, "effective_rank_representation": 10.0, "effective_rank_projection": rank,
            "projection_dim": dim}


def test_a_few_steps_are_not_judged():
    cfg = EvalConfig()
    assert collapse_warning(watched(1.0, 32), 4, cfg, 256) is None   # a tiny run: one epoch of 4 steps
    assert collapse_warning(watched(1.0, 32), MIN_STEPS - 1, cfg, 256) is None


def test_the_warning_names_the_rank_the_dimension_the_subset_and_the_step():
    line = collapse_warning(watched(1.3), 500, EvalConfig(), 50_000)
    assert line.startswith("the projection is collapsing")
    for part in ("effective rank 1.3", "128 dimensions", "2000 train images", "step 500",
                 "eval.collapse_fraction=0.05"):
        assert part in line, line
    assert collapse_warning(watched(60.0), 500, EvalConfig(), 50_000) is None


def test_a_subset_smaller_than_the_dimension_lowers_the_bar():
    cfg = replace(EvalConfig(), monitor_images=41)   # 41 images span at most 40 directions: the bar is 2.0
    assert collapse_warning(watched(3.0, 512), 1000, cfg, 50_000) is None
    assert "41 train images" in collapse_warning(watched(1.5, 512), 1000, cfg, 50_000)
    assert collapse_warning(watched(0.5), 1000, replace(cfg, collapse_fraction=0.0), 50_000) is None
