"""Rayleigh-Ritz in the evaluation: report.json's "ritz" section and a graph's "ritz_eigenspaces".

    f_a, f_b = view_pairs(encoder, data.train_images, reader, views, count)    # h of two views of each image
    f_x, g_y = caption_pairs(encoder, text, data, reader, views, count)        # h of an image view, of a caption
    m, c = edge_moments(graph, nodes.h)                                        # a graph's exact moments, every edge
    result = solve(f_a, f_b, cross=False)                                      # ritz.Ritz, from the pairs' moments
    section = ritz_section(result, kind, count, scorer)                        # report.json's "ritz"
    extra = graph_ritz(graph, nodes.h, result, budget_s, found)                # ritz_eigenspaces and the spectra

The pairs are drawn from the train split as the run's own pairs are (two augmented views, or an
augmented image and one of its captions), with fixed generators (seed RITZ_SEED); a graph's moments
are exact, summed over every edge by weight (no sampling error: the limit of drawn edges). The
features are the representation h the probe reads. The prefix curve scores the first k Ritz-ordered
functions h @ vectors[:, :k] of the split features already extracted with the fast probe and the kNN;
its probes take one L2 strength (the main fast probe's choice) and at most PREFIX_STEPS L-BFGS
iterations in one fit on the whole train split, and its kNNs classify a fixed subset of
eval.ritz_knn_images test images, to keep it cheap.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn

from ..config import AugmentationConfig, FastProbeConfig, KNNConfig
from ..data.augment import augment
from ..data.batches import batches
from ..data.graphs import Graph
from ..data.splits import ImageData, Images
from ..progress import phase
from .eigensolvers import Eigenpairs
from .features import FeatureReader, encode, frozen
from .graph_truth import eigenspaces, subspace_alignment, truth
from .probes import fixed_probe, knn_top1, linear_probe
from .ritz import ILL_CONDITIONED, Ritz, cross_ritz, effective_dim, pair_moments, prefix_sizes, ritz
from .towers import TextTower

log = logging.getLogger("specrep")
RITZ_SEED = 0        # the pairs' draws: the same at the end of training and in `specrep eval`
PREFIX_STEPS = 10    # L-BFGS iterations per fit of a prefix probe (at most; the main probe: eval.probe.fast.steps)
SHARE_OF_FULL = 0.95  # dims_for_95: the fewest ordered functions whose probe reaches this share of all of them


def pair_order(n: int, count: int, seed: int = RITZ_SEED) -> Tensor:
    """`count` indices into n items, fixed by `seed`: whole random permutations laid end to end, so
    that every item is drawn as evenly as count allows (count <= n: a random subset)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(count / n))])[:count]


def view_pairs(encoder: nn.Module, images: Images, reader: FeatureReader, views: AugmentationConfig,
               count: int) -> Tuple[Tensor, Tensor]:
    """h of two augmented views (views.view_a, views.view_b) of `count` train images (pair_order), (count, D) each."""
    order = pair_order(images.shape[0], count)
    (h_a, _), (h_b, _) = reader.view_features(encoder, images, order, views, seed=RITZ_SEED)
    return h_a, h_b


def pick_captions(owner: Tensor, images: Tensor, generator: torch.Generator) -> Tensor:
    """For each of `images` (indices), one of its captions (owner: each caption's image), drawn uniformly."""
    order = torch.argsort(owner, stable=True)                              # captions grouped by image
    count = torch.bincount(owner, minlength=int(images.max()) + 1)
    first = torch.cumsum(count, 0) - count
    draw = (torch.rand(images.shape[0], generator=generator, dtype=torch.float64) * count[images]).long()
    return order[first[images] + draw]


@torch.no_grad()
def caption_pairs(encoder: nn.Module, text: TextTower, data: ImageData, reader: FeatureReader,
                  views: AugmentationConfig, count: int) -> Tuple[Tensor, Tensor]:
    """An image-text run's pairs: h of a view (views.view_a) of `count` captioned train images
    (pair_order) and the text tower's representation (its backbone's output) of one of each image's
    captions, drawn uniformly."""
    owner = data.train_captions.image_index
    captioned = torch.bincount(owner, minlength=data.train_images.shape[0]).nonzero().squeeze(1)
    order = captioned[pair_order(captioned.numel(), count)]   # the images with a caption
    g = torch.Generator().manual_seed(RITZ_SEED)
    caption = pick_captions(owner, order, g)
    ids, _ = text.tokenizer.encode([data.train_captions.texts[j] for j in caption.tolist()], text.context_length)
    device = reader.compute.device
    mean, std = reader.mean.to(device), reader.std.to(device)
    f, gy = [], []
    was_training = text.encoder.training
    text.encoder.eval()
    try:
        with frozen(encoder) as channels_last, phase("encoding image-caption pairs", count, "pairs") as shown:
            for start, batch in zip(range(0, count, reader.batch_size),
                                    batches(data.train_images, order, reader.batch_size, device)):
                view = augment(batch, views.view_a, mean, std, generator=g)
                f.append(encode(encoder, view, reader.compute, channels_last, project=False)[0])
                gy.append(text.encoder.backbone(ids[start:start + reader.batch_size].to(device)).float())
                shown.advance(batch.shape[0])
    finally:
        text.encoder.train(was_training)
    return torch.cat(f), torch.cat(gy)


def edge_moments(graph: Graph, nodes_f: Tensor, chunk: int = 1 << 16) -> Tuple[Tensor, Tensor]:
    """A graph's exact (M, C) for features f at every node (rows of the node features already
    extracted: no forward pass, no sampling), float64 on the host: M = sum over directed edges of
    p(x, x') f(x) f(x')^T (symmetric: every edge is there both ways), C = sum_x p(x) f(x) f(x)^T;
    O(E d^2), edges a chunk at a time."""
    f = nodes_f.double().cpu()
    w = graph.weight / graph.weight.sum()
    m = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64)
    for start in range(0, w.shape[0], chunk):
        e = slice(start, start + chunk)
        m += (f[graph.src[e]] * w[e, None]).T @ f[graph.dst[e]]
    c = (f * graph.node_weights()[:, None]).T @ f
    return (m + m.T) / 2, c


def cross_edge_moments(graph: Graph, f_x: Tensor, g_y: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """A bipartite graph's exact two-tower moments, float64 on the host: M = sum over the edges x -> y
    of p(x, y) f(x) g(y)^T, C_f = sum_x p(x) f f^T, C_g = sum_y p(y) g g^T (f_x: at the x nodes,
    g_y: at the y nodes, in row order)."""
    f, g = f_x.double().cpu(), g_y.double().cpu()
    e = graph.cross_edges()
    x, y, w = graph.src[e], graph.dst[e] - graph.num_x, graph.weight[e] / graph.weight[e].sum()
    p_x = torch.zeros(f.shape[0], dtype=torch.float64).index_add_(0, x, w)
    p_y = torch.zeros(g.shape[0], dtype=torch.float64).index_add_(0, y, w)
    return (f[x] * w[:, None]).T @ g[y], (f * p_x[:, None]).T @ f, (g * p_y[:, None]).T @ g


def solve(f_a: Tensor, f_b: Tensor, cross: bool) -> Ritz:
    """Rayleigh-Ritz on the pairs' features (on the host, float64): ritz(pair_moments) for one tower,
    cross_ritz for two (f_a the image tower's, f_b the other's)."""
    f_a, f_b = f_a.double().cpu(), f_b.double().cpu()
    return cross_ritz(f_a, f_b) if cross else ritz(*pair_moments(f_a, f_b))


@dataclass(frozen=True)
class Scorer:
    """What the prefix curve scores with: h of the train and test splits (extracted once) with their
    labels on the same device, the classes, the prefix probes' settings and the kNN's, the probe's seed."""
    train_h: Tensor
    train_y: Tensor
    test_h: Tensor
    test_y: Tensor
    num_classes: int
    probe: FastProbeConfig
    knn: KNNConfig
    seed: int = 0
    pca: bool = False   # eval.ritz_pca_prefix: the probe on h's principal components too
    knn_images: int | None = None   # eval.ritz_knn_images: the test images the kNN classifies (None: all)

    def knn_queries(self) -> Tensor:
        """The test rows the prefix kNN classifies: a fixed random subset (seed 0) of knn_images of them,
        in test order, or all."""
        n = self.test_h.shape[0]
        if self.knn_images is None or self.knn_images >= n:
            return torch.arange(n, device=self.test_h.device)
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:self.knn_images]
        return pick.sort().values.to(self.test_h.device)


def prefix_probe(cfg: FastProbeConfig, weight_decay: float | None) -> FastProbeConfig:
    """The prefix probes' settings: the fast probe's, with the main probe's chosen L2 strength alone
    (all of cfg's when None: the main probe was not the fast one) and at most PREFIX_STEPS iterations."""
    decays = cfg.weight_decays if weight_decay is None else [weight_decay]
    return replace(cfg, weight_decays=list(decays), steps=min(cfg.steps, PREFIX_STEPS))


def prefix_curve(vectors: Tensor, scorer: Scorer, knn: bool = True) -> List[Dict[str, float]]:
    """{"k", "probe_top1", "knn_top1"} for k in prefix_sizes: the fast probe (one fit at the main probe's
    L2 strength when it has one: fixed_probe) on the first k functions h @ vectors[:, :k] of the train
    and test splits (vectors: Ritz.vectors, or variance_order's), and (with `knn`; None at k = 1, where
    cosine similarity is a sign) the kNN of scorer.knn_queries() among every train image."""
    vectors = vectors.to(scorer.train_h.device)
    train, test = scorer.train_h.double() @ vectors, scorer.test_h.double() @ vectors
    queries = scorer.knn_queries()
    curve = []
    for k in prefix_sizes(vectors.shape[1]):
        tr, te = train[:, :k].float(), test[:, :k].float()
        if len(scorer.probe.weight_decays) == 1:   # chosen by the main probe: one fit on the whole train split
            probe = fixed_probe(tr, scorer.train_y, te, scorer.test_y, scorer.num_classes,
                                scorer.probe.weight_decays[0], scorer.probe.steps)
        else:
            probe = linear_probe(tr, scorer.train_y, te, scorer.test_y, scorer.num_classes, scorer.probe, scorer.seed)
        point = {"k": k, "probe_top1": probe["top1"]}
        if knn:   # k = 1: the cosine of one coordinate is its sign, every neighbour a tie: no kNN (None)
            point["knn_top1"] = (knn_top1(tr, scorer.train_y, te[queries], scorer.test_y[queries],
                                          scorer.num_classes, scorer.knn) if k > 1 else None)
        curve.append(point)
    return curve


def variance_order(h: Tensor) -> Tensor:
    """The principal directions of h (D, D), by variance descending (float64): plain PCA of the same
    features, the order the Ritz order is compared with (eval.ritz_pca_prefix)."""
    centred = h.double() - h.double().mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    return vectors.flip(1)


def dims_for(prefix: List[Dict[str, float]], share: float = SHARE_OF_FULL) -> int:
    """The fewest Ritz-ordered functions k on the prefix curve whose probe reaches `share` of the probe on
    all of them (the curve's last point, same probe settings)."""
    full = prefix[-1]["probe_top1"]
    return next(p["k"] for p in prefix if p["probe_top1"] >= share * full)


def ritz_warnings(result: Ritz) -> List[str]:
    """A line when C (the second moment of h over the pairs) is ill-conditioned."""
    if not result.ill_conditioned:
        return []
    return [f"the second moment C of h is ill-conditioned (condition number {result.condition:.3g} >= "
            f"{ILL_CONDITIONED:.0e}): h has nearly dependent coordinates, and the Ritz values of its "
            "smallest directions are noise"]


def ritz_section(result: Ritz, kind: str, pairs: int, scorer: Scorer | None, why_not: str = "") -> Dict[str, Any]:
    """report.json's "ritz": the Ritz values (descending), their effective dimension, C's condition
    number (null when infinite) and warnings, the prefix curve and dims_for_95 (dims_for; neither
    without a scorer: `why_not`), and with scorer.pca the probe's curve on h's principal components."""
    condition = result.condition if math.isfinite(result.condition) else None
    section = {"features": "representation h", "pairs": pairs, "kind": kind, "values": result.values.tolist(),
               "effective_dim": effective_dim(result.values), "condition": condition,
               "warnings": ritz_warnings(result)}
    if scorer is None:
        section.update(prefix=[], prefix_skipped=why_not)
    else:
        prefix = prefix_curve(result.vectors, scorer)
        section.update(prefix=prefix, dims_for_95=dims_for(prefix),
                       prefix_probe={"steps": scorer.probe.steps, "weight_decays": list(scorer.probe.weight_decays)})
        if scorer.pca:
            pca = prefix_curve(variance_order(scorer.train_h), scorer, knn=False)
            section.update(pca_prefix=pca, pca_dims_for_95=dims_for(pca))
    for line in section["warnings"]:
        log.warning(line)
    return section


def graph_ritz(graph: Graph, nodes_h: Tensor, result: Ritz, budget_s: float,
               found: Eigenpairs | str | None = None) -> Dict[str, Any]:
    """The graph section's Ritz part: ritz_eigenspaces (for each group of equal true eigenvalues, the
    alignment of the Ritz-ordered functions in the same positions with it, computed as graph_truth's
    per-eigenspace alignment: rows weighted sqrt(p(x))), and the Ritz values beside the true top r
    (r: the ordered functions); ritz_skipped, saying why, when the truth is out of reach. `found`:
    graph_truth.truth's top r + 1 eigenpairs or more (computed here within budget_s when not given)."""
    n, r = graph.num_nodes, result.vectors.shape[1]
    if r >= n:
        return {"ritz_skipped": f"h has {r} Ritz functions for {n} nodes: nothing to compare"}
    found = truth(graph, r + 1, budget_s) if found is None else found
    if isinstance(found, str):
        return {"ritz_skipped": found}
    values, vectors = found.values[:r], found.vectors[:, :r]
    u = graph.node_weights().sqrt()[:, None] * result.ordered(nodes_h.cpu())   # (n, r)
    spaces = [{"coordinates": [s, e], "eigenvalue": float(values[s:e].mean()),
               "alignment": subspace_alignment(u[:, s:e], vectors[:, s:e])}
              for s, e in eigenspaces(values)]
    return {"ritz_spectrum": result.values.tolist(), "ritz_true_spectrum": values.tolist(),
            "ritz_eigenspaces": spaces}
