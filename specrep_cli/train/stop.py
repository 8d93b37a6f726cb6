"""Stopping a run on purpose: SIGINT, SIGTERM (e.g. SLURM preemption) or SIGUSR2 (submitit's
time-limit warning) asks the loop to finish the step, write a checkpoint and exit with the command
that resumes it; a second SIGINT stops at once.

    stop = StopRequest()
    with stop.installed():
        ... if stop.signum is not None: raise interrupted(stop.signum, step, checkpoint, run_dir)
    with evaluation_stops(checkpoint, run_dir): ...   # the final evaluation: a signal stops it at once

A stop requested during the last step writes the epoch's checkpoint and stops there too, without the
final evaluation (which can take minutes a SIGTERM's grace time may not have); the line says so and
gives the command that runs it.
"""
from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.errors import HydraException

from ..errors import SignalledStop, TrainingInterrupted, interrupted_early
from .processes import task_overrides

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class StopRequest:
    """The first of SIGNALS during training sets `signum`; the loop stops after the current step."""

    def __init__(self):
        self.signum: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing the step and writing a checkpoint "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():   # signals need the main thread
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        if interrupted_early() is not None and self.signum is None:   # a Ctrl-C that set-up swallowed
            self._handle(interrupted_early(), None)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def hydra_value(text: str) -> str:
    """`text` as a Hydra override value: as is when Hydra reads it back unchanged, else single-quoted
    (Hydra's own escaping of quotes and of the backslashes before them; `${` escaped as `\\${`)."""
    try:
        if "${" not in text and OverridesParser.create().parse_override(f"k={text}").value() == text:
            return text
    except HydraException:
        pass
    return QuotedString(text.replace("${", "\\${"), Quote.single).with_quotes()


def resume_command(run_dir: Path) -> str:
    """The command that continues the run in run_dir: this run's overrides and resume=run_dir, each
    one shell word (shlex.quote), so that it pastes into a POSIX shell whatever the paths hold."""
    overrides = [o for o in task_overrides() if not o.startswith("resume=")]
    words = [*overrides, f"resume={hydra_value(str(run_dir))}"]
    return " ".join(["specrep train", *map(shlex.quote, words)])


def interrupted(signum: int, step: int, checkpoint: Path, run_dir: Path, finished: bool = False) -> TrainingInterrupted:
    """The one line a stopped run prints: where it stopped and the command that resumes it. After the
    last step (`finished`) training is complete and the command runs the final evaluation."""
    name = signal.Signals(signum).name
    if finished:
        return TrainingInterrupted(f"stopped by {name} after the last step (step {step}): training is complete "
                                   f"(checkpoint {checkpoint}), the final evaluation did not run; finish it with: "
                                   f"{resume_command(run_dir)}", signum)
    return TrainingInterrupted(f"stopped by {name} after step {step}; checkpoint {checkpoint}; resume with: "
                               f"{resume_command(run_dir)}", signum)


@contextlib.contextmanager
def evaluation_stops(checkpoint: Path | None, run_dir: Path):
    """During the final evaluation the first of SIGNALS stops at once (nothing to save: training is
    complete) with the line that says how to finish it; rerunning evaluates from the last checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        raise SignalledStop(signum)

    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    try:
        yield
    except SignalledStop as stop:
        raise TrainingInterrupted(f"stopped by {signal.Signals(stop.signum).name} during the final evaluation: "
                                  f"training is complete (checkpoint {checkpoint}); finish it with: "
                                  f"{resume_command(run_dir)}", stop.signum) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
