"""specrep_cli.progress away from a terminal (a pipe, a file, a log): plain lines without escape
codes, a first and a final line, progress lines no more often than the interval (a fake clock);
quiet() silences phases, a failed phase has no final line, and stages are lines of their own."""
from __future__ import annotations

import logging

import pytest

from specrep_cli.progress import hms, phase, quiet, stages


class Clock:
    """Time that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="specrep")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "specrep"]


def test_plain_lines_first_every_interval_and_final(lines):
    clock = Clock()
    with phase("decoding", 60_000, "images", interval=5.0, clock=clock, terminal=False) as bar:
        assert lines() == ["decoding: 60,000 images"]   # the first line, before any progress
        clock.now += 4.0
        bar.advance(6_000)
        assert len(lines()) == 1                        # 4 s < 5 s: no line yet
        clock.now += 6.0
        bar.advance(6_000)                              # 10 s in, 20 % done: 40 s left
        assert lines()[-1] == "decoding 12,000 / 60,000 images, 20 %, ETA 0:40"
        clock.now += 1.0
        bar.advance(12_000)
        assert len(lines()) == 2                        # 1 s since the last line
        clock.now += 5.0
        bar.advance(6_000)
        assert lines()[-1] == "decoding 30,000 / 60,000 images, 50 %, ETA 0:16"
        clock.now += 14.0
        bar.advance(30_000)
    assert lines()[-1] == "decoding: done, 60,000 images in 30.0 s (2,000 images/s)"
    assert len(lines()) == 5
    assert not any("\x1b" in line or "\r" in line for line in lines())


def test_a_slow_phase_says_how_long_it_took_as_a_clock_does(lines):
    clock = Clock()
    with phase("fitting the linear probe", 6, "fits", interval=10.0, clock=clock, terminal=False) as bar:
        clock.now += 125.0
        bar.advance()
    assert lines()[-2:] == ["fitting the linear probe 1 / 6 fits, 17 %, ETA 10:25",
                            "fitting the linear probe: done, 1 fits in 2:05"]   # under 1 fit/s: no rate


def test_quiet_phases_and_a_failed_phase_say_nothing_more(lines):
    with quiet():
        with phase("kNN on", 10, "test images", interval=0.0, terminal=False) as bar:
            bar.advance(10)
        with stages("evaluation", 2) as stage:
            stage("encoding")
    assert lines() == []
    with pytest.raises(RuntimeError):
        with phase("encoding the train split", 10, "images", terminal=False):
            raise RuntimeError("boom")
    assert lines() == ["encoding the train split: 10 images"]   # no "done" line


def test_stages_are_numbered_lines_then_the_time_taken(lines):
    clock = Clock()
    with stages("specrep eval", 2, clock=clock) as stage:
        stage("loading the checkpoint")
        stage("evaluating")
        clock.now += 61.0
    assert lines() == ["specrep eval 1/2: loading the checkpoint", "specrep eval 2/2: evaluating",
                       "specrep eval: done in 1:01"]


def test_a_terminal_gets_a_bar_and_only_the_final_line(lines):
    with phase("decoding", 3, "images", interval=0.0, terminal=True) as bar:
        bar.advance(3)
    assert lines() == [lines()[-1]] and lines()[-1].startswith("decoding: done, 3 images in ")


def test_hms():
    assert [hms(s) for s in (0, 41.4, 725, 3723)] == ["0:00", "0:41", "12:05", "1:02:03"]
