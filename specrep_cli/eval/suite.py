"""The evaluation of a run, shared by the end of training and `specrep eval`, and the monitoring pass.

    evaluation = Evaluation(towers=towers, data=data, cfg=cfg.eval, reader=reader, seed=seed,
                            run_dir=run_dir, views=augmentation, console=console)
    report = evaluate_run(evaluation, header)
        the features of every split, once per tower (features.extract: phi's train and test splits, a
        graph's every node; text_features: the text tower's class prompts and test captions), read by
        the probe of eval.probe.protocol and the kNN on the representation h, the spectra of h and z,
        zero-shot and retrieval, a graph's truth and embeddings.pt; alignment and uniformity over two
        views; Rayleigh-Ritz on h (eval.ritz: pairs of the train split, then the prefix curve on the
        split features); a graph run's convergence (the loss trend of header["losses"]); the
        random-init baseline (eval.random_init) from its own features; then report.json, report.md
        and plots/ in run_dir.
    watched = monitor(encoder, data, cfg.eval, reader)   # validation kNN top-1 and effective ranks on a subset
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
from rich.console import Console
from torch import Tensor, nn

from ..config import AugmentationConfig, EvalConfig
from ..data.graphs import GraphData
from ..data.splits import ImageData
from ..errors import ReportError
from ..progress import quiet, stages
from ..report.report import objective_section, print_report, write_report
from ..storage import atomic_write, reason
from .bipartite_truth import bipartite_report, singular_truth
from .convergence import convergence
from .eigensolvers import Eigenpairs
from .features import FeatureReader, Features, Split, extract
from .graph_truth import graph_report, truth
from .probes import knn_top1, linear_probe, probe_split, standard_probe
from .ritz import Ritz, cross_moments_ritz, ritz
from .ritz_report import (
    Scorer,
    caption_pairs,
    cross_edge_moments,
    edge_moments,
    graph_ritz,
    prefix_probe,
    ritz_section,
    solve,
    view_pairs,
)
from .spectra import alignment, effective_rank, spectrum, uniformity
from .towers import Towers
from .zeroshot import TextFeatures, evaluate_two_towers, text_features

log = logging.getLogger("specrep")
NO_LABELS = "the dataset has no labels (an unlabelled folder, or captions without classes): no probe was possible"


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation reads: the towers, the data, the eval config, how features are taken
    (the reader: the run's normalisation), the seed of the probes, where the report goes, and the
    augmentation whose two views alignment and uniformity compare (None: not measured)."""
    towers: Towers
    data: ImageData
    cfg: EvalConfig
    reader: FeatureReader
    seed: int
    run_dir: Path
    views: AugmentationConfig | None = None
    console: Console | None = None


@dataclass(frozen=True)
class TowerFeatures:
    """The trained towers' features, each split encoded once per tower: phi's, the text tower's
    embeddings (image-text runs), and nu's at the y nodes (two towers on a bipartite graph)."""
    phi: Features
    text: TextFeatures | None = None
    nu: Split | None = None


def two_sided(evaluation: Evaluation) -> bool:
    """Whether the run is two towers phi(x), nu(y) on a bipartite graph's two node sets."""
    data = evaluation.data
    return evaluation.towers.nu is not None and isinstance(data, GraphData) and data.graph.bipartite


def extract_towers(evaluation: Evaluation) -> TowerFeatures:
    """phi's split features (the test split's when labels or a text tower read it), the text tower's
    embeddings, and on a bipartite graph nu's features at the y nodes."""
    towers, data, reader = evaluation.towers, evaluation.data, evaluation.reader
    phi = extract(towers.encoder, data, reader, test=data.labelled or towers.text is not None)
    text = text_features(towers.text, data, evaluation.cfg) if towers.text is not None else None
    nu = None
    if two_sided(evaluation):
        y_nodes = data.inputs[data.graph.num_x:]
        nu = Split(*reader.features(towers.nu, y_nodes, description="encoding the y nodes"))
    return TowerFeatures(phi, text, nu)


def monitor_split(n: int, monitor_images: int, labelled: bool = True) -> Tuple[Tensor, Tensor]:
    """(memory bank, validation) indices into the train split's n images for the monitor, fixed (seed
    0): a validation part of min(monitor_images // 2, n // 3) images (none without labels) whose labels
    the kNN predicts, and at most monitor_images of the others, which vote and give the effective ranks.
    Disjoint; the test split is never read."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    n_val = min(max(1, monitor_images // 2), n // 3) if labelled else 0
    return perm[n_val:n_val + monitor_images], perm[:n_val]


@quiet()   # every few epochs and short: what it finds is the line the loop logs
def monitor(encoder: nn.Module, data: ImageData, cfg: EvalConfig, reader: FeatureReader) -> Dict[str, float]:
    """The cheap in-training check, which also picks best.pt: the validation kNN top-1 (monitor_split:
    a fixed validation part of the train split against a memory bank of other train images, never the
    test split) and the effective ranks of h and z on the memory bank (features taken for this check only)."""
    split = data.train_images
    if isinstance(data, GraphData) and not data.labelled:   # no labelled split: the ranks over every node
        split = data.inputs
    bank, val = monitor_split(split.shape[0], cfg.monitor_images, data.labelled)
    h_bank, z_bank = reader.features(encoder, split, bank)
    knn = math.nan   # no labels (an unlabelled folder alone), or too few images: nothing to vote with
    if val.numel():
        h_val, _ = reader.features(encoder, split, val)
        device = reader.compute.device
        knn = knn_top1(h_bank, data.train_labels[bank].to(device), h_val, data.train_labels[val].to(device),
                       len(data.classes), cfg.knn)
    return {"knn_top1": knn, "effective_rank_representation": effective_rank(h_bank),
            "effective_rank_projection": effective_rank(z_bank), "projection_dim": z_bank.shape[1],
            "validation_images": val.numel(), "memory_bank_images": bank.numel()}


def evaluate_encoder(evaluation: Evaluation, encoder: nn.Module, features: Features,
                     nu: Split | None = None) -> Dict[str, Any]:
    """On the representation h of `features` (the encoder's, extracted once): the probe of
    cfg.probe.protocol and the kNN (a dataset without labels: both marked skipped); the spectrum of h
    and of the projection z (train split; a graph: every node) and alignment and uniformity over two
    views (evaluation.views) of a fixed subset of cfg.alignment_images test images; a graph has
    instead the "graph" section (graph_truth.graph_report: phi against the top eigenvectors), and a
    bipartite graph's two towers (`nu`: nu's features at the y nodes) the "bipartite" section
    (bipartite_truth.bipartite_report: phi and nu against the top singular vectors); with cfg.ritz,
    Rayleigh-Ritz (ritz_results). `encoder` itself only encodes augmented inputs: the
    standard probe's, the views' and the Ritz pairs'."""
    if evaluation.data.labelled:
        results = probe_and_knn(evaluation, encoder, features)
    else:
        results = {"linear_probe": {"skipped": NO_LABELS}, "knn": {"skipped": NO_LABELS}}
    graph = features.nodes is not None
    every = features.nodes if graph else features.train
    if nu is not None:   # two towers on a bipartite graph: phi at the x nodes (its rows of the y nodes are untrained)
        every = Split(every.h[:evaluation.data.graph.num_x], every.z[:evaluation.data.graph.num_x])
    results["spectrum"] = {"representation": spectrum(every.h), "projection": spectrum(every.z)}
    found = None
    if nu is not None:   # phi at the x nodes, nu at the y nodes, against the SVD
        g = evaluation.data.graph
        results["bipartite"] = bipartite_report(g, every.z, nu.z, singular_truth(g, nu.z.shape[1] + 1))
    elif graph:   # the truth once, for phi and for its Ritz-ordered functions
        wanted = every.z.shape[1] + 1
        found = truth(evaluation.data.graph, wanted, evaluation.cfg.truth_budget_s)
        results["graph"] = graph_report(evaluation.data.graph, every.z, evaluation.towers.mu,
                                        evaluation.cfg.truth_budget_s, found)
    else:
        results.update(view_diagnostics(evaluation, encoder))
    if evaluation.cfg.ritz:
        ritz_results(evaluation, encoder, features, results, found, nu)
    return results


def probe_and_knn(evaluation: Evaluation, encoder: nn.Module, features: Features,
                  validation: bool = True) -> Dict[str, Any]:
    """The probe of cfg.probe.protocol and the kNN on h of the train and test splits (`features`), and
    the kNN's validation figure (val_top1: the fast probe's held-out part of the train split against the
    rest), which a search reads instead of the test split's."""
    cfg, data, reader = evaluation.cfg, evaluation.data, evaluation.reader
    train_h, test_h = features.train.h, features.test.h
    device = reader.compute.device
    train_y, test_y = data.train_labels.to(device), data.test_labels.to(device)
    k = len(data.classes)
    t0 = time.perf_counter()
    if cfg.probe.protocol == "standard":
        probe = standard_probe(encoder, data, train_h, test_h, cfg.probe.standard, reader, evaluation.seed)
        probe["epochs"] = cfg.probe.standard.epochs
    else:
        probe = linear_probe(train_h, train_y, test_h, test_y, k, cfg.probe.fast, evaluation.seed)
    probe = {**probe, "protocol": cfg.probe.protocol, "seconds": time.perf_counter() - t0}
    knn = knn_top1(train_h, train_y, test_h, test_y, k, cfg.knn)
    knn_section = {"top1": knn, "k": min(cfg.knn.k, len(train_y)), "temperature": cfg.knn.temperature}
    if validation:   # what a search reads (the random-init baseline needs none)
        fit, val = (i.to(device) for i in probe_split(len(train_y), cfg.probe.fast.val_fraction, evaluation.seed))
        knn_section["val_top1"] = knn_top1(train_h[fit], train_y[fit], train_h[val], train_y[val], k, cfg.knn)
    return {"linear_probe": probe, "knn": knn_section}


def view_diagnostics(evaluation: Evaluation, encoder: nn.Module) -> Dict[str, Any]:
    """Alignment and uniformity of h and z over two views (evaluation.views, an augmentation config;
    none: nothing) of a fixed subset of cfg.alignment_images test images, encoded here (augmented
    views are not split features)."""
    images = evaluation.data.test_images
    n = min(evaluation.cfg.alignment_images, images.shape[0])
    if evaluation.views is None or n < 2:
        return {}
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    (h_a, z_a), (h_b, z_b) = evaluation.reader.view_features(encoder, images, order, evaluation.views, seed=0)
    return {"alignment": {"representation": alignment(h_a, h_b), "projection": alignment(z_a, z_b)},
            "uniformity": {"representation": (uniformity(h_a) + uniformity(h_b)) / 2,
                           "projection": (uniformity(z_a) + uniformity(z_b)) / 2}}


def ritz_solution(evaluation: Evaluation, encoder: nn.Module, features: Features,
                  nu: Split | None = None) -> Tuple[str, int, Ritz] | None:
    """(kind, pairs, Rayleigh-Ritz on h) from the run's own kind of pairs: a bipartite graph's two
    towers (nu: nu's features at the y nodes): the cross form over every edge x -> y, exactly; a graph:
    every edge, exactly, from the node features; an image-text run: cfg.ritz_pairs image views and
    captions of the train split, the cross form; else cfg.ritz_pairs pairs of two views of train images,
    encoded here. None for images without views."""
    cfg, data, reader = evaluation.cfg, evaluation.data, evaluation.reader
    if nu is not None:
        f_x = features.nodes.h[:data.graph.num_x]
        moments = cross_edge_moments(data.graph, f_x, nu.h)
        return "edges x-y", int(data.graph.cross_edges().numel()), cross_moments_ritz(*moments)
    if features.nodes is not None:
        return "edges", data.graph.src.shape[0], ritz(*edge_moments(data.graph, features.nodes.h))
    if evaluation.views is None:
        return None
    count, text = cfg.ritz_pairs, evaluation.towers.text
    if text is not None and data.train_captions is not None:
        pairs = caption_pairs(encoder, text, data, reader, evaluation.views, count)
        return "image-text", count, solve(*pairs, cross=True)
    pairs = view_pairs(encoder, data.train_images, reader, evaluation.views, count)
    return "views", count, solve(*pairs, cross=False)


def ritz_results(evaluation: Evaluation, encoder: nn.Module, features: Features, results: Dict[str, Any],
                 found: Eigenpairs | str | None = None, nu: Split | None = None) -> None:
    """Rayleigh-Ritz on h into `results`: "ritz" (ritz_report.ritz_section of ritz_solution, with the
    seconds it took), and a graph section's Ritz part (graph_ritz: the Ritz order of phi, the
    projection the truth scores, from every edge; phi is h without a projector), against the truth
    `found` when given. Nothing for images without views."""
    t0 = time.perf_counter()
    solution = ritz_solution(evaluation, encoder, features, nu)
    if solution is None:
        return
    kind, count, result = solution
    section = ritz_section(result, kind, count, ritz_scorer(evaluation, features, results), NO_LABELS)
    graph = results.get("graph")
    if graph is not None and "skipped" not in graph:   # phi's own Ritz order, scored against the truth
        phi, g = features.nodes.z, evaluation.data.graph
        same = phi.shape == features.nodes.h.shape and torch.equal(phi, features.nodes.h)   # no projector
        ordered = result if same else ritz(*edge_moments(g, phi))
        graph.update(graph_ritz(g, phi, ordered, evaluation.cfg.truth_budget_s, found))
    results["ritz"] = {**section, "seconds": time.perf_counter() - t0}


def ritz_scorer(evaluation: Evaluation, features: Features, results: Dict[str, Any]) -> Scorer | None:
    """What the Ritz prefix curve is scored with: the split features and labels, the fast probe at the
    main probe's L2 strength (when that probe was the fast one) with fewer steps, the kNN's test subset
    (cfg.ritz_knn_images); None without labels."""
    data, cfg, device = evaluation.data, evaluation.cfg, evaluation.reader.compute.device
    if not data.labelled or features.test is None:
        return None
    probe = results["linear_probe"]
    decay = probe.get("weight_decay") if probe.get("protocol") == "fast" else None
    return Scorer(features.train.h, data.train_labels.to(device), features.test.h, data.test_labels.to(device),
                  len(data.classes), prefix_probe(cfg.probe.fast, decay), cfg.knn, evaluation.seed,
                  pca=cfg.ritz_pca_prefix, knn_images=cfg.ritz_knn_images)


def evaluate_towers(evaluation: Evaluation, features: TowerFeatures) -> Dict[str, Any]:
    """evaluate_encoder on phi; its random initialisation's probe and kNN (same protocol, its own
    features) when cfg.random_init; zero-shot and retrieval when there is a text tower."""
    towers, data, cfg = evaluation.towers, evaluation.data, evaluation.cfg
    results = evaluate_encoder(evaluation, towers.encoder, features.phi, features.nu)
    if cfg.random_init and data.labelled:
        log.info("random-init baseline: the same probe and kNN on an untrained encoder's own features")
        fresh = towers.fresh()
        baseline = probe_and_knn(evaluation, fresh, extract(fresh, data, evaluation.reader), validation=False)
        results["random_init"] = {"linear_probe_top1": baseline["linear_probe"]["top1"],
                                  "knn_top1": baseline["knn"]["top1"]}
    if features.text is not None:
        results.update(evaluate_two_towers(features.phi.test.z, features.text, data, cfg))
    return results


def evaluate_run(evaluation: Evaluation, header: Dict[str, Any]) -> Dict[str, Any]:
    """The towers' features once, evaluate_towers, then the report: header's "run" (the settings), the
    results, header's "history" and "timing" with the evaluation's seconds added; written into
    evaluation.run_dir (a graph's embeddings.pt too) and printed."""
    t0 = time.perf_counter()
    with stages("evaluation", 3) as stage:
        stage("encoding the splits")
        features = extract_towers(evaluation)
        stage("probe, kNN and diagnostics")
        results = evaluate_towers(evaluation, features)
        truth_section = results.get("graph") or results.get("bipartite")
        if truth_section and "skipped" not in truth_section and "losses" in header:   # a train run's
            judge_convergence(truth_section, header["losses"], header["moving_target"])
        stage("writing the report")
        report = {"run": header["run"], **results, "history": header.get("history", []),
                  "timing": {**header.get("timing", {}), "eval_seconds": time.perf_counter() - t0}}
        report["objective"] = objective_section(report, evaluation.cfg.objective_metric,
                                                held_out=evaluation.data.holdout is not None)
        run_dir = Path(evaluation.run_dir)
        if features.phi.nodes is not None:
            write_embeddings(run_dir / "embeddings.pt", evaluation.data, features.phi.nodes, features.nu)
        write_report(run_dir, report)   # report.json, plots/ (from metrics.jsonl and the report), report.md
    print_report(report, evaluation.console)
    return report


def judge_convergence(graph: Dict[str, Any], losses: List[float], moving_target: bool) -> None:
    """The graph section's "convergence" (eval/convergence.py: the loss trend of the epochs), its
    warning among the section's warnings and logged."""
    graph["convergence"] = convergence(losses, moving_target)
    if warning := graph["convergence"].get("warning"):
        graph["warnings"].append(warning)
        log.warning(warning)


def write_embeddings(path: Path, data: GraphData, nodes: Split, nu: Split | None = None) -> None:
    """A graph's node embeddings (`nodes`: phi's features of every node), loadable with
    torch.load(path, weights_only=True): {"nodes": [names, in row order], "phi": (n, d) float32, the
    projection, "h": (n, r) the representation}; two towers on a bipartite graph (`nu`: nu's features
    at the y nodes): {"nodes_x", "nodes_y": [names], "phi": (n_x, d) at the x nodes, "nu": (n_y, d),
    "h": (n_x, r) phi's representation}."""
    embeddings = {"nodes": list(data.graph.names), "phi": nodes.z.cpu(), "h": nodes.h.cpu()}
    if nu is not None:
        n_x = data.graph.num_x
        embeddings = {"nodes_x": list(data.graph.names[:n_x]), "nodes_y": list(data.graph.names[n_x:]),
                      "phi": nodes.z[:n_x].cpu(), "nu": nu.z.cpu(), "h": nodes.h[:n_x].cpu()}
    try:
        atomic_write(path, lambda f: torch.save(embeddings, f))
    except OSError as err:
        raise ReportError(f"cannot write {path} ({reason(err)}): free some space") from None
