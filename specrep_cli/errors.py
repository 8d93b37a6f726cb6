"""Every exception specrep raises on purpose: a problem the user can fix, one line each.

The CLI turns a SpecrepError into that line on stderr and a non-zero exit (`exit_code`, 1 unless
set); HYDRA_FULL_ERROR=1 shows the traceback instead.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import NoReturn


class SpecrepError(Exception):
    """A problem the user can fix: bad config, missing data, unusable checkpoint, diverged run.

    The message is one line that says what is wrong and how to fix it.
    """

    exit_code = 1


class ConfigError(SpecrepError, ValueError):
    """A configuration problem; the message says what to change."""


class DatasetError(SpecrepError):
    """The dataset cannot be read; the message says why and what to do."""


class CheckpointError(SpecrepError):
    """The checkpoint cannot be used; the message says why and what to do."""


class TrainingError(SpecrepError):
    """The run cannot go on (e.g. a non-finite loss)."""


class TrainingInterrupted(SpecrepError):
    """SIGINT/SIGTERM/SIGUSR2: a checkpoint was written and the message says how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class SignalledStop(BaseException):
    """Raised by a signal handler to stop at once (the final evaluation): a BaseException, like
    KeyboardInterrupt, so that no `except Exception` on the way (logging's, say) swallows it; the
    code that installed the handler turns it into a TrainingInterrupted."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class ReportError(SpecrepError):
    """The paths hold no runs, or a run's files cannot be read or written."""


class RunDirError(SpecrepError):
    """The run directory is in use by another run, or is not one this command may write into."""


class ResourceError(SpecrepError):
    """The machine cannot give what the run asks for (memory); the message says what to lower."""


OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "Unable to allocate")   # torch's CUDA and CPU, numpy's


def as_specrep_error(err: Exception) -> SpecrepError:
    """err when it is a SpecrepError, running out of memory (numpy's MemoryError, the RuntimeError of
    torch's allocators) as a ResourceError saying what to lower; any other error raised on as it is."""
    if isinstance(err, SpecrepError):
        return err
    text = (str(err).strip() or type(err).__name__).splitlines()[0][:300]
    if isinstance(err, MemoryError) or any(words in text for words in OUT_OF_MEMORY):
        return ResourceError(f"out of memory ({text}): lower trainer.batch_size (eval.batch_size for specrep eval) "
                             "or dataset.image_size, or stream the images with dataset.in_memory=false")
    raise err


def error_status(err: SpecrepError) -> int:
    """A command's SpecrepError as its line on stderr; the exit status to give (the traceback instead
    with HYDRA_FULL_ERROR=1)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"error: {err}", file=sys.stderr)
    return getattr(err, "exit_code", 1)


def exit_with(err: SpecrepError) -> NoReturn:
    """The CLI's way out for a SpecrepError: error_status, then exit with it."""
    sys.exit(error_status(err))

_INTERRUPTED: list[int] = []   # SIGINTs before the training loop listened (see remember_interrupts)


def remember_interrupts() -> None:
    """From a command's start: Ctrl-C raises KeyboardInterrupt as usual, and is remembered, so that a
    library's bare `except:` that swallows it (an import's fallback, say) cannot let a run go on as if
    nothing happened: the training loop reads it (interrupted_early) when it starts listening."""
    def handle(signum, frame):
        _INTERRUPTED.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handle)


def interrupted_early() -> int | None:
    """The signal number of a Ctrl-C remember_interrupts saw (and something swallowed), else None."""
    return _INTERRUPTED[0] if _INTERRUPTED else None
