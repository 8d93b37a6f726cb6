"""The command line's sweeps, as the check before Hydra starts sees them.

Hydra's basic sweeper enumerates `k=a,b`, `choice()`, `range()` and `glob()`; a searching sweeper
(`hydra/sweeper=optuna`, `pip install 'specrep[tune]'`) also takes `interval()` and `tag(log, ...)`,
which no one can enumerate. The check composes a few override lists that together hold every listed
value, every option a glob matches and both ends of every interval, so a typo or an out-of-range
value inside any of them is one line before any job starts:

    combos = representative_overrides(parse(["objective.mu=interval(1,4)", "seed=0,1"], loader))
    # [["objective.mu=1.0", "seed=0"], ["objective.mu=4.0", "seed=1"]]   (parse: specrep_cli.overrides)

A search selects on the figure each job returns, which must not come from the test split
(selects_on_test refuses one that only the test split gives).
"""
from __future__ import annotations

import importlib.util
from typing import List

from hydra.core.override_parser.types import Glob, IntervalSweep, Override

from .config import ImageDatasetConfig, TrainConfig
from .errors import ConfigError
from .figures import selection_figure
from .overrides import chosen, last, value_text

SEARCHING_SWEEPERS_EXTRA = "pip install 'specrep[tune]'"


def _values(override: Override) -> List[str | None]:
    """The values of one override to validate: itself (None: a deletion without one), each listed
    value, each option a glob matches, or the two ends of an interval."""
    if not override.is_sweep_override():
        return [value_text(override)]
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    listed = [str(v) for v in override.sweep_string_iterator()]
    if not listed:
        what = "option of " + override.key_or_group if isinstance(value, Glob) else "value"
        raise ConfigError(f"{override.input_line} matches no {what}: check the pattern "
                          f"(`specrep train --help` lists the options)")
    return listed


def check_sweeper(parsed: List[Override]) -> None:
    """interval() needs a sweeper that searches; the basic one only enumerates."""
    intervals = [o.input_line for o in parsed if o.is_interval_sweep() and not o.is_hydra_override()]
    sweeper = chosen(parsed, "hydra/sweeper") or "basic"
    if intervals and sweeper == "basic":
        raise ConfigError(f"{intervals[0]} is a range to search, which Hydra's basic sweeper cannot "
                          f"enumerate: add hydra/sweeper=optuna ({SEARCHING_SWEEPERS_EXTRA}), or list "
                          "values (a,b,c) or use range()")
    if sweeper == "optuna" and importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        raise ConfigError(f"hydra/sweeper=optuna needs Hydra's Optuna sweeper: {SEARCHING_SWEEPERS_EXTRA}")


def searches(parsed: List[Override]) -> bool:
    """Whether the command line chooses a sweeper that searches on the figure each job returns
    (any but Hydra's basic one, which only enumerates)."""
    return (chosen(parsed, "hydra/sweeper") or "basic") != "basic"


def selects_on_test(cfg: TrainConfig) -> str | None:
    """The refusal of a search (on the composed config.TrainConfig `cfg`) on a figure that only the test
    split would give (figures.selection_figure: a test figure without a validation counterpart, and no
    dataset.holdout): the test split never selects."""
    key = cfg.eval.objective_metric
    images = isinstance(cfg.dataset, ImageDatasetConfig)   # graphs have no holdout
    source = selection_figure(key, images and cfg.dataset.holdout is not None)
    if source == "linear_probe.val_top1" and cfg.eval.probe.protocol == "standard":
        what = "the standard probe has no validation figure"
    elif source is None:
        what = "has no validation figure"
    else:
        return None
    holdout = "add dataset.holdout=0.1 (held-out train images stand in for the test split), or " \
        if images else ""
    return (f"a search must not select on the test split, and eval.objective_metric={key} is scored on it and {what}: "
            f"{holdout}search on eval.objective_metric=knn.top1 (its validation figure: knn.val_top1)")


def representative_overrides(parsed: List[Override]) -> List[List[str]]:
    """Override lists that together try every value of every sweep at least once (`parsed`: parsed
    with Hydra's config loader, which knows the options a glob() can match)."""
    check_sweeper(parsed)
    keys = [o.get_key_element() for o in parsed]
    values = [_values(o) for o in parsed]
    width = max((len(v) for v in values), default=1)
    return [[k if v == [None] else f"{k}={v[min(i, len(v) - 1)]}" for k, v in zip(keys, values)]
            for i in range(width)]


def optuna_direction(parsed: List[Override]) -> List[str]:
    """The overrides to add for `hydra/sweeper=optuna` chosen without a direction: maximize (optuna's
    own default is minimize, and eval.objective_metric's default, the probe's top-1, is to maximise)."""
    if chosen(parsed, "hydra/sweeper") == "optuna" and last(parsed, "hydra.sweeper.direction") is None:
        return ["hydra.sweeper.direction=maximize"]
    return []
