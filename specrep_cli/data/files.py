"""Image files: listing class folders, decoding (PIL, a thread pool), the on-disk decode cache, and
`ImageFiles`, a split read from its files on demand (for folders larger than the memory budget).

Decoded splits are cached as uint8 tensors under $SPECREP_CACHE (default ~/.cache/specrep), keyed by
the files' paths, sizes and mtimes, the target size and the resize mode: the second run starts in seconds.

Non-square images are brought to size x size by `dataset.resize`: `shorter_side_center_crop` (the
default, torchvision's Resize(size) + CenterCrop(size): the central square, resized) or `stretch`
(the whole image, squashed). A JPEG being shrunk is decoded with PIL's draft mode first (the decoder's
own 1/2, 1/4 or 1/8 scaling, never below what the resize needs): a large photo decodes several
times faster.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable, List, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..config import RESIZE_MODES, ImageDatasetConfig
from ..errors import DatasetError
from ..progress import phase
from .cache import read_cache, write_cache
from .pixels import to_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
log = logging.getLogger("specrep")
Fits = Callable[[int], bool]   # fits(nbytes): may a split of nbytes live in memory on the device?
CENTER_CROP = RESIZE_MODES[0]


class ImageFiles:
    """A split read from image files on demand: `shape` like a uint8 (N, 3, size, size) tensor. Its
    `workers` DataLoader processes decode one image at a time each, on one torch thread (torch sets it
    in every worker), so the decoders take `workers` cores beside the training process's threads."""

    def __init__(self, files: Sequence[Path], size: int, workers: int, resize: str = CENTER_CROP):
        self.files, self.size, self.workers, self.resize = list(files), size, workers, resize

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return (len(self.files), 3, self.size, self.size)

    def __getitem__(self, i: int) -> Tensor:   # a DataLoader worker decodes one image
        try:
            return torch.from_numpy(decode_one(self.files[i], self.size, self.resize)).permute(2, 0, 1)
        except Exception as err:   # PIL raises many types for broken files
            raise DatasetError(f"cannot read image {self.files[i]} ({type(err).__name__}): "
                               "remove or replace it") from None


Images = Union[Tensor, ImageFiles]   # a split: decoded in memory, or read from its files on demand


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


def decode_one(source: Path | BinaryIO, size: int, resize: str = CENTER_CROP, draft: bool = True) -> np.ndarray:
    """One image (a file, or its bytes in a file object) -> uint8 (size, size, 3) RGB, by `resize`
    (RESIZE_MODES); JPEGs shrunk in draft mode."""
    with Image.open(source) as im:
        w, h = im.size
        side = min(w, h)
        if resize == "stretch":
            box, need = (0.0, 0.0, w, h), (size, size)
        else:   # the central square, in the source's coordinates
            box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
            need = (math.ceil(w * size / side), math.ceil(h * size / side))
        if draft and im.format == "JPEG" and (w > need[0] or h > need[1]):
            im.draft("RGB", need)   # decode at the coarsest 1/2^k scale still at least `need`
            sx, sy = im.size[0] / w, im.size[1] / h
            box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        im = to_rgb(im)   # 16-bit images scaled, not clipped
        if im.size != (size, size) or box != (0, 0, size, size):
            im = im.resize((size, size), Image.BILINEAR, box=box)  # PIL's bilinear antialiases when shrinking
        return np.array(im, dtype=np.uint8)   # a writable copy (torch.from_numpy needs one)


def decode_images(files: Sequence[Path], size: int, resize: str = CENTER_CROP, draft: bool = True) -> Tensor:
    """Decode to uint8 (N, 3, size, size) with a pool of torch.get_num_threads() threads (the process's
    trainer.threads: PIL decodes without the GIL); corrupt files are named in the error.
    draft=False decodes JPEGs at full size first (benchmarks/decode.py compares the two)."""
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    bad: List[str] = []

    def work(i: int) -> None:
        try:
            out[i] = decode_one(files[i], size, resize, draft)
        except Exception as err:  # PIL raises many types for broken files
            bad.append(f"{files[i]} ({type(err).__name__})")

    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool, \
            phase("decoding", len(files), "images") as shown:
        for _ in pool.map(work, range(len(files)), chunksize=256):   # in order, as each is decoded
            shown.advance()
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


def cached_decode(files: Sequence[Path], size: int, cache_dir: Path, resize: str = CENTER_CROP) -> Tensor:
    """decode_images, cached on disk under a key of the files' paths, sizes, mtimes, `size` and `resize`."""
    key = hashlib.sha256(f"{size} {resize} draft".encode())
    for f in files:
        st = f.stat()
        key.update(os.fsencode(f.resolve()) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())   # any file name
    path = cache_dir / "imagefolder" / f"{key.hexdigest()[:32]}.pt"
    images = read_cache(path, key.hexdigest(), (len(files), 3, size, size))   # None: missing or not this key's
    if images is not None:
        log.info(f"decode cache: {path} (hit: {len(files):,} images decoded before)")
    else:
        log.info(f"decode cache: {path} (miss: decoding {len(files):,} images, then caching them there)")
        images = decode_images(files, size, resize)
        write_cache(path, key.hexdigest(), images)   # an unwritable cache only costs the next run the decoding
    return images


def decode_or_stream(train_files: Sequence[Path], test_files: Sequence[Path], cfg: ImageDatasetConfig,
                     fits: Fits) -> Tuple[Images, Images]:
    """Both splits decoded at cfg.image_size by cfg.resize (once, cached) when they fit in memory, else
    ImageFiles streamed by cfg.workers DataLoader workers."""
    size, resize = cfg.image_size, cfg.resize
    if fits((len(train_files) + len(test_files)) * 3 * size ** 2):
        cache = cache_root(cfg.cache_dir)
        return cached_decode(train_files, size, cache, resize), cached_decode(test_files, size, cache, resize)
    return ImageFiles(train_files, size, cfg.workers, resize), ImageFiles(test_files, size, cfg.workers, resize)
