"""A run directory's guard and records: one run at a time per directory, the record a failed or
stopped job leaves, and which run a checkpoint belongs to.

    with held(run_dir): ...                 # an exclusive lock, or RunDirError naming its holder
    run_job(job_dir, work, sweep, overrides, number)   # one Hydra job: locked, its failure recorded
    run_dir_of(checkpoint)                  # <run> for <run>/checkpoints/x.pt, else None
    RunDirGuard                             # Hydra callback: the lock before Hydra writes .hydra/

The lock is fcntl.flock on `<dir>/.specrep.lock`, so the kernel drops it when its process dies, even
by SIGKILL: a killed run never leaves its directory stuck. The file holds the holder's pid, host,
start time and command for the message a second run gets. Under torchrun every rank runs the Hydra
job; rank 0 holds the lock for all of them. A file system without locks gets a warning and no lock.

A job that fails leaves `failed.json` ({"kind": failed | stopped, "error": its one line, "type",
"exit_code", "overrides", "time"}) in its directory; a later run of the same job removes it. In a
--multirun sweep a failed job does not stop the sweep: its line is printed, the next job runs, and
the sweep exits 1 at the end, naming the failed jobs (a stop by a signal ends the sweep).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .errors import RunDirError, SpecrepError, TrainingInterrupted, exit_with
from .storage import atomic_write_text, reason

log = logging.getLogger("specrep")
LOCK = ".specrep.lock"
FAILURE = "failed.json"
_held: Dict[Path, int] = {}                 # directories this process holds: their lock file's fd
FAILED: List[Tuple[Path, str]] = []         # jobs of this process's sweep that failed: (dir, line)


def _secondary_rank() -> bool:
    return os.environ.get("RANK", "0") not in ("", "0")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


def _command(name: str | None) -> str:
    """This process's command line (the CLI hands Hydra its argv without the subcommand)."""
    if name is None and HydraConfig.initialized():
        name = HydraConfig.get().job.name
    return " ".join(["specrep", *([name] if name else []), *sys.argv[1:]])[:1000]


def lock(run_dir: Path, name: str | None = None) -> bool:
    """Take the run dir's lock (True), or find this process holding it already (False).
    RunDirError naming the holder when another process has it. name: the subcommand (train, eval)."""
    d = Path(run_dir).absolute()
    if d in _held or _secondary_rank():
        return False
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunDirError(f"{run_dir} is in use by another specrep run ({holder}): wait for it to end, "
                          "or choose another hydra.run.dir") from None
    except OSError as err:   # e.g. ENOLCK on a file system without locks
        os.close(fd)
        log.warning(f"cannot lock {run_dir} ({reason(err)}): a second run into it would not be refused")
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{_command(name)}\n".encode(), 0)
    _held[d] = fd
    return True


def release(run_dir: Path) -> None:
    fd = _held.pop(Path(run_dir).absolute(), None)
    if fd is not None:
        os.close(fd)   # closing drops the flock; the file stays (removing it would race a new holder)


@contextlib.contextmanager
def held(run_dir: Path) -> Iterator[None]:
    """The run dir locked for the block (released after it, unless this process held it before)."""
    taken = lock(run_dir)
    try:
        yield
    finally:
        if taken:
            release(run_dir)


def run_dir_of(checkpoint: Path | None) -> Path | None:
    """The run a checkpoint belongs to: <run> for <run>/checkpoints/<file>, where <run> is a run dir
    (it holds .hydra/config.yaml or metrics.jsonl); None for a checkpoint anywhere else."""
    if checkpoint is None:
        return None
    parent = Path(checkpoint).absolute().parent
    run = parent.parent
    if parent.name == "checkpoints" and ((run / ".hydra" / "config.yaml").is_file() or (run / "metrics.jsonl").is_file()):
        return run
    return None


def is_training_run(d: Path) -> bool:
    """A directory `specrep train` wrote into (its log, metrics or checkpoints)."""
    return any((Path(d) / name).exists() for name in ("train.log", "metrics.jsonl", "checkpoints"))


# ---------------------------------------------------------------------------- a job's outcome
def one_line(err: BaseException) -> str:
    if isinstance(err, SpecrepError):
        return str(err)
    return f"{type(err).__name__}: {reason(err)}"


def read_failure(job_dir: Path) -> Dict[str, Any] | None:
    try:
        record = json.loads((Path(job_dir) / FAILURE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("error"), str) else None


def record_failure(job_dir: Path, err: BaseException, overrides: List[str]) -> None:
    """failed.json in job_dir (best effort: on a full disk the line on stderr is all there is)."""
    record = {"kind": "stopped" if isinstance(err, TrainingInterrupted) else "failed", "error": one_line(err),
              "type": type(err).__name__, "exit_code": getattr(err, "exit_code", 1), "overrides": overrides,
              "time": time.time()}
    try:
        atomic_write_text(Path(job_dir) / FAILURE, json.dumps(record, indent=2) + "\n")
    except OSError:
        pass


def run_job(job_dir: Path, work: Callable[[], Any], sweep: bool, overrides: List[str],
            number: int | None = None) -> Any:
    """work() as one job in job_dir: the dir locked, an earlier failed.json removed, a failure recorded.

    A single run raises the failure on. A sweep's job prints its line, notes it for the end of the
    sweep and returns None, so that the next job runs; a stop by a signal raises SystemExit (the
    sweep stops with it)."""
    try:
        with held(job_dir):
            (Path(job_dir) / FAILURE).unlink(missing_ok=True)
            try:
                return work()
            except Exception as err:
                record_failure(job_dir, err, overrides)
                raise
    except Exception as err:
        if not sweep:
            raise
        FAILED.append((Path(job_dir), one_line(err)))
        if not isinstance(err, SpecrepError):
            log.exception(f"job {number} failed")   # the traceback, into the job's log
        print(f"error: job {number} ({' '.join(overrides)}): {one_line(err)}", file=sys.stderr, flush=True)
        if isinstance(err, TrainingInterrupted):
            raise SystemExit(err.exit_code) from None
        return None


def sweep_failures(sweep_dir: Path, since: float = 0.0) -> List[Tuple[Path, str]]:
    """(job dir, line) of the jobs below sweep_dir that left failed.json at or after `since`."""
    found = []
    for record_path in sorted(Path(sweep_dir).glob(f"*/{FAILURE}")):
        record = read_failure(record_path.parent)
        if record is not None and float(record.get("time", 0)) >= since:
            found.append((record_path.parent.absolute(), record["error"]))
    return found


# ---------------------------------------------------------------------------- the Hydra callback
class RunDirGuard(Callback):
    """Locks the run dir (a sweep: the sweep dir) before Hydra writes .hydra/ into it; refuses
    `specrep eval` into a training run's dir; ends a sweep with failed jobs with exit status 1."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(Path(str(config.hydra.run.dir)), config.hydra.job.name, [])

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        FAILED.clear()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self._guard(sweep_dir, config.hydra.job.name, sorted(sweep_dir.glob("*/")) if sweep_dir.is_dir() else [])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        failed = dict(sweep_failures(sweep_dir, self.started))
        failed.update({d.absolute(): line for d, line in FAILED})
        if failed:
            names = ", ".join(str(d) for d in sorted(failed))
            print(f"error: {len(failed)} job(s) of the sweep failed ({names}); each one's reason is in its "
                  f"{FAILURE}, and `specrep report {sweep_dir}` lists them", file=sys.stderr)
            raise SystemExit(1)

    @staticmethod
    def _guard(d: Path, command: str, children: List[Path]) -> None:
        try:
            if command == "eval" and any(is_training_run(c) for c in [d, *children]):
                raise RunDirError(f"{d} holds a training run: `specrep eval` would overwrite its .hydra/, report "
                                  "and plots; choose another hydra.run.dir (or none: outputs/eval/...)")
            lock(d, command)
        except SpecrepError as err:
            exit_with(err)
