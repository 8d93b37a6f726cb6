"""The jobs `specrep report` cannot put in its table, each named with its overrides and why:
failed and stopped jobs (their failed.json), jobs that started but have no report (running, or
killed), and jobs of a sweep that never started (missing: in the sweep's multirun.yaml, no dir).

    unreported = not_reported(paths, unfinished)   # unfinished: find_runs' dirs without report.json
    lines = describe(unreported)                    # "failed: sweep/2 (k=v ...): <its one line>"

A sweep's jobs are known from `<sweep dir>/multirun.yaml` when Hydra's basic sweeper ran it and job
dirs are named by job number (hydra.sweep.subdir's default): the same expansion of the sweep
overrides that numbered them. With another sweeper only the gaps in the numbering are missing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ..rundir import read_failure


@dataclass
class Unreported:
    path: Path
    kind: str              # failed | stopped | unfinished | missing
    overrides: List[str]
    reason: str


def _overrides(job_dir: Path) -> List[str]:
    try:
        found = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in found] if isinstance(found, list) else []


def sweep_jobs(sweep_dir: Path) -> List[tuple[Path, List[str]]]:
    """(job dir, overrides) of every job of the sweep in sweep_dir, as far as it can be known."""
    try:
        cfg = OmegaConf.load(sweep_dir / "multirun.yaml")
        hydra = cfg.hydra
        subdir = OmegaConf.to_container(hydra.sweep, resolve=False)["subdir"]
        sweeper = str(hydra.sweeper.get("_target_", ""))
        params = hydra.sweeper.get("params") or {}
        task = [*(f"{k}={v}" for k, v in params.items()), *hydra.overrides.task]
    except Exception:   # no multirun.yaml, or one this code cannot read: nothing is known missing
        return []
    numbered = [d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()]
    if subdir != "${hydra.job.num}":
        return []
    if sweeper.endswith("BasicSweeper"):
        try:
            batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(task), None)
        except Exception:
            return []
        return [(sweep_dir / str(i), job) for i, job in enumerate(batches[0])]
    last = max((int(d.name) for d in numbered), default=-1)
    return [(sweep_dir / str(i), _overrides(sweep_dir / str(i))) for i in range(last + 1)]


def not_reported(paths: Sequence[str | Path], unfinished: Sequence[Path]) -> List[Unreported]:
    """Every failed, stopped, unfinished and missing job at or below `paths`."""
    out = []
    for d in unfinished:
        record = read_failure(d)
        if record is not None:
            out.append(Unreported(d, str(record.get("kind", "failed")), _overrides(d), record["error"]))
        else:
            out.append(Unreported(d, "unfinished", _overrides(d), "no report.json and no failed.json: still "
                                  f"running, or killed (resume it with resume={d})"))
    sweeps = {m.parent.resolve() for p in map(Path, paths) for m in [*p.glob("multirun.yaml"),
                                                                        *p.rglob("*/multirun.yaml")]}
    for sweep in sorted(sweeps):
        for job_dir, overrides in sweep_jobs(sweep):
            if not (job_dir / ".hydra" / "config.yaml").is_file():
                out.append(Unreported(job_dir, "missing", overrides, "never started"))
    return sorted(out, key=lambda u: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(u.path))])


def describe(unreported: Sequence[Unreported]) -> List[str]:
    return [f"{u.kind}: {u.path} ({' '.join(u.overrides) or 'no overrides'}): {u.reason}" for u in unreported]
