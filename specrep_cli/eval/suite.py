"""The evaluation of a run, shared by the end of training and `specrep eval`, and the monitoring pass.

    report = evaluate_run(towers, data, cfg.eval, reader, seed, views, run_dir, header)
        features of the train and test splits once (kept on the device), then the probe of
        eval.protocol and the kNN on the representation h, the spectra of h and z, alignment and
        uniformity over two views, the random-init baseline (eval.random_init), zero-shot and
        retrieval for image-text towers; then report.json, report.md and plots/ in run_dir.
    watched = monitor(encoder, data, cfg.eval, compute)   # kNN top-1 and effective ranks on a subset
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict

import torch
from rich.console import Console
from torch import Tensor, nn

from ..config import AugmentationConfig, EvalConfig, ObjectiveConfig, SpectralConfig
from ..data.graphs import GraphData
from ..data.splits import ImageData
from ..data.tokenizer import Tokenizer
from ..errors import ReportError
from ..report.report import print_report, write_report
from ..runtime import Compute
from ..storage import atomic_write, reason
from .features import FeatureReader
from .graph_truth import graph_report
from .probes import knn_top1, linear_probe, standard_probe
from .spectra import alignment, effective_rank, spectrum, uniformity
from .zeroshot import evaluate_two_towers

NO_LABELS = "the dataset has no labels (an unlabelled folder, or captions without classes): no probe was possible"


@dataclass
class Towers:
    """What a run's evaluation scores: phi (the probed tower), a maker of its random initialisation
    (the baseline), and for image-text runs the text tower with its tokenizer."""
    encoder: nn.Module
    fresh: Callable[[], nn.Module]
    text: nn.Module | None = None
    tokenizer: Tokenizer | None = None
    context_length: int = 0
    mu: float | None = None    # the norm cap |phi|^2 <= mu phi was trained under (spectral), for a graph's report


def norm_cap(objective: ObjectiveConfig) -> float | None:
    """The cap |phi(x)|^2 <= mu of objective=spectral (its rows are projected onto that ball); None otherwise."""
    return float(objective.mu) if isinstance(objective, SpectralConfig) else None


def monitor(encoder: nn.Module, data: ImageData, cfg: EvalConfig, compute: Compute) -> Dict[str, float]:
    """The cheap in-training check: kNN top-1 on a fixed subset, effective rank of h and z."""
    n_train = min(cfg.monitor_images, data.train_images.shape[0])
    n_test = min(max(1, cfg.monitor_images // 2), data.test_images.shape[0])
    g = torch.Generator().manual_seed(0)   # the same subset at every epoch and in every run
    train_idx = torch.randperm(data.train_images.shape[0], generator=g)[:n_train]
    test_idx = torch.randperm(data.test_images.shape[0], generator=g)[:n_test]
    reader = FeatureReader(compute, data.mean, data.std, cfg.batch_size)
    split = data.train_images
    if isinstance(data, GraphData) and not data.labelled:   # no labelled split: the ranks over every node
        split, train_idx = data.inputs, torch.randperm(data.graph.num_nodes, generator=g)[:cfg.monitor_images]
    h_train, z_train = reader.features(encoder, split, train_idx)
    knn = math.nan   # no labels (an unlabelled folder alone): nothing to vote with
    if data.labelled:
        h_test, _ = reader.features(encoder, data.test_images, test_idx)
        device = compute.device
        knn = knn_top1(h_train, data.train_labels[train_idx].to(device), h_test,
                       data.test_labels[test_idx].to(device), len(data.classes), cfg.knn)
    return {"knn_top1": knn, "effective_rank_representation": effective_rank(h_train),
            "effective_rank_projection": effective_rank(z_train), "projection_dim": z_train.shape[1]}


def evaluate_encoder(encoder: nn.Module, data: ImageData, cfg: EvalConfig, reader: FeatureReader, seed: int,
                     views: AugmentationConfig | None = None, diagnostics: bool = True, mu: float | None = None) -> Dict[str, Any]:
    """Features of the train and test splits once (kept on the device), then, on the representation h:
    the probe of cfg.probe.protocol and the kNN (a dataset without labels: both marked skipped); with
    `diagnostics`, the spectrum of h and of the projection z (train split) and, given `views` (an
    augmentation config), alignment and uniformity of h and z over two views of a fixed subset of
    cfg.alignment_images test images. A graph: the spectra over every node, and instead of the views'
    figures the "graph" section (graph_truth.graph_report: phi against the top eigenvectors)."""
    graph = isinstance(data, GraphData)
    if graph:   # every node once; the probe's train split is a part of them
        all_h, all_z = reader.features(encoder, data.inputs)
        train = data.train_nodes.to(all_h.device)
        train_h, train_z = all_h[train], all_z[train]
    else:
        train_h, train_z = reader.features(encoder, data.train_images)
    if data.labelled:
        results = probe_and_knn(encoder, data, cfg, reader, seed, train_h)
    else:
        results = {"linear_probe": {"skipped": NO_LABELS}, "knn": {"skipped": NO_LABELS}}
    if diagnostics and graph:
        results["spectrum"] = {"representation": spectrum(all_h), "projection": spectrum(all_z)}
        results["graph"] = graph_report(data.graph, all_z, mu)
    elif diagnostics:
        results["spectrum"] = {"representation": spectrum(train_h), "projection": spectrum(train_z)}
        results.update(view_diagnostics(encoder, data, cfg, reader, views))
    return results


def probe_and_knn(encoder: nn.Module, data: ImageData, cfg: EvalConfig, reader: FeatureReader, seed: int,
                  train_h: Tensor) -> Dict[str, Any]:
    """The probe of cfg.probe.protocol and the kNN on h (train_h: the train split's, already extracted)."""
    test_h, _ = reader.features(encoder, data.test_images)
    device = reader.compute.device
    train_y, test_y = data.train_labels.to(device), data.test_labels.to(device)
    k = len(data.classes)
    t0 = time.perf_counter()
    if cfg.probe.protocol == "standard":
        probe = standard_probe(encoder, data, train_h, test_h, cfg.probe.standard, reader, seed)
        probe["epochs"] = cfg.probe.standard.epochs
    else:
        probe = linear_probe(train_h, train_y, test_h, test_y, k, cfg.probe.fast, seed)
    probe = {**probe, "protocol": cfg.probe.protocol, "seconds": time.perf_counter() - t0}
    knn = knn_top1(train_h, train_y, test_h, test_y, k, cfg.knn)
    return {"linear_probe": probe, "knn": {"top1": knn, "k": min(cfg.knn.k, len(train_y)),
                                           "temperature": cfg.knn.temperature}}


def view_diagnostics(encoder: nn.Module, data: ImageData, cfg: EvalConfig, reader: FeatureReader,
                     views: AugmentationConfig | None) -> Dict[str, Any]:
    """Alignment and uniformity of h and z over two views (`views`, an augmentation config; none:
    nothing) of a fixed subset of cfg.alignment_images test images."""
    n = min(cfg.alignment_images, data.test_images.shape[0])
    if views is None or n < 2:
        return {}
    order = torch.randperm(data.test_images.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    (h_a, z_a), (h_b, z_b) = reader.view_features(encoder, data.test_images, order, views, seed=0)
    return {"alignment": {"representation": alignment(h_a, h_b), "projection": alignment(z_a, z_b)},
            "uniformity": {"representation": (uniformity(h_a) + uniformity(h_b)) / 2,
                           "projection": (uniformity(z_a) + uniformity(z_b)) / 2}}


def evaluate_towers(towers: Towers, data: ImageData, cfg: EvalConfig, reader: FeatureReader, seed: int,
                    views: AugmentationConfig | None = None) -> Dict[str, Any]:
    """evaluate_encoder on phi; on its random initialisation (probe and kNN, same protocol) when
    cfg.random_init; zero-shot and retrieval when there is a text tower."""
    results = evaluate_encoder(towers.encoder, data, cfg, reader, seed, views, mu=towers.mu)
    if cfg.random_init and data.labelled:
        baseline = evaluate_encoder(towers.fresh(), data, cfg, reader, seed, diagnostics=False)
        results["random_init"] = {"linear_probe_top1": baseline["linear_probe"]["top1"],
                                  "knn_top1": baseline["knn"]["top1"]}
    if towers.text is not None:
        results.update(evaluate_two_towers(towers.encoder, towers.text, towers.tokenizer,
                                           towers.context_length, data, cfg, reader))
    return results


def evaluate_run(towers: Towers, data: ImageData, cfg: EvalConfig, reader: FeatureReader, seed: int,
                 views: AugmentationConfig | None,
                 run_dir: Path, header: Dict[str, Any], console: Console | None = None) -> Dict[str, Any]:
    """evaluate_towers, then the report: header's "run" (the settings), the results, header's
    "history" and "timing" with the evaluation's seconds added; written into run_dir and printed."""
    t0 = time.perf_counter()
    results = evaluate_towers(towers, data, cfg, reader, seed, views)
    report = {"run": header["run"], **results, "history": header.get("history", []),
              "timing": {**header.get("timing", {}), "eval_seconds": time.perf_counter() - t0}}
    if isinstance(data, GraphData):
        write_embeddings(Path(run_dir) / "embeddings.pt", towers.encoder, data, reader)
    write_report(run_dir, report)   # report.json, plots/ (from metrics.jsonl and the report), report.md
    print_report(report, console)
    return report


def write_embeddings(path: Path, encoder: nn.Module, data: GraphData, reader: FeatureReader) -> None:
    """A graph's node embeddings, loadable with torch.load(path, weights_only=True):
    {"nodes": [names, in row order], "phi": (n, d) float32, the projection, "h": (n, r) the representation}."""
    h, z = reader.features(encoder, data.inputs)
    embeddings = {"nodes": list(data.graph.names), "phi": z.cpu(), "h": h.cpu()}
    try:
        atomic_write(path, lambda f: torch.save(embeddings, f))
    except OSError as err:
        raise ReportError(f"cannot write {path} ({reason(err)}): free some space") from None
