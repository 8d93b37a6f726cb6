"""Image folders decoded right: high-bit-depth PNGs scaled to 8 bits, file names that are not UTF-8,
empty class folders, and decode-cache files checked against their key before they are used."""
from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import folder_cfg, make_folder

from specrep_cli.data import load_dataset
from specrep_cli.data.files import decode_images

GRAY = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)   # 0 .. 65535 in steps of 257


def _png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 48-bit RGB PNG written byte by byte (PIL cannot write one)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_grayscale_and_rgb_pngs_are_scaled_to_8_bits(tmp_path: Path):
    Image.fromarray(GRAY).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"
    rgb = np.stack([GRAY, GRAY // 2, 65535 - GRAY], axis=-1).astype(np.uint16)
    _png16_rgb(tmp_path / "rgb16.png", rgb)
    out = decode_images([tmp_path / "gray16.png", tmp_path / "rgb16.png"], 16).double()
    gray_expected = torch.from_numpy(np.round(GRAY / 65535 * 255))   # value v of 65535 -> v * 255 / 65535
    for c in range(3):
        assert torch.equal(out[0, c], gray_expected)
    assert out[0].mean().item() == pytest.approx(127.5, abs=0.01)   # not all white
    expected = torch.from_numpy(rgb / 65535 * 255).permute(2, 0, 1)
    assert (out[1] - expected).abs().max().item() <= 1.0   # PIL keeps the high byte of 16-bit RGB


def test_a_file_name_that_is_not_utf8_is_decoded_and_cached(tmp_path: Path):
    root = make_folder(tmp_path / "data")
    name = os.fsdecode(b"caf\xe9.png")   # latin-1 bytes: a surrogate escape in Python's str
    Image.new("RGB", (16, 16), (10, 200, 30)).save(root / "train" / "cat" / name)
    data = load_dataset(folder_cfg(root, tmp_path / "cache"))
    again = load_dataset(folder_cfg(root, tmp_path / "cache"))   # from the cache
    assert data.train_images.shape[0] == 7 and torch.equal(data.train_images, again.train_images)


def test_an_empty_class_folder_is_a_warning_not_a_class(tmp_path: Path, caplog):
    root = make_folder(tmp_path / "data")
    (root / "train" / "empty").mkdir()
    (root / "test" / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="specrep"):
        data = load_dataset(folder_cfg(root, tmp_path / "cache"))
    assert data.classes == ["cat", "dog"]
    assert any("empty" in r.message and "no images" in r.message for r in caplog.records), caplog.text


@pytest.mark.parametrize("damage", ["a dict", "another image size", "swapped splits", "old format"])
def test_a_cache_file_that_does_not_match_its_key_is_rebuilt(damage, tmp_path: Path):
    root, cache = make_folder(tmp_path / "data"), tmp_path / "cache"
    Image.new("RGB", (31, 17), (0, 0, 250)).save(root / "test" / "cat" / "rgb.png")   # the splits differ
    fresh = load_dataset(folder_cfg(root, cache))
    files = sorted((cache / "imagefolder").glob("*.pt"), key=lambda p: p.stat().st_mtime_ns)
    train_file, test_file = files   # train is decoded (and cached) first
    stored = torch.load(train_file, weights_only=True)
    wrap = (lambda images: {**stored, "images": images}) if isinstance(stored, dict) else (lambda images: images)
    if damage == "a dict":
        torch.save({"images": "nope"}, train_file)
    elif damage == "another image size":
        torch.save(wrap(torch.zeros(6, 3, 8, 8, dtype=torch.uint8)), train_file)
    elif damage == "swapped splits":
        train_bytes, test_bytes = train_file.read_bytes(), test_file.read_bytes()
        train_file.write_bytes(test_bytes)
        test_file.write_bytes(train_bytes)
    else:   # a bare tensor of the right shape, as written before cache files carried their key
        torch.save(fresh.train_images.flip(0).contiguous(), train_file)
    again = load_dataset(folder_cfg(root, cache))
    assert torch.equal(again.train_images, fresh.train_images)
    assert torch.equal(again.test_images, fresh.test_images)
