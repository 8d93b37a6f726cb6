"""One way to read a split in batches, for training and evaluation alike.

    for batch in batches(images, order, batch_size, device):   # uint8 (B, C, H, W) on `device`

A tensor already on the device is indexed with the on-device order (no DataLoader, no host sync); a
host tensor is gathered on the host and copied; `ImageFiles` go through a DataLoader whose workers
only decode and resize. Augmentation always runs on the device (augment.py).
"""
from __future__ import annotations

import signal
from typing import Iterator

import torch
from torch import Tensor

from ..errors import DatasetError
from .splits import Images


def batches(images: Images, order: Tensor, batch_size: int, device: torch.device,
            drop_last: bool = False) -> Iterator[Tensor]:
    """uint8 batches images[order[i:i + batch_size]] on `device`, in order.

    A tensor on `device` is indexed there (`order` on the same device: no host sync); a host tensor is
    gathered on the host and copied (pinned, non-blocking); ImageFiles are decoded by their `workers`
    DataLoader processes a few batches ahead (in this process when 0).
    """
    n = order.shape[0] // batch_size * batch_size if drop_last else order.shape[0]
    if isinstance(images, Tensor):
        if images.device != device:
            order = order.cpu()
        for start in range(0, n, batch_size):
            batch = images[order[start:start + batch_size].to(images.device)]
            if batch.device != device:
                batch = batch.pin_memory() if device.type == "cuda" else batch
                batch = batch.to(device, non_blocking=True)
            yield batch
        return
    chunks = order[:n].cpu().split(batch_size)
    loader = torch.utils.data.DataLoader(images, batch_sampler=[c.tolist() for c in chunks],
                                         num_workers=images.workers, pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if images.workers else None,
                                         generator=torch.Generator(),   # not the global RNG: resume stays exact
                                         worker_init_fn=ignore_interrupts)
    try:
        for batch in loader:
            yield batch.to(device, non_blocking=True)
    except DatasetError as err:   # from a worker, wrapped in its traceback: keep the one line
        raise worker_error(err) from None


def ignore_interrupts(worker: int) -> None:
    """A DataLoader worker ignores Ctrl-C (the terminal sends it to the whole process group): the
    training process decides how to stop, and says so once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_error(err: DatasetError) -> DatasetError:
    """A DataLoader worker's DataSetError as its one line (the loader wraps it in the worker's traceback)."""
    last = str(err).strip().splitlines()[-1]
    return DatasetError(last.removeprefix(f"{DatasetError.__module__}.{DatasetError.__qualname__}: "))
