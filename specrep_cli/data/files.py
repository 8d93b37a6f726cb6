"""Image files: listing class folders, decoding (PIL, a thread pool), the on-disk decode cache, and
`ImageFiles`, a split read from its files on demand (for folders larger than the memory budget).

Decoded splits are cached as uint8 tensors under $SPECREP_CACHE (default ~/.cache/specrep), keyed by
the files' paths, sizes and mtimes and the target size: the second run starts in seconds.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import DatasetError
from .cache import read_cache, write_cache
from .pixels import to_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
log = logging.getLogger("specrep")
Fits = Callable[[int], bool]   # fits(nbytes): may a split of nbytes live in memory on the device?


class ImageFiles:
    """A split read from image files on demand: `shape` like a uint8 (N, 3, size, size) tensor."""

    def __init__(self, files: Sequence[Path], size: int, workers: int):
        self.files, self.size, self.workers = list(files), size, workers

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return (len(self.files), 3, self.size, self.size)

    def __getitem__(self, i: int) -> Tensor:   # a DataLoader worker decodes one image
        try:
            return torch.from_numpy(_decode(self.files[i], self.size)).permute(2, 0, 1)
        except Exception as err:   # PIL raises many types for broken files
            raise DatasetError(f"cannot read image {self.files[i]} ({type(err).__name__}): remove or replace it") from None


def list_image_folder(split_dir: Path, classes: Sequence[str] | None = None):
    """(files, labels, classes) of <split_dir>/<class>/<image>; classes sorted by name."""
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir} does not exist: dataset.root must hold the split folders "
                           "(e.g. train/ and test/) with one sub-folder per class")
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DatasetError(f"{split_dir} has no class folders: put the images in {split_dir}/<class>/")
    listed = {c: [f for f in sorted((split_dir / c).rglob("*"))
                  if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()] for c in found}
    unknown = sorted(c for c in found if listed[c] and classes is not None and c not in classes)
    if unknown:
        raise DatasetError(f"{split_dir} has class folders that the train split lacks: {', '.join(unknown[:5])}")
    empty = [c for c in found if not listed[c]]
    if empty:   # not a class: it has nothing to learn or score
        log.warning(f"{split_dir}: class folder(s) {', '.join(empty)} hold no images and are left out")
    if classes is None:
        classes = [c for c in found if listed[c]] or found
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for c in (c for c in found if listed[c]):
        files += listed[c]
        labels += [index[c]] * len(listed[c])
    if not files:
        raise DatasetError(f"{split_dir} holds no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...) "
                           "in its class folders")
    return files, labels, list(classes)


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = to_rgb(im)   # 16-bit images scaled, not clipped
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)  # PIL's bilinear antialiases when shrinking
        return np.array(im, dtype=np.uint8)   # a writable copy (torch.from_numpy needs one)


def decode_images(files: Sequence[Path], size: int) -> Tensor:
    """Decode to uint8 (N, 3, size, size) with a thread pool; corrupt files are named in the error."""
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    bad: List[str] = []

    def work(i: int) -> None:
        try:
            out[i] = _decode(files[i], size)
        except Exception as err:  # PIL raises many types for broken files
            bad.append(f"{files[i]} ({type(err).__name__})")

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        list(pool.map(work, range(len(files)), chunksize=256))
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise DatasetError(f"cannot read image {sorted(bad)[0]}{more}: remove or replace it")
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def cache_root(cfg_dir: str | None) -> Path:
    if cfg_dir:
        return Path(cfg_dir).expanduser()
    if os.environ.get("SPECREP_CACHE"):
        return Path(os.environ["SPECREP_CACHE"]).expanduser()
    return Path.home() / ".cache" / "specrep"


def cached_decode(files: Sequence[Path], size: int, cache_dir: Path) -> Tensor:
    """decode_images, cached on disk under a key of the files' paths, sizes, mtimes and `size`."""
    key = hashlib.sha256(str(size).encode())
    for f in files:
        st = f.stat()
        key.update(os.fsencode(f.resolve()) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())   # any file name
    path = cache_dir / "imagefolder" / f"{key.hexdigest()[:32]}.pt"
    images = read_cache(path, key.hexdigest(), (len(files), 3, size, size))   # None: missing or not this key's
    if images is None:
        images = decode_images(files, size)
        write_cache(path, key.hexdigest(), images)   # an unwritable cache only costs the next run the decoding
    return images


def decode_or_stream(train_files: Sequence[Path], test_files: Sequence[Path], cfg: Any,
                     fits: Fits) -> Tuple[Images, Images]:
    """Both splits decoded at cfg.image_size (once, cached) when they fit in memory, else ImageFiles
    streamed by cfg.workers DataLoader workers."""
    if fits((len(train_files) + len(test_files)) * 3 * cfg.image_size ** 2):
        cache = cache_root(cfg.cache_dir)
        return cached_decode(train_files, cfg.image_size, cache), cached_decode(test_files, cfg.image_size, cache)
    return ImageFiles(train_files, cfg.image_size, cfg.workers), ImageFiles(test_files, cfg.image_size, cfg.workers)
