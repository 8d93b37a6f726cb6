"""A run directory's guard and records: one run at a time per directory, the record a failed or
stopped job leaves, and which run a checkpoint belongs to.

    with held(run_dir): ...                 # an exclusive lock, or RunDirError naming its holder
    run_job(job_dir, work, sweep, overrides, number)   # one Hydra job: locked, its failure recorded
    run_dir_of(checkpoint)                  # <run> for <run>/checkpoints/x.pt, else None
    RunDirGuard                             # Hydra callback: the lock before Hydra writes .hydra/
    continues(run_dir, resume, overrides)   # goes on with the run there, starts one, or RunDirError
    with printed_into(run_dir / "eval.log"): ...   # what the block prints, in the job's log too
    unwritable_output_dir(parsed_overrides, multirun)  # why Hydra could not create the output dir, or None

The lock is fcntl.flock on `<dir>/.specrep.lock`, so the kernel drops it when its process dies, even
by SIGKILL: a killed run never leaves its directory stuck. The file holds the holder's pid, host,
start time and command for the message a second run gets. Under torchrun every rank runs the Hydra
job; rank 0 holds the lock for all of them. A file system without locks gets a warning and no lock.

A dir that holds a run (its .hydra/config.yaml, report.json, metrics.jsonl or checkpoints/) is never
a new run's: `specrep train` into it is refused unless resume= names it (or it reruns the command of
the unfinished run there: a requeued job), and a job that goes on with it leaves its .hydra/ (and,
unless it succeeds, its failed.json) as they were. A timestamped run dir (the default) that another
run started in the same second has already is replaced by <dir>-1, <dir>-2...

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
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .errors import RunDirError, SpecrepError, TrainingInterrupted, exit_with
from .overrides import chosen
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
    if parent.name == "checkpoints" and ((run / ".hydra" / "config.yaml").is_file()
                                         or (run / "metrics.jsonl").is_file()):
        return run
    return None


def is_training_run(d: Path) -> bool:
    """A directory `specrep train` wrote into (its log, metrics or checkpoints)."""
    return any((Path(d) / name).exists() for name in ("train.log", "metrics.jsonl", "checkpoints"))


# ---------------------------------------------------------------------------- a dir that holds a run
RUN_FILES = (".hydra/config.yaml", "report.json", "metrics.jsonl", "checkpoints")   # any of them: a run is there
WRITTEN = ("report.json", "report.md", "plots")   # what a new run writes whole, over a file of that name
_KEPT: set[Path] = set()   # job dirs whose run this job continues: their .hydra/ and failed.json stay that run's


def holds_run(d: Path) -> bool:
    """Whether d holds a run already (its record, metrics, checkpoints or report)."""
    return any((Path(d) / name).exists() for name in RUN_FILES)


def refuse_new_run(dirs: List[Path], sweep: bool) -> None:
    """RunDirError when a new run (a sweep: its jobs) would overwrite a report or plots in `dirs` (a sweep: a run)."""
    names = (*RUN_FILES, *WRITTEN) if sweep else WRITTEN
    found = next(((d, name) for d in dirs for name in names if (Path(d) / name).exists()), None)
    if found:
        what = "sweep" if sweep else "run"
        raise RunDirError(f"{found[0]} already holds {found[1]}: a new {what} there would overwrite it; choose "
                          f"another hydra.{what}.dir (resume=<run dir> continues a run)")


def _names(d: Path, resume: str) -> bool:
    """Whether resume= names the run dir d: d itself, or a file in its checkpoints/."""
    p = Path(resume).expanduser()
    target = p if p.is_dir() else p.parent.parent if p.parent.name == "checkpoints" else None
    return target is not None and target.resolve() == Path(d).resolve()


def recorded_overrides(d: Path) -> List[str] | None:
    """The command-line overrides d's run was started with (its .hydra/overrides.yaml), or None."""
    try:
        found = yaml.safe_load((Path(d) / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in found] if isinstance(found, list) else None


def continues(d: Path, resume: str | None, overrides: List[str]) -> bool:
    """Whether `specrep train` with resume= and these overrides goes on with a run d holds (True), or
    starts its own in d (False: d holds none). resume= naming d continues it, and so does the very
    command d's unfinished run (no report.json) was started with: a requeued job, resumed from d's
    checkpoints/last.pt. Any other run in d is RunDirError: a new run would overwrite its record."""
    if not holds_run(d):
        return False
    if resume and _names(d, resume):
        return True
    if not (Path(d) / "report.json").exists() and recorded_overrides(d) == overrides:
        return True
    raise RunDirError(f"{d} already holds a run: pass resume={d} to continue it, or choose another hydra.run.dir")


def claimed(run: DictConfig) -> Path:
    """The run dir of hydra.run (`run.dir`). A timestamped one (${now:...}, the default) is this run's
    alone: taken by another run started in the same second, the first of <dir>-1, <dir>-2... that
    os.mkdir creates (atomically: two runs never claim the same one). torchrun's other ranks take
    rank 0's."""
    d = Path(str(run.dir))
    if "${now:" not in str(OmegaConf.to_container(run, resolve=False)["dir"]) or _secondary_rank():
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = d, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = d.with_name(f"{d.name}-{n}")


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
    A job that continues the run its dir held (RunDirGuard) keeps that run's failed.json as it is
    unless it succeeds: a refused resume leaves the run's record untouched.

    A single run raises the failure on. A sweep's job prints its line, notes it for the end of the
    sweep and returns None, so that the next job runs; a stop by a signal raises SystemExit (the
    sweep stops with it)."""
    try:
        kept = Path(job_dir).absolute() in _KEPT
        with held(job_dir):
            if not kept:
                (Path(job_dir) / FAILURE).unlink(missing_ok=True)
            try:
                result = work()
            except Exception as err:
                if not kept:
                    record_failure(job_dir, err, overrides)
                raise
            (Path(job_dir) / FAILURE).unlink(missing_ok=True)
            return result
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


def unwritable_output_dir(parsed: List[Override], multirun: bool, own: List[Path] = ()) -> str | None:
    """Why the run's output directory cannot be created, or None if it can.

    The directory given by hydra.run.dir (hydra.sweep.dir with --multirun or hydra.mode=MULTIRUN), up
    to its first interpolation, else ./outputs.
    """
    multirun = multirun or str(chosen(parsed, "hydra.mode")).lower() == "multirun"
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    value = chosen(parsed, key)
    target = (value if isinstance(value, str) else "outputs").split("${")[0] or "."
    existing = Path(target).absolute()
    if any(Path(o).resolve() in (existing.resolve(), *existing.resolve().parents) for o in own):   # specrep's files
        return f"cannot use {target} as the output directory: it is inside specrep's own files; set {key}=PATH"
    while not existing.exists():
        existing = existing.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".specrep-write-test-", dir=existing))
    except OSError as err:
        return (f"cannot create the output directory {target} ({err.strerror} in {existing}): run from a "
                f"writable directory or set {key}=PATH")
    return None


# ---------------------------------------------------------------------------- a job's log
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")   # a terminal's colours and cursor moves: not for a file


class _Tee:
    """A text stream that writes to `stream` and appends the same text, without terminal colours, to
    `log` (best effort: on a full disk the console still has it)."""

    def __init__(self, stream: Any, log: Any) -> None:
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        try:
            self._log.write(ANSI.sub("", text))
            self._log.flush()
        except OSError:
            pass
        return written

    def __getattr__(self, name: str) -> Any:   # isatty, fileno, encoding, flush: the console's
        return getattr(self._stream, name)


@contextlib.contextmanager
def printed_into(log_path: Path) -> Iterator[None]:
    """What the block prints on stdout (rich's tables included) also appended to log_path, the job's
    log, whose log records Hydra's file handler appends (both append: the order is kept)."""
    try:
        file = open(log_path, "a", encoding="utf-8")
    except OSError:
        file = None
    if file is None:
        yield
        return
    stdout, sys.stdout = sys.stdout, _Tee(sys.stdout, file)
    try:
        yield
    finally:
        sys.stdout = stdout
        file.close()


# ---------------------------------------------------------------------------- the Hydra callback
class RunDirGuard(Callback):
    """Locks the run dir (a sweep: the sweep dir) before Hydra writes .hydra/ into it; refuses
    `specrep eval` into a training run's dir; ends a sweep with failed jobs with exit status 1."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """The run dir claimed and locked; a run it holds continued (resume=, or a requeued job), its
        .hydra/ kept as that run's record, else refused (`specrep train`)."""
        command, run_dir = config.hydra.job.name, claimed(config.hydra.run)
        if str(run_dir) != str(config.hydra.run.dir):
            config.hydra.run.dir = str(run_dir)
        self._guard(run_dir, command, [])
        if _secondary_rank():
            config.hydra.output_subdir = None   # rank 0 writes the record
            return
        try:
            if command == "train" and continues(run_dir, config.get("resume"), list(config.hydra.overrides.task)):
                config.hydra.output_subdir = None   # Hydra leaves the run's .hydra/ as it is
                _KEPT.add(run_dir.absolute())
            else:
                refuse_new_run([run_dir], sweep=False)
        except SpecrepError as err:
            exit_with(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        FAILED.clear()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self._guard(sweep_dir, config.hydra.job.name, sorted(sweep_dir.glob("*/")) if sweep_dir.is_dir() else [], True)

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
    def _guard(d: Path, command: str, children: List[Path], sweep: bool = False) -> None:
        try:
            if command == "eval" and any(is_training_run(c) for c in [d, *children]):
                raise RunDirError(f"{d} holds a training run: `specrep eval` would overwrite its .hydra/, report "
                                  "and plots; choose another hydra.run.dir (or none: outputs/eval/...)")
            if sweep:   # a single run's dir is refused in on_run_start (train may continue a run there)
                refuse_new_run([d, *children], sweep)
            lock(d, command)
        except SpecrepError as err:
            exit_with(err)
