"""Datasets as uint8 tensors: shapes and image folders, the decode cache, and clear errors."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from support import folder_cfg, make_folder

from specrep_cli import config
from specrep_cli.config import from_dict
from specrep_cli.data import load_dataset
from specrep_cli.errors import DatasetError


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

    import specrep_cli.data.files as files_module
    calls = []
    original = files_module.decode_images
    monkeypatch.setattr(files_module, "decode_images",
                        lambda files, size, *args: calls.append(len(files)) or original(files, size, *args))
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
    cfg = from_dict(config.ShapesConfig, {"num_train": 1000, "num_test": 10, "subset": 300})
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert a.train_images.shape[0] == 300 and torch.equal(a.train_images, b.train_images)
    counts = torch.bincount(a.train_labels, minlength=10)
    assert counts.min() >= 15   # not the first 300 images of one class


# ------------------------------------------------------------------ torchvision's on-disk formats
def dataset_cfg(schema, **kw):
    return from_dict(schema, kw)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loader_reads_torchvisions_format(tmp_path: Path, name: str):
    from fake_datasets import write_cifar
    written = write_cifar(tmp_path, name)
    data = load_dataset(dataset_cfg(config.CIFARConfig, name=name, root=str(tmp_path)))
    for split in ("train", "test"):
        x, y = written[split]
        assert torch.equal(getattr(data, f"{split}_images"), torch.from_numpy(x))
        assert getattr(data, f"{split}_labels").tolist() == y.tolist()
    assert data.classes == written["classes"] and data.ssl_images is data.train_images
    assert data.train_images.shape == (20, 3, 32, 32)


def test_stl10_trains_on_the_unlabelled_split_and_probes_on_the_labelled_ones(tmp_path: Path):
    from fake_datasets import write_stl10
    written = write_stl10(tmp_path)
    data = load_dataset(dataset_cfg(config.STL10Config, root=str(tmp_path)))
    assert torch.equal(data.ssl_images, torch.from_numpy(written["unlabeled"][0]))   # not transposed
    assert torch.equal(data.train_images, torch.from_numpy(written["train"][0]))
    assert data.train_labels.tolist() == written["train"][1].tolist()                 # 1..10 -> 0..9
    assert data.test_labels.tolist() == written["test"][1].tolist()
    assert data.classes[0] == "airplane" and len(data.classes) == 10
    both = load_dataset(dataset_cfg(config.STL10Config, root=str(tmp_path), ssl_split="train+unlabeled"))
    assert both.ssl_images.shape[0] == 6 + 8
    small = load_dataset(dataset_cfg(config.STL10Config, root=str(tmp_path), image_size=48))
    assert small.ssl_images.shape == (8, 3, 48, 48) and small.test_images.shape == (4, 3, 48, 48)


@pytest.mark.parametrize("schema, name, folder", [(config.CIFARConfig, "cifar10", "cifar-10-batches-py"),
                                                  (config.CIFARConfig, "cifar100", "cifar-100-python"),
                                                  (config.STL10Config, "stl10", "stl10_binary")])
def test_a_missing_dataset_says_how_to_get_it(tmp_path: Path, schema, name, folder):
    with pytest.raises(DatasetError, match=rf"{folder} does not exist; download it with dataset.download=true"):
        load_dataset(dataset_cfg(schema, name=name, root=str(tmp_path)))


def test_a_damaged_cifar_file_is_named(tmp_path: Path):
    from fake_datasets import write_cifar
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=r"data_batch_3 .*damaged"):
        load_dataset(dataset_cfg(config.CIFARConfig, root=str(tmp_path)))


# ------------------------------------------------------------------- placement and streaming
def test_image_folder_uses_val_when_there_is_no_test_split(tmp_path: Path):
    root = make_folder(tmp_path / "data")
    (root / "test").rename(root / "val")
    assert load_dataset(folder_cfg(root, tmp_path / "cache")).test_images.shape[0] == 6


def test_a_folder_over_the_memory_budget_is_streamed_with_the_same_images(tmp_path: Path):
    from specrep_cli.data.batches import batches
    from specrep_cli.data.files import ImageFiles
    root = make_folder(tmp_path / "data")
    in_memory = load_dataset(folder_cfg(root, tmp_path / "cache"))
    streamed = load_dataset(folder_cfg(root, tmp_path / "cache", memory_budget_gib=1e-6, workers=2))
    assert isinstance(streamed.train_images, ImageFiles) and isinstance(streamed.test_images, ImageFiles)
    assert streamed.train_images.shape == in_memory.train_images.shape
    order = torch.tensor([5, 0, 3, 1, 4, 2])
    for stream in (streamed.train_images, in_memory.train_images):
        got = torch.cat(list(batches(stream, order, 4, torch.device("cpu"))))
        assert torch.equal(got, in_memory.train_images[order])
    assert len(list(batches(streamed.train_images, order, 4, torch.device("cpu"), drop_last=True))) == 1
    assert torch.allclose(streamed.mean, in_memory.mean) and torch.allclose(streamed.std, in_memory.std)
    forced = load_dataset(folder_cfg(root, tmp_path / "cache", memory_budget_gib=1e-6, in_memory=True))
    assert isinstance(forced.train_images, torch.Tensor)
    never = load_dataset(folder_cfg(root, tmp_path / "cache", in_memory=False, workers=0))
    assert isinstance(never.train_images, ImageFiles)


def test_in_memory_accepts_yaml_booleans_and_rejects_other_words():
    assert dataset_cfg(config.ShapesConfig, in_memory=True).in_memory == "true"
    with pytest.raises(config.ConfigError, match="in_memory must be auto, true or false"):
        dataset_cfg(config.ShapesConfig, in_memory="sometimes")


def test_image_text_pairs_get_folder_classes_and_a_held_out_split_with_their_captions(tmp_path: Path):
    from fake_datasets import write_image_text
    root = write_image_text(tmp_path / "pairs")
    cfg = dataset_cfg(config.ImageTextConfig, root=str(root), cache_dir=str(tmp_path / "cache"),
                      image_size=16, test_fraction=0.2)
    data = load_dataset(cfg)
    assert data.classes == ["blue", "red"]
    assert data.train_images.shape == (16, 3, 16, 16) and data.test_images.shape == (4, 3, 16, 16)
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        caps = getattr(data, f"{split}_captions")
        assert len(caps.texts) == 2 * images.shape[0]
        for text, image in zip(caps.texts, caps.image_index.tolist()):   # each caption names its image's class
            assert data.classes[labels[image]] in text
            red = images[image, 0, 0, 0] > images[image, 2, 0, 0]
            assert ("red" in text) == bool(red)
    again = load_dataset(cfg)
    assert torch.equal(again.test_labels, data.test_labels) and again.test_captions.texts == data.test_captions.texts


def test_a_bad_captions_row_is_named_by_its_line(tmp_path: Path):
    from fake_datasets import write_image_text
    root = write_image_text(tmp_path / "pairs")
    with (root / "captions.tsv").open("a") as f:
        f.write("red/0.png a fine row\n")   # a space, not a tab: line 42 (1 comment + 40 rows + this)
    with pytest.raises(DatasetError, match=r"captions.tsv:42: no tab"):
        load_dataset(dataset_cfg(config.ImageTextConfig, root=str(root), cache_dir=str(tmp_path / "c")))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_met_while_streaming_is_one_line_naming_it(tmp_path: Path, workers: int):
    from specrep_cli.data.batches import batches
    root = make_folder(tmp_path / "data")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    files = sorted((root / "train").rglob("*.*"))
    from specrep_cli.data.files import ImageFiles
    stream = ImageFiles(files, 16, workers)
    with pytest.raises(DatasetError) as err:
        list(batches(stream, torch.arange(len(files)), 4, torch.device("cpu")))
    message = str(err.value)
    assert "\n" not in message and "broken.jpg" in message and message.startswith("cannot read image")


def test_labels_that_do_not_match_the_images_are_refused(tmp_path: Path):
    from fake_datasets import write_stl10
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "train_y.bin").write_bytes(bytes([1, 2, 3]))   # 3 labels for 6 images
    with pytest.raises(DatasetError, match="train split has 6 images but 3 labels"):
        load_dataset(dataset_cfg(config.STL10Config, root=str(tmp_path)))
    (tmp_path / "stl10_binary" / "train_X.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match="train_X.bin is empty"):
        load_dataset(dataset_cfg(config.STL10Config, root=str(tmp_path)))


def test_holdout_moves_a_fixed_part_of_the_train_split_into_the_probes_test_split():
    """For tuning without the test split: dataset.holdout=0.2 keeps 80% of train (SSL and probe fit)
    and scores on the other 20%, the same images in every run; no test image is used."""
    from specrep_cli import config
    cfg = from_dict(config.ShapesConfig, {"num_train": 500, "num_test": 50})
    full = load_dataset(cfg)
    held = load_dataset(replace(cfg, holdout=0.2))
    assert held.train_images.shape[0] == 400 and held.test_images.shape[0] == 100
    assert held.ssl_images.shape[0] == 400
    rows = {tuple(x.flatten().tolist()[:64]) for x in full.train_images}
    assert all(tuple(x.flatten().tolist()[:64]) in rows for x in held.test_images)   # from train, not test
    kept = {tuple(x.flatten().tolist()[:64]) for x in held.train_images}
    assert not kept & {tuple(x.flatten().tolist()[:64]) for x in held.test_images}
    again = load_dataset(replace(cfg, holdout=0.2))
    assert torch.equal(again.test_images, held.test_images) and torch.equal(again.test_labels, held.test_labels)
    assert len(held.train_captions.texts) == 400 and len(held.test_captions.texts) == 100
