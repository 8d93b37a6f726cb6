"""The command line's sweeps, as the check before Hydra starts sees them.

Hydra's basic sweeper enumerates `k=a,b`, `choice()`, `range()` and `glob()`; a searching sweeper
(`hydra/sweeper=optuna`, `pip install 'specrep[tune]'`) also takes `interval()` and `tag(log, ...)`,
which no one can enumerate. The check composes a few override lists that together hold every listed
value, every option a glob matches and both ends of every interval, so a typo or an out-of-range
value inside any of them is one line before any job starts:

    combos = representative_overrides(["objective.mu=interval(1,4)", "seed=0,1"], loader)
    # [["objective.mu=1.0", "seed=0"], ["objective.mu=4.0", "seed=1"]]
"""
from __future__ import annotations

import importlib.util
from typing import Any, List

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override

from .errors import ConfigError

SEARCHING_SWEEPERS_EXTRA = "pip install 'specrep[tune]'"


def _values(override: Override) -> List[str]:
    """The values of one override to validate: itself, each listed value, each option a glob matches,
    or the two ends of an interval."""
    if not override.is_sweep_override():
        return [override.input_line.split("=", 1)[1]]
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    listed = [str(v) for v in override.sweep_string_iterator()]
    if not listed:
        what = "option of " + override.key_or_group if isinstance(value, Glob) else "value"
        raise ConfigError(f"{override.input_line} matches no {what}: check the pattern "
                          f"(`specrep train --help` lists the options)")
    return listed


def check_sweeper(overrides: List[str], parsed: List[Override]) -> None:
    """interval() needs a sweeper that searches; the basic one only enumerates."""
    intervals = [o.input_line for o in parsed if o.is_interval_sweep() and not o.is_hydra_override()]
    chosen = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra/sweeper=")), "basic")
    if intervals and chosen == "basic":
        raise ConfigError(f"{intervals[0]} is a range to search, which Hydra's basic sweeper cannot "
                          f"enumerate: add hydra/sweeper=optuna ({SEARCHING_SWEEPERS_EXTRA}), or list "
                          "values (a,b,c) or use range()")
    if chosen == "optuna" and importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        raise ConfigError(f"hydra/sweeper=optuna needs Hydra's Optuna sweeper: {SEARCHING_SWEEPERS_EXTRA}")


def representative_overrides(overrides: List[str], loader: Any = None) -> List[List[str]]:
    """Override lists that together try every value of every sweep at least once (`loader`: Hydra's
    config loader, which knows the options a glob() can match)."""
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
    check_sweeper(overrides, parsed)
    keys = [o.input_line.split("=", 1)[0] for o in parsed]
    values = [_values(o) for o in parsed]
    width = max((len(v) for v in values), default=1)
    return [[f"{k}={v[min(i, len(v) - 1)]}" for k, v in zip(keys, values)] for i in range(width)]


def optuna_direction(overrides: List[str]) -> List[str]:
    """The overrides to add for `hydra/sweeper=optuna` chosen without a direction: maximize (optuna's
    own default is minimize, and eval.objective_metric's default, the probe's top-1, is to maximise)."""
    optuna = "hydra/sweeper=optuna" in overrides
    if optuna and not any(o.startswith("hydra.sweeper.direction=") for o in overrides):
        return ["hydra.sweeper.direction=maximize"]
    return []
