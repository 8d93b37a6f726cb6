"""Checkpoints: atomic writes, and strict, safe loads that explain in one line what is wrong.

A checkpoint is a plain dict of tensors and plain data (no pickled classes), so it loads with
`torch.load(weights_only=True)`: a crafted file that would run code when unpickled is refused.

    {"format": "specrep-checkpoint", "format_version": 1, "specrep_version", "torch_version",
     "config": the resolved run config as plain data,
     "data": {"in_channels", "image_size", "classes", "input" (rgb | lab_l: what phi sees),
              "mean", "std" (the normalisation it was trained with)},
     "encoder": state dict (backbone + projector), "objective": the objective's other state
     (targets, Lambda_t, learnable scales, a second tower), "optimizer", "epoch", "step", "rng",
     "history", "train_seconds", and when present: "tokenizer" (image-text runs: its vocabulary),
     "perm" and "epoch_step" (stopped inside an epoch: the epoch's order and the steps done)}
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict

import torch

from .errors import SpecrepError

FORMAT = "specrep-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(SpecrepError):
    """The checkpoint cannot be used; the message is one line saying why and what to do."""


def save_checkpoint(path: Path, payload: Dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same directory, flushed and fsynced, then renamed.

    A reader never sees a partial file; if writing fails, any previous file at `path` is untouched.
    """
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path} ({err.strerror or err}): "
                              "fix the directory's permissions") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointError(f"cannot write checkpoint {path} ({err.strerror or err}); the previous "
                                  "checkpoint there is intact: free some space or fix the permissions, "
                                  "then resume") from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def resolve_checkpoint_path(path: str | os.PathLike | None) -> Path:
    """A checkpoint file, or a run directory (its checkpoints/last.pt)."""
    if path is None or str(path) == "":
        raise CheckpointError("no checkpoint given: pass checkpoint=PATH (a .pt file or a run directory)")
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / "last.pt"
        if not p.is_file():
            raise CheckpointError(f"{path} is a directory without checkpoints/last.pt: "
                                  "pass a run directory of `specrep train` or a checkpoint file")
    if not p.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path "
                              "(run directories are under outputs/<date>/<time>)")
    return p


def load_checkpoint(path: str | os.PathLike | None, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load and check a specrep checkpoint; raises CheckpointError with one line on any problem."""
    p = resolve_checkpoint_path(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "GLOBAL" in str(err):   # a class or function to call
            raise CheckpointError(f"{p} was refused: it holds pickled objects that could run code when "
                                  "loaded, and specrep only loads plain tensors and data") from None
        raise CheckpointError(f"{p} is not a readable checkpoint (UnpicklingError): "
                              "it may be truncated or corrupt; use another checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{p} is not a readable checkpoint ({first}): "
                              "it may be truncated or corrupt; use another checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a specrep checkpoint (no '{FORMAT}' marker): "
                              "pass a file written by `specrep train`")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{p} has checkpoint format version {version}, newer than this specrep "
                              f"reads ({FORMAT_VERSION}): upgrade specrep")
    missing = [k for k in ("config", "data", "encoder") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{p} is an incomplete specrep checkpoint (missing {', '.join(missing)})")
    return ckpt
