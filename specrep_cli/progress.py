"""Feedback in a long phase (decoding, feature extraction, probes, an evaluation's stages): on a
terminal a rich progress bar with the time left; in a pipe, a file or a log, plain lines without
escape codes: a first line, one every `interval` seconds, and a final line with the time taken.

    with phase("decoding", total=len(files), unit="images") as bar:
        for ...: bar.advance(n)                  # n: a host int, so no device sync
    for epoch in tracked(range(epochs), "training the linear probe", epochs, "epochs"): ...
    with stages("specrep eval", 3) as stage:     # named stages: a line as each begins, no bar
        stage("loading the checkpoint")
    @quiet()                                     # phases inside show nothing (the per-epoch monitoring)

The lines go to the "specrep" logger (the console and the run's log); a process whose logger is
quieter than INFO (a rank other than 0) shows nothing.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

log = logging.getLogger("specrep")
T = TypeVar("T")
INTERVAL = 10.0   # seconds between two plain lines
_QUIET: ContextVar[bool] = ContextVar("specrep_quiet_phases", default=False)
_LIVE: List[Progress] = []   # the one live display that every bar joins (rich draws one at a time)


def hms(seconds: float) -> str:
    """A duration as a clock shows it: 0:41, 12:05, 1:02:03."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _took(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else hms(seconds)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # None, a closed stream
        return False


def on_terminal() -> bool:
    """Whether a bar may be drawn: stdout and stderr both terminals (else what is shown is a log)."""
    return _isatty(sys.stdout) and _isatty(sys.stderr)


@dataclass
class Phase:
    """A phase's count of units done, shown by `advance`: its bar, or (mode "lines") a line once
    `interval` seconds have passed since the last one."""
    description: str
    total: int
    unit: str
    interval: float
    clock: Callable[[], float]
    mode: str                      # "bar", "lines" or "quiet"
    done: int = 0
    started: float = 0.0
    shown: float = 0.0             # when the last line was written
    bar: Progress | None = None
    task: TaskID | None = None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.advance(self.task, n)
        elif self.mode == "lines" and self.clock() - self.shown >= self.interval:
            self.shown = self.clock()
            log.info(self.progress_line())

    def first_line(self) -> str:
        return f"{self.description}: {self.total:,} {self.unit}"

    def progress_line(self) -> str:
        elapsed = self.shown - self.started
        share = self.done / self.total if self.total else 1.0
        eta = hms(elapsed * (self.total - self.done) / self.done) if self.done else "unknown"
        return (f"{self.description} {self.done:,} / {self.total:,} {self.unit}, {100 * share:.0f} %, "
                f"ETA {eta}")

    def final_line(self) -> str:
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (f"{self.description}: done, {self.done:,} {self.unit} in {_took(elapsed)}"
                + (f" ({rate:,.0f} {self.unit}/s)" if rate >= 1 else ""))


def _join_bar(description: str, total: int, unit: str) -> tuple[Progress, TaskID]:
    """A bar for this phase in the live display on stderr (started by the first phase to draw)."""
    if not _LIVE:
        _LIVE.append(Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[unit]}"), TaskProgressColumn(), TimeRemainingColumn(),
                              console=Console(stderr=True), transient=True, redirect_stdout=False,
                              redirect_stderr=False))
        _LIVE[0].start()
    return _LIVE[0], _LIVE[0].add_task(description, total=total, unit=unit)


def _leave_bar(bar: Progress, task: TaskID) -> bool:
    """Remove the phase's bar; the display stops with its last bar. Whether it stopped."""
    bar.remove_task(task)
    if bar.tasks:
        return False
    bar.stop()
    _LIVE.clear()
    return True


@contextlib.contextmanager
def phase(description: str, total: int, unit: str, interval: float = INTERVAL,
          clock: Callable[[], float] = time.monotonic, terminal: bool | None = None) -> Iterator[Phase]:
    """A phase of `total` units: on a terminal (`terminal`; None: on_terminal()) a bar with the time
    left, then the final line once no bar is left; elsewhere the first line, a progress line at most
    every `interval` seconds of `clock` ("decoding 12,000 / 60,000 images, 20 %, ETA 0:41") and the
    final line. Nothing under quiet(); no final line when the phase fails."""
    if _QUIET.get() or not log.isEnabledFor(logging.INFO):
        mode = "quiet"
    else:
        mode = "bar" if (on_terminal() if terminal is None else terminal) else "lines"
    now = clock()
    shown = Phase(description, total, unit, interval, clock, mode, started=now, shown=now)
    if mode == "lines":
        log.info(shown.first_line())
    if mode == "bar":
        shown.bar, shown.task = _join_bar(description, total, unit)
    try:
        yield shown
    finally:
        last = _leave_bar(shown.bar, shown.task) if shown.bar is not None else mode == "lines"
    if last:
        log.info(shown.final_line())


def tracked(items: Iterable[T], description: str, total: int, unit: str) -> Iterator[T]:
    """Each of `items` in turn, inside a phase advanced by one as each is done."""
    with phase(description, total, unit) as bar:
        for item in items:
            yield item
            bar.advance()


@contextlib.contextmanager
def stages(description: str, total: int,
           clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[[str], None]]:
    """A phase of `total` named stages, drawn as lines on a terminal too (what the stages log and
    print stays readable): "specrep eval 2/3: loading the dataset" as each begins, then the time taken."""
    started, begun = clock(), []

    def stage(name: str) -> None:
        begun.append(name)
        if not _QUIET.get():
            log.info(f"{description} {len(begun)}/{total}: {name}")

    yield stage
    if not _QUIET.get():
        log.info(f"{description}: done in {_took(clock() - started)}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Phases and stages inside show nothing (a pass too short and too frequent to report); a
    decorator too."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)
