"""Every exception specrep raises on purpose: a problem the user can fix, one line each.

The CLI turns a SpecrepError into that line on stderr and a non-zero exit (`exit_code`, 1 unless
set); HYDRA_FULL_ERROR=1 shows the traceback instead.
"""
from __future__ import annotations


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


class ReportError(SpecrepError):
    """The paths hold no runs, or a run's files cannot be read or written."""
