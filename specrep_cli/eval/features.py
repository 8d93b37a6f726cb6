"""Features of a frozen encoder: the representation h and the projection z of every image, once.

    reader = FeatureReader(compute, mean, std, cfg.eval.batch_size)   # mean, std: the pairs' normalisation
    h, z = reader.features(encoder, data.train_images)            # (N, D), (N, d) float32 on the device
    (h_a, z_a), (h_b, z_b) = reader.view_features(encoder, images, order, augmentation)
    features = extract(encoder, data, reader)   # every split an evaluation reads, each encoded once

The encoder runs in eval mode (restored afterwards), in the training loop's memory format, under the
run's precision; no augmentation unless views are asked for.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, Iterator, Tuple

import torch
from torch import Tensor, nn

from ..config import AugmentationConfig
from ..data.augment import make_views, normalize
from ..data.batches import batches
from ..data.graphs import GraphData
from ..data.splits import ImageData, Images
from ..models.encoders import uses_channels_last
from ..progress import phase
from ..runtime import Compute


@contextlib.contextmanager
def frozen(encoder: nn.Module) -> Iterator[bool]:
    """The encoder in eval mode (restored afterwards), in the training loop's memory format; yields
    whether inputs must be channels_last."""
    was_training = encoder.training
    encoder.eval()
    channels_last = uses_channels_last(encoder)   # the same rule as training
    if channels_last:
        encoder.to(memory_format=torch.channels_last)
    try:
        yield channels_last
    finally:
        encoder.train(was_training)


def encode(encoder: nn.Module, x: Tensor, compute: Compute, channels_last: bool,
           project: bool = True) -> Tuple[Tensor, Tensor | None]:
    """Normalised float images (B, C, H, W) -> h (B, D) and z (B, d) (None unless `project`), float32."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with compute.autocast():
        h = encoder.backbone(x)
        z = encoder.projector(h) if project else None
    return h.float(), (z.float() if project else None)


@dataclass(frozen=True)
class FeatureReader:
    """How images become features: where and in which precision (compute), normalised with which
    per-channel mean and std (C,), how many images at a time. mean None: the inputs are a graph's
    node ids or feature rows, which the encoder takes as they are."""
    compute: Compute
    mean: Tensor
    std: Tensor
    batch_size: int

    @torch.no_grad()
    def features(self, encoder: nn.Module, images: Images, order: Tensor | None = None,
                 description: str = "encoding") -> Tuple[Tensor, Tensor]:
        """Representation h (N, D) and projection z (N, d) of images[order] (default: all), float32 on
        the device. images: a uint8 tensor (N, C, H, W) or ImageFiles; `description` names the phase
        whose progress is shown."""
        device = self.compute.device
        raw = self.mean is None
        mean, std = (None, None) if raw else (self.mean.to(device), self.std.to(device))
        order = torch.arange(images.shape[0]) if order is None else order
        reps, projs = [], []
        unit = "nodes" if raw else "images"
        with frozen(encoder) as channels_last, phase(description, order.shape[0], unit) as shown:
            for batch in batches(images, order, self.batch_size, device):
                h, z = encode(encoder, batch if raw else normalize(batch, mean, std), self.compute, channels_last)
                reps.append(h)
                projs.append(z)
                shown.advance(batch.shape[0])   # a shape: no sync
        return torch.cat(reps), torch.cat(projs)

    @torch.no_grad()
    def view_features(self, encoder: nn.Module, images: Images, order: Tensor, views: AugmentationConfig,
                      seed: int = 0) -> Tuple[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor]]:
        """(h_a, z_a), (h_b, z_b): features of two augmented views (views.view_a, views.view_b) of
        images[order], drawn from a generator seeded with `seed` (the same views on every device)."""
        g = torch.Generator().manual_seed(seed)
        device = self.compute.device
        mean, std = self.mean.to(device), self.std.to(device)
        out: Dict[str, list] = {"ha": [], "za": [], "hb": [], "zb": []}
        with frozen(encoder) as channels_last, phase("encoding two views", order.shape[0], "images") as shown:
            for batch in batches(images, order, self.batch_size, device):
                view_a, view_b = make_views(batch, views, mean, std, generator=g)
                for name, view in (("a", view_a), ("b", view_b)):
                    h, z = encode(encoder, view, self.compute, channels_last)
                    out[f"h{name}"].append(h)
                    out[f"z{name}"].append(z)
                shown.advance(batch.shape[0])
        cat = {k: torch.cat(v) for k, v in out.items()}
        return (cat["ha"], cat["za"]), (cat["hb"], cat["zb"])


@dataclass(frozen=True)
class Split:
    """One split's features: the representation h (N, D) and the projection z (N, d), float32 on the device."""
    h: Tensor
    z: Tensor


@dataclass(frozen=True)
class Features:
    """An encoder's features of every split an evaluation reads, each encoded once: the probe's train
    and test splits and, for a graph, every node (the splits are rows of it)."""
    train: Split
    test: Split | None = None    # None: not extracted (no labels and no text tower read it)
    nodes: Split | None = None   # a graph: every node, in row order


def extract(encoder: nn.Module, data: ImageData, reader: FeatureReader, test: bool = True) -> Features:
    """The split features of `encoder` (the test split's when `test`): one forward pass per image (a
    graph: per node). Augmented inputs are not split features: the standard probe's and the views'
    diagnostics' encodings are not here."""
    if isinstance(data, GraphData):
        nodes = Split(*reader.features(encoder, data.inputs, description="encoding the graph"))

        def rows(ids: Tensor) -> Split:
            ids = ids.to(nodes.h.device)
            return Split(nodes.h[ids], nodes.z[ids])

        return Features(rows(data.train_nodes), rows(data.test_nodes), nodes)
    train = Split(*reader.features(encoder, data.train_images, description="encoding the train split"))
    if not test:
        return Features(train)
    return Features(train, Split(*reader.features(encoder, data.test_images, description="encoding the test split")))
