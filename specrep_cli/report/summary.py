"""`specrep report PATH...`: compare runs, one row per configuration with its seeds pooled.

    runs = find_runs(paths)       # every directory below the paths with report.json and .hydra/config.yaml
    groups = group_runs(runs)     # same resolved config once `seed` and `resume` are removed
    summarize(paths)              # prints the table; writes summary.md, summary.csv, summary.png

A group's label is the config keys whose values differ across groups, written as overrides
(`objective=simclr` for a group option, `key=value` otherwise; a key that only follows from a group
option, such as objective.temperature under objective=simclr, is left out). Each metric is shown as
mean ± std over the group's seeds (std with n - 1; none for a single seed), n the number of seeds. A
seed run more than once is one sample, the mean of its runs, and is named (on stderr, in summary.md
and in summary.csv's repeated_seeds); `pool_repeats` (specrep report --pool-repeats) counts each run
as a sample instead, so n is the number of runs. The files go next to the
sweep: into the common parent directory of the paths given (for one path, that path). Every job
without a report (failed, stopped, unfinished, or missing from its sweep: jobs.py) is named on stderr
and in summary.md.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from ..config import flatten
from ..errors import ReportError
from ..storage import atomic_write_text
from .jobs import Unreported, describe, not_reported
from .plots import write_bar_plot
from .report import metric as _metric
from .search import search_summary

RUN_SPECIFIC_KEYS = ("seed", "resume")   # top-level keys that differ between runs of one configuration
METRICS = (   # (column, heading, where in report.json)
    ("probe_top1", "probe top-1 %", ("linear_probe", "top1")),
    ("knn_top1", "kNN top-1 %", ("knn", "top1")),
    ("effective_rank", "eff. rank", ("spectrum", "representation", "effective_rank")),
    ("images_per_second", "img/s", ("timing", "train_images_per_second")),
    ("train_seconds", "train s", ("timing", "train_seconds")),
)
GRAPH_METRICS = (   # dataset=graph runs: phi against the truth; shown when a run has them
    ("subspace_alignment", "alignment", ("graph", "subspace_alignment")),
    ("eigenvalue_error", "eig. error", ("graph", "eigenvalue_error")),
    ("eigengap", "eigengap", ("graph", "eigengap")),
)
BIPARTITE_METRICS = (   # two towers on a bipartite graph: phi and nu against the top singular vectors
    ("phi_alignment", "phi alignment", ("bipartite", "phi", "subspace_alignment")),
    ("nu_alignment", "nu alignment", ("bipartite", "nu", "subspace_alignment")),
)
RITZ_METRICS = (   # eval.ritz with labels: the ordered functions whose probe reaches 95 % of all of them
    ("ritz_dims_for_95", "Ritz dims for 95 %", ("ritz", "dims_for_95")),
)
TEXT_METRICS = (   # image-text runs: zero-shot and retrieval
    ("zero_shot_top1", "zero-shot top-1 %", ("zero_shot", "top1")),
    ("image_to_text_r1", "image->text R@1 %", ("retrieval", "image_to_text", "r1")),
)
FORMATS = {"probe_top1": "{:.2f}", "zero_shot_top1": "{:.2f}", "image_to_text_r1": "{:.2f}", "knn_top1": "{:.2f}",
           "effective_rank": "{:.1f}",
           "images_per_second": "{:.0f}", "train_seconds": "{:.1f}", "subspace_alignment": "{:.4f}",
           "eigenvalue_error": "{:.4f}", "eigengap": "{:.4f}", "ritz_dims_for_95": "{:g}",
           "phi_alignment": "{:.4f}", "nu_alignment": "{:.4f}"}
ACCURACIES = ("probe_top1", "knn_top1", "zero_shot_top1", "image_to_text_r1")   # shown as mean ± std
ALL_METRICS = METRICS + TEXT_METRICS + RITZ_METRICS + GRAPH_METRICS + BIPARTITE_METRICS


def metrics_of(groups: Sequence["Group"]) -> Tuple[Tuple[str, str, Tuple[str, ...]], ...]:
    """The columns of these groups' table: METRICS, TEXT_METRICS when any run has zero-shot or retrieval,
    RITZ_METRICS when any run has a prefix curve, GRAPH_METRICS when any run is on a graph,
    BIPARTITE_METRICS when any has two towers on a bipartite one."""
    runs = [r for g in groups for r in g.runs]
    text = any("zero_shot" in r.report or "retrieval" in r.report for r in runs)
    ritz = any("dims_for_95" in (r.report.get("ritz") or {}) for r in runs)
    graph = any("graph" in r.report for r in runs)
    bipartite = any("bipartite" in r.report for r in runs)
    return (METRICS + (TEXT_METRICS if text else ()) + (RITZ_METRICS if ritz else ())
            + (GRAPH_METRICS if graph else ()) + (BIPARTITE_METRICS if bipartite else ()))


@dataclass
class FinishedRun:
    path: Path
    report: Dict[str, Any]
    config: Dict[str, Any]   # the resolved config, flattened to dotted keys, without RUN_SPECIFIC_KEYS
    seed: object = None      # the config's `seed` (None: it has none)


@dataclass
class Group:
    runs: List[FinishedRun]
    settings: Dict[str, Any] = field(default_factory=dict)   # label key -> value
    label: str = ""
    pool_repeats: bool = False   # a seed run more than once: each run a sample (True), or their mean (False)


def _natural(path: Path) -> List[Any]:
    """Sort key: sweep job 10 after job 9."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def _read_run(run_dir: Path) -> FinishedRun:
    report_path, config_path = run_dir / "report.json", run_dir / ".hydra" / "config.yaml"
    try:
        report = json.loads(report_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{report_path} is not a readable report ({str(err).splitlines()[0]}): "
                          "remove it or the run, or rerun `specrep eval` on its checkpoint") from None
    probed = _metric(report, ("linear_probe", "top1")) is not None and _metric(report, ("knn", "top1")) is not None
    if not (isinstance(report, dict) and isinstance(report.get("run"), dict)
            and (probed or "skipped" in report.get("linear_probe", {}))):   # skipped: a run without labels
        raise ReportError(f"{report_path} lacks run, linear_probe.top1 or knn.top1: not a specrep report")
    try:
        config = yaml.safe_load(config_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ReportError(f"{config_path} is not readable YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ReportError(f"{config_path} does not hold a config (a mapping of keys)")
    flat = {k: v for k, v in flatten(config).items() if k not in RUN_SPECIFIC_KEYS}
    return FinishedRun(run_dir, report, flat, config.get("seed"))


def find_runs(paths: Sequence[str | Path]) -> Tuple[List[FinishedRun], List[Path]]:
    """(runs, unfinished): every directory at or below `paths` with report.json and .hydra/config.yaml,
    and those with .hydra/config.yaml but no report.json (still running, failed or stopped)."""
    run_dirs, unfinished = set(), set()
    for path in map(Path, paths):
        if not path.is_dir():
            raise ReportError(f"{path}: no such directory (give run or sweep directories, e.g. "
                              "outputs/multirun/2026-12-01/10-00-00)")
        for config in [*path.glob(".hydra/config.yaml"), *path.rglob("*/.hydra/config.yaml")]:
            run_dir = config.parent.parent.resolve()
            (run_dirs if (run_dir / "report.json").is_file() else unfinished).add(run_dir)
        for report in [*path.glob("report.json"), *path.rglob("*/report.json")]:
            if not (report.parent / ".hydra" / "config.yaml").is_file():
                raise ReportError(f"{report} has no .hydra/config.yaml beside it: specrep report compares "
                                  "run directories written by specrep train or specrep eval")
    return [_read_run(d) for d in sorted(run_dirs, key=_natural)], sorted(unfinished, key=_natural)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _label_keys(configs: Sequence[Dict[str, Any]]) -> List[str]:
    """The keys whose values differ across configs, less those that only follow from a group option
    (a key under `g.` where g.name differs, constant among the configs sharing a g.name)."""
    keys = sorted(set().union(*configs))
    differ = [k for k in keys if len({_canon(c.get(k)) for c in configs}) > 1]
    options = {k[:-len(".name")] for k in differ if k.endswith(".name")}

    def follows_from_option(key: str) -> bool:
        group = next((g for g in options if key.startswith(g + ".") and key != g + ".name"), None)
        if group is None:
            return False
        values: Dict[str, set] = {}
        for c in configs:
            values.setdefault(_canon(c.get(f"{group}.name")), set()).add(_canon(c.get(key)))
        return all(len(v) == 1 for v in values.values())

    return [k for k in differ if not follows_from_option(k)]


def _override(key: str, value: Any) -> str:
    key = key[:-len(".name")] if key.endswith(".name") else key
    text = json.dumps(value) if isinstance(value, (list, dict)) else ("null" if value is None else str(value))
    return f"{key}={text}"


def group_runs(runs: Sequence[FinishedRun], pool_repeats: bool = False) -> List[Group]:
    """Runs with the same config (seed and resume removed), in the order of their first run, labelled."""
    by_config: Dict[str, Group] = {}
    for run in runs:
        by_config.setdefault(_canon(run.config), Group([], pool_repeats=pool_repeats)).runs.append(run)
    groups = list(by_config.values())
    keys = _label_keys([g.runs[0].config for g in groups])
    for g in groups:
        g.settings = {k: g.runs[0].config.get(k) for k in keys}
        g.label = " ".join(_override(k, v) for k, v in g.settings.items() if k in g.runs[0].config)
        if not g.label:   # one group: say what it is
            run = g.runs[0].report["run"]
            g.label = " / ".join(str(run[k]) for k in ("objective", "encoder", "dataset") if run.get(k))
    return groups


def mean_std(values: Sequence[float | None]) -> Tuple[float, float, int]:
    """(mean, sample std sqrt(sum (x - mean)^2 / (n - 1)), n) over the values that are not None;
    std is nan for n = 1; (nan, nan, 0) for none."""
    xs = [v for v in values if v is not None]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else math.nan
    return mean, std, n


def seed_runs(group: Group) -> List[List[FinishedRun]]:
    """The group's runs by seed, seeds in the order of their first run (a run without a seed alone)."""
    by_seed: Dict[str, List[FinishedRun]] = {}
    for k, run in enumerate(group.runs):
        by_seed.setdefault(_canon(run.seed) if run.seed is not None else f"run {k}", []).append(run)
    return list(by_seed.values())


def samples(group: Group) -> List[List[FinishedRun]]:
    """What mean ± std is over: each seed's runs (a sample is their mean), or each run (pool_repeats)."""
    return [[r] for r in group.runs] if group.pool_repeats else seed_runs(group)


def repeated_seeds(group: Group) -> str:
    """The seeds run more than once, e.g. '0 (2 runs), 3 (3 runs)'; '' when none is."""
    return ", ".join(f"{runs[0].seed} ({len(runs)} runs)" for runs in seed_runs(group) if len(runs) > 1)


def repeat_notes(groups: Sequence[Group]) -> List[str]:
    """One line per group with a repeated seed: which seeds, and how they are counted."""
    notes = []
    for g in groups:
        repeats = [runs for runs in seed_runs(g) if len(runs) > 1]
        if repeats:
            which = ", ".join(f"seed {runs[0].seed} ran {len(runs)} times" for runs in repeats)
            how = ("pooled: each run counted as a sample (--pool-repeats)" if g.pool_repeats else
                   "each seed's runs averaged into one sample, n counts seeds (--pool-repeats counts each run)")
            notes.append(f"{g.label}: {which}; {how}")
    return notes


def _sample_mean(runs: Sequence[FinishedRun], where: Tuple[str, ...]) -> float | None:
    values = [v for v in (_metric(r.report, where) for r in runs) if v is not None]
    return sum(values) / len(values) if values else None


def group_stats(group: Group) -> Dict[str, Tuple[float, float, int]]:
    """column -> (mean, std, n) of each metric over the group's samples (samples(): a seed's runs
    averaged into one, or with pool_repeats each run)."""
    parts = samples(group)
    return {col: mean_std([_sample_mean(s, where) for s in parts]) for col, _, where in ALL_METRICS}


def random_init(group: Group, key: str) -> float | None:
    """The group's random-init figure (report.json's random_init.<key>), averaged like its metrics."""
    mean, _, n = mean_std([_sample_mean(s, ("random_init", key)) for s in samples(group)])
    return mean if n else None


def _cell(col: str, stat: Tuple[float, float, int], with_std: bool) -> str:
    mean, std, n = stat
    if n == 0:
        return "-"
    fmt = FORMATS[col]
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if with_std and n > 1 else "")


def _rows(groups: Sequence[Group]) -> List[List[str]]:
    """Table rows: label, n, then each metric (mean ± std for the accuracies, mean for the rest)."""
    rows = []
    for g in groups:
        stats = group_stats(g)
        rows.append([g.label, str(len(samples(g)))]
                    + [_cell(col, stats[col], col in ACCURACIES) for col, _, _ in metrics_of(groups)])
    return rows


def headings(groups: Sequence[Group]) -> List[str]:
    return ["group", "n", *(heading for _, heading, _ in metrics_of(groups))]


def write_summary(out_dir: Path, groups: Sequence[Group], unreported: Sequence[Unreported] = ()) -> List[Path]:
    """summary.csv (one row per group, mean and std columns), summary.md (the table, the bar plot, the
    runs of each group, the jobs without a report) and summary.png (probe and kNN top-1, mean ± std)."""
    out_dir = Path(out_dir)
    keys = list(groups[0].settings) if groups else []
    csv_path, md_path, png_path = out_dir / "summary.csv", out_dir / "summary.md", out_dir / "summary.png"
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        columns = metrics_of(groups)
        writer.writerow(["group", *keys, "n", *(f"{col}_{s}" for col, _, _ in columns for s in ("mean", "std")),
                         "repeated_seeds", "runs"])
        for g in groups:
            stats = group_stats(g)
            values = [v for col, _, _ in columns for v in stats[col][:2]]
            writer.writerow([g.label, *(_canon(g.settings[k]) if isinstance(g.settings[k], (list, dict))
                                        else g.settings[k] for k in keys), len(samples(g)),
                             *("" if math.isnan(v) else f"{v:.6g}" for v in values), repeated_seeds(g),
                             ";".join(os.path.relpath(r.path, out_dir) for r in g.runs)])
        atomic_write_text(csv_path, f.getvalue())
    stats = [group_stats(g) for g in groups]
    try:
        write_bar_plot(png_path, [g.label for g in groups],
                       {"linear probe top-1": ([s["probe_top1"][0] for s in stats],
                                               [s["probe_top1"][1] for s in stats]),
                        "kNN top-1": ([s["knn_top1"][0] for s in stats], [s["knn_top1"][1] for s in stats])},
                       references={"linear probe top-1": [random_init(g, "linear_probe_top1") for g in groups],
                                   "kNN top-1": [random_init(g, "knn_top1") for g in groups]},
                       over="runs" if any(g.pool_repeats for g in groups) else "seeds")
    except OSError:
        raise
    except Exception as err:   # matplotlib's errors have many types; the table is what matters
        print(f"note: could not draw {png_path.name}: {err}", file=sys.stderr)
    pooled = any(g.pool_repeats for g in groups)
    lines = ["# specrep summary", "",
             f"{sum(len(g.runs) for g in groups)} runs in {len(groups)} groups; accuracies are mean ± std over "
             + ("the runs of a group (repeated seeds pooled)" if pooled else
                "the seeds of a group (a seed's repeated runs averaged first)") + ", the other columns means.", "",
             "| " + " | ".join(headings(groups)) + " |", "|" + " --- |" * len(headings(groups))]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(groups)]
    lines += ["", f"![probe and kNN top-1 per group]({png_path.name})", "", "## Runs", ""]
    for g in groups:
        lines.append(f"- {g.label}: " + ", ".join(f"[{os.path.relpath(r.path, out_dir)}]"
                                                  f"({os.path.relpath(r.path / 'report.md', out_dir)})"
                                                  for r in g.runs))
    if repeat_notes(groups):
        lines += ["", "## Repeated seeds", ""] + [f"- {line}" for line in repeat_notes(groups)]
    if unreported:
        lines += ["", "## Jobs without a report", ""] + [f"- {line}" for line in describe(unreported)]
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    return [md_path, csv_path] + ([png_path] if png_path.is_file() else [])


def print_summary(groups: Sequence[Group], console: Console | None = None) -> None:
    over = "runs, repeated seeds pooled" if any(g.pool_repeats for g in groups) else "seeds"
    table = Table(title=f"{sum(len(g.runs) for g in groups)} runs in {len(groups)} groups (mean ± std over {over})",
                  show_header=True, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    label_width = min(max(len(g.label) for g in groups), 60)   # labels stay whole on a narrow terminal
    table.add_column("group", min_width=label_width, overflow="fold")
    for heading in headings(groups)[1:]:
        table.add_column(heading, justify="right", no_wrap=True)
    for row in _rows(groups):
        table.add_row(*row)
    if console is None:   # piped into a file: the table's own width, not 80 columns with its last one cut
        console = Console() if sys.stdout.isatty() else Console(width=10_000)
    console.print(table)


def output_dir(paths: Sequence[str | Path]) -> Path:
    """The common parent directory of the paths (for one path, that path)."""
    return Path(os.path.commonpath([str(Path(p).resolve()) for p in paths]))


def summarize(paths: Sequence[str | Path], console: Console | None = None,
              pool_repeats: bool = False) -> List[Group]:
    """`specrep report`: find, group, print, write; a repeated seed is named on stderr and averaged, or
    with pool_repeats each of its runs counted. Raises ReportError when there is nothing to report."""
    if not paths:
        raise ReportError("specrep report needs at least one run or sweep directory, e.g. "
                          "specrep report outputs/multirun/2026-12-01/10-00-00")
    runs, unfinished = find_runs(paths)
    unreported = not_reported(paths, unfinished)
    for line in describe(unreported):   # every failed, stopped, unfinished and missing job, by name
        print(line, file=sys.stderr)
    if not runs:
        raise ReportError(f"no finished runs below {', '.join(map(str, paths))} (a run is a directory "
                          "with report.json and .hydra/config.yaml)"
                          + (f"; {len(unreported)} without a report (above)" if unreported else ""))
    groups = group_runs(runs, pool_repeats)
    for line in repeat_notes(groups):
        print(f"note: {line}", file=sys.stderr)
    out = output_dir(paths)
    try:
        written = write_summary(out, groups, unreported)
    except OSError as err:
        raise ReportError(f"cannot write the summary into {out} ({err.strerror})") from None
    print_summary(groups, console)
    written += search_summary(out, runs, console)   # a sweep that searched: its trials, best first
    print("wrote " + ", ".join(str(p) for p in written))
    return groups
