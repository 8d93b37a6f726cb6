"""Many processes, one run: `trainer.devices: N` spawns N ranks inside the Hydra job; torchrun's
ranks are taken from the environment. Rank 0 writes every file; the others only train.

    run_ranks(train_one, cfg, run_dir)   # calls train_one(cfg, run_dir, Ranks) in 1 or N processes

Each rank joins the default process group (NCCL on CUDA, gloo on the CPU) before training; the
objectives then see the global batch by themselves (objectives/distributed.py). A SpecrepError in any rank
ends the run with that rank's one line; the other ranks are stopped.

Every rank computes on trainer.threads CPU threads (runtime.use_threads; auto shares the physical cores
among the ranks on this machine), and its child processes (DataLoader workers) inherit the setting.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.core.hydra_config import HydraConfig

from ..config import TrainConfig
from ..errors import SpecrepError
from ..runtime import Ranks, from_torchrun, use_threads


def join(ranks: Ranks, device: torch.device) -> torch.device:
    """Join the default process group (env:// rendezvous); the device of this rank."""
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if ranks.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                                world_size=ranks.world, device_id=device if device.type == "cuda" else None)
    return device


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def agree(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (a collective: every rank calls it at the same point)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj: Any) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (a collective); [obj] in a single process."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


OVERRIDES_ENV = "SPECREP_TASK_OVERRIDES"


def task_overrides() -> list[str]:
    """The command line's overrides of this run: from Hydra, or (a spawned rank) from its parent."""
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return json.loads(os.environ.get(OVERRIDES_ENV, "[]"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_like_hydra(run_dir: Path, main: bool) -> None:
    """A spawned rank logs as the Hydra job does: to the console and (rank 0) to run_dir/train.log."""
    fmt = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if main:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO if main else logging.WARNING)


def _worker(index: int, train_one: Callable, cfg: TrainConfig, run_dir: str, world: int, errors,
            threads: int = 1) -> None:
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(world))
    use_threads(threads, announce=False)   # the parent's resolution of trainer.threads
    signal.signal(signal.SIGINT, signal.default_int_handler)   # until the training loop installs its own
    _log_like_hydra(Path(run_dir), index == 0)
    try:
        train_one(cfg, Path(run_dir), Ranks(index, world, index))
    except SpecrepError as err:
        errors.put((index, str(err), getattr(err, "exit_code", 1)))
        raise SystemExit(getattr(err, "exit_code", 1)) from None
    except KeyboardInterrupt:   # before training started, or a second Ctrl-C
        errors.put((index, "interrupted", 128 + signal.SIGINT))
        raise SystemExit(128 + signal.SIGINT) from None


def run_ranks(train_one: Callable[[TrainConfig, Path, Ranks], Any], cfg: TrainConfig, run_dir: Path) -> Any:
    """train_one in this process (one device, or a torchrun rank), or in trainer.devices spawned ranks."""
    ranks = from_torchrun()
    if ranks is not None:   # torchrun's ranks on this machine share its cores
        use_threads(cfg.trainer.threads, int(os.environ.get("LOCAL_WORLD_SIZE", ranks.world)), announce=ranks.main)
        return train_one(cfg, run_dir, ranks)
    world = cfg.trainer.devices
    threads = use_threads(cfg.trainer.threads, world)
    if world == 1:
        return train_one(cfg, run_dir, Ranks())
    if cfg.trainer.device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() < world:
        raise SpecrepError(f"trainer.devices={world} but {torch.cuda.device_count()} GPUs are visible; "
                           "lower trainer.devices or set CUDA_VISIBLE_DEVICES")
    os.environ[OVERRIDES_ENV] = json.dumps(task_overrides())   # for the resume command a rank prints
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the ranks; they checkpoint
    try:
        mp.start_processes(_worker, args=(train_one, cfg, str(run_dir),
                                          world, errors, threads), nprocs=world, start_method="spawn")
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
        if not errors.empty():
            index, message, code = errors.get()
            failure = SpecrepError(message)
            failure.exit_code = code
            raise failure from None
        raise SpecrepError(f"a training process failed: {str(err).strip().splitlines()[-1]}") from None
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def left_at_exit():
    """Leave the process group when training ends, however it ends (evaluation needs none)."""
    try:
        yield
    finally:
        leave()
