"""Data users already have: an unlabelled folder to pre-train on (with or without a labelled probe
root), open_clip's CSV captions, non-square images (resize modes, JPEG draft mode), and zero-shot
class names."""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import run_cli
from PIL import Image

from specrep_cli import cli, config
from specrep_cli.config import from_dict
from specrep_cli.data import load_dataset
from specrep_cli.data.files import decode_images
from specrep_cli.data.tokenizer import Tokenizer
from specrep_cli.errors import ConfigError, DatasetError
from specrep_cli.eval.zeroshot import zero_shot_names

SMALL_RUN = ["trainer.batch_size=16", "trainer.epochs=1", "encoder.width=8", "encoder.projector_hidden_dim=32",
             "encoder.projector_out_dim=16", "eval.probe.fast.steps=5", "dataset.image_size=16",
             "eval.random_init=false",
             "eval.every_n_epochs=0", "eval.alignment_images=0"]


def photos(root: Path, n: int = 40) -> Path:
    """n JPEGs of several sizes in nested folders, no classes."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"roll{i % 3}" / ("deeper" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        w, h = [(48, 32), (32, 40), (24, 24)][i % 3]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    (root / ".thumbnails").mkdir()
    Image.new("RGB", (8, 8)).save(root / ".thumbnails" / "skip.jpg")   # hidden: not an image to train on
    return root


def labelled(root: Path) -> Path:
    for split, n in (("train", 10), ("test", 5)):
        for c, colour in (("red", (230, 20, 20)), ("blue", (20, 20, 230))):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 30), colour).save(root / split / c / f"{i}.png")
    return root


def folder_cfg(tmp_path: Path, **kw):
    return from_dict(config.ImageFolderConfig, {"image_size": 16, "cache_dir": str(tmp_path / "cache"), **kw})


# ------------------------------------------------------------------------------ unlabelled images
def test_an_unlabelled_folder_is_the_ssl_set_and_the_labelled_root_the_probes(tmp_path: Path):
    cfg = folder_cfg(tmp_path, root=str(labelled(tmp_path / "lab")), unlabelled_root=str(photos(tmp_path / "p")),
                     subset=25)
    data = load_dataset(cfg)
    assert data.ssl_images.shape == (25, 3, 16, 16)          # subset: of the unlabelled images
    assert data.train_images.shape[0] == 20 and data.test_images.shape[0] == 10   # the probe's splits, whole
    assert data.classes == ["blue", "red"] and data.labelled
    whole = load_dataset(folder_cfg(tmp_path, unlabelled_root=str(tmp_path / "p")))
    assert whole.ssl_images.shape[0] == 40 and not whole.labelled   # every sub-folder; hidden ones skipped
    held = load_dataset(folder_cfg(tmp_path, root=str(tmp_path / "lab"), unlabelled_root=str(tmp_path / "p"),
                                   holdout=0.25))   # main's dataset.holdout: a quarter of the 20 labelled
    assert held.ssl_images.shape[0] == 40 and (held.train_images.shape[0], held.test_images.shape[0]) == (15, 5)
    with pytest.raises(DatasetError, match="has no classes here: drop dataset.holdout"):
        load_dataset(folder_cfg(tmp_path, unlabelled_root=str(tmp_path / "p"), holdout=0.25))


def test_unlabelled_root_beside_a_builtin_dataset_and_its_refusals(tmp_path: Path):
    cfg = from_dict(config.ShapesConfig, {"num_train": 32, "num_test": 16, "image_size": 16,
                           "unlabelled_root": str(photos(tmp_path / "p"))})
    data = load_dataset(cfg)
    assert data.ssl_images.shape[0] == 40 and data.train_images.shape[0] == 32 and len(data.classes) == 10
    with pytest.raises(ConfigError, match="needs dataset.root .* or dataset.unlabelled_root"):
        config.ImageFolderConfig()   # neither root
    with pytest.raises(ConfigError, match="ssl_split=train"):
        from_dict(config.STL10Config, {"root": "x", "unlabelled_root": "y"})
    with pytest.raises(DatasetError, match="holds no images"):
        (tmp_path / "empty").mkdir()
        load_dataset(folder_cfg(tmp_path, unlabelled_root=str(tmp_path / "empty")))


def test_training_on_a_folder_with_a_labelled_probe_root_and_on_the_folder_alone(tmp_path: Path):
    lab, pics = labelled(tmp_path / "lab"), photos(tmp_path / "p")
    both = run_cli("train", "dataset=imagefolder", f"dataset.root={lab}", f"dataset.unlabelled_root={pics}",
                   *SMALL_RUN, f"hydra.run.dir={tmp_path / 'both'}", cwd=tmp_path)
    assert both.returncode == 0, both.stdout + both.stderr
    assert "40 training / 20 probe-train / 10 test images" in (tmp_path / "both" / "train.log").read_text()
    report = json.loads((tmp_path / "both" / "report.json").read_text())
    assert report["linear_probe"]["top1"] == 100.0   # red against blue: the probe sees the labelled root

    alone = run_cli("train", "dataset=imagefolder", f"dataset.unlabelled_root={pics}", *SMALL_RUN,
                    f"hydra.run.dir={tmp_path / 'alone'}", cwd=tmp_path)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    report = json.loads((tmp_path / "alone" / "report.json").read_text())
    assert "no probe was possible" in report["linear_probe"]["skipped"] and "top1" not in report["knn"]
    assert report["spectrum"]["representation"]["effective_rank"] >= 1   # the spectra still come
    assert "no probe was possible" in (tmp_path / "alone" / "report.md").read_text()
    assert cli.run_command("report", [str(tmp_path / "alone"), str(tmp_path / "both")]) == 0   # `specrep report`


# ------------------------------------------------------------------------------ open_clip's CSV
def write_open_clip_csv(root: Path, n: int = 30, separator: str = ",") -> Path:
    (root / "img").mkdir(parents=True)
    colours = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20)}
    with (root / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f, delimiter=separator)
        writer.writerow(["filepath", "title", "extra"])
        for i in range(n):
            name = list(colours)[i % 3]
            Image.new("RGB", (24, 18), colours[name]).save(root / "img" / f"{i}.jpg")
            writer.writerow([f"img/{i}.jpg", f"a {name} thing, number {i}", "-"])
    return root


def test_open_clip_csv_reads_pairs_without_classes_and_trains_with_retrieval_only(tmp_path: Path):
    root = write_open_clip_csv(tmp_path / "pairs")
    cfg = from_dict(config.ImageTextConfig, {"root": str(root), "captions": "train.csv", "csv_img_key": "filepath",
                           "csv_separator": ",", "image_size": 16, "cache_dir": str(tmp_path / "c")})
    data = load_dataset(cfg)
    assert not data.labelled and data.train_images.shape[0] + data.test_images.shape[0] == 30
    assert len(data.train_captions.texts) == data.train_images.shape[0]
    with pytest.raises(DatasetError, match=r"no column 'caption' in the header \(columns: 'filepath', 'title'"):
        load_dataset(replace(cfg, csv_caption_key="caption"))

    proc = run_cli("train", "objective=clip", "dataset=image_text", f"dataset.root={root}",
                   "dataset.captions=train.csv",
                   "dataset.csv_img_key=filepath", 'dataset.csv_separator=","', *SMALL_RUN,
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "retrieval" in report and "zero_shot" not in report and "skipped" in report["linear_probe"]


# ------------------------------------------------------------------------------ non-square images
def smooth_image(w: int, h: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 255
    return Image.fromarray(rgb.round().astype(np.uint8))


@pytest.mark.parametrize("w, h", [(60, 40), (40, 60)])
def test_shorter_side_center_crop_matches_torchvision_and_stretch_keeps_the_whole_image(tmp_path: Path, w, h):
    image = smooth_image(w, h)
    image.save(tmp_path / "a.png")
    crop = decode_images([tmp_path / "a.png"], 16)[0].float()
    reference = TF.pil_to_tensor(TF.center_crop(TF.resize(image, 16, antialias=True), 16)).float()
    assert (crop - reference).abs().mean() < 2.0   # the same square, within a pixel's alignment
    stretch = decode_images([tmp_path / "a.png"], 16, "stretch")[0].float()
    squashed = TF.pil_to_tensor(image.resize((16, 16), Image.BILINEAR)).float()
    assert torch.equal(stretch, squashed) and (stretch - reference).abs().mean() > 5.0


def test_a_jpeg_being_shrunk_decodes_in_draft_mode_close_to_the_full_decode(tmp_path: Path, monkeypatch):
    from PIL import JpegImagePlugin
    smooth_image(400, 300).save(tmp_path / "big.jpg", quality=95)
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: calls.append(size) or original(self, mode, size))
    fast = decode_images([tmp_path / "big.jpg"], 32)[0].float()
    assert calls == [(43, 32)]   # what a 32-px centre crop of 400 x 300 needs: the decoder picks 1/8 (50 x 38)
    full = decode_images([tmp_path / "big.jpg"], 32, draft=False)[0].float()
    assert len(calls) == 1 and (fast - full).abs().mean() < 2.0


# ------------------------------------------------------------------------------ zero-shot names
def test_zero_shot_class_names_rename_and_warn_about_words_never_seen(caplog):
    tokenizer = Tokenizer.build(["a photo of a tench", "a goldfish in a bowl"])
    with caplog.at_level(logging.WARNING, logger="specrep"):
        names = zero_shot_names(["n01440764", "n01443537", "n02000000"],
                                {"n01440764": "tench", "n01443537": "goldfish"}, tokenizer)
    assert names == ["tench", "goldfish", "n02000000"]
    assert "'n02000000': n02000000" in caplog.text and "tench" not in caplog.text.split("<unk>")[1]
    with pytest.raises(DatasetError, match="names 'n0144', which is not a class"):
        zero_shot_names(["n01440764"], {"n0144": "tench"}, tokenizer)
