"""Datasets as uint8 images (N, C, H, W): in memory on the training device, or streamed from files.

Every dataset option goes through `load_dataset(cfg) -> ImageData`; a builder registry maps
`dataset.name` to its loader. A split is either a uint8 tensor or `ImageFiles` (files decoded and
resized on the fly, for folders larger than the memory budget). Training and evaluation read both
the same way:

    for batch in batches(images, order, batch_size, device):   # uint8 (B, C, H, W) on `device`

A tensor already on the device is indexed with the on-device permutation (no DataLoader, no host
sync); a host tensor is gathered on the host and copied; `ImageFiles` go through a DataLoader whose
workers only decode and resize. Augmentation always runs on the device (augment.py).

Image folders are decoded once (PIL, a thread pool) and cached as a uint8 tensor on disk, keyed by the
files' paths, sizes and mtimes and the target size: the second run starts in seconds.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .errors import SpecrepError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class DatasetError(SpecrepError):
    """The dataset cannot be read; the message is one line saying why and what to do."""


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
        return torch.from_numpy(_decode(self.files[i], self.size)).permute(2, 0, 1)


Images = Union[Tensor, ImageFiles]


@dataclass
class ImageData:
    train_images: Images   # uint8 (N, C, H, W): the SSL training set and the probe's train split
    train_labels: Tensor   # int64 (N,)
    test_images: Images    # uint8 (M, C, H, W): the probe's test split
    test_labels: Tensor    # int64 (M,)
    classes: List[str]
    mean: Tensor           # (C,) per-channel mean of the training images, in [0, 1]
    std: Tensor            # (C,) per-channel std of the training images, in [0, 1]

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]


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
                                         prefetch_factor=4 if images.workers else None)
    for batch in loader:
        yield batch.to(device, non_blocking=True)


LOADERS: Dict[str, Callable[[Any], Tuple[Tensor, Tensor, Tensor, Tensor, List[str]]]] = {}


def register_dataset(name: str):
    """Decorator: `loader(cfg) -> (train_images, train_labels, test_images, test_labels, classes)`."""
    def wrap(loader):
        LOADERS[name] = loader
        return loader
    return wrap


def channel_stats(images: Images, chunk: int = 4096, sample: int = 5000) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units, in float64 chunks
    (of a fixed random sample of `sample` images for ImageFiles)."""
    if isinstance(images, ImageFiles):
        keep = subset_indices(len(images), sample, seed=0)
        files = images.files if keep is None else [images.files[i] for i in keep.tolist()]
        images = decode_images(files, images.size)
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


def subset_indices(n: int, size: int | None, seed: int = 0) -> Tensor | None:
    """A fixed random subset (the same for every run), so `subset` keeps the classes' balance."""
    if size is None or size >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:size].sort().values


def load_dataset(cfg: Any) -> ImageData:
    if cfg.name not in LOADERS:
        raise DatasetError(f"unknown dataset {cfg.name!r}; known: {', '.join(sorted(LOADERS))}")
    train_x, train_y, test_x, test_y, classes = LOADERS[cfg.name](cfg)
    mean, std = channel_stats(train_x)
    return ImageData(train_x, train_y, test_x, test_y, list(classes), mean, std)


# ------------------------------------------------------------------------------------------ shapes
@register_dataset("shapes")
def _load_shapes(cfg: Any):
    from . import shapes
    train = shapes.generate(cfg.num_train, seed=cfg.seed, image_size=cfg.image_size)
    test = shapes.generate(cfg.num_test, seed=cfg.seed + 1_000_003, image_size=cfg.image_size)
    x, y = train.images, train.labels
    keep = subset_indices(len(y), cfg.subset)
    if keep is not None:
        x, y = x[keep], y[keep]
    return x, y, test.images, test.labels, list(shapes.CLASSES)


# ------------------------------------------------------------------------------------- imagefolder
def list_image_folder(split_dir: Path, classes: Sequence[str] | None = None):
    """(files, labels, classes) of <split_dir>/<class>/<image>; classes sorted by name."""
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir} does not exist: dataset.root must hold the split folders "
                           "(e.g. train/ and test/) with one sub-folder per class")
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DatasetError(f"{split_dir} has no class folders: put the images in {split_dir}/<class>/")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DatasetError(f"{split_dir} has class folders that the train split lacks: {', '.join(unknown[:5])}")
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for c in found:
        for f in sorted((split_dir / c).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                files.append(f)
                labels.append(index[c])
    if not files:
        raise DatasetError(f"{split_dir} holds no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...) "
                           "in its class folders")
    return files, labels, list(classes)


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)  # PIL's bilinear antialiases when shrinking
        return np.asarray(im, dtype=np.uint8)


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
        key.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    path = cache_dir / "imagefolder" / f"{key.hexdigest()[:32]}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:
            pass  # a damaged cache entry is rebuilt below
    images = decode_images(files, size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(images, tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs the next run the decoding time
    return images


@register_dataset("imagefolder")
def _load_imagefolder(cfg: Any):
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset.root={cfg.root} does not exist: point it at a folder with "
                           f"{cfg.train_split}/<class>/* and {cfg.test_split}/<class>/*")
    train_files, train_labels, classes = list_image_folder(root / cfg.train_split)
    keep = subset_indices(len(train_files), cfg.subset)
    if keep is not None:
        train_files = [train_files[i] for i in keep.tolist()]
        train_labels = [train_labels[i] for i in keep.tolist()]
    test_files, test_labels, _ = list_image_folder(root / cfg.test_split, classes)
    cache = cache_root(cfg.cache_dir)
    train_x = cached_decode(train_files, cfg.image_size, cache)
    test_x = cached_decode(test_files, cfg.image_size, cache)
    return (train_x, torch.tensor(train_labels, dtype=torch.int64), test_x,
            torch.tensor(test_labels, dtype=torch.int64), classes)
