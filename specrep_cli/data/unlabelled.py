"""Images without labels to pre-train on: `dataset.unlabelled_root=DIR`, a folder of images in any
sub-folder structure (no classes needed).

    files = list_images(Path("/data/photos"))     # every image file below it, sorted
    images = load_unlabelled(cfg, fits)           # decoded (cached) or streamed, at cfg.image_size
    data = unlabelled_only(cfg, fits)             # no labelled root at all: trains, and nothing to probe

With a labelled dataset beside it (dataset=imagefolder's root, or cifar10, stl10, shapes...), the
folder's images are the SSL training set (`ImageData.unlabelled_images`) and the labelled splits are
the probe's; `dataset.subset` then takes a fixed random N of the folder's images.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import torch

from ..config import ImageDatasetConfig
from ..errors import DatasetError
from .files import IMAGE_EXTENSIONS, Fits, ImageFiles, cache_root, cached_decode
from .loaders import data_root, subset_indices
from .splits import ImageData, Images


def list_images(root: Path) -> List[Path]:
    """Every image file at or below `root` (hidden folders skipped), sorted by path."""
    if not root.is_dir():
        raise DatasetError(f"dataset.unlabelled_root={root} does not exist: point it at a folder of images "
                           "(any sub-folders)")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(root).parts))
    if not files:
        raise DatasetError(f"dataset.unlabelled_root={root} holds no images "
                           f"({', '.join(IMAGE_EXTENSIONS[:4])}, ...)")
    return files


def load_unlabelled(cfg: ImageDatasetConfig, fits: Fits) -> Images:
    """cfg.unlabelled_root's images (a fixed random cfg.subset of them) at cfg.image_size, resized by
    cfg.resize: decoded once and cached when they fit in memory, else streamed by DataLoader workers."""
    files = list_images(data_root(cfg.unlabelled_root))
    keep = subset_indices(len(files), cfg.subset)
    if keep is not None:
        files = [files[i] for i in keep.tolist()]
    size, resize = cfg.image_size, cfg.resize
    if fits(len(files) * 3 * size ** 2):
        return cached_decode(files, size, cache_root(cfg.cache_dir), resize)
    return ImageFiles(files, size, cfg.workers, resize)


def unlabelled_only(cfg: ImageDatasetConfig, fits: Fits) -> ImageData:
    """The folder alone: its images are the SSL set and the split the spectra and the views read; no
    labels, so no probe, kNN or zero-shot (ImageData.labelled is False)."""
    images = load_unlabelled(cfg, fits)
    none = torch.empty(0, dtype=torch.int64)
    return ImageData(images, none, images, none, [])
