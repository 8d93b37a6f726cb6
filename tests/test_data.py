"""Datasets as uint8 tensors: shapes and image folders, the decode cache, and clear errors."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from specrep_cli import config
from specrep_cli.data import DatasetError, load_dataset


def folder_cfg(root: Path, cache: Path, **kw):
    return OmegaConf.merge(OmegaConf.structured(config.ImageFolderConfig),
                           {"root": str(root), "cache_dir": str(cache), "image_size": 16, **kw})


def make_folder(root: Path) -> Path:
    """Two classes; RGB, grayscale, RGBA and odd-sized images."""
    for split in ("train", "test"):
        for c, value in (("cat", 40), ("dog", 200)):
            d = root / split / c
            d.mkdir(parents=True)
            Image.new("RGB", (31, 17), (value, 0, 0)).save(d / "rgb.png")
            Image.new("L", (9, 40), value).save(d / "gray.jpg")
            Image.new("RGBA", (16, 16), (0, value, 0, 128)).save(d / "rgba.png")
    return root


def test_image_folder_becomes_rgb_uint8_at_image_size(tmp_path: Path):
    data = load_dataset(folder_cfg(make_folder(tmp_path / "data"), tmp_path / "cache"))
    assert data.train_images.shape == (6, 3, 16, 16) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (6, 3, 16, 16)
    assert data.classes == ["cat", "dog"]
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    gray = data.train_images[data.train_labels == 1][0]   # sorted: gray.jpg first
    assert (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()


def test_decode_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path: Path, monkeypatch):
    root = make_folder(tmp_path / "data")
    cfg = folder_cfg(root, tmp_path / "cache")
    first = load_dataset(cfg)
    assert len(list((tmp_path / "cache" / "imagefolder").glob("*.pt"))) == 2   # train and test

    import specrep_cli.data as data_module
    calls = []
    original = data_module.decode_images
    monkeypatch.setattr(data_module, "decode_images", lambda files, size: calls.append(len(files)) or original(files, size))
    again = load_dataset(cfg)
    assert calls == [] and torch.equal(first.train_images, again.train_images)

    img = root / "train" / "cat" / "rgb.png"
    Image.new("RGB", (31, 17), (0, 0, 255)).save(img)
    os.utime(img, ns=(1, 10**18))
    changed = load_dataset(cfg)
    assert calls == [6]   # only the train split is decoded again
    assert not torch.equal(first.train_images, changed.train_images)


@pytest.mark.parametrize("setup, needle", [
    (lambda root: None, "does not exist"),
    (lambda root: (root / "train").mkdir(parents=True), "no class folders"),
    (lambda root: (root / "train" / "cat").mkdir(parents=True), "holds no images"),
])
def test_bad_folders_say_what_is_wrong(tmp_path: Path, setup, needle):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=needle):
        load_dataset(folder_cfg(root, tmp_path / "cache"))


def test_a_corrupt_image_is_named(tmp_path: Path):
    root = make_folder(tmp_path / "data")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match=r"broken\.jpg"):
        load_dataset(folder_cfg(root, tmp_path / "cache"))


def test_subset_is_a_fixed_balanced_draw(tmp_path: Path):
    cfg = OmegaConf.merge(OmegaConf.structured(config.ShapesConfig), {"num_train": 1000, "num_test": 10, "subset": 300})
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert a.train_images.shape[0] == 300 and torch.equal(a.train_images, b.train_images)
    counts = torch.bincount(a.train_labels, minlength=10)
    assert counts.min() >= 15   # not the first 300 images of one class
