"""metrics.jsonl: one JSON object per logging step, per epoch and per resume that changed settings,
written by rank 0 as training goes.

    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metrics.write({"step": 20, "epoch": 1, "lr": 0.1, "loss": -0.7, ...})   # a logging step
    records = read_step_records(run_dir / "metrics.jsonl")                   # the steps, for the plots
    metrics.write({"step": 40, "epoch": 2, "resumed_from": ".../last.pt",    # a resume that changed
                   "changed": ["optim.lr (checkpoint 0.1, now 0.05)"]})       #   safe settings
    resumes = read_resume_records(run_dir / "metrics.jsonl")                 # those, for report.json
    losses = read_epoch_losses(run_dir / "metrics.jsonl")                    # each epoch's mean loss
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List

NOT_TERMS = {"step", "epoch", "lr"}   # keys of a step record of metrics.jsonl that are not loss terms


class MetricsLog:
    """Appends records to metrics.jsonl (a no-op when not `enabled`: the ranks other than 0).

    A record that cannot be written (a full disk) is a warning, once, and the run goes on: its
    checkpoints say whether the disk still has no room (a line on how to resume), the plots lack the
    steps that were lost (a line already cut by a killed run is skipped when read)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled, self.lost = Path(path), enabled, 0

    def write(self, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            if not self.lost:
                logging.getLogger("specrep").warning(f"cannot append to {self.path} ({err.strerror or err}): "
                                                     f"records from step {record.get('step')} on may be lost")
            self.lost += 1


def read_records(metrics_path: Path) -> Iterator[Dict[str, Any]]:
    """The readable records of metrics.jsonl, in order (a line cut by a killed run is skipped)."""
    if not Path(metrics_path).is_file():
        return
    for line in Path(metrics_path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record


def read_resume_records(metrics_path: Path) -> List[Dict[str, Any]]:
    """The records of the resumes that changed settings (those with `changed`), in order."""
    return [r for r in read_records(metrics_path) if "changed" in r]


def read_step_records(metrics_path: Path) -> List[Dict[str, Any]]:
    """The per-step records of metrics.jsonl (those with an `lr`), by step; a step logged twice (a
    resumed run redoes the steps after its last checkpoint) keeps its last record; unreadable lines
    (a run killed mid-write) are skipped."""
    by_step: Dict[int, Dict[str, Any]] = {}
    for record in read_records(metrics_path):
        if "lr" in record and "step" in record:
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def read_epoch_losses(metrics_path: Path) -> List[float]:
    """Each epoch's mean training loss (the epoch records' `epoch_loss`), in epoch order; an epoch
    logged twice (a resumed run redoes the epoch it stopped in) keeps its last record."""
    by_epoch: Dict[int, float] = {}
    for record in read_records(metrics_path):
        if "epoch_seconds" in record and "epoch_loss" in record:
            by_epoch[int(record["epoch"])] = float(record["epoch_loss"])
    return [by_epoch[e] for e in sorted(by_epoch)]
