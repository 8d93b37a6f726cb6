"""Command-line overrides read by Hydra's own grammar (its OverridesParser): the one place in specrep
that takes `key=value` apart.

    parsed = parse(["+objective.mu@x=2", "seed=0,1", "~tuned"])   # Hydra's Override objects
    parsed[0].key_or_group, parsed[0].package, parsed[1].is_sweep_override()   # objective.mu, x, True
    value_text(parsed[0])        # "2": the value as typed, for a new override of the same value
    last(parsed, "seed")         # the override that sets seed (the last one), or None
    touches(parsed, "augmentation")   # an override of the group or of a key under it
    command_line(["--multirun", "seed=0,1"])   # Hydra's own reading of an app's argv: .overrides, .multirun, .cfg...
    in_hydra_order(["a=1", "-m", "b=2"])   # ["-m", "a=1", "b=2"]: the argv a Hydra app accepts
    group_keys_swept(["-m", "objective=clip,siglip", "objective.text.width=32"])  # ..."objective.text.width=choice(32)"

An override the grammar refuses is a ConfigError naming it, e.g.
`cannot read the override 'hydra.run.dir=out$(touch X)': mismatched input '(' expecting <EOF>`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
from collections.abc import Sequence
from typing import Any

from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from .errors import ConfigError
from .hydra_errors import parse_reason


def parse(overrides: Sequence[str], loader: Any = None) -> list[Override]:
    """Each override parsed (`loader`: Hydra's config loader, which glob() needs to list a group's
    options). ConfigError naming the first override that does not parse."""
    parser = OverridesParser.create(config_loader=loader)
    parsed = []
    for line in overrides:
        try:
            parsed += parser.parse_overrides([line])
        except HydraException as err:
            reason = parse_reason(err)
            quote = ("; a value with spaces, quotes or non-ASCII letters goes in quotes (key='a b', key=\"it's\")"
                     if reason.startswith("no token of") else "")
            if "{" in line.partition("=")[2] and not quote:   # a brace pattern: Hydra reads { as a dict
                quote = ("; a brace pattern goes in quotes inside the shell's: "
                         "'dataset.shards=\"train-{000000..000009}.tar\"'")
            raise ConfigError(f"cannot read the override '{shown(line)}': {shown(reason)}{quote}") from None
    return parsed


def shown(text: str, limit: int = 300) -> str:
    """text for a one-line message: control characters escaped (a newline as \\n), cut at `limit`."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def value_text(override: Override) -> str | None:
    """The value as it was typed (quotes, interpolations and sweeps kept), None for a deletion that
    gives none (`~key`). The grammar's key and package hold no '=', so the value is what follows the
    first one."""
    key, equals, value = override.input_line.partition("=")
    return value if equals else None


def last(parsed: Sequence[Override], key: str) -> Override | None:
    """The override of `key` (a config key or group, without prefix or package) that comes last."""
    return next((o for o in reversed(parsed) if o.key_or_group == key), None)


def touches(parsed: Sequence[Override], group: str) -> bool:
    """Whether an override chooses `group` or sets a key under it (augmentation=..., augmentation.x=...)."""
    return any(o.key_or_group == group or o.key_or_group.startswith(group + ".") for o in parsed)


def chosen(parsed: Sequence[Override], key: str) -> Any:
    """The value the last override of `key` gives it (a str for a choice), or None when none does."""
    found = last(parsed, key)
    return None if found is None or found.is_delete() else found.value()


def command_line(args: Sequence[str]) -> argparse.Namespace | None:
    """An app's command line read as the Hydra app will read it (Hydra's own argument parser, its
    overrides taken wherever they stand among the flags): its overrides apart from its flags and their
    values (`--cfg job`, `-cn NAME`). None when that parser refuses it; the app then says why itself."""
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return get_args_parser().parse_intermixed_args(list(args))
    except SystemExit:   # argparse's way out: an unknown flag, a flag without its value, --version
        return None


def in_hydra_order(args: Sequence[str]) -> list[str]:
    """args with the flags first and the overrides together after them: Hydra's parser takes one run
    of overrides, so that `specrep train a=1 --multirun b=2` would be refused. args as they are when
    Hydra's parser refuses them anyway."""
    line = command_line(args)
    if line is None:
        return list(args)
    flags = list(args)
    for override in line.overrides:
        flags.remove(override)
    return [*flags, *line.overrides]


def assignment(key: str, value: str) -> str:
    """`key=value` as Hydra's grammar reads back the string `value` (quoted when it holds anything
    but letters, digits and _-./:+@~)."""
    if value and all(ch.isalnum() or ch in "_-./:+@~" for ch in value):
        return f"{key}={value}"
    escaped = value.replace("'", "\\'")   # Hydra's quoted strings: only a quote needs its backslash
    return f"{key}='{escaped}'"


def group_keys_swept(args: Sequence[str]) -> list[str]:
    """args (in_hydra_order) with, in a --multirun, each override of a key under a swept group made a
    sweep of its one value (objective=clip,siglip objective.text.width=32 -> objective.text.width=choice(32)):
    Hydra composes a sweep's base config without its sweeps, where the group's default option may lack
    the key; every job still gets the value as typed."""
    line = command_line(args)
    if line is None or not line.multirun:
        return list(args)
    try:
        parsed = parse(line.overrides)
    except ConfigError:
        return list(args)
    swept = {o.key_or_group.replace("/", ".") + "." for o in parsed if o.is_sweep_override()}
    out = list(args)
    for override, text in zip(parsed, line.overrides):
        value = value_text(override)
        if value is None or override.is_sweep_override() or not override.key_or_group.startswith(tuple(swept)):
            continue
        out[out.index(text)] = f"{text.partition('=')[0]}=choice({value})"
    return out


SHARD_KEYS = ("dataset.shards", "dataset.eval_shards")


def expanded_braces(parsed: Sequence[Override]) -> str | None:
    """A shard key given several times in a row: the shell expanded an unquoted brace pattern into one
    override per shard (train-{0..9}.tar -> train-0.tar ... train-9.tar), of which Hydra would keep the
    last. (The same key again later on the line is an ordinary override of the earlier one.)"""
    keys = [o.key_or_group for o in parsed]
    for key in SHARD_KEYS:
        runs = [len(list(group)) for k, group in itertools.groupby(keys) if k == key]
        count = max(runs, default=0)
        if count > 1:
            return (f"{key} is given {count} times: the shell expanded a brace pattern into one override per "
                    f"shard; quote it for the shell and for Hydra: '{key}=\"train-{{000000..000009}}.tar\"'")
    return None
