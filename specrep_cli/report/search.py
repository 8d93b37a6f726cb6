"""`specrep report` on a sweep that searched (`hydra/sweeper=optuna`): its trials, best first, by the
figure they were scored on (eval.objective_metric's, as report.json's "objective" gives it: never a
test-split figure), and the best configuration as a command.

    search = read_search(sweep_dir, runs)   # None unless sweep_dir holds optimization_results.yaml
    print_search(search); write_search(sweep_dir / "search.md", search)

A trial's settings are its `.hydra/overrides.yaml`; the searched keys are those of the sweeper's
`best_params`. The direction is the sweeper's (`hydra.sweeper.direction` in a trial's .hydra/hydra.yaml).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Sequence

import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, ReportError
from ..overrides import parse
from .report import selected

RESULTS = "optimization_results.yaml"


@dataclass
class Trial:
    path: Path
    value: float | None            # what the search read for eval.objective_metric (report.json's objective,
                                   # never a test-split figure); None when the run has none
    overrides: List[str]           # the job's command-line overrides (hydra.* left out)


@dataclass
class Search:
    metric: str                    # eval.objective_metric
    direction: str                 # maximize | minimize
    searched: List[str]            # the keys the sweeper chose values for
    trials: List[Trial]            # best first; trials without the figure last

    @property
    def best(self) -> Trial:
        return self.trials[0]


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ReportError(f"{path} is not readable YAML ({str(err).splitlines()[0]})") from None


def read_search(sweep_dir: Path, runs: Sequence[Any]) -> Search | None:
    """The search a sweep dir holds (its trials among `runs`, summary.FinishedRun), or None if it holds
    no optimization_results.yaml (an enumerating sweep, or runs made one by one)."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / RESULTS).is_file() or not runs:
        return None
    results = _yaml(sweep_dir / RESULTS) or {}
    hydra_yaml = runs[0].path / ".hydra" / "hydra.yaml"   # the sweeper's settings, as each job saw them
    hydra = _yaml(hydra_yaml) if hydra_yaml.is_file() else {}
    direction = ((hydra or {}).get("hydra", {}).get("sweeper", {}) or {}).get("direction", "minimize")
    direction = str(direction[0] if isinstance(direction, list) else direction)
    key = str(runs[0].config.get("eval.objective_metric", "linear_probe.top1"))
    trials = [Trial(run.path, selected(run.report, key)["value"], _task_overrides(run.path)) for run in runs]
    sign = -1.0 if direction == "maximize" else 1.0
    trials.sort(key=lambda t: (t.value is None, sign * t.value if t.value is not None else 0.0))
    searched = list((results.get("best_params") or {}).keys())
    return Search(key, direction, searched, trials)


def _task_overrides(run_dir: Path) -> List[str]:
    """A trial's command-line overrides (.hydra/overrides.yaml), Hydra's own (hydra.*, hydra/...) left out."""
    path = run_dir / ".hydra" / "overrides.yaml"
    listed = [str(o) for o in (_yaml(path) if path.is_file() else None) or []]
    try:
        return [o.input_line for o in parse(listed) if not o.is_hydra_override()]
    except ConfigError as err:
        raise ReportError(f"{path}: {err}") from None


def _settings(trial: Trial, searched: Sequence[str]) -> str:
    chosen = [o.input_line for o in parse(trial.overrides) if o.key_or_group in searched]
    return " ".join(chosen) if chosen else " ".join(trial.overrides)


def _rows(search: Search, root: Path) -> List[List[str]]:
    return [[str(i + 1), str(t.path.relative_to(root)) if t.path.is_relative_to(root) else str(t.path),
             "-" if t.value is None or math.isnan(t.value) else f"{t.value:.4g}", _settings(t, search.searched)]
            for i, t in enumerate(search.trials)]


def best_command(search: Search) -> str:
    """The command that trains the best configuration again."""
    return "specrep train " + " ".join(search.best.overrides)


def print_search(search: Search, root: Path, console: Console | None = None) -> None:
    table = Table(title=f"{len(search.trials)} trials by {search.metric} ({search.direction}), best first",
                  show_header=True, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for heading, justify in (("#", "right"), ("trial", "left"), (search.metric, "right"), ("settings", "left")):
        table.add_column(heading, justify=justify, overflow="fold")
    for row in _rows(search, Path(root)):
        table.add_row(*row)
    console = console or Console()
    console.print(table)
    console.print(f"best: {best_command(search)}", soft_wrap=True)


def write_search(path: Path, search: Search) -> Path:
    """search.md: the trials table and the best configuration's command."""
    path = Path(path)
    lines = ["# specrep search", "", f"{len(search.trials)} trials, scored by `{search.metric}` "
             f"({search.direction}), best first; each trial's figure is the one the search read, its report.json's "
             "`objective` (a validation figure, never the test split's).", "",
             f"| # | trial | {search.metric} | settings |",
             "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(search, path.parent)]
    lines += ["", "The best configuration:", "", "```bash", best_command(search), "```"]
    path.write_text("\n".join(lines) + "\n")
    return path


def search_summary(sweep_dir: Path, runs: Sequence[Any], console: Console | None = None) -> List[Path]:
    """Print and write the search of `sweep_dir` when it is one; the files written."""
    search = read_search(sweep_dir, runs)
    if search is None:
        return []
    print_search(search, sweep_dir, console)
    return [write_search(Path(sweep_dir) / "search.md", search)]
