"""Write docs/reference.md, the configuration reference, from the typed schemas and the YAML comments.

    python docs/make_reference.py            # (re)write docs/reference.md
    python docs/make_reference.py --check    # exit 1 when docs/reference.md is not what this script writes

Nothing here names a key. Every command's YAML (conf/*.yaml) and every option of every group
(conf/<group>/**/*.yaml) is composed by Hydra as `specrep train` / `specrep eval` would compose it; the
option's node is walked recursively through its dataclass schema (specrep_cli/config.py), nested
dataclasses included, giving each key's dotted path, type (from the dataclass's annotations) and
default (the composed value: the schema's default, or the option's YAML where it sets one). Each key's
comment is the `# comment` on its line in the option's YAML, nested mappings included; a key without one
there takes the comment of the same schema field in another YAML (view_b's keys, which repeat view_a's).
Options in `# @package _global_` files (recipes, tuned settings) are listed with the keys they set.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
OUT = ROOT / "docs" / "reference.md"
COMMANDS = (("train", "specrep train"), ("eval", "specrep eval"), ("export", "specrep export"))

sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------------- YAML text
def _split_comment(text: str) -> Tuple[str, Optional[str]]:
    """(value, comment) of the text after a key's colon: the first ` #` outside quotes starts the comment."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].strip(), text[i + 1:].strip()
    return text.strip(), None


KEY_LINE = re.compile(r"^(\s*)([A-Za-z_][\w.-]*)\s*:(?:\s+(.*))?$")
OVERRIDE_LINE = re.compile(r"^\s*-\s*override\s+/?([\w/]+)(?:@\S+)?\s*:\s*([^\s#]+)\s*(?:#\s*(.*))?$")


class YamlText:
    """A YAML file's comments: its header, the comment of each key (dotted path), its `override` defaults."""

    def __init__(self, path: Path):
        self.path = path
        lines = path.read_text().splitlines()
        self.is_global = any(line.strip().startswith("# @package _global_") for line in lines[:3])
        self.header: List[str] = []
        for line in lines:
            if not line.startswith("#"):
                break
            if not line.startswith("# @package"):
                self.header.append(line[1:].strip())
        self.comments: Dict[str, str] = {}
        self.overrides: List[Tuple[str, str, str]] = []   # (group, option, comment)
        self._parse(lines)

    def _parse(self, lines: List[str]) -> None:
        stack: List[Tuple[int, str]] = []      # (indent, key) of the open mappings
        last: Optional[str] = None             # the key whose comment a comment-only line continues
        last_indent = 0
        block_indent: Optional[int] = None     # inside a block scalar (|, >) or a skipped subtree
        for line in lines:
            stripped = line.strip()
            indent = len(line) - len(line.lstrip())
            if block_indent is not None:
                if not stripped or indent > block_indent:
                    continue
                block_indent = None
            if not stripped:
                last = None
                continue
            if stripped.startswith("#"):
                if last is not None and indent > last_indent:
                    self.comments[last] = f"{self.comments[last]} {stripped.lstrip('#').strip()}".strip()
                continue
            override = OVERRIDE_LINE.match(line)
            if override:
                self.overrides.append((override.group(1), override.group(2), override.group(3) or ""))
                last = None
                continue
            match = KEY_LINE.match(line)
            if not match or stripped.startswith("-"):
                last = None
                continue
            key = match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            value, comment = _split_comment(match.group(3) or "")
            if not stack and key in ("defaults", "hydra"):
                block_indent, last = indent, None      # the defaults list and Hydra's own settings
                continue
            path = ".".join([k for _, k in stack] + [key])
            if comment:
                self.comments[path] = comment
                last, last_indent = path, indent
            else:
                last = None
            if value in ("", ) or value.startswith("&"):
                stack.append((indent, key))
            elif value[:1] in "|>":
                block_indent = indent

    def values(self) -> Dict[str, Any]:
        """The keys this file sets (dotted), as YAML reads them; `defaults` left out."""
        data = yaml.safe_load(self.path.read_text()) or {}
        data.pop("defaults", None)
        return _flatten(data)


def _flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, dict) and node:
        out: Dict[str, Any] = {}
        for key, child in node.items():
            out.update(_flatten(child, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


# ------------------------------------------------------------------------------------------ rendering
def type_name(tp: Any) -> str:
    """A schema annotation as words: Optional[int] -> 'int or null', List[float] -> 'list of float'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        rest = [a for a in args if a is not type(None)]
        names = " or ".join(type_name(a) for a in rest)
        return f"{names} or null" if len(rest) < len(args) else names
    if origin in (list, List):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin in (dict, Dict):
        return f"mapping {type_name(args[0])} to {type_name(args[1])}" if args else "mapping"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


def value_text(value: Any) -> str:
    if value == "???":
        return "required"
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6, allow_unicode=True).strip()
    if text.endswith("\n..."):
        text = text[:-4].strip()
    return text


def cell(text: str) -> str:
    """Text for a Markdown table cell: code spans kept, Markdown and HTML specials escaped elsewhere."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", "\\|"))
        else:
            part = part.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            for ch in "|*_[]":
                part = part.replace(ch, "\\" + ch)
            out.append(part)
    return "".join(out)


def code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def paragraph(lines: List[str]) -> str:
    return cell(" ".join(" ".join(lines).split()))


# ------------------------------------------------------------------------------------ schema walking
class Reference:
    def __init__(self) -> None:
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        from specrep_cli import config

        config.register()
        self.OmegaConf = OmegaConf
        self._compose, self._init = compose, initialize_config_dir
        self.field_comments: Dict[Tuple[str, str], str] = {}   # (schema qualname, field) -> comment
        self.path_types: Dict[str, str] = {}                    # dotted key -> type, from every option seen

    def compose(self, command: str, overrides: List[str]):
        with self._init(config_dir=str(CONF), version_base="1.3"):
            return self._compose(config_name=command, overrides=overrides)

    def walk(self, node, prefix: str, comments: Dict[str, str], rows: list, skip=()) -> None:
        """Rows (key, type, default, comment, schema field) of a composed node, recursing into dataclasses."""
        OmegaConf = self.OmegaConf
        schema = OmegaConf.get_type(node)
        is_schema = schema is not None and dataclasses.is_dataclass(schema)
        hints = typing.get_type_hints(schema) if is_schema else {}
        names = [f.name for f in dataclasses.fields(schema)] if is_schema else list(node.keys())
        data = OmegaConf.to_container(node, resolve=False, throw_on_missing=False)
        for name in names:
            if name in skip:
                continue
            path = f"{prefix}{name}"
            child = node._get_node(name)
            child_type = OmegaConf.get_type(child) if OmegaConf.is_dict(child) else None
            if OmegaConf.is_dict(child) and child_type is not None and dataclasses.is_dataclass(child_type) \
                    and not _is_mapping_type(hints.get(name)):
                if path in comments:
                    rows.append((path, type_name(child_type), "", comments[path], None))
                self.walk(child, f"{path}.", comments, rows)
                continue
            tp = type_name(hints[name]) if name in hints else type(data.get(name)).__name__
            field = (schema.__qualname__, name) if is_schema else None
            rows.append((path, tp, value_text(data.get(name)), comments.get(path, ""), field))

    def collect(self, rows: list, group_prefix: str) -> None:
        for path, tp, _, comment, field in rows:
            self.path_types.setdefault(group_prefix + path, tp)
            if field and comment:
                self.field_comments.setdefault(field, comment)

    def fill(self, rows: list) -> list:
        return [(p, t, v, c or (self.field_comments.get(f, "") if f else ""), f) for p, t, v, c, f in rows]


def _is_mapping_type(tp: Any) -> bool:
    return typing.get_origin(tp) in (dict, Dict) if tp is not None else False


def _defaults_groups(yaml_path: Path) -> List[Tuple[str, str, str]]:
    """(group, default option, comment) of a command's defaults list, in order."""
    out = []
    lines = yaml_path.read_text().splitlines()
    inside = False
    for line in lines:
        if line.startswith("defaults:"):
            inside = True
            continue
        if inside and line and not line[0].isspace():
            break
        if not inside:
            continue
        stripped = line.strip()
        if stripped.startswith("#") and out:
            group, option, comment = out[-1]
            out[-1] = (group, option, f"{comment} {stripped.lstrip('#').strip()}".strip())
            continue
        m = re.match(r"^-\s*(?:optional\s+)?([\w/]+)(@\S+)?\s*:\s*([^#]*?)\s*(?:#\s*(.*))?$", stripped)
        if m:
            out.append((m.group(1) + (m.group(2) or ""), m.group(3), m.group(4) or ""))
    return out


def _group_dirs() -> List[str]:
    return sorted(p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _options(group: str) -> List[str]:
    base = CONF / group
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))


# ----------------------------------------------------------------------------------------- the page
def build() -> str:
    ref = Reference()
    groups = _group_dirs()
    command_defaults = {cmd: _defaults_groups(CONF / f"{cmd}.yaml") for cmd, _ in COMMANDS
                        if (CONF / f"{cmd}.yaml").exists()}
    train_defaults = {g.split("@")[0]: opt for g, opt, _ in command_defaults.get("train", [])}
    order = [g.split("@")[0] for g, _, _ in command_defaults.get("train", [])]
    groups = sorted(groups, key=lambda g: (order.index(g) if g in order else len(order), g))

    # First pass: every option's rows (types and comments are shared across options through the schema fields).
    option_rows: Dict[Tuple[str, str], list] = {}
    option_text: Dict[Tuple[str, str], YamlText] = {}
    schemas: Dict[Tuple[str, str], Any] = {}
    for group in groups:
        for option in _options(group):
            text = YamlText(CONF / group / f"{option}.yaml")
            option_text[(group, option)] = text
            if text.is_global:
                continue
            cfg = ref.compose("train", [f"{group}={option}"])
            rows: list = []
            ref.walk(cfg[group], "", text.comments, rows)
            ref.collect(rows, f"{group}.")
            option_rows[(group, option)] = rows
            schemas[(group, option)] = ref.OmegaConf.get_type(cfg[group])
    command_rows = {}
    for cmd, _ in COMMANDS:
        if cmd not in command_defaults:
            continue
        text = YamlText(CONF / f"{cmd}.yaml")
        cfg = ref.compose(cmd, [])
        cmd_groups = {g.split("@")[0] for g, _, _ in command_defaults[cmd]}
        rows = []
        ref.walk(cfg, "", text.comments, rows, skip=cmd_groups)
        command_rows[cmd] = (text, rows)

    out = ["# Configuration reference", "",
           "<!-- Generated by docs/make_reference.py from specrep_cli/config.py and conf/; do not edit by hand. -->",
           "",
           "Every config group, option and key of specrep, with its type, default and meaning: the typed "
           "schemas give the types, the options' YAML files the defaults and the comments. Choose an option "
           "with `group=option` and set a key with `group.key=value` on the command line; "
           "`specrep train --cfg job` prints the composed config of a command line, and "
           "`specrep train --help` lists the groups. A key or option that does not exist is an error.", "",
           "## Commands", ""]
    for cmd, label in COMMANDS:
        if cmd not in command_rows:
            continue
        text, rows = command_rows[cmd]
        out += [f"### `{label}`", "", f"`conf/{cmd}.yaml`: " + paragraph(text.header), ""]
        group_list = [(g, o, c) for g, o, c in command_defaults[cmd] if g.split("@")[0] in groups]
        if group_list:
            out += ["| group | default option | comment |", "| --- | --- | --- |"]
            for group, option, comment in group_list:
                name = group.split("@")[0]
                link = f"[`{name}`](#group-{name})"
                out.append(f"| {link} | {code(option)} | {cell(comment)} |")
            out.append("")
        out += _key_table(ref.fill(rows), "")
    out += ["## Groups", ""]
    for group in groups:
        options = _options(group)
        default = train_defaults.get(group)
        out += [f"### Group `{group}`", ""]
        listed = ", ".join(f"`{o}`" + (" (default)" if o == default else "") for o in options)
        out += [f"Options: {listed}.", ""]
        for option in options:
            text = option_text[(group, option)]
            out += [f"#### `{group}={option}`" if not text.is_global else f"#### `{group}/{option}`", ""]
            out += _header(text)
            if text.overrides:
                brought = "; ".join(f"`{g}={o}`" + (f" ({cell(c)})" if c else "") for g, o, c in text.overrides)
                out += [f"Sets the default of other groups: {brought}.", ""]
            if text.is_global:
                out += _global_table(ref, text)
            else:
                rows = ref.fill(option_rows[(group, option)])
                schema = schemas[(group, option)]
                out += [f"Schema: `{schema.__name__}`." + _doc(schema), ""]
                out += _key_table(rows, f"{group}.")
    return "\n".join(out).rstrip() + "\n"


def _doc(schema: type) -> str:
    doc = (schema.__doc__ or "").strip()
    if not doc or doc.startswith(schema.__name__ + "("):   # the signature dataclasses write when there is none
        return ""
    return " " + cell(" ".join(doc.split()))


def _header(text: YamlText) -> List[str]:
    lines = list(text.header)
    out = []
    if lines and lines[0].startswith("specrep "):
        command, *note = re.split(r"\s{2,}", lines.pop(0).strip(), maxsplit=1)
        out += ["```bash", command, "```", ""]
        lines = note + lines
    if any(lines):
        out += [paragraph(lines), ""]
    return out


def _key_table(rows: list, prefix: str) -> List[str]:
    if not rows:
        return []
    out = ["| key | type | default | comment |", "| --- | --- | --- | --- |"]
    for path, tp, value, comment, _ in rows:
        out.append(f"| `{prefix}{path}` | {cell(tp)} | {code(value) if value else ''} | {cell(comment)} |")
    return out + [""]


def _global_table(ref: Reference, text: YamlText) -> List[str]:
    values = text.values()
    if not values:
        return []
    out = ["| key | type | value | comment |", "| --- | --- | --- | --- |"]
    for path, value in values.items():
        comment = text.comments.get(path, "")
        out.append(f"| `{path}` | {cell(ref.path_types.get(path, type(value).__name__))} | "
                   f"{code(value_text(value))} | {cell(comment)} |")
    return out + [""]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/reference.md is stale")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write (default: docs/reference.md)")
    args = parser.parse_args(argv)
    page = build()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != page:
            print(f"{args.out} is stale: run python docs/make_reference.py", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
