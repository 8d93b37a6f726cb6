"""What a training run says of its plan before its first step, and of its pace after its first epoch:
one line each in the console and train.log.

    log_plan(run, state)                        # epochs, steps per epoch and in all, batch size, run dir
    log_pace(run, state, images, seconds)       # after this invocation's first epoch: images/s, time left
    lines = StepLines(epoch, epochs, steps, first)   # inside an epoch, not on a terminal: a line every
    lines.at_log_step(done, info)                    #   progress.INTERVAL seconds, at logging steps only
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .. import progress
from ..progress import hms
from .setup import LoopState, Run

log = logging.getLogger("specrep")


def log_plan(run: Run, state: LoopState) -> None:
    """The run's plan: its epochs and steps (a resumed run: those left), batch size and run dir."""
    tr, step, total = run.cfg.trainer, state.progress.step, run.total_steps
    if step == 0:
        steps = f"{tr.epochs} epochs x {run.steps_per_epoch:,} steps = {total:,} steps"
    elif step < total:
        steps = (f"epochs {state.start_epoch}-{tr.epochs} of {tr.epochs}, {total - step:,} of {total:,} steps left "
                 f"({run.steps_per_epoch:,} per epoch)")
    else:
        steps = f"training is complete ({tr.epochs} epochs, {total:,} steps): the final evaluation only"
    log.info(f"plan: {steps}, batch size {tr.batch_size}, run dir {run.run_dir}")


def log_pace(run: Run, state: LoopState, images: int, seconds: float) -> None:
    """Once, after this invocation's first epoch (`images` trained on in `seconds`): the images/s
    measured (torch.compile's first step left out) and how long the steps left should take at that
    pace (training alone: the monitoring and the final evaluation come on top). Nothing when none are left."""
    if state.paced:
        return
    state.paced = True
    left = run.total_steps - state.progress.step
    if left <= 0:
        return
    rate = images / max(seconds - (state.compile_seconds or 0.0), 1e-9)
    epochs = run.cfg.trainer.epochs - state.progress.epoch
    log.info(f"pace: {rate:,.0f} images/s in the first epoch; the other {epochs} epoch{'s' * (epochs > 1)} "
             f"({left:,} steps) should take about {hms(left * run.cfg.trainer.batch_size / rate)}")


@dataclass
class StepLines:
    """Progress inside an epoch where no bar is drawn (a pipe, a file, a scheduler's log): at a logging
    step (the losses are on the host then), a line once progress.INTERVAL seconds have passed since the
    epoch began or the last line: the step, the share of the epoch, when it ends, and the losses."""
    epoch: int
    epochs: int
    steps: int                    # steps in the epoch
    first: int = 0                # the step it (re)started at
    plain: bool = field(default_factory=lambda: not progress.on_terminal())
    started: float = field(default_factory=lambda: time.perf_counter())
    shown: float = field(default_factory=lambda: time.perf_counter())

    def at_log_step(self, done: int, info: str) -> None:
        """`done` steps of the epoch taken; `info` the losses, lr and images/s the bar would show."""
        now = time.perf_counter()
        if not self.plain or done >= self.steps or now - self.shown < progress.INTERVAL:
            return
        self.shown = now
        left = (now - self.started) * (self.steps - done) / max(done - self.first, 1)
        log.info(f"epoch {self.epoch}/{self.epochs}  step {done:,}/{self.steps:,} ({100 * done / self.steps:.0f} %), "
                 f"epoch ends in {hms(left)}  {info.strip()}")
