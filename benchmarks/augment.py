"""Views per second: specrep's batched on-device augmentation vs the peers' per-image PIL pipeline.

    python benchmarks/augment.py                     # 10,240 CIFAR-10 train images, both pipelines
    python benchmarks/augment.py --images 2048       # quicker
    python benchmarks/augment.py --device cuda       # ours on the GPU (the PIL side stays on the CPU)

Both pipelines make two SimCLR views (crop scale 0.2-1, flip, jitter 0.4/0.4/0.4/0.1 at p=0.8,
grayscale 0.2, normalisation) of the same real 32 px CIFAR-10 images, read from the JPEG folder at
../shared/data/cifar10-jpeg (decoded once and cached by specrep's imagefolder loader).
- peers (solo-learn, lightly, the spectral paper's code): torchvision.transforms on PIL images, image
  by image, in a DataLoader with one worker per core, as torchvision's CIFAR10 dataset feeds them;
  timed over a second pass (persistent workers, so worker start-up is not counted).
- specrep: specrep_cli.data.augment.make_views on uint8 batches that sit on the device, per-sample
  parameters, no workers.
The last column is ours over theirs; the issue asks for at least 5x on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from common import cifar10_train, hardware
from rich.console import Console
from rich.table import Table

from specrep_cli.config import AugmentationConfig
from specrep_cli.data.augment import make_views


class PILTwoViews(torch.utils.data.Dataset):
    """torchvision's CIFAR10 dataset pattern: HWC uint8 array -> PIL image -> transform, twice."""

    def __init__(self, images_hwc: np.ndarray, mean, std):
        import torchvision.transforms as T
        self.images = images_hwc
        self.transform = T.Compose([
            T.RandomResizedCrop(32, scale=(0.2, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToTensor(),
            T.Normalize(mean, std),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image
        img = Image.fromarray(self.images[i])
        return self.transform(img), self.transform(img)


def time_peers(images: torch.Tensor, mean, std, batch_size: int, workers: int) -> float:
    """Seconds for one pass of the per-image PIL pipeline over `images` (second pass timed)."""
    dataset = PILTwoViews(images.permute(0, 2, 3, 1).contiguous().numpy(), mean.tolist(), std.tolist())
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:   # warm-up pass: workers start, caches fill
        pass
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def time_ours(images: torch.Tensor, mean, std, batch_size: int, device: torch.device) -> float:
    """Seconds for one pass of make_views over `images` on `device`, batches by an on-device permutation."""
    cfg = AugmentationConfig(name="simclr")   # ViewConfig's defaults are SimCLR's CIFAR settings
    images, mean, std = images.to(device), mean.to(device), std.to(device)
    n = images.shape[0] // batch_size * batch_size

    def one_pass():
        perm = torch.randperm(images.shape[0], device=device)
        for start in range(0, n, batch_size):
            make_views(images[perm[start:start + batch_size]], cfg, mean, std)
        if device.type == "cuda":
            torch.cuda.synchronize()

    one_pass()   # warm-up
    t0 = time.perf_counter()
    one_pass()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10240, help="CIFAR-10 train images per pass")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers of the PIL side")
    parser.add_argument("--device", default="cpu", help="where our pipeline runs (cpu or cuda)")
    args = parser.parse_args()
    data = cifar10_train(subset=args.images)
    if data is None:
        raise SystemExit(1)
    images, mean, std = data.train_images, data.mean, data.std
    n = images.shape[0] // args.batch_size * args.batch_size
    device = torch.device(args.device)

    peers = time_peers(images, mean, std, args.batch_size, args.workers)
    ours = time_ours(images, mean, std, args.batch_size, device)
    table = Table(title=f"two SimCLR views of {n} CIFAR-10 images (32 px), batch {args.batch_size}")
    for col in ("pipeline", "where", "s per pass", "views / s", "vs PIL"):
        table.add_column(col, justify="left" if col in ("pipeline", "where") else "right")
    table.add_row("torchvision PIL, per image", f"CPU, DataLoader, {args.workers} workers", f"{peers:.2f}",
                  f"{2 * n / peers:,.0f}", "1.0x")
    table.add_row("specrep make_views, per batch", f"{hardware(device)}", f"{ours:.2f}",
                  f"{2 * n / ours:,.0f}", f"{peers / ours:.1f}x")
    Console().print(table)
    ratio = peers / ours
    print(f"ratio ours / PIL: {ratio:.1f}x ({'meets' if ratio >= 5 else 'misses'} the 5x target)")


if __name__ == "__main__":
    main()
