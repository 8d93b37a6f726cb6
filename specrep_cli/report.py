"""Reports: report.json for machines, report.md and a rich table for people.

The report is a plain dict:
    {"run": {...settings...}, "linear_probe": {"top1", "top5"}, "knn": {"top1", "k"},
     "random_init": {"linear_probe_top1", "knn_top1"}, "timing": {"train_seconds", ...}}
Accuracies are percentages (0 to 100).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from rich.console import Console
from rich.table import Table


def _rows(report: Dict[str, Any]) -> List[Tuple[str, str]]:
    probe, knn = report["linear_probe"], report["knn"]
    rows = [("linear probe top-1", f"{probe['top1']:.2f} %"), ("linear probe top-5", f"{probe['top5']:.2f} %"),
            (f"kNN top-1 (k={knn['k']})", f"{knn['top1']:.2f} %")]
    rand = report.get("random_init")
    if rand:
        rows += [("random-init probe top-1", f"{rand['linear_probe_top1']:.2f} %"),
                 ("random-init kNN top-1", f"{rand['knn_top1']:.2f} %")]
    timing = report.get("timing", {})
    if timing.get("train_seconds") is not None:
        rows += [("train time", f"{timing['train_seconds']:.1f} s"),
                 ("train throughput", f"{timing['train_images_per_second']:.0f} images/s")]
    rows.append(("eval time", f"{timing.get('eval_seconds', 0.0):.1f} s"))
    return rows


def _settings(report: Dict[str, Any]) -> List[Tuple[str, str]]:
    return [(k, str(v)) for k, v in report["run"].items() if v is not None]


def write_report(run_dir: Path, report: Dict[str, Any]) -> None:
    """Write report.json and report.md into run_dir."""
    run_dir = Path(run_dir)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# specrep report", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _rows(report)]
    lines += ["", "## Run", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _settings(report)]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")


def print_report(report: Dict[str, Any], console: Console | None = None) -> None:
    run = report["run"]
    title = f"{run.get('objective')} / {run.get('encoder')} on {run.get('dataset')}"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in _rows(report):
        table.add_row(k, v)
    (console or Console()).print(table)
