"""eval/convergence.py on loss curves whose verdict is known by construction, and the epoch losses it
reads from metrics.jsonl (a resumed epoch counted once, a cut line skipped)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from specrep_cli.eval.convergence import STILL_FALLING, convergence
from specrep_cli.report.metrics import read_epoch_losses


def test_a_loss_that_flattened_has_converged():
    losses = [0.0, -2.0, -2.9, -3.0, -3.0, -3.0, -3.0, -3.0]   # the last quarter: 8 // 4 = 2 epochs, no fall
    section = convergence(losses)
    assert section["converged"] is True and "warning" not in section
    assert section["last_quarter_share"] == 0.0
    assert section["losses"] == {"epoch 1": 0.0, "epoch 6": -3.0, "epoch 8": -3.0}


def test_a_loss_still_falling_is_not_converged_and_says_by_how_much():
    losses = [0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0]   # a straight line: 2 of 7 units in the last quarter
    section = convergence(losses)
    assert section["converged"] is False
    assert section["last_quarter_share"] == pytest.approx(2 / 7)
    assert "not converged" in section["warning"] and "28.6 %" in section["warning"] and "epoch 6" in section["warning"]


def test_the_threshold_is_a_share_of_the_whole_fall():
    def ending(share: float) -> list[float]:   # the last epoch falls by `share` of the whole fall (10 -> last)
        fall = share * 9.8 / (1 - share)        # e / (9.8 + e) = share
        return [10.0, 1.0, 0.5, 0.2, 0.2 - fall]
    assert convergence(ending(0.99 * STILL_FALLING))["converged"] is True
    assert convergence(ending(1.01 * STILL_FALLING))["converged"] is False


def test_too_few_epochs_give_no_verdict_and_a_rising_loss_is_not_falling():
    assert convergence([1.0, 0.5, 0.4])["converged"] is None
    assert convergence([1.0, 1.1, 1.2, 1.3])["converged"] is True   # no fall at all: nothing left to gain from it


def test_epoch_losses_come_from_epoch_records_only(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": 5, "epoch": 1, "lr": 0.1, "loss": 9.0},              # a step record: not an epoch's
               {"epoch": 1, "step": 10, "epoch_seconds": 1.0, "epoch_loss": 3.0},
               {"epoch": 2, "step": 20, "epoch_seconds": 1.0, "epoch_loss": 2.5},
               {"epoch": 2, "step": 20, "epoch_seconds": 1.0, "epoch_loss": 2.0},   # redone after a resume
               {"epoch": 2, "step": 20, "monitor": {"knn_top1": 50.0}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"epoch": 3, "epoch_sec')
    assert read_epoch_losses(path) == [3.0, 2.0]
    assert read_epoch_losses(tmp_path / "absent.jsonl") == []


def test_a_loss_against_a_moving_target_is_not_judged():
    section = convergence([0.0, -1.0, -2.0, -3.0, -4.0], moving_target=True)
    assert section["converged"] is None and "target carried over" in section["why"]


@pytest.mark.parametrize("objective, overrides, moving", [
    ("spectral", [], False), ("pca", [], False), ("pca", ["objective.penalty_estimate=ema"], True),
    ("spectral_byol", [], True),
    ("spectral_byol", ["objective.target_momentum=0", "objective.lambda_source=other_view"], False),
    ("byol", [], True), ("simclr", [], False)])
def test_which_objectives_have_a_moving_target(objective, overrides, moving):
    from specrep_cli import config
    from specrep_cli.models.encoders import build_encoder
    from specrep_cli.objectives.methods import build_method
    cfg = config.compose_config("train", [f"objective={objective}", "encoder.width=4", *overrides])
    method = build_method(cfg.objective, lambda: build_encoder(cfg.encoder, 3), cfg.trainer.batch_size)
    assert method.moving_target is moving
