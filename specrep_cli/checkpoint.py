"""Checkpoints: the one place that knows their keys. Atomic writes, strict and safe loads, and the
payload()/restore() pair that turns a run's state into a checkpoint and back.

A checkpoint is a plain dict of tensors and plain data (no pickled classes), so it loads with
`torch.load(weights_only=True)`: a crafted file that would run code when unpickled is refused.

    {"format": "specrep-checkpoint", "format_version": 1, "specrep_version", "torch_version",
     "config": the resolved run config as plain data,
     "data": {"in_channels", "image_size", "classes", "input" (rgb | lab_l: what phi sees),
              "mean", "std" (the normalisation it was trained with), "num_train" (images trained on)},
     "encoder": state dict of phi (backbone + projector), "objective": the method's other state
     (targets, Lambda_t, learnable scales, a second tower under "encoder_y."), "optimizer", "epoch",
     "step", "rng", "history", "train_seconds", "logger_ids" (e.g. the W&B run id), and when present:
     "tokenizer" (image-text runs: its vocabulary), "perm" and "epoch_step" (stopped inside an epoch:
     the epoch's order and the steps done), "rng_ranks" (several processes: every rank's RNG state)}

    ckpt = payload(cfg, trained_on, method, optimizer, progress, rng_ranks)   # -> save_checkpoint(path, ckpt)
    changes = check_resumable(ckpt, cfg, trained_on, path)                  # refused, or what may change
    progress, position = restore(ckpt, method, optimizer, ranks, path)
    model = trained(load_checkpoint(path), path)                       # what `specrep eval` rebuilds
"""
from __future__ import annotations

import math
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn

from . import __version__
from .config import GRAPH_ENCODERS, TrainConfig, flatten, to_dict, upgrade
from .errors import CheckpointError, TrainingError
from .runtime import Ranks
from .storage import atomic_write, reason

FORMAT = "specrep-checkpoint"
FORMAT_VERSION = 1
ENCODER = "encoder."       # phi's keys in the method's state dict: the probed tower
SECOND_TOWER = "encoder_y."  # nu's keys in a two-tower method's state dict (the text tower, say)


def save_checkpoint(path: Path, ckpt: Dict[str, Any], resume: str | None = None, checked: bool = False) -> None:
    """Write atomically (storage.atomic_write: a temporary file, fsynced, renamed over `path`), never
    a non-finite state (it would replace the last good checkpoint with NaN weights).

    A reader never sees a partial file; if writing fails (a full disk), any previous file at `path`
    is untouched, no temporary file is left, and the error is one line saying so, ending with
    `resume` (the command that continues the run) when given. The finiteness check is one host sync
    (every weight, the objective's state and the optimizer's, on their device); `checked`: this very
    ckpt passed it in an earlier save (last.pt, then epoch_NNNN.pt and best.pt of the same epoch).
    """
    path = Path(path)
    bad = [] if checked else nonfinite(ckpt)
    if bad:
        kept = f"{path}, the last good checkpoint, is kept" if path.is_file() else f"nothing written at {path}"
        raise TrainingError(f"the state at step {ckpt.get('step')} is not finite ({', '.join(bad[:3])}): the run "
                            f"diverged after its last logged loss; {kept}; lower optim.lr or check the "
                            "objective's settings")
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, **ckpt}
    try:
        atomic_write(path, lambda f: torch.save(ckpt, f))
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path} ({reason(err)}); the previous checkpoint there "
                              "is intact: free some space or fix the permissions, then resume"
                              + (f" with: {resume}" if resume else "")) from None


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
    if not p.is_file():   # a FIFO or a device would be read forever
        raise CheckpointError(f"checkpoint {path} is not a regular file (a pipe, socket or device): pass a "
                              ".pt file or a run directory")
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
    except PermissionError as err:
        raise CheckpointError(f"cannot read {p} ({reason(err)}): give this user read access to it "
                              "(chmod u+r), or use another checkpoint") from None
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


def reached(path: Path) -> Tuple[int, bool] | None:
    """(step, whether training was complete: its last epoch done) of the checkpoint at `path`, its
    tensors mapped rather than read; None when it cannot be read (load_checkpoint says why)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        epochs = upgrade(ckpt["config"]).get("trainer", {}).get("epochs")
        return int(ckpt["step"]), "perm" not in ckpt and epochs is not None and int(ckpt["epoch"]) >= int(epochs)
    except Exception:   # torch's, zipfile's, pickle's and a damaged file's many exception types
        return None


# ------------------------------------------------------------------------------- the run's state
@dataclass
class Progress:
    """Where training stands, besides the weights: what a checkpoint records and a resume restores."""
    epoch: int = 0                # the last finished epoch (stopped inside one: the epoch in progress)
    step: int = 0                 # optimizer steps taken (and skipped bad ones), all epochs
    train_seconds: float = 0.0    # time spent in training steps, all invocations
    history: List[Dict[str, Any]] = field(default_factory=list)   # the monitoring, one entry per epoch
    logger_ids: Dict[str, str] = field(default_factory=dict)      # trackers' run ids (W&B), to log on into them


Position = Tuple[Tensor, int]   # inside an epoch: (the epoch's permutation, steps done in it)


def rng_state() -> Dict[str, Any]:
    """This process's RNG states (CPU, and every CUDA device when there is one)."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: Dict[str, Any]) -> None:
    """Restore rng_state()'s states: the CPU's, and those of the CUDA devices this machine has (a
    checkpoint from a machine with more GPUs than this one sets the first ones)."""
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"][:torch.cuda.device_count()])


IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    """optimizer.load_state_dict(state), keeping the kernels this run's optimizer was built with:
    torch takes every group key from the saved groups, so a CUDA run's fused=True would otherwise
    follow its checkpoint onto the CPU (and a CPU run's plain kernels onto a GPU)."""
    built = [{k: g[k] for k in IMPLEMENTATION_KEYS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, keys in zip(optimizer.param_groups, built):
        group.update(keys)


@dataclass(frozen=True)
class TrainedOn:
    """What the towers were trained to read: a checkpoint's "data" entry and its "tokenizer", and what
    a resume must find unchanged."""
    in_channels: int                    # image channels; a graph: its nodes (ids) or features per node
    image_size: int | None              # the side of the square images (graphs: none)
    classes: List[str]
    input: str                          # what phi sees: rgb, or lab_l (augmentation=lab_split)
    num_train: int                      # images (a graph: pairs) an epoch trains on
    mean: Tensor | None                 # (C,) the normalisation the pairs applied (graphs: none)
    std: Tensor | None
    tokenizer: Dict[str, Any] | None    # the text tower's tokenizer state (image-text runs)

    def entry(self) -> Dict[str, Any]:
        """The checkpoint's "data" entry, as plain data."""
        return {"in_channels": self.in_channels, "image_size": self.image_size, "classes": list(self.classes),
                "input": self.input, "num_train": self.num_train,
                "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist()}


def payload(cfg: TrainConfig, trained_on: TrainedOn, method: nn.Module, optimizer: torch.optim.Optimizer,
            progress: Progress, rng_ranks: List[Dict[str, Any]], position: Position | None = None) -> Dict[str, Any]:
    """Everything a run needs to go on: rng_ranks is every rank's rng_state(); position is given
    when stopped inside an epoch."""
    state = method.state_dict()
    return {
        "specrep_version": __version__, "torch_version": str(torch.__version__),
        "config": to_dict(cfg),
        "data": trained_on.entry(),
        "encoder": {k[len(ENCODER):]: v for k, v in state.items() if k.startswith(ENCODER)},
        "objective": {k: v for k, v in state.items() if not k.startswith(ENCODER)},
        "optimizer": optimizer.state_dict(),
        "epoch": progress.epoch, "step": progress.step, "train_seconds": progress.train_seconds,
        "history": progress.history, "logger_ids": dict(progress.logger_ids), "rng": rng_ranks[0],
        **({"perm": position[0].cpu(), "epoch_step": position[1]} if position is not None else {}),
        **({"tokenizer": trained_on.tokenizer} if trained_on.tokenizer is not None else {}),
        **({"rng_ranks": rng_ranks} if len(rng_ranks) > 1 else {}),
    }


RESUME_KEYS = ("objective", "optimizer", "epoch", "step", "train_seconds", "history", "rng")


def restore(ckpt: Dict[str, Any], method: nn.Module, optimizer: torch.optim.Optimizer,
            ranks: Ranks, path: Path | str = "the checkpoint") -> Tuple[Progress, Position | None]:
    """Load the weights, the objective's state, the optimizer and this rank's RNG state; return the
    progress and, for a checkpoint written inside an epoch, the position to go on from. A missing
    entry, a missing or mis-shaped tensor, or an optimizer state that does not fit is one line."""
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is an incomplete specrep checkpoint (missing {', '.join(missing)}): it "
                              "cannot be resumed; resume from another of the run's checkpoints")
    load_strict(method, {**{f"{ENCODER}{k}": v for k, v in ckpt["encoder"].items()}, **ckpt["objective"]},
                path, "model")
    try:
        load_optimizer_state(optimizer, ckpt["optimizer"])
        shapes = [(v.shape, p.shape) for p, st in optimizer.state.items() for v in st.values()
                  if isinstance(v, Tensor) and v.ndim > 0]
        if any(a != b for a, b in shapes):
            raise ValueError("a state tensor's shape differs from its parameter's")
        rng_ranks = ckpt.get("rng_ranks", [])
        set_rng_state(rng_ranks[ranks.rank] if len(rng_ranks) == ranks.world else ckpt["rng"])
        progress = Progress(int(ckpt["epoch"]), int(ckpt["step"]), float(ckpt["train_seconds"]), list(ckpt["history"]),
                            dict(ckpt.get("logger_ids", {})))
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as err:
        raise CheckpointError(f"{path}: its optimizer or RNG state is damaged ({type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no message'}); "
                              "resume from another of the run's checkpoints") from None
    return progress, ((ckpt["perm"], ckpt["epoch_step"]) if "perm" in ckpt else None)


# What a resumed run may not change: what the weights, the optimizer state (its kind and parameter
# groups), the epoch order, the schedule or the report's identity of the run depend on. Everything else
# (lr, weight decay, the augmentation, eval, logging, the device...) may change; the change is logged.
RESUME_FIXED = ("encoder.", "objective.", "dataset.", "optim.name", "optim.exclude_bias_and_norm",
                "trainer.batch_size", "trainer.epochs", "seed")
RESUME_FREE = {"resume", "dataset.root", "dataset.in_memory", "dataset.memory_budget_gib", "dataset.workers",
               "dataset.cache_dir", "dataset.download"}   # where the same data are read from, and how


def _fixed(key: str) -> bool:
    return key not in RESUME_FREE and any(key == f or (f.endswith(".") and key.startswith(f)) for f in RESUME_FIXED)


def check_resumable(ckpt: Dict[str, Any], cfg: TrainConfig, trained_on: TrainedOn, path: Path) -> List[str]:
    """Refuse, in one line naming the keys, a checkpoint the composed config cannot continue: another
    architecture, objective, dataset or size of it, optimizer, batch size, schedule length or seed,
    other image channels, tower inputs or tokenizer (`trained_on`: what this run's towers read).
    Return the changes it can continue with ("optim.lr (checkpoint 0.1, now 0.05)"), for the log. A key
    added after the checkpoint was written (trainer.threads in a 0.1.0 checkpoint) is not compared."""
    theirs, ours = flatten(upgrade(ckpt["config"])), flatten(to_dict(cfg))
    changed = [k for k in sorted(set(theirs) | set(ours))
               if k != "resume" and k in theirs and theirs.get(k) != ours.get(k)]
    differ = [f"{k} (checkpoint {theirs.get(k)!r}, config {ours.get(k)!r})" for k in changed if _fixed(k)]
    graph = ours.get("dataset.name") == "graph"   # a graph's encoder takes nodes (ids or features) or images
    in_channels, input, num_train = trained_on.in_channels, trained_on.input, trained_on.num_train
    if ckpt["data"]["in_channels"] != in_channels:
        nodes = graph and ours.get("encoder.name") in GRAPH_ENCODERS
        what = "nodes (or node features) the encoder takes" if nodes else "image channels"
        differ.append(f"{what} (checkpoint {ckpt['data']['in_channels']}, data {in_channels})")
    if ckpt["data"].get("input", "rgb") != input:
        differ.append(f"what the towers see (checkpoint {ckpt['data'].get('input', 'rgb')}, config "
                      f"{input}: augmentation=lab_split or not)")
    theirs_n = ckpt["data"].get("num_train", len(ckpt["perm"]) if "perm" in ckpt else None)
    if theirs_n is not None and theirs_n != num_train:
        what = "pairs per epoch (dataset.pairs_per_epoch)" if graph else "training images"
        differ.append(f"{what} (checkpoint {theirs_n}, data {num_train})")
    if differ:
        raise CheckpointError(f"cannot resume {path}: it differs from the composed config in "
                              f"{'; '.join(differ)}; pass the overrides the run was started with")
    if ckpt.get("tokenizer") != trained_on.tokenizer:
        raise CheckpointError(f"cannot resume {path}: its tokenizer differs from the one built "
                              "from this dataset's captions; pass the dataset the run was started with")
    return [f"{k} (checkpoint {theirs.get(k)!r}, now {ours.get(k)!r})" for k in changed if not _fixed(k)]


def _floating(node: Any, prefix: str = "") -> List[Tuple[str, Tensor]]:
    if isinstance(node, Tensor):
        return [(prefix.rstrip("."), node)] if node.is_floating_point() else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    return [found for k, v in items for found in _floating(v, f"{prefix}{k}.")]


def nonfinite(ckpt: Dict[str, Any], sections: Tuple[str, ...] = ("encoder", "objective", "optimizer")) -> List[str]:
    """The floating tensors of `sections` holding a NaN or an infinity ("encoder.backbone.0.weight");
    one host sync for all of them."""
    named = _floating({s: ckpt[s] for s in sections if s in ckpt})
    if not named:
        return []
    device = named[0][1].device
    finite = torch.stack([torch.isfinite(t).all().to(device) for _, t in named]).tolist()
    return [name for (name, _), ok in zip(named, finite) if not ok]


# ------------------------------------------------------------------------------ specrep eval's view
@dataclass
class Trained:
    """What `specrep eval` rebuilds from a checkpoint alone."""
    config: Dict[str, Any]                 # the resolved train config
    in_channels: int
    image_size: int | None                 # the side of the (square) images it was trained on
    input: str                             # what phi sees: rgb, or lab_l (a Lab-split run: RGB in [0, 1])
    mean: List[float] | None               # the normalisation it was trained with (older files: none)
    std: List[float] | None
    encoder: Dict[str, Tensor]             # phi's state dict
    text_tower: Dict[str, Tensor] | None   # image-text runs: the text tower's state dict ...
    tokenizer: Dict[str, Any] | None       # ... and its tokenizer
    epoch: int | None
    history: List[Dict[str, Any]]          # the training run's monitoring, up to this checkpoint
    specrep_version: str | None = None     # the specrep that wrote it
    second_tower: Dict[str, Tensor] | None = None   # two towers on two views (nu, like phi): its state dict


EVAL_NEEDS = ("data.in_channels", "config.encoder.name", "config.objective.name", "config.augmentation.name",
              "config.dataset.name", "config.trainer.batch_size")


def _missing(ckpt: Dict[str, Any], dotted: str) -> str | None:
    node: Any = ckpt
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            return ".".join(parts[:i + 1])
        node = node[part]
    return None


def check_evaluable(ckpt: Dict[str, Any], path: Path | str = "the checkpoint") -> None:
    """One line, before any work, for a checkpoint `specrep eval` cannot score: an entry it reads is
    missing, the normalisation does not fit the channels, or the weights are not finite."""
    missing = sorted({m for m in (_missing(ckpt, d) for d in EVAL_NEEDS) if m})
    if missing:
        raise CheckpointError(f"{path} is an incomplete specrep checkpoint (missing {', '.join(missing)}): "
                              "use another checkpoint of the run")
    channels = ckpt["data"]["in_channels"]
    for key in ("mean", "std"):
        values = ckpt["data"].get(key)
        if values is not None and (not isinstance(values, list) or len(values) != channels
                                   or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
            raise CheckpointError(f"{path} is damaged: data.{key} has "
                                  f"{len(values) if isinstance(values, list) else 'no'} "
                                  f"values for {channels} channels; use another checkpoint of the run")
    bad = nonfinite(ckpt, ("encoder",))
    if bad:
        raise CheckpointError(f"{path} holds non-finite weights ({', '.join(bad[:3])}): the run diverged before "
                              "this checkpoint; evaluate an earlier one (checkpoints/epoch_NNNN.pt, best.pt)")


def trained(ckpt: Dict[str, Any], path: Path | str = "the checkpoint") -> Trained:
    check_evaluable(ckpt, path)
    data = ckpt["data"]
    has_text = "tokenizer" in ckpt
    second = {k[len(SECOND_TOWER):]: v for k, v in ckpt.get("objective", {}).items() if k.startswith(SECOND_TOWER)}
    return Trained(upgrade(ckpt["config"]), data["in_channels"], data.get("image_size"), data.get("input", "rgb"),
                   data.get("mean"), data.get("std"), ckpt["encoder"], second if has_text else None,
                   ckpt.get("tokenizer"), ckpt.get("epoch"), ckpt.get("history", []), ckpt.get("specrep_version"),
                   second if second and not has_text else None)


def load_strict(module: nn.Module, state: Dict[str, Tensor], path: Path, what: str) -> nn.Module:
    """module with `state` loaded strictly; a CheckpointError naming what does not fit otherwise."""
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not fit the {what} its config describes "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:   # same keys, other shapes
        raise CheckpointError(f"{path}: the weights do not fit the {what} its config describes "
                              f"({str(err).strip().splitlines()[-1].strip()})") from None
    return module
