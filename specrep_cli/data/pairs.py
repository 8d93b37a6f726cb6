"""The two inputs of a training step: two augmented views of an image, an image and its caption, or
the two ends of an edge of a graph.

    pairs = ViewPairs(augmentation, mean, std)                       # x, y: two views (B, C, H, W)
    pairs = TextPairs(augmentation, mean, std, captions, num_images, tokenizer, length)   # y: ids (B, L),
                                                         # L = min(length, the longest caption's tokens)
    pairs = StreamTextPairs(augmentation, mean, std)                 # a stream's batch and its caption ids
    pairs = EdgePairs(graph, inputs, device)                         # x, y: the inputs of both ends of
                                                                     #   B edges drawn by weight (graphs)
    pairs = EdgePairs(graph, images, device, augmentation, mean, std)   # the nodes are images
    x, y = pairs(batch, index)   # batch: uint8 (B, C, H, W) on the device; index: (B,) its image ids
                                 # (a stream's: its caption ids (B, L), or None)

Everything stays on the device and nothing syncs with the host (index is expected on the device): a
caption is drawn per sample among its image's captions by one uniform draw, from token ids encoded
once at the start of the run.
"""
from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import Tensor

from ..errors import DatasetError
from .augment import augment, make_views
from .graphs import Graph
from .splits import Captions
from .tokenizer import Tokenizer


class ViewPairs:
    """Two independently augmented views (augmentation.view_a, augmentation.view_b)."""

    kind = "views"

    def __init__(self, augmentation: Any, mean: Tensor, std: Tensor):
        self.augmentation, self.mean, self.std = augmentation, mean, std

    def __call__(self, batch: Tensor, index: Tensor) -> Tuple[Tensor, Tensor]:
        return make_views(batch, self.augmentation, self.mean, self.std)


class TextPairs:
    """x: the image augmented with augmentation.view_a; y: the token ids (B, length) of one of its
    captions, drawn uniformly per sample (the caption is the second view; view_b is not used)."""

    kind = "text"

    def __init__(self, augmentation: Any, mean: Tensor, std: Tensor, captions: Captions,
                 num_images: int, tokenizer: Tokenizer, length: int):
        self.augmentation, self.mean, self.std = augmentation, mean, std
        count = torch.bincount(captions.image_index, minlength=num_images)      # (N,) captions per image
        if int(count.min()) == 0:
            missing = int((count == 0).nonzero()[0])
            raise DatasetError(f"training image {missing} has no caption: every training image needs one")
        order = torch.argsort(captions.image_index, stable=True)                 # captions grouped by image
        ids, mask = tokenizer.encode([captions.texts[j] for j in order.tolist()], length)
        longest = int(mask.sum(1).max())   # padded only to the longest caption: the text tower's cost
        device = mean.device               # is linear in the length, and padded keys are masked out
        self.ids = ids[:, :longest].to(device)                                   # (M, L <= length)
        self.first = (torch.cumsum(count, 0) - count).to(device)                 # (N,) first caption's row
        self.count = count.to(device)

    def __call__(self, batch: Tensor, index: Tensor) -> Tuple[Tensor, Tensor]:
        pick = (torch.rand(index.shape[0], device=index.device) * self.count[index]).long()
        return augment(batch, self.augmentation.view_a, self.mean, self.std), self.ids[self.first[index] + pick]


class StreamTextPairs:
    """A streamed image-text batch (shards.ShardStream): x the image augmented with augmentation.view_a,
    y its caption's token ids, which the stream's workers read and tokenized with the images."""

    kind = "text"

    def __init__(self, augmentation: Any, mean: Tensor, std: Tensor):
        self.augmentation, self.mean, self.std = augmentation, mean, std

    def __call__(self, batch: Tensor, ids: Tensor) -> Tuple[Tensor, Tensor]:
        return augment(batch, self.augmentation.view_a, self.mean, self.std), ids


class EdgePairs:
    """(x, x') drawn from p(x, x') = A[x, x'] / sum(A): B directed edges by weight, by inverse CDF
    (torch.searchsorted on the cumulative edge weights, on the device: no Python loop, no host sync,
    any number of edges); x and x' are the inputs (ids or feature rows) of the edge's two ends, or
    their images (uint8 (n, C, H, W)), then augmented (augmentation.view_a, view_b: `none` only
    normalises) with mean and std. `cross` (a bipartite graph's two towers): only the edges x -> y, so
    x is always an x node and x' a y node. The batch handed in only numbers the epoch's draws
    (GraphData.draws): its values are not used."""

    kind = "edges"

    def __init__(self, graph: Graph, inputs: Tensor, device: torch.device, augmentation: Any = None,
                 mean: Tensor | None = None, std: Tensor | None = None, cross: bool = False):
        keep = graph.cross_edges() if cross else slice(None)   # bipartite, two towers: x -> y only
        cdf = torch.cumsum(graph.weight[keep], 0)   # float64 on the host: exact for many edges
        self.cdf = (cdf / cdf[-1]).float().to(device)                            # (E,) ends at 1
        self.src, self.dst = graph.src[keep].to(device), graph.dst[keep].to(device)   # (E,)
        self.inputs = inputs.to(device)                                          # (n,), (n, F) or (n, C, H, W)
        self.augmentation = augmentation if inputs.ndim == 4 else None
        # no normalisation for ids or feature rows: they go in as they are
        self.mean, self.std = (mean.to(device), std.to(device)) if self.augmentation is not None else (None, None)

    def draw(self, b: int) -> Tensor:
        """(b,) edge indices, edge e with probability weight[e] / sum(weight)."""
        u = torch.rand(b, device=self.cdf.device)
        return torch.searchsorted(self.cdf, u, right=True).clamp_max(self.cdf.shape[0] - 1)

    def __call__(self, batch: Tensor, index: Tensor) -> Tuple[Tensor, Tensor]:
        e = self.draw(index.shape[0])
        x, y = self.inputs[self.src[e]], self.inputs[self.dst[e]]
        if self.augmentation is None:
            return x, y
        return (augment(x, self.augmentation.view_a, self.mean, self.std),
                augment(y, self.augmentation.view_b, self.mean, self.std))
