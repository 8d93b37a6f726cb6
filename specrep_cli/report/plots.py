"""Plots for people, as PNG files drawn on matplotlib's Agg canvas (headless: no display, no pyplot state).

    write_run_plots(run_dir, report)    # run_dir/plots/{loss,lr,monitor,spectrum,graph,ritz}.png, those with data
    write_bar_plot(path, labels, bars)  # grouped horizontal bars with error bars (specrep report)

Inputs are plain data: the records of metrics.jsonl (metrics.py) and the report dict (report.py).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..storage import atomic_write
from .metrics import NOT_TERMS, read_step_records


def _figure(width: float, height: float, rows: int = 1, sharex: bool = True):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))   # a full disk: no partial PNG
    return path


def plot_losses(records: Sequence[Dict[str, Any]], path: Path) -> Path | None:
    """One panel per loss term against the step (mean over each logging interval)."""
    terms = [k for k in records[0] if k not in NOT_TERMS] if records else []
    if not terms:
        return None
    steps = [r["step"] for r in records]
    fig, axes = _figure(7, 1.0 + 1.8 * len(terms), rows=len(terms))
    for ax, term in zip(axes, terms):
        ax.plot(steps, [r.get(term, math.nan) for r in records], marker="." if len(steps) < 30 else None)
        ax.set_ylabel(term)
        ax.grid(alpha=0.3)
    axes[0].set_title("loss terms per step")
    axes[-1].set_xlabel("step")
    return _save(fig, path)


def plot_lr(records: Sequence[Dict[str, Any]], path: Path) -> Path | None:
    """The learning rate against the step."""
    if not records:
        return None
    fig, (ax,) = _figure(7, 2.6)
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["lr"] for r in records], marker="." if len(steps) < 30 else None)
    ax.set(title="learning rate per step", xlabel="step", ylabel="lr")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def monitor_subset(monitor_images: int | None) -> str:
    """Which images the monitor's kNN is on (validation images carved from the train split, never the
    test split), and why its figure is not the final kNN's."""
    bank = f"{monitor_images}" if monitor_images else "eval.monitor_images"
    val = f"{max(1, monitor_images // 2)}" if monitor_images else "half as many"
    return (f"validation kNN on fixed parts of the train split (eval.monitor_images): up to {val} validation images "
            f"against up to {bank} others,\nso fewer neighbours and other images than the final kNN on the full "
            "splits, whose figure differs")


def plot_monitor(history: Sequence[Dict[str, Any]], path: Path, random_init: Dict[str, Any] | None = None,
                 monitor_images: int | None = None) -> Path | None:
    """The validation kNN top-1 (monitoring subset) and the effective rank of h and z against the epoch;
    the final report's random-init figures (full splits) as horizontal reference lines."""
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    fig, (top, bottom) = _figure(7, 5.0, rows=2)
    top.plot(epochs, [h["knn_top1"] for h in history], marker="o",
             label="trained encoder, validation (monitoring subset)")
    for key, style, name in (("knn_top1", "--", "kNN"), ("linear_probe_top1", ":", "linear probe")):
        value = (random_init or {}).get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            top.axhline(value, color="grey", linestyle=style,
                        label=f"random init, final {name} top-1 (full splits): {value:.1f} %")
    top.set(title=monitor_subset(monitor_images), ylabel="kNN top-1 (%)")
    top.title.set_fontsize("small")
    top.legend(fontsize="small")
    bottom.plot(epochs, [h["effective_rank_representation"] for h in history], marker="o",
                label="representation h")
    bottom.plot(epochs, [h["effective_rank_projection"] for h in history], marker="o", label="projection z")
    bottom.set(xlabel="epoch", ylabel="effective rank")
    bottom.legend()
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_spectrum(spectra: Dict[str, Dict[str, Any]], path: Path) -> Path | None:
    """Share of variance lambda_i / sum_j lambda_j of each covariance eigenvalue, descending, log scale."""
    fig, (ax,) = _figure(7, 3.6)
    drawn = False
    for name, spec in spectra.items():
        eig = spec.get("eigenvalues") or []
        total = sum(eig)
        points = [(i + 1, v / total) for i, v in enumerate(eig) if total > 0 and v > 0]
        if points:
            ax.plot(*zip(*points), label=f"{name} (D={len(eig)}, effective rank {spec['effective_rank']:.1f})")
            drawn = True
    if not drawn:
        return None
    ax.set_yscale("log")
    ax.set(title="covariance spectrum (train split)", xlabel="eigenvalue index (descending)",
           ylabel="share of variance")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def plot_graph(graph: Dict[str, Any], path: Path) -> Path | None:
    """A graph run: the learned spectrum beside the true top-d, and each coordinate's cos^2 with its eigenvector."""
    if not graph or "skipped" in graph:
        return None
    fig, (top, bottom) = _figure(7, 5.4, rows=2)
    k = range(1, graph["d"] + 1)
    top.plot(k, graph["true_spectrum"], "o-", label="true (top-d of D^-1/2 A D^-1/2)")
    top.plot(k, graph["learned_spectrum"], "s--", label="learned (of sum_x p(x) phi phi^T)")
    ritz = graph.get("ritz_spectrum") or []   # eval.ritz: the Ritz values of h
    if ritz:
        top.plot(range(1, len(ritz) + 1), ritz, "^:", label="Ritz values of h")
    top.set(title=f"spectrum: subspace alignment {graph['subspace_alignment']:.3f}", ylabel="eigenvalue")
    top.legend()
    for i, space in enumerate(graph.get("eigenspaces", [])):   # a degenerate group: only its span is defined
        start, end = space["coordinates"]
        bottom.bar([c + 1 for c in range(start, end)], [space["alignment"]] * (end - start), width=0.9,
                   color="tab:green", alpha=0.6, label="eigenspace alignment (its coordinates)" if i == 0 else None)
    for i, space in enumerate(graph.get("ritz_eigenspaces", [])):   # eval.ritz: the Ritz order's
        start, end = space["coordinates"]
        bottom.hlines(space["alignment"], start + 0.55, end + 0.45, colors="tab:red", linewidth=2.5,
                      label="eigenspace alignment (Ritz-ordered h)" if i == 0 else None)
    bottom.plot(k, graph["per_coordinate"], "kD", label="cos^2(coordinate k, eigenvector k)")
    bottom.set(xlabel="k", ylabel="alignment", ylim=(0, 1.45 if graph.get("ritz_eigenspaces") else 1.3))
    bottom.legend(loc="upper center", ncol=2, fontsize="small")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_ritz(ritz: Dict[str, Any], path: Path, random_init: Dict[str, Any] | None = None) -> Path | None:
    """Rayleigh-Ritz: the Ritz values against their index, and (labelled data) the prefix curve, the
    probe's and the kNN's top-1 on the first k Ritz-ordered functions against k (log scale), with the
    random initialisation's probe and kNN on all of h (report.json's random_init) as reference lines."""
    values = ritz.get("values") or []
    if not values:
        return None
    prefix = ritz.get("prefix") or []
    fig, axes = _figure(7, 5.4 if prefix else 3.0, rows=2 if prefix else 1, sharex=False)
    axes[0].plot(range(1, len(values) + 1), values, "o-", markersize=3)
    axes[0].set(title=f"Ritz values ({ritz.get('kind')} pairs; effective dimension {ritz['effective_dim']:.1f})",
                xlabel="k (Ritz order)", ylabel="Ritz value")
    if prefix:
        ks = [p["k"] for p in prefix]
        axes[1].plot(ks, [p["probe_top1"] for p in prefix], "o-", label="linear probe (fast)")
        knn = [p for p in prefix if p.get("knn_top1") is not None]   # none at k = 1 (a sign)
        axes[1].plot([p["k"] for p in knn], [p["knn_top1"] for p in knn], "s--", label="kNN")
        for key, name, style in (("linear_probe_top1", "probe", ":"), ("knn_top1", "kNN", "-.")):
            if (value := (random_init or {}).get(key)) is not None:
                axes[1].axhline(value, color="grey", linestyle=style,
                                label=f"random init, {name} on all of h: {value:.1f} %")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xticks(ks, [str(k) for k in ks])
        axes[1].set(title="test top-1 on the first k Ritz-ordered functions", xlabel="k", ylabel="top-1 (%)")
        axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _monitor_images(run_dir: Path) -> int | None:
    """eval.monitor_images of the run's .hydra/config.yaml; None when it cannot be read."""
    try:
        value = yaml.safe_load((Path(run_dir) / ".hydra" / "config.yaml").read_text())["eval"]["monitor_images"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) else None


def write_run_plots(run_dir: Path, report: Dict[str, Any]) -> List[Tuple[str, str]]:
    """Draw every plot the run has data for into run_dir/plots; (caption, path relative to run_dir) each.

    A plot that cannot be drawn is a warning, not an error: the run's numbers are in report.json already.
    """
    run_dir = Path(run_dir)
    records = read_step_records(run_dir / "metrics.jsonl")
    plots = [("loss terms per step", plot_losses, records, "loss.png"),
             ("learning rate per step", plot_lr, records, "lr.png"),
             ("kNN top-1 and effective rank per epoch (monitoring subset; the random-init lines: final figures)",
              lambda history, path: plot_monitor(history, path, report.get("random_init"), _monitor_images(run_dir)),
              report.get("history") or [], "monitor.png"),
             ("covariance spectrum of the representation and the projection", plot_spectrum,
              report.get("spectrum") or {}, "spectrum.png"),
             ("a graph's learned vs true spectrum and per-coordinate alignment", plot_graph,
              report.get("graph") or {}, "graph.png"),
             ("Ritz values and the probe and kNN on the first k Ritz-ordered functions (grey: the random init)",
              lambda ritz, path: plot_ritz(ritz, path, report.get("random_init")),
              report.get("ritz") or {}, "ritz.png")]
    drawn = []
    for caption, draw, data, name in plots:
        try:
            path = draw(data, run_dir / "plots" / name)
        except Exception as err:   # matplotlib's errors have many types
            logging.getLogger("specrep").warning(f"could not draw plots/{name}: {err}")
            continue
        if path is not None:
            drawn.append((caption, path.relative_to(run_dir).as_posix()))
    return drawn


def spread_title(stds: Sequence[float | None], over: str = "seeds") -> str:
    """The bar plot's title: '± std' only where some group has one (n > 1; a nan std is n = 1)."""
    spread = [s is not None and not math.isnan(s) for s in stds]
    if not any(spread):
        return "one sample per group (n = 1: no std)"
    return f"mean ± std over {over}" + ("" if all(spread) else " (no error bar: n = 1)")


def write_bar_plot(path: Path, labels: Sequence[str], bars: Dict[str, Tuple[Sequence[float], Sequence[float]]],
                   xlabel: str = "top-1 (%)", references: Dict[str, Sequence[float | None]] | None = None,
                   over: str = "seeds") -> Path:
    """Horizontal grouped bars, one group per label, one bar per series name -> (means, stds), with
    error bars of one std (none where the std is nan: a single run); `references` (series name ->
    a value per group, e.g. its random-init figure) as a black line across each bar."""
    n, k = len(labels), len(bars)
    fig, (ax,) = _figure(8, 1.2 + 0.35 * n * k + 0.2 * n)
    height = 0.8 / k
    labelled = False
    for j, (name, (means, stds)) in enumerate(bars.items()):
        ys = [i + (j - (k - 1) / 2) * height for i in range(n)]
        errors = [0.0 if s is None or math.isnan(s) else s for s in stds]
        ax.barh(ys, means, height=height, xerr=errors, capsize=3, label=name)
        for y, ref in zip(ys, (references or {}).get(name, [])):
            if ref is not None and math.isfinite(ref):
                ax.vlines(ref, y - height / 2, y + height / 2, colors="black", linewidth=2,
                          label=None if labelled else "random init (same protocol)")
                labelled = True
    ax.set_yticks(range(n), [label if len(label) <= 60 else label[:57] + "..." for label in labels])
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=spread_title([s for _, stds in bars.values() for s in stds], over))
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right")
    return _save(fig, Path(path))
