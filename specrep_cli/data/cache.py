"""The decode cache's files: `<cache>/imagefolder/<key[:32]>.pt` holds {"key": the full key,
"images": uint8 (N, 3, size, size)}, written atomically.

    images = read_cache(path, key, shape)   # None unless the file is exactly what the key describes
    write_cache(path, key, images)          # best effort: a full or read-only disk costs only time

A file is used only if it is this format, holds this key (a file copied or renamed from another
split or folder is not) and a uint8 tensor of the expected shape; anything else (a damaged file,
another object, another image size, an older cache format) is decoded again and replaced.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Tuple

import torch
from torch import Tensor

from ..storage import atomic_write, reason

log = logging.getLogger("specrep")


def read_cache(path: Path, key: str, shape: Tuple[int, ...]) -> Tensor | None:
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, weights_only=True)
    except Exception:   # a damaged file: torch raises many types
        return None
    images = entry.get("images") if isinstance(entry, dict) and entry.get("key") == key else None
    if isinstance(images, Tensor) and images.dtype == torch.uint8 and tuple(images.shape) == tuple(shape):
        return images
    return None


def write_cache(path: Path, key: str, images: Tensor) -> None:
    """Cache `images` under `key`; a failure (no space, no permission) is a warning, and leaves no file."""
    try:
        atomic_write(path, lambda f: torch.save({"key": key, "images": images}, f))
    except (OSError, RuntimeError) as err:
        log.warning(f"could not cache the decoded images in {path.parent} ({reason(err)}): the next run "
                    "decodes them again")
