"""Stopping a run on purpose: SIGINT, SIGTERM (e.g. SLURM preemption) or SIGUSR2 (submitit's
time-limit warning) asks the loop to finish the step, write a checkpoint and exit with the command
that resumes it; a second SIGINT stops at once.

    stop = StopRequest()
    with stop.installed():
        ... if stop.signum is not None: raise interrupted(stop.signum, step, checkpoint, run_dir)
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path

from ..errors import TrainingInterrupted
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
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def interrupted(signum: int, step: int, checkpoint: Path, run_dir: Path) -> TrainingInterrupted:
    """The one line a stopped run prints: where it stopped and the command that resumes it."""
    overrides = [o for o in task_overrides() if not o.startswith("resume=")]
    command = " ".join(["specrep train", *overrides, f"resume={run_dir}"])
    return TrainingInterrupted(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint "
                               f"{checkpoint}; resume with: {command}", signum)
