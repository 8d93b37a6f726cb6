"""One loader per dataset format, by name: `LOADERS.get(name)(cfg, fits) -> ImageData`.

    shapes        generated from dataset.seed (shapes.py), with captions (captions.py)
    cifar10/100   torchvision's pickled batches (read here; torchvision is imported only to download)
    stl10         torchvision's binary files (the unlabelled split for SSL)
    imagefolder   <root>/<split>/<class>/* image files
    image_text    a captions.tsv over class folders of images, or open_clip's CSV/TSV
    webdataset    open_clip's tar shards, streamed (shards.py), with an evaluation set of shards or a folder

A loader returns uint8 tensors on the host or, for image files that do not fit the memory budget
(`fits(nbytes)`), ImageFiles; load_dataset (datasets.py) fills in the normalisation and moves what
fits to the device.
"""
from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import CIFARConfig, ImageFolderConfig, ImageTextConfig, ShapesConfig, STL10Config, WebDatasetConfig
from ..errors import DatasetError
from ..registry import Registry
from . import shapes
from .captions import folder_classes, read_captions_csv, read_captions_tsv, shapes_captions
from .files import Fits, decode_or_stream, list_image_folder
from .shards import Reading, is_remote, read_shards, shard_urls
from .splits import Captions, ImageData
from .stream import ShardStream

log = logging.getLogger("specrep")
# dataset=<name> -> `loader(cfg, fits) -> ImageData` (mean and std are filled in by load_dataset): uint8
# tensors (on the host) or, for data that do not fit, ImageFiles. Register one with @LOADERS.register("name").
LOADERS: Registry[Callable[[Any, Fits], ImageData]] = Registry("dataset", error=DatasetError)


def subset_indices(n: int, size: int | None, seed: int = 0) -> Tensor | None:
    """A fixed random subset (the same for every run), so `subset` keeps the classes' balance."""
    if size is None or size >= n:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:size].sort().values


def fraction_split(n: int, fraction: float, seed: int, refusal: str) -> tuple[Tensor, Tensor]:
    """(held out, kept), each sorted: a fixed random `fraction` of n items (at least one) by `seed`, and
    the rest; DatasetError(refusal) when none would be kept."""
    held = max(1, round(n * fraction))
    if held >= n:
        raise DatasetError(refusal)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:held].sort().values, perm[held:].sort().values


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


# The on-disk layouts of torchvision's CIFAR and STL-10 datasets: folder, train and test files, and the
# meta file with its class-names key (CIFAR). Reading them needs no torchvision, whose import costs
# seconds of start-up (it pulls in torch._dynamo): it is imported only to download.
CIFAR_FILES = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                           "batches.meta", "label_names"),
               "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names")}
STL10_FOLDER = "stl10_binary"


def _download(name: str, root: Path) -> None:
    """torchvision's own download (and md5 check) into root."""
    try:
        import torchvision.datasets  # only when dataset.download=true finds no files
        root.mkdir(parents=True, exist_ok=True)
        tv_class = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100,
                    "stl10": torchvision.datasets.STL10}[name]
        tv_class(str(root), download=True)
    except Exception as err:   # URLError, OSError, RuntimeError from the md5 check...
        raise DatasetError(f"downloading {name} into {root} failed ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else 'no message'}); check the "
                           "connection, or download it elsewhere and set dataset.root") from None


# ------------------------------------------------------------------------------------------ shapes
@LOADERS.register("shapes")
def _load_shapes(cfg: ShapesConfig, fits: Fits) -> ImageData:
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
def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: the dataset folder is incomplete; delete it and "
                           "download again (dataset.download=true)") from None
    except Exception as err:
        raise DatasetError(f"cannot read {path} ({type(err).__name__}): the file is damaged; delete "
                           "the dataset folder and download again (dataset.download=true)") from None


@LOADERS.register("cifar10")
@LOADERS.register("cifar100")
def _load_cifar(cfg: CIFARConfig, fits: Fits) -> ImageData:
    """torchvision's on-disk format: <root>/cifar-10-batches-py/ or <root>/cifar-100-python/, pickled
    dicts with `data` (N, 3072) uint8 and `labels` (CIFAR-10) or `fine_labels` (CIFAR-100)."""
    base, train_files, test_files, meta_file, meta_key = CIFAR_FILES[cfg.name]
    root = data_root(cfg.root)
    folder = root / base
    if not folder.is_dir() and cfg.download:
        _download(cfg.name, root)
    if not folder.is_dir():
        raise _missing(cfg.name, folder, "about 170 MB")

    def read(file_list) -> tuple[Tensor, Tensor]:
        images, labels = [], []
        for name in file_list:
            entry = _unpickle(folder / name)
            try:
                images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
            except (KeyError, ValueError, TypeError):
                raise DatasetError(f"{folder / name} is not a {cfg.name} batch file (no data/labels "
                                   "of 32x32 RGB images); delete the folder and download again") from None
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)

    train_x, train_y = read(train_files)
    test_x, test_y = read(test_files)
    meta = _unpickle(folder / meta_file)
    if not isinstance(meta, dict) or meta_key not in meta:
        raise DatasetError(f"{folder / meta_file} has no {meta_key!r}: the file is damaged; "
                           "delete the folder and download again")
    classes = meta[meta_key]
    keep = subset_indices(len(train_y), cfg.subset)
    if keep is not None:
        train_x, train_y = train_x[keep], train_y[keep]
    return ImageData(resize(train_x, cfg.image_size), train_y, resize(test_x, cfg.image_size), test_y,
                     list(classes))


# ------------------------------------------------------------------------------------------ stl10
@LOADERS.register("stl10")
def _load_stl10(cfg: STL10Config, fits: Fits) -> ImageData:
    """torchvision's on-disk format: <root>/stl10_binary/{train,test,unlabeled}_X.bin (uint8, N x 3 x 96
    x 96, column-major), {train,test}_y.bin (labels 1..10), class_names.txt."""
    root = data_root(cfg.root)
    folder = root / STL10_FOLDER
    if not folder.is_dir() and cfg.download:
        _download("stl10", root)
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


def _test_split(root: Path, name: str | None) -> str:
    if name is not None:
        return name
    return "val" if not (root / "test").is_dir() and (root / "val").is_dir() else "test"


@LOADERS.register("imagefolder")
def _load_imagefolder(cfg: ImageFolderConfig, fits: Fits) -> ImageData:
    """<root>/<train_split>/<class>/* and <root>/<test_split>/<class>/*, decoded to RGB at image_size:
    once, cached on disk, when the splits fit in memory; else streamed (ImageFiles)."""
    root = data_root(cfg.root)
    test_split = _test_split(root, cfg.test_split)
    if not root.is_dir():
        raise DatasetError(f"dataset.root={cfg.root} {'is a file' if root.exists() else 'does not exist'}: point it "
                           f"at a folder with {cfg.train_split}/<class>/* and {test_split}/<class>/*")
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
@LOADERS.register("image_text")
def _load_image_text(cfg: ImageTextConfig, fits: Fits) -> ImageData:
    """<root>/<captions> (default captions.tsv): `<class>/<image path><TAB><caption>` lines, several per
    image allowed. The first folder of an image's path is its class (for the probe, kNN and zero-shot);
    a fixed random `test_fraction` of the images (with their captions) is the test split. With
    dataset.csv_img_key: open_clip's CSV/TSV instead (a header row; no classes: retrieval only)."""
    root = data_root(cfg.root)
    tsv = root / cfg.captions
    if not tsv.is_file():
        raise DatasetError(f"{tsv} does not exist: dataset.root must hold {cfg.captions} with lines "
                           "'<class>/<image><TAB><caption>' (or, with dataset.csv_img_key, open_clip's "
                           "CSV/TSV with a header) and the images under it")
    if cfg.csv_img_key is not None:   # open_clip's format: a header, no classes (retrieval only)
        rows = read_captions_csv(tsv, cfg.csv_img_key, cfg.csv_caption_key, cfg.csv_separator)
    else:
        rows = read_captions_tsv(tsv)
    paths = sorted({image for image, _ in rows})
    classes = [] if cfg.csv_img_key is not None else folder_classes(tsv, paths)
    row_of = {p: i for i, p in enumerate(paths)}
    labels = torch.tensor([classes.index(p.split("/", 1)[0]) for p in paths] if classes else [], dtype=torch.int64)
    captions = Captions([caption for _, caption in rows], torch.tensor([row_of[image] for image, _ in rows]))

    test_idx, train_idx = fraction_split(len(paths), cfg.test_fraction, cfg.split_seed,
                                         f"{tsv} names {len(paths)} images: too few to hold out "
                                         f"dataset.test_fraction={cfg.test_fraction} of them and train on the rest")
    keep = subset_indices(len(train_idx), cfg.subset)
    if keep is not None:
        train_idx = train_idx[keep]
    files = [tsv.parent / p for p in paths]   # paths are relative to the captions file's folder
    train_files, test_files = [files[i] for i in train_idx.tolist()], [files[i] for i in test_idx.tolist()]
    train_x, test_x = decode_or_stream(train_files, test_files, cfg, fits)
    train_y, test_y = (labels[train_idx], labels[test_idx]) if classes else (labels, labels)   # none: empty
    return ImageData(train_x, train_y, test_x, test_y, classes,
                     train_captions=captions.subset(train_idx), test_captions=captions.subset(test_idx))


# -------------------------------------------------------------------------------------- webdataset
@LOADERS.register("webdataset")
def _load_webdataset(cfg: WebDatasetConfig, fits: Fits) -> ImageData:
    """dataset.shards streamed for training (ShardStream: the unlabelled set), and the evaluation set:
    dataset.eval_shards read whole (a fixed random test_fraction of it the test split; classes from .cls
    and dataset.classes; captions for retrieval) or the labelled folder dataset.eval_root."""
    stream = ShardStream.of(cfg)
    if cfg.eval_root is not None:
        folder = ImageFolderConfig(root=cfg.eval_root, image_size=cfg.image_size, in_memory=cfg.in_memory,
                                   memory_budget_gib=cfg.memory_budget_gib, resize=cfg.resize,
                                   cache_dir=cfg.cache_dir, workers=cfg.workers)
        try:
            data = _load_imagefolder(folder, fits)
        except DatasetError as err:   # the folder loader's words name its own key
            raise DatasetError(str(err).replace("dataset.root", "dataset.eval_root")) from None
    else:
        data = _eval_shards(cfg)
    data.unlabelled_images = stream
    return data


def _eval_shards(cfg: WebDatasetConfig) -> ImageData:
    """The labelled evaluation shards, decoded: a fixed random test_fraction (split_seed) is the test split."""
    urls = shard_urls(cfg.eval_shards, "dataset.eval_shards")
    how = Reading(cfg.image_size, cfg.resize, captions=True, labels=True, stop=cfg.bad_samples == "stop")
    try:
        images, labels, texts, bad = read_shards(urls, how)
    except DatasetError as err:
        hint = "; evaluation shards need labels (.cls) and captions (.txt)" if "no readable" in str(err) else ""
        raise DatasetError(f"{err}{hint}") from None
    if bad.count:
        log.warning(f"dataset.eval_shards: {bad.count} bad sample(s) skipped, e.g. {bad.named[0]}")
    classes = _shard_classes(cfg, urls, int(labels.max()) + 1)
    if int(labels.min()) < 0 or int(labels.max()) >= len(classes):
        raise DatasetError(f"dataset.eval_shards: their .cls run {int(labels.min())}..{int(labels.max())}, and "
                           f"dataset.classes names {len(classes)} classes: give one name per class, a line each")
    n = images.shape[0]
    test, train = fraction_split(n, cfg.test_fraction, cfg.split_seed,
                                 f"dataset.eval_shards hold {n} samples: too few to hold out "
                                 f"dataset.test_fraction={cfg.test_fraction} of them as the test split")
    captions = Captions(texts, torch.arange(n))
    return ImageData(images[train], labels[train], images[test], labels[test], classes,
                     train_captions=captions.subset(train), test_captions=captions.subset(test))


def _shard_classes(cfg: WebDatasetConfig, urls: list[str], count: int) -> list[str]:
    """The class names of .cls 0, 1, ...: dataset.classes (a file, one per line), else classes.txt beside
    the first evaluation shard, else the numbers themselves."""
    path = data_root(cfg.classes) if cfg.classes is not None else None
    if path is None and not is_remote(urls[0]) and (Path(urls[0]).parent / "classes.txt").is_file():
        path = Path(urls[0]).parent / "classes.txt"
    if path is None:
        return [str(i) for i in range(count)]
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"dataset.classes={path}: cannot read it ({type(err).__name__}); give a text file "
                           "with one class name per line") from None
    if not names:
        raise DatasetError(f"dataset.classes={path} is empty: give one class name per line")
    return names
