"""Progress inside an epoch where no bar is drawn: StepLines writes a line at logging steps once
progress.INTERVAL seconds have passed, with the step, the share of the epoch and when it ends; none on a
terminal, none at the epoch's last step (the epoch's own line follows), and in a real run's train.log."""
from __future__ import annotations

import logging

import pytest
from conftest import TINY

from specrep_cli import config, progress
from specrep_cli.train import pace
from specrep_cli.train.pace import StepLines


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(pace.time, "perf_counter", fake)
    return fake


def test_a_line_every_interval_at_logging_steps_with_the_time_left(clock, caplog):
    caplog.set_level(logging.INFO, logger="specrep")
    lines = StepLines(epoch=3, epochs=20, steps=100, plain=True)
    clock.now += progress.INTERVAL / 2
    lines.at_log_step(20, "loss -1.0000")              # too soon
    clock.now += progress.INTERVAL / 2                  # INTERVAL after the epoch began, 25 of 100 steps
    lines.at_log_step(25, "loss -1.1000  lr 0.1 ")
    clock.now += progress.INTERVAL / 4
    lines.at_log_step(30, "loss -1.2000")              # too soon after the last line
    said = [r.getMessage() for r in caplog.records]
    assert said == ["epoch 3/20  step 25/100 (25 %), epoch ends in 0:30  loss -1.1000  lr 0.1"]


def test_nothing_on_a_terminal_or_at_the_epoch_s_end(clock, caplog):
    caplog.set_level(logging.INFO, logger="specrep")
    clock.now += 10 * progress.INTERVAL
    StepLines(epoch=1, epochs=2, steps=10, plain=False).at_log_step(5, "loss 1")
    StepLines(epoch=1, epochs=2, steps=10, plain=True).at_log_step(10, "loss 1")
    assert caplog.records == []


def test_a_resumed_epoch_counts_its_pace_from_where_it_restarted(clock, caplog):
    caplog.set_level(logging.INFO, logger="specrep")
    lines = StepLines(epoch=2, epochs=2, steps=100, first=50, plain=True)
    clock.now += 2 * progress.INTERVAL                   # 10 steps in 20 s: 40 left take 80 s
    lines.at_log_step(60, "loss 1")
    assert "step 60/100 (60 %), epoch ends in 1:20" in caplog.records[0].getMessage()


def test_a_run_whose_output_is_not_a_terminal_logs_its_steps(tmp_path, monkeypatch, caplog):
    from specrep_cli.train.loop import train
    caplog.set_level(logging.INFO, logger="specrep")
    monkeypatch.setattr(progress, "INTERVAL", 0.0)       # every logging step
    cfg = config.compose_config("train", [*TINY, "eval.random_init=false", "eval.ritz=false", "trainer.device=cpu"])
    train(cfg, tmp_path / "run")
    steps = [r.getMessage() for r in caplog.records if "step 2/4" in r.getMessage()]
    assert len(steps) == 1 and steps[0].startswith("epoch 1/1  step 2/4 (50 %), epoch ends in") and "loss" in steps[0]
