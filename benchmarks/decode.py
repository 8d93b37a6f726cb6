"""Decoding image folders: PIL's JPEG draft mode against a full decode, through the decoder specrep
runs (specrep_cli.data.files.decode_images: a thread pool, the resize of dataset.resize).

    python benchmarks/decode.py                        # 2,000 CIFAR-10 JPEGs as they are, and as 384 x 288 photos
    python benchmarks/decode.py --images 500 --repeats 1 --sizes 32   # quicker

Two folders, each decoded with draft mode on (what `specrep train` does) and off, side by side:
- the shared CIFAR-10 JPEG folder as it is (32 x 32: nothing to shrink, so draft mode must cost nothing);
- the same images upsampled to 384 x 288 (4:3, bicubic) and saved as JPEG quality 90 in a temporary
  folder: photos of the size people keep, decoded to each `--sizes` square (shorter_side_center_crop).
Per row: the median seconds over `--repeats` passes (after one unmeasured pass of each, the two
alternating), images per second, draft's speed-up, and the mean absolute difference (0-255) between
the two decodes' pixels. Without the CIFAR-10 folder, smooth
synthetic images stand in (the first line says which).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import CIFAR_JPEG, cpu_name
from PIL import Image
from rich.console import Console
from rich.table import Table

from specrep_cli import __version__
from specrep_cli.data.files import decode_images
from specrep_cli.runtime import git_sha


def source_images(n: int) -> tuple[list[Path], str]:
    """n JPEG files of the CIFAR-10 train split (every class), or synthetic ones when it is absent."""
    if CIFAR_JPEG.is_dir():
        files = sorted((CIFAR_JPEG / "train").rglob("*.jpg"))
        step = max(1, len(files) // n)
        return files[::step][:n], f"CIFAR-10 train JPEGs from {CIFAR_JPEG}"
    folder = Path(tempfile.mkdtemp(prefix="specrep-decode-src-"))
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(n):
        rgb = np.stack([np.sin(xx / (3 + i % 7)), np.cos(yy / (2 + i % 5)), np.sin((xx + yy) / 9)], -1)
        Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return sorted(folder.glob("*.jpg")), "synthetic 32 x 32 JPEGs (no CIFAR-10 folder found)"


def photos(files: list[Path], folder: Path, size=(384, 288)) -> list[Path]:
    """The images upsampled to `size` and saved as JPEG quality 90."""
    out = []
    for i, f in enumerate(files):
        with Image.open(f) as im:
            im.convert("RGB").resize(size, Image.BICUBIC).save(folder / f"{i}.jpg", quality=90)
        out.append(folder / f"{i}.jpg")
    return out


def side_by_side(files: list[Path], size: int, repeats: int) -> tuple[float, float, float]:
    """(median seconds with draft mode off, on, mean |difference| of their pixels): one unmeasured pass
    of each (the files in the page cache), then `repeats` passes alternating off and on."""
    full, fast = decode_images(files, size, draft=False), decode_images(files, size, draft=True)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for draft in (False, True):
            t0 = time.perf_counter()
            decode_images(files, size, draft=draft)
            seconds[draft].append(time.perf_counter() - t0)
    diff = (fast.float() - full.float()).abs().mean().item()
    return statistics.median(seconds[False]), statistics.median(seconds[True]), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    files, what = source_images(args.images)
    print(f"{what}: {len(files)} images; {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"specrep {__version__} (git {git_sha() or 'n/a'})")
    table = Table(title="decode_images: draft mode on (specrep) and off, side by side")
    for heading in ("folder", "to", "draft", "s (median)", "images/s", "speed-up", "mean |diff|"):
        table.add_column(heading, justify="left" if heading in ("folder", "draft") else "right")
    with tempfile.TemporaryDirectory(prefix="specrep-decode-") as tmp:
        big = photos(files, Path(tmp))
        for name, folder, sizes in (("CIFAR-10 as is (32 x 32)", files, [32]),
                                    ("as 384 x 288 photos", big, args.sizes)):
            for size in sizes:
                off, on, diff = side_by_side(folder, size, args.repeats)
                table.add_row(name, f"{size} px", "off", f"{off:.3f}", f"{len(folder) / off:,.0f}", "1.00x", "")
                table.add_row("", "", "on", f"{on:.3f}", f"{len(folder) / on:,.0f}", f"{off / on:.2f}x",
                              f"{diff:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
