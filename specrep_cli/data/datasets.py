"""`load_dataset(cfg, device) -> ImageData`: any dataset option, loaded, checked, normalised and
placed, in memory on the training device when it fits.

Every dataset option goes through here; the formats themselves are in loaders.py. dataset.in_memory:
`true` keeps every split on the device, `false` leaves tensors on the host (batches are gathered there
and copied) and streams image folders from their files, `auto` keeps them on the device when their
total size fits the memory budget.
"""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Tuple

import torch
from torch import Tensor

from ..config import DatasetConfig, ImageDatasetConfig, ImageFolderConfig
from ..errors import DatasetError
from .files import Fits, ImageFiles, decode_images
from .graphs import load_graph
from .loaders import LOADERS, fraction_split, subset_indices
from .splits import ImageData, Images, take
from .stream import ShardStream
from .unlabelled import load_unlabelled, unlabelled_only

log = logging.getLogger("specrep")


def channel_stats(images: Images | ShardStream, chunk: int = 4096, sample: int = 10000) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units, in float64 chunks,
    over a fixed random sample of at most `sample` images (a stream: of its first dataset.peek_samples)."""
    if isinstance(images, ShardStream):   # a stream: its first samples
        images = images.peek()[0]
    keep = subset_indices(images.shape[0], sample, seed=0)
    if isinstance(images, ImageFiles):
        files = images.files if keep is None else [images.files[i] for i in keep.tolist()]
        images = decode_images(files, images.size, images.resize)
    elif keep is not None:
        images = images[keep.to(images.device)]
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3)).cpu()
        total_sq += x.pow(2).sum(dim=(0, 2, 3)).cpu()
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.float(), std.float().clamp_min(1e-3)


def memory_budget(cfg: ImageDatasetConfig, device: torch.device) -> int:
    """Bytes a dataset may take in memory on `device`: dataset.memory_budget_gib, or by default half
    of the device's memory (the GPU's total memory, or the host's physical RAM)."""
    if cfg.memory_budget_gib is not None:
        return int(cfg.memory_budget_gib * 2**30)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 2
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def load_with_unlabelled(cfg: ImageDatasetConfig, fits: Fits) -> ImageData:
    """The option's loader; with dataset.unlabelled_root, that folder's images as the SSL set (and
    dataset.subset applied to them alone); with no labelled root (imagefolder's root null), the folder alone."""
    if not cfg.unlabelled_root:
        return LOADERS.get(cfg.name)(cfg, fits)
    if isinstance(cfg, ImageFolderConfig) and cfg.root is None:
        return unlabelled_only(cfg, fits)
    data = LOADERS.get(cfg.name)(replace(cfg, subset=None), fits)   # the probe's splits whole
    data.unlabelled_images = load_unlabelled(cfg, fits)
    return data


def hold_out(data: ImageData, fraction: float, seed: int = 0) -> ImageData:
    """For tuning: a fixed random `fraction` of the labelled train split becomes the probe's test split
    and leaves training (SSL and the probe's fit); the real test split is not used."""
    n = data.train_images.shape[0]
    val, keep = fraction_split(n, fraction, seed, f"dataset.holdout={fraction} leaves no training images of the {n}")
    captions = data.train_captions
    return ImageData(take(data.train_images, keep), data.train_labels[keep], take(data.train_images, val),
                     data.train_labels[val], data.classes, data.unlabelled_images,
                     captions.subset(keep) if captions is not None else None,
                     captions.subset(val) if captions is not None else None, holdout=fraction)


def load_dataset(cfg: DatasetConfig, device: torch.device = torch.device("cpu")) -> ImageData:
    """Load `cfg` (a dataset config); splits that fit the memory budget are moved to `device`.

    dataset.in_memory: `true` keeps every split on the device, `false` leaves tensors on the host
    (batches are gathered there and copied) and streams image folders from their files, `auto` keeps
    them on the device when their total size fits `memory_budget(cfg, device)`. dataset=graph: a
    GraphData (graphs.load_graph), on the device: its node inputs are small; ids and feature rows are
    never normalised, the nodes' images (dataset.images, shapes_world) are.
    """
    if cfg.name == "graph":
        graph = load_graph(cfg, device)
        if graph.images:   # nodes that are images: normalised as image datasets are
            graph.mean, graph.std = channel_stats(graph.inputs)
        return graph
    LOADERS.get(cfg.name)   # an unknown name: a DatasetError naming the known ones, before any work
    budget = memory_budget(cfg, device)
    in_memory = str(cfg.in_memory).lower()   # YAML's true/false arrive as 'True'/'False'

    def fits(nbytes: int) -> bool:
        return in_memory == "true" or (in_memory == "auto" and nbytes <= budget)

    data = load_with_unlabelled(cfg, fits)
    if cfg.holdout is not None:
        if not data.labelled:
            raise DatasetError(f"dataset.holdout={cfg.holdout} holds out labelled images for the probe, and "
                               f"dataset {cfg.name} has no classes here: drop dataset.holdout")
        data = hold_out(data, cfg.holdout)
    checked = ("train", "test") if data.labelled else ()   # an unlabelled folder has no labels
    for split in checked:   # a truncated label file must not surface as a crash after training
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        if images.shape[0] != labels.shape[0] or (
                labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(data.classes)):
            raise DatasetError(f"dataset {cfg.name}: the {split} split has {images.shape[0]} images but "
                               f"{labels.shape[0]} labels, or labels outside 0..{len(data.classes) - 1}; "
                               "its files are damaged: delete them and download again")
    if len(data.classes) == 1:
        log.warning(f"dataset {cfg.name} has one class ({data.classes[0]}): the probe's and kNN's top-1 are 100 % "
                    "whatever was learnt; give two or more class folders to score the representation")
    data.mean, data.std = channel_stats(data.ssl_images)
    splits = ("train_images", "test_images", "unlabelled_images")
    held = [getattr(data, s) for s in splits if not isinstance(getattr(data, s), (type(None), ShardStream))]
    tensors = [t for t in held if isinstance(t, Tensor)]
    if len(tensors) == len(held) \
            and fits(sum(t.numel() for t in tensors)):
        for s in splits:
            if isinstance(getattr(data, s), Tensor):
                setattr(data, s, getattr(data, s).to(device))
    return data
