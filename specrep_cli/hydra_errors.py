"""Hydra's and OmegaConf's error text, read in one place: what their exceptions say, as one line.

    one_line(err, schemas=config)      # a composition error: "Could not find 'objective/spectrall'; available: ..."
    parse_reason(err)                  # why an override does not parse: "mismatched input '(' expecting <EOF>"

Their messages are several lines (a search path, a link to the grammar, a caret under the text); the
first line says what is wrong, and a few later lines are worth keeping: the options a group has, the
hint to append with +, the keys a schema has. Nothing else in specrep reads these texts.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

GRAMMAR_LINK = "See https://hydra.cc/docs/"
# the primary configs' names Hydra puts in front of a line: "In 'train': Key 'x' is not in ..."
PRIMARY = re.compile(r"^In '(train|eval|export)': ")


def _options(text: str) -> list[str]:
    """The options listed under "Available options in '<group>':" (up to the search path)."""
    listing = text.split("Available options in")[1].split("Config search path")[0]
    return [o.strip() for o in listing.splitlines()[1:] if o.strip()]


def _schema_keys(line: str, schemas: Any) -> list[str] | None:
    """The fields of the schema a "Key 'x' not in 'Schema'" line names, when `schemas` (a namespace of
    dataclasses, e.g. specrep_cli.config) has it; the option's name left out."""
    found = re.search(r"Key '\w+' not in '(\w+)'", line)
    schema = getattr(schemas, found.group(1), None) if found and schemas is not None else None
    if schema is None or not dataclasses.is_dataclass(schema):
        return None
    return [f.name for f in dataclasses.fields(schema) if f.name != "name"]


def one_line(err: BaseException, schemas: Any = None) -> str:
    """A composition error of Hydra or OmegaConf (many types, several lines) as one line: the first
    line, with the options of a group, the cause, a schema's keys (looked up in `schemas`) or
    Hydra's "To append" hint added when the text has them."""
    text = str(err)
    line = PRIMARY.sub("", (text.splitlines() or [type(err).__name__])[0])
    if "Available options in" in text:
        return f"{line}; available: {', '.join(_options(text))}"
    if err.__cause__ is not None and str(err.__cause__).strip():
        line = f"{line.rstrip('.')}: {str(err.__cause__).splitlines()[0]}"
    keys = _schema_keys(line, schemas)
    if keys is not None:   # a key of another option of the group
        return f"{line} (the keys it has: {', '.join(keys)})"
    hint = next((h for h in text.splitlines()[1:] if h.startswith("To append")), None)
    return f"{line} ({hint[0].lower()}{hint[1:]})" if hint else line


def parse_reason(err: BaseException) -> str:
    """Why Hydra's override grammar refused an override (its OverrideParseException), as one line that
    does not repeat the override: the grammar's words, or where a character no token starts with is."""
    lines = [ln for ln in str(getattr(err, "message", None) or err).splitlines()
             if ln.strip() and not ln.startswith(GRAMMAR_LINK) and not ln.startswith("Error parsing override")]
    if not lines:
        return type(err).__name__
    lexer = re.match(r"LexerNoViableAltException: (.*)$", lines[0])
    caret = lines[1] if len(lines) > 1 and lines[1].strip() == "^" else None
    if lexer and caret is not None:   # the text, and a caret under the character no token starts with
        at = caret.index("^") - lines[0].index(lexer.group(1))
        if 0 <= at < len(lexer.group(1)):
            return f"no token of Hydra's override grammar starts with {lexer.group(1)[at]!r} (character {at + 1})"
    return lines[0]
