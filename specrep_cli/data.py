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
        try:
            return torch.from_numpy(_decode(self.files[i], self.size)).permute(2, 0, 1)
        except Exception as err:   # PIL raises many types for broken files
            raise DatasetError(f"cannot read image {self.files[i]} ({type(err).__name__}): remove or replace it") from None


Images = Union[Tensor, ImageFiles]


@dataclass
class Captions:
    """The captions of a split: texts[j] describes image image_index[j]; an image may have several."""
    texts: List[str]
    image_index: Tensor    # int64 (M,): the image of each caption

    def subset(self, keep: Tensor) -> "Captions":
        """The captions of images `keep` (sorted indices), re-indexed to the kept images."""
        new_index = torch.full((int(self.image_index.max()) + 1 if len(self.texts) else 0,), -1)
        new_index[keep] = torch.arange(len(keep))
        mapped = new_index[self.image_index]
        chosen = (mapped >= 0).nonzero().squeeze(1)
        return Captions([self.texts[j] for j in chosen.tolist()], mapped[chosen])


@dataclass
class ImageData:
    train_images: Images   # uint8 (N, C, H, W): the probe's train split (and the SSL set, by default)
    train_labels: Tensor   # int64 (N,)
    test_images: Images    # uint8 (M, C, H, W): the probe's test split
    test_labels: Tensor    # int64 (M,)
    classes: List[str]
    unlabelled_images: Images | None = None   # the SSL training set when it is not the train split
    train_captions: Captions | None = None    # image-text pairs (the train split's images)
    test_captions: Captions | None = None
    mean: Tensor | None = None   # (C,) per-channel mean of the SSL training images, in [0, 1]
    std: Tensor | None = None    # (C,) per-channel std of the SSL training images, in [0, 1]

    @property
    def ssl_images(self) -> Images:
        """The images self-supervised training draws its batches from."""
        return self.train_images if self.unlabelled_images is None else self.unlabelled_images

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
                                         prefetch_factor=4 if images.workers else None,
                                         generator=torch.Generator())   # not the global RNG: resume stays exact
    try:
        for batch in loader:
            yield batch.to(device, non_blocking=True)
    except DatasetError as err:   # from a worker, wrapped in its traceback: keep the one line
        last = str(err).strip().splitlines()[-1]
        raise DatasetError(last.removeprefix(f"{DatasetError.__module__}.{DatasetError.__qualname__}: ")) from None


Fits = Callable[[int], bool]   # fits(nbytes): may a split of nbytes live in memory on the device?
LOADERS: Dict[str, Callable[[Any, Fits], ImageData]] = {}


def register_dataset(name: str):
    """Decorator: `loader(cfg, fits) -> ImageData` (mean and std are filled in by load_dataset).

    A loader returns uint8 tensors (on the host) or, for data that do not fit, ImageFiles.
    """
    def wrap(loader):
        LOADERS[name] = loader
        return loader
    return wrap


def channel_stats(images: Images, chunk: int = 4096, sample: int = 10000) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units, in float64 chunks,
    over a fixed random sample of at most `sample` images."""
    keep = subset_indices(images.shape[0], sample, seed=0)
    if isinstance(images, ImageFiles):
        files = images.files if keep is None else [images.files[i] for i in keep.tolist()]
        images = decode_images(files, images.size)
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


def subset_indices(n: int, size: int | None, seed: int = 0) -> Tensor | None:
    """A fixed random subset (the same for every run), so `subset` keeps the classes' balance."""
    if size is None or size >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:size].sort().values


def memory_budget(cfg: Any, device: torch.device) -> int:
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


def load_dataset(cfg: Any, device: torch.device = torch.device("cpu")) -> ImageData:
    """Load `cfg` (a dataset config); splits that fit the memory budget are moved to `device`.

    dataset.in_memory: `true` keeps every split on the device, `false` leaves tensors on the host
    (batches are gathered there and copied) and streams image folders from their files, `auto` keeps
    them on the device when their total size fits `memory_budget(cfg, device)`.
    """
    if cfg.name not in LOADERS:
        raise DatasetError(f"unknown dataset {cfg.name!r}; known: {', '.join(sorted(LOADERS))}")
    budget = memory_budget(cfg, device)
    in_memory = str(cfg.in_memory).lower()   # YAML's true/false arrive as 'True'/'False'

    def fits(nbytes: int) -> bool:
        return in_memory == "true" or (in_memory == "auto" and nbytes <= budget)

    data = LOADERS[cfg.name](cfg, fits)
    for split in ("train", "test"):   # a truncated label file must not surface as a crash after training
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        if images.shape[0] != labels.shape[0] or (labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < len(data.classes)):
            raise DatasetError(f"dataset {cfg.name}: the {split} split has {images.shape[0]} images but "
                               f"{labels.shape[0]} labels, or labels outside 0..{len(data.classes) - 1}; "
                               "its files are damaged: delete them and download again")
    data.mean, data.std = channel_stats(data.ssl_images)
    splits = ("train_images", "test_images", "unlabelled_images")
    tensors = [getattr(data, s) for s in splits if isinstance(getattr(data, s), Tensor)]
    if len(tensors) == sum(getattr(data, s) is not None for s in splits) \
            and fits(sum(t.numel() for t in tensors)):
        for s in splits:
            if getattr(data, s) is not None:
                setattr(data, s, getattr(data, s).to(device))
    return data


def resize(images: Tensor, size: int, chunk: int = 2048) -> Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear, antialiased when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].float()
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                            align_corners=False)
        out[start:start + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def data_root(root: str) -> Path:
    return Path(os.path.expanduser(root))


def _missing(name: str, folder: Path, size: str) -> DatasetError:
    return DatasetError(f"{name} not found: {folder} does not exist; download it with "
                        f"dataset.download=true ({size}, needs internet) or point dataset.root (default: "
                        "$SPECREP_DATA, else ~/.cache/specrep/data) at the folder that holds "
                        f"{folder.name}/")


def _download(tv_class, name: str, root: Path) -> None:
    """torchvision's own download (and md5 check) into root."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tv_class(str(root), download=True)
    except Exception as err:   # URLError, OSError, RuntimeError from the md5 check...
        raise DatasetError(f"downloading {name} into {root} failed ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else 'no message'}); check the "
                           "connection, or download it elsewhere and set dataset.root") from None


# ------------------------------------------------------------------------------------------ shapes
@register_dataset("shapes")
def _load_shapes(cfg: Any, fits: Fits) -> ImageData:
    from . import shapes
    from .captions import shapes_captions
    train = shapes.generate(cfg.num_train, seed=cfg.seed, image_size=cfg.image_size)
    test = shapes.generate(cfg.num_test, seed=cfg.seed + 1_000_003, image_size=cfg.image_size)

    def captions(split, seed: int) -> Captions:   # one caption per image, from its factors
        return Captions(shapes_captions(split.factors, seed), torch.arange(split.labels.numel()))

    x, y, train_captions = train.images, train.labels, captions(train, cfg.seed)
    keep = subset_indices(len(y), cfg.subset)
    if keep is not None:
        x, y, train_captions = x[keep], y[keep], train_captions.subset(keep)
    return ImageData(x, y, test.images, test.labels, list(shapes.CLASSES), train_captions=train_captions,
                     test_captions=captions(test, cfg.seed + 1_000_003))


# ------------------------------------------------------------------------------------- cifar10/100
def _unpickle(path: Path) -> Dict[str, Any]:
    import pickle
    try:
        with path.open("rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: the dataset folder is incomplete; delete it and "
                           "download again (dataset.download=true)") from None
    except Exception as err:
        raise DatasetError(f"cannot read {path} ({type(err).__name__}): the file is damaged; delete "
                           "the dataset folder and download again (dataset.download=true)") from None


@register_dataset("cifar10")
@register_dataset("cifar100")
def _load_cifar(cfg: Any, fits: Fits) -> ImageData:
    """torchvision's on-disk format: <root>/cifar-10-batches-py/ or <root>/cifar-100-python/, pickled
    dicts with `data` (N, 3072) uint8 and `labels` (CIFAR-10) or `fine_labels` (CIFAR-100)."""
    from torchvision.datasets import CIFAR10, CIFAR100
    tv = CIFAR10 if cfg.name == "cifar10" else CIFAR100
    root = data_root(cfg.root)
    folder = root / tv.base_folder
    if not folder.is_dir() and cfg.download:
        _download(tv, cfg.name, root)
    if not folder.is_dir():
        raise _missing(cfg.name, folder, "about 170 MB")

    def read(file_list) -> Tuple[Tensor, Tensor]:
        images, labels = [], []
        for name, _md5 in file_list:
            entry = _unpickle(folder / name)
            try:
                images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
            except (KeyError, ValueError, TypeError):
                raise DatasetError(f"{folder / name} is not a {cfg.name} batch file (no data/labels "
                                   "of 32x32 RGB images); delete the folder and download again") from None
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)

    train_x, train_y = read(tv.train_list)
    test_x, test_y = read(tv.test_list)
    meta = _unpickle(folder / tv.meta["filename"])
    if not isinstance(meta, dict) or tv.meta["key"] not in meta:
        raise DatasetError(f"{folder / tv.meta['filename']} has no {tv.meta['key']!r}: the file is damaged; "
                           "delete the folder and download again")
    classes = meta[tv.meta["key"]]
    keep = subset_indices(len(train_y), cfg.subset)
    if keep is not None:
        train_x, train_y = train_x[keep], train_y[keep]
    return ImageData(resize(train_x, cfg.image_size), train_y, resize(test_x, cfg.image_size), test_y,
                     list(classes))


# ------------------------------------------------------------------------------------------ stl10
@register_dataset("stl10")
def _load_stl10(cfg: Any, fits: Fits) -> ImageData:
    """torchvision's on-disk format: <root>/stl10_binary/{train,test,unlabeled}_X.bin (uint8, N x 3 x 96
    x 96, column-major), {train,test}_y.bin (labels 1..10), class_names.txt."""
    from torchvision.datasets import STL10
    root = data_root(cfg.root)
    folder = root / STL10.base_folder
    if not folder.is_dir() and cfg.download:
        _download(STL10, "stl10", root)
    if not folder.is_dir():
        raise _missing("stl10", folder, "about 2.6 GB")

    def images(name: str, subset: int | None = None) -> Tensor:
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path} is missing: the dataset folder is incomplete; delete it and "
                               "download again (dataset.download=true)")
        if path.stat().st_size == 0:
            raise DatasetError(f"{path} is empty (an interrupted download?); delete the folder and download again")
        flat = np.memmap(path, dtype=np.uint8, mode="r")
        if flat.size % (3 * 96 * 96):
            raise DatasetError(f"{path} is truncated ({flat.size} bytes is not a whole number of 3x96x96 "
                               "images); delete the folder and download again")
        x = flat.reshape(-1, 3, 96, 96)
        keep = subset_indices(x.shape[0], subset)
        if keep is not None:
            x = x[keep.numpy()]
        return resize(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 3, 2))), cfg.image_size)

    def labels(name: str) -> Tensor:
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path} is missing: delete the folder and download again")
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1)

    train_x, train_y = images("train_X.bin"), labels("train_y.bin")
    test_x, test_y = images("test_X.bin"), labels("test_y.bin")
    names = folder / "class_names.txt"
    classes = names.read_text().split() if names.is_file() else [str(i) for i in range(10)]
    unlabelled = None   # ssl_split=train: SSL on the labelled train split, `subset` of it
    if cfg.ssl_split == "train":
        keep = subset_indices(len(train_y), cfg.subset)
        if keep is not None:
            train_x, train_y = train_x[keep], train_y[keep]
    else:
        unlabelled = images("unlabeled_X.bin", cfg.subset)
        if cfg.ssl_split == "train+unlabeled":
            unlabelled = torch.cat([train_x, unlabelled])
    return ImageData(train_x, train_y, test_x, test_y, classes, unlabelled_images=unlabelled)


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


def decode_or_stream(train_files: Sequence[Path], test_files: Sequence[Path], cfg: Any,
                     fits: Fits) -> Tuple[Images, Images]:
    """Both splits decoded at cfg.image_size (once, cached) when they fit in memory, else ImageFiles
    streamed by cfg.workers DataLoader workers."""
    if fits((len(train_files) + len(test_files)) * 3 * cfg.image_size ** 2):
        cache = cache_root(cfg.cache_dir)
        return cached_decode(train_files, cfg.image_size, cache), cached_decode(test_files, cfg.image_size, cache)
    return ImageFiles(train_files, cfg.image_size, cfg.workers), ImageFiles(test_files, cfg.image_size, cfg.workers)


def _test_split(root: Path, name: str | None) -> str:
    if name is not None:
        return name
    return "val" if not (root / "test").is_dir() and (root / "val").is_dir() else "test"


@register_dataset("imagefolder")
def _load_imagefolder(cfg: Any, fits: Fits) -> ImageData:
    """<root>/<train_split>/<class>/* and <root>/<test_split>/<class>/*, decoded to RGB at image_size:
    once, cached on disk, when the splits fit in memory; else streamed (ImageFiles)."""
    root = data_root(cfg.root)
    test_split = _test_split(root, cfg.test_split)
    if not root.is_dir():
        raise DatasetError(f"dataset.root={cfg.root} does not exist: point it at a folder with "
                           f"{cfg.train_split}/<class>/* and {test_split}/<class>/*")
    train_files, train_labels, classes = list_image_folder(root / cfg.train_split)
    keep = subset_indices(len(train_files), cfg.subset)
    if keep is not None:
        train_files = [train_files[i] for i in keep.tolist()]
        train_labels = [train_labels[i] for i in keep.tolist()]
    test_files, test_labels, _ = list_image_folder(root / test_split, classes)
    train_x, test_x = decode_or_stream(train_files, test_files, cfg, fits)
    return ImageData(train_x, torch.tensor(train_labels, dtype=torch.int64), test_x,
                     torch.tensor(test_labels, dtype=torch.int64), classes)


# -------------------------------------------------------------------------------------- image_text
@register_dataset("image_text")
def _load_image_text(cfg: Any, fits: Fits) -> ImageData:
    """<root>/<captions> (default captions.tsv): `<class>/<image path><TAB><caption>` lines, several per
    image allowed. The first folder of an image's path is its class (for the probe, kNN and zero-shot);
    a fixed random `test_fraction` of the images (with their captions) is the test split."""
    from .captions import read_captions_tsv
    root = data_root(cfg.root)
    tsv = root / cfg.captions
    if not tsv.is_file():
        raise DatasetError(f"{tsv} does not exist: dataset.root must hold {cfg.captions} with lines "
                           "'<class>/<image><TAB><caption>' and the images under it")
    rows = read_captions_tsv(tsv)
    paths = sorted({image for image, _ in rows})
    flat = [p for p in paths if "/" not in p]
    if flat:
        raise DatasetError(f"{tsv}: image {flat[0]!r} is not in a class folder: put each image under "
                           "<class>/ (one folder for all is fine; the folder names are the classes)")
    classes = sorted({p.split("/", 1)[0] for p in paths})
    row_of = {p: i for i, p in enumerate(paths)}
    labels = torch.tensor([classes.index(p.split("/", 1)[0]) for p in paths], dtype=torch.int64)
    captions = Captions([caption for _, caption in rows], torch.tensor([row_of[image] for image, _ in rows]))

    n_test = max(1, round(len(paths) * cfg.test_fraction))
    if n_test >= len(paths):
        raise DatasetError(f"{tsv} names {len(paths)} images: too few to hold out "
                           f"dataset.test_fraction={cfg.test_fraction} of them and train on the rest")
    perm = torch.randperm(len(paths), generator=torch.Generator().manual_seed(cfg.split_seed))
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    keep = subset_indices(len(train_idx), cfg.subset)
    if keep is not None:
        train_idx = train_idx[keep]
    files = [tsv.parent / p for p in paths]   # paths are relative to the captions file's folder
    train_files, test_files = [files[i] for i in train_idx.tolist()], [files[i] for i in test_idx.tolist()]
    train_x, test_x = decode_or_stream(train_files, test_files, cfg, fits)
    return ImageData(train_x, labels[train_idx], test_x, labels[test_idx], classes,
                     train_captions=captions.subset(train_idx), test_captions=captions.subset(test_idx))
