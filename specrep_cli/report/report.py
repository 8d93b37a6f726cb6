"""Reports of one run: report.json for machines, report.md (with plots) and a rich table for people.

The report is a plain dict:
    {"run": {...settings...},
     "linear_probe": {"top1", "top5", "val_top1", "protocol", ...}, "knn": {"top1", "val_top1", "k", "temperature"},
     "random_init": {"linear_probe_top1", "knn_top1"},
     "spectrum": {"representation" | "projection": {"eigenvalues", "effective_rank",
                                                      "top_variance_share": {"1", "10", "100"},
                                                      "orthonormality_error"}},
     "alignment": {"representation", "projection"}, "uniformity": {"representation", "projection"},
     "graph": {"subspace_alignment", "learned_spectrum", "true_spectrum", "eigenvalue_error", "eigengap",
               "eckart_young": {"relative_error", "best", "excess"}, "per_coordinate", "eigenspaces",
               "warnings", with eval.ritz also "ritz_spectrum", "ritz_true_spectrum", "ritz_eigenspaces"}
              (dataset=graph: phi against the top eigenvectors; eval/graph_truth.py),
     "ritz": {"values", "effective_dim", "condition", "warnings", "prefix": [{"k", "probe_top1", "knn_top1"}, ...],
              "kind", "pairs", "seconds", ...}   (eval.ritz: Rayleigh-Ritz on h; eval/ritz_report.py),
     "history": [{"epoch", "knn_top1" (validation), "effective_rank_representation", ...}, ...],
     "objective": {"metric", "from", "split", "value"}   (what a search reads: objective_section),
     "timing": {"train_seconds", "train_images_per_second", "eval_seconds"}}
Accuracies and variance shares are percentages in the tables, accuracies percentages in the json
(0 to 100); every key but run, linear_probe and knn may be absent.
"""
from __future__ import annotations

import json
import logging
import math
import shlex
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import yaml
from rich.console import Console
from rich.table import Table

from ..errors import ReportError
from ..figures import REPORT_SECTIONS, figure_split, selection_figure
from ..storage import atomic_write_text, reason
from .plots import write_run_plots

SIDES = ("representation", "projection")


def metric(report: Dict[str, Any], where: Sequence[str]) -> float | None:
    """The number at the path `where` of the report (e.g. ("linear_probe", "top1")); None if absent."""
    node: Any = report
    for key in where:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


SPLIT_WORDS = {"validation": "the validation split (a held-out part of the train split)",
               "train": "the train split, without labels", "nodes": "every node, without labels", "none": "no split"}


def objective_section(report: Dict[str, Any], key: str, held_out: bool) -> Dict[str, Any]:
    """report.json's "objective": the figure a search reads for eval.objective_metric=`key`
    (figures.selection_figure: never the test split's), which it is ("from"), its split and value
    (None, with "why", when the run has none). `held_out`: dataset.holdout made the test split
    held-out train images."""
    source = selection_figure(key, held_out)
    split = "validation" if held_out and figure_split(key) == "test" else figure_split(source or key)
    section = {"metric": key, "from": source, "split": split,
               "value": metric(report, source.split(".")) if source else None}
    if source is None:
        section["why"] = (f"{key} is scored on the test split and has no validation figure: set dataset.holdout "
                          "to score it on held-out train images")
    elif section["value"] is None:
        section["why"] = f"this run's report has no {source}"
    return section


def objective_line(section: Dict[str, Any]) -> str:
    """report.md's line on what a search reads from this run."""
    key, source, value = section["metric"], section["from"], section["value"]
    if value is None:
        return f"A search on eval.objective_metric={key} gets NaN from this run: {section['why']}."
    where = SPLIT_WORDS.get(section["split"], section["split"])
    tail = "the test split's figures are final scores, not used to select"
    if source == key and section["split"] == "validation" and figure_split(key) == "test":   # dataset.holdout
        where, tail = "dataset.holdout's held-out train images", "this run does not read the test split"
    return f"A search on eval.objective_metric={key} reads {source} = {value:.4g}, scored on {where}; {tail}."


def selected(report: Dict[str, Any], key: str) -> Dict[str, Any]:
    """The report's "objective" for eval.objective_metric=`key`; objective_section without
    dataset.holdout when it has none for that key (an older report, another key)."""
    section = report.get("objective")
    if isinstance(section, dict) and section.get("metric") == key:
        return section
    return objective_section(report, key, held_out=False)


def objective_value(report: Dict[str, Any] | None, key: str, run_dir: Path) -> float:
    """The figure a search reads for eval.objective_metric=`key`, never the test split's (selected),
    what `specrep train` returns to Hydra's sweepers; read from run_dir/report.json when the report was
    written by a spawned rank. NaN, with a warning naming the key, when there is no such figure
    (Optuna records such a trial as failed and goes on)."""
    if report is None and (Path(run_dir) / "report.json").is_file():
        report = json.loads((Path(run_dir) / "report.json").read_text())
    report = report or {}
    section = selected(report, key)
    if section["value"] is None:
        logging.getLogger("specrep").warning(
            f"eval.objective_metric={key}: {section['why']} (the report has "
            f"{', '.join(k for k in REPORT_SECTIONS if k in report)}): returning NaN to Hydra")
        return math.nan
    return float(section["value"])


def _rows(report: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(metric, value) rows of the main table."""
    probe, knn = report["linear_probe"], report["knn"]
    protocol = f" ({probe['protocol']})" if "protocol" in probe else ""
    if "skipped" in probe:   # no labels
        rows = [("linear probe, kNN", f"none: {probe['skipped']}")]
    else:
        rows = [(f"linear probe top-1{protocol}", f"{probe['top1']:.2f} %"),
                (f"linear probe top-5{protocol}", f"{probe['top5']:.2f} %"),
                (f"kNN top-1 (k={knn['k']})", f"{knn['top1']:.2f} %")]
    if "zero_shot" in report:
        rows += [("zero-shot top-1", f"{report['zero_shot']['top1']:.2f} %"),
                 ("zero-shot top-5", f"{report['zero_shot']['top5']:.2f} %")]
    for direction, name in (("image_to_text", "image->text"), ("text_to_image", "text->image")):
        if direction in report.get("retrieval", {}):
            rows.append((f"{name} recall@1/5/10",
                         " / ".join(f"{v:.1f}" for v in report["retrieval"][direction].values()) + " %"))
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


def _diagnostic_rows(report: Dict[str, Any]) -> List[Tuple[str, str, str]]:
    """(diagnostic, representation, projection) rows; empty without a spectrum."""
    spectra = report.get("spectrum")
    if not spectra:
        return []

    def both(fmt) -> Tuple[str, str]:
        return tuple(fmt(spectra[side]) if side in spectra else "-" for side in SIDES)

    rows = [("dimension", *both(lambda s: str(len(s["eigenvalues"])))),
            ("effective rank", *both(lambda s: f"{s['effective_rank']:.1f}"))]
    for top in spectra[SIDES[0]]["top_variance_share"]:
        rows.append((f"variance in the top {top} direction{'s' if top != '1' else ''}",
                     *both(lambda s, top=top: f"{100 * s['top_variance_share'][top]:.1f} %")))
    rows.append(("orthonormality error", *both(lambda s: f"{s['orthonormality_error']:.3g}")))
    for key, text in (("alignment", "alignment (lower: views closer)"),
                      ("uniformity", "uniformity (lower: more uniform)")):
        if key in report:
            rows.append((text, *(f"{report[key][side]:.3f}" for side in SIDES)))
    return rows


def graph_lines(graph: Dict[str, Any]) -> List[str]:
    """report.md's section on a graph: phi against the truth (eval/graph_truth.py)."""
    if "skipped" in graph:
        return ["", "## The graph's eigenspace", "", graph["skipped"]]
    ey = graph["eckart_young"]
    lines = ["", "## The graph's eigenspace", "",
             f"phi of every node against the top-{graph['d']} eigenvectors of D^-1/2 A D^-1/2 "
             f"({graph['nodes']} nodes, {graph['edges']} edges), rows weighted u_x = sqrt(p(x)) phi(x).", "",
             "| figure | value |", "| --- | --- |",
             f"| subspace alignment (mean cos^2 of the principal angles) | {graph['subspace_alignment']:.4f} |",
             f"| eigenvalue error (mean abs, learned vs true) | {graph['eigenvalue_error']:.4f} |",
             f"| eigengap lambda_d - lambda_(d+1) | {graph['eigengap']:.4f} |",
             f"| kernel reconstruction error (relative; best rank-d: {ey['best']:.4f}) | {ey['relative_error']:.4f} |",
             *convergence_rows(graph.get("convergence")),
             "", "| k | learned eigenvalue | true eigenvalue | coordinate k vs eigenvector k (cos^2) |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {k + 1} | {a:.4f} | {b:.4f} | {c:.3f} |" for k, (a, b, c) in
              enumerate(zip(graph["learned_spectrum"], graph["true_spectrum"], graph["per_coordinate"]))]
    lines += ["", "| eigenspace (coordinates) | eigenvalue | alignment |", "| --- | --- | --- |"]
    lines += [f"| {s['coordinates'][0] + 1}..{s['coordinates'][1]} | {s['eigenvalue']:.4f} | {s['alignment']:.3f} |"
              for s in graph["eigenspaces"]]
    if graph.get("ritz_eigenspaces"):   # eval.ritz
        ritz = graph["ritz_spectrum"]
        lines += ["", "The Ritz-ordered functions of phi (Rayleigh-Ritz) in the same positions:", "",
                  "| eigenspace (positions) | true eigenvalue | Ritz values | alignment |", "| --- | --- | --- | --- |"]
        lines += [f"| {a + 1}..{b} | {s['eigenvalue']:.4f} | {', '.join(f'{v:.4f}' for v in ritz[a:b])} | "
                  f"{s['alignment']:.3f} |" for s in graph["ritz_eigenspaces"] for a, b in [s["coordinates"]]]
    lines += [f"\n**Warning:** {w}" for w in graph.get("warnings", [])]
    return lines


def bipartite_lines(section: Dict[str, Any]) -> List[str]:
    """report.md's section on two towers on a bipartite graph: phi and nu against the top-d singular
    vectors of D_x^-1/2 A D_y^-1/2 (eval/bipartite_truth.py)."""
    head = ["", "## The bipartite graph's singular vectors", ""]
    if "skipped" in section:
        return [*head, section["skipped"]]
    ey, phi, nu = section["eckart_young"], section["phi"]["subspace_alignment"], section["nu"]["subspace_alignment"]
    lines = [*head, f"phi at the {section['nodes_x']} x nodes and nu at the {section['nodes_y']} y nodes "
             f"({section['edges']} edges) against the top-{section['d']} left and right singular vectors of "
             "D_x^-1/2 A D_y^-1/2, rows weighted by sqrt(p(x)) and sqrt(p(y)).", "",
             "| figure | value |", "| --- | --- |",
             f"| phi: subspace alignment (mean cos^2 of the principal angles) | {phi:.4f} |",
             f"| nu: subspace alignment | {nu:.4f} |",
             f"| singular value error (mean abs, learned vs true) | {section['singular_value_error']:.4f} |",
             f"| singular gap s_d - s_(d+1) | {section['singular_gap']:.4f} |",
             f"| kernel reconstruction error (relative; best rank-d: {ey['best']:.4f}) | {ey['relative_error']:.4f} |",
             *convergence_rows(section.get("convergence")),
             "", "| k | learned singular value | true singular value |", "| --- | --- | --- |"]
    lines += [f"| {k + 1} | {a:.4f} | {b:.4f} |" for k, (a, b) in
              enumerate(zip(section["learned_singular_values"], section["true_singular_values"]))]
    return lines + [f"\n**Warning:** {w}" for w in section.get("warnings", [])]


def convergence_rows(section: Dict[str, Any] | None) -> List[str]:
    """The graph table's row on the loss trend (eval/convergence.py): none for `specrep eval`."""
    if section is None or section["converged"] is None:
        return []
    trend = ", ".join(f"{v:.4g} ({k})" for k, v in section["losses"].items())
    return [f"| converged (the loss over the last quarter of the epochs) | "
            f"{'yes' if section['converged'] else '**not converged**'}: {trend} |"]


def _percent(value: float | None) -> str:
    """A top-1 figure for report.md's tables; "-" where there is none."""
    return "-" if value is None else f"{value:.2f} %"


def ritz_lines(ritz: Dict[str, Any], shown: int = 16) -> List[str]:
    """report.md's section on Rayleigh-Ritz: the Ritz values (the first `shown`), their effective
    dimension, and the prefix curve (probe and kNN on the first k Ritz-ordered functions)."""
    values = ritz["values"]
    condition = "infinite" if ritz.get("condition") is None else f"{ritz['condition']:.3g}"
    lines = ["", "## Rayleigh-Ritz", "",
             f"The operator of the run's pairs ({ritz['pairs']} pairs: {ritz['kind']}) within the span of h: "
             f"{len(values)} Ritz values, largest first; effective dimension {ritz['effective_dim']:.2f}, "
             f"condition number of C {condition}.", "",
             " ".join(f"{v:.4f}" for v in values[:shown]) + (" ..." if len(values) > shown else "")]
    if ritz.get("prefix"):
        lines += ["", "The fast probe and the kNN on the first k Ritz-ordered functions h @ v_1..v_k:", "",
                  "| k | probe top-1 | kNN top-1 |", "| --- | --- | --- |"]
        lines += [f"| {p['k']} | {p['probe_top1']:.2f} % | {_percent(p['knn_top1'])} |" for p in ritz["prefix"]]
        if "dims_for_95" in ritz:
            lines += ["", f"The first {ritz['dims_for_95']} ordered functions reach 95 % of the probe on all "
                          f"{ritz['prefix'][-1]['k']}."]
        if ritz.get("pca_prefix"):   # eval.ritz_pca_prefix
            lines += ["", f"By variance instead (h's first k principal components), the probe needs "
                          f"{ritz['pca_dims_for_95']}: " + ", ".join(f"k = {p['k']}: {p['probe_top1']:.2f} %"
                                                                    for p in ritz["pca_prefix"]) + "."]
    elif ritz.get("prefix_skipped"):
        lines += ["", f"No prefix curve: {ritz['prefix_skipped']}."]
    lines += [f"\n**Warning:** {w}" for w in ritz.get("warnings", [])]
    return lines


def _settings(report: Dict[str, Any]) -> List[Tuple[str, str]]:
    return [(k, str(v)) for k, v in report["run"].items() if v is not None]


def reproduce_command(run_dir: Path, report: Dict[str, Any]) -> str:
    """The command that makes this run again: `specrep train` (`specrep eval` for a report of `specrep
    eval`, whose run names a checkpoint) with the run's overrides from .hydra/overrides.yaml, shell-quoted."""
    command = "specrep eval" if "checkpoint" in report.get("run", {}) else "specrep train"
    try:
        overrides = yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        overrides = None
    if not isinstance(overrides, list):   # started from Python, not from the command line
        if command == "specrep eval":
            return f"{command} {shlex.quote('checkpoint=' + str(report['run']['checkpoint']))}"
        return f"{command}   # its overrides are not recorded: no .hydra/overrides.yaml in {run_dir}"
    return " ".join([command, *(shlex.quote(str(o)) for o in overrides)])


def write_report(run_dir: Path, report: Dict[str, Any]) -> None:
    """Write the plots (plots.write_run_plots), report.md, which embeds them, and report.json into
    run_dir, each atomically and report.json last (what `specrep report` takes for a finished run).
    A file that cannot be written (a full disk) is a ReportError; no partial or empty file is left."""
    run_dir = Path(run_dir)
    plots = write_run_plots(run_dir, report)
    lines = ["# specrep report", "", "Made by:", "", "```bash", reproduce_command(run_dir, report), "```", "",
             "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _rows(report)]
    if "objective" in report:
        lines += ["", objective_line(report["objective"])]
    diagnostics = _diagnostic_rows(report)
    if diagnostics:
        lines += ["", "## Spectral diagnostics", "",
                  "Covariance eigenvalues of the train split's features; alignment and uniformity "
                  "(Wang & Isola 2020) of two augmented views of test images.", "",
                  "| diagnostic | representation | projection |", "| --- | --- | --- |"]
        lines += [f"| {name} | {rep} | {proj} |" for name, rep, proj in diagnostics]
    if "graph" in report:
        lines += graph_lines(report["graph"])
    if "bipartite" in report:
        lines += bipartite_lines(report["bipartite"])
    if "ritz" in report:
        lines += ritz_lines(report["ritz"])
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{caption}]({path})\n" for caption, path in plots]
    lines += ["", "## Run", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in _settings(report)]
    try:
        atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")
        atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    except OSError as err:
        raise ReportError(f"cannot write the report into {run_dir} ({reason(err)}): report.json was not "
                          "written (an earlier one is intact); free some space") from None


def print_report(report: Dict[str, Any], console: Console | None = None) -> None:
    """The main metrics, and the spectral diagnostics when there are any, as rich tables."""
    console = console or Console()
    run = report["run"]
    title = f"{run.get('objective')} / {run.get('encoder')} on {run.get('dataset')}"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in _rows(report):
        table.add_row(k, v)
    console.print(table)
    if "objective" in report:
        console.print(objective_line(report["objective"]), soft_wrap=True)
    diagnostics = _diagnostic_rows(report)
    if diagnostics:
        table = Table(title="spectral diagnostics", show_header=True, header_style="bold")
        table.add_column("diagnostic")
        table.add_column("representation", justify="right")
        table.add_column("projection", justify="right")
        for row in diagnostics:
            table.add_row(*row)
        console.print(table)
