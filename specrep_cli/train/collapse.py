"""When the training log says the projection is collapsing, and what it says.

    line = collapse_warning(watched, step, cfg.eval, num_train)   # None, or the warning's one line

The monitor (eval.suite.monitor) measures the effective rank of the projection z on a fixed subset of
at most eval.monitor_images train images (its memory bank). That figure says collapse only when

- training has run MIN_STEPS optimizer steps: before that z still mirrors the random initialisation,
  whose effective rank is often near 1 (ReLU features share one dominant direction) and rises as the
  objective takes hold; a run of a few steps would otherwise always be called collapsing; and
- it is measured against what the subset can show: n images span at most n - 1 directions once
  centred, so the bar is eval.collapse_fraction x min(dimension, images - 1).

The line names the figure, the dimension, the subset and the step it judged on.
"""
from __future__ import annotations

from typing import Dict

from ..config import EvalConfig

MIN_STEPS = 200   # optimizer steps before the effective rank of z is judged


def collapse_warning(watched: Dict[str, float], step: int, cfg: EvalConfig, num_train: int) -> str | None:
    """The warning for a monitoring pass `watched` (monitor()'s figures) taken after `step` optimizer
    steps, whose subset has min(eval.monitor_images, `num_train`) images; None when there is nothing to say."""
    if step < MIN_STEPS or cfg.collapse_fraction <= 0:
        return None
    rank, dim = watched["effective_rank_projection"], int(watched["projection_dim"])
    images = min(cfg.monitor_images, num_train)
    bar = cfg.collapse_fraction * min(dim, max(1, images - 1))
    if rank >= bar:
        return None
    return (f"the projection is collapsing: effective rank {rank:.1f} of its {dim} dimensions, on the "
            f"monitoring subset of {images} train images at step {step} (below eval.collapse_fraction="
            f"{cfg.collapse_fraction:g} x {min(dim, max(1, images - 1))} = {bar:.1f})")
