"""What train.log says first: the run's settings and what it trains on.

    log_run(run)   # after build_run, before the first step
"""
from __future__ import annotations

import logging

import torch

from .. import __version__
from ..data.files import ImageFiles
from ..data.graphs import GraphData
from ..data.stream import ShardStream
from ..models.encoders import param_count
from .setup import Run

log = logging.getLogger("specrep")


def _data_line(run: Run) -> str:
    """What the run trains on, for train.log."""
    cfg, data = run.cfg, run.data
    if isinstance(data, GraphData):
        g = data.graph
        pixels = f" ({data.in_channels}x{data.image_size}x{data.image_size} images)" if data.images else ""
        return (f"data: graph ({cfg.dataset.source}), {g.num_nodes} nodes{pixels}, {g.num_edges} edges, "
                f"{data.ssl_images.shape[0]} pairs per epoch, {data.train_images.shape[0]} probe-train / "
                f"{data.test_images.shape[0]} test nodes, "
                f"{f'{len(data.classes)} classes' if data.labelled else 'no labels (no probe)'}")
    images = data.ssl_images
    if isinstance(images, ShardStream):
        where = (f"streamed from {len(images.urls)} shards by {images.workers} DataLoader workers, "
                 f"{images.shape[0]} samples an epoch")
    elif isinstance(images, ImageFiles):
        where = f"streamed from files by {images.workers} DataLoader workers"
    else:
        where = f"in memory on {images.device} ({images.numel() / 2**30:.2f} GiB uint8)"
    return (f"data: {cfg.dataset.name}, {images.shape[0]} training / {data.train_images.shape[0]} probe-train / "
            f"{data.test_images.shape[0]} test images, {data.in_channels}x{data.image_size}x{data.image_size}, "
            f"{f'{len(data.classes)} classes' if data.labelled else 'no labels (no probe)'}, {where}")


def log_run(run: Run) -> None:
    """The run's settings, at the top of train.log."""
    cfg, tr = run.cfg, run.cfg.trainer
    log.info(f"specrep {__version__} (git {run.sha or 'n/a'}), torch {torch.__version__}")
    log.info(f"run dir: {run.dirs.job_dir}")
    log.info(f"device: {run.compute.device}, precision: {'bf16 autocast' if run.compute.bf16 else 'fp32'}, "
             f"channels_last: {run.channels_last}")
    log.info(_data_line(run))
    log.info(f"objective: {cfg.objective.name}, encoder: {cfg.encoder.name} "
             f"({param_count(run.method.encoder) / 1e6:.2f} M params), augmentation: {cfg.augmentation.name}")
    log.info(f"batch size {tr.batch_size}, {run.steps_per_epoch} steps/epoch x {tr.epochs} epochs, "
             f"lr {run.lr:.4g}" + (f" (= {cfg.optim.lr} x {tr.batch_size}/256)" if cfg.optim.scale_lr else ""))
    if run.ranks.world > 1:
        log.info(f"{run.ranks.world} processes ({torch.distributed.get_backend()}), {run.local_batch} images "
                 f"per process and step; sync_batchnorm: {tr.sync_batchnorm}")
    if tr.compile:
        log.info("torch.compile: on (the first step includes the compilation; its time is logged)")
