"""dataset.source=file: an edge list, its node labels and node features, read with line-numbered errors.

    edges = read_edges(path)                         # EdgeList: names, src, dst, weight (as written)
    labels, classes = read_labels(path, index)       # index: node name -> row
    features = read_features(path, index)            # float32 (n, F)
    files = node_image_files(path, index)            # each node's image file (dataset.images)

Edges: CSV or TSV lines `source,target[,weight]` (the delimiter is the first line's: a tab if it has
one, else a comma), node names any strings, weight 1 when absent; blank lines and lines starting with
# are skipped. Files are UTF-8 (a byte order mark before the first line is dropped); other bytes are
one DatasetError naming the file, the byte offset and the line. Every bad line is one DatasetError
naming the file, the line and what to fix; so is a node given two different labels.

Header: the first line is a header, and skipped, only when every cell is a header word (HEADER_WORDS,
any case: source,target,weight / src,dst / from,to / u,v / node,label / id,label) and none of its cells
is a node: a node name on another line of the edge list, or for labels and features a node of the
edge list. Otherwise it is data: `u,v` is an edge when u or v is a node elsewhere in the file (the
only reading of it that keeps every line), and `u,v,1` is an edge whatever the nodes (1 is not a
header word). A header whose names are all header words and nodes nowhere else cannot be told from
an edge between two nodes of that name and no other edge; it is taken as a header.
"""
from __future__ import annotations

import codecs
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Dict, List, Tuple

import torch
from torch import Tensor

from ..errors import DatasetError

HEADER_WORDS = {"source", "target", "src", "dst", "from", "to", "u", "v", "node", "id", "label", "weight",
                "path", "image", "file"}
KEYS = {"edge": "path", "labels": "labels_path", "features": "features_path", "images": "images"}   # what -> its key


@dataclass
class EdgeList:
    names: List[str]   # nodes in order of first appearance
    src: Tensor        # int64 (E,) as written (not yet symmetrised)
    dst: Tensor
    weight: Tensor     # float64 (E,) >= 0


def _text(path: Path) -> str:
    """The file as text: UTF-8, a byte order mark dropped; other bytes are one DatasetError with the
    byte offset (from the file's start) and the line."""
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = skip + err.start
        line = data.count(b"\n", 0, offset) + 1
        raise DatasetError(f"{path}: byte {offset} (0x{data[offset:offset + 1].hex()}, line {line}) is not "
                           "UTF-8: save the file as UTF-8 text") from None


def _rows(path: str | Path, what: str) -> List[Tuple[int, List[str]]]:
    """(line number, stripped fields) of every non-blank, non-comment line, the first (a header or
    not: without_header) included."""
    path, key = Path(path), KEYS[what]
    if not path.is_file():
        state = "is not a regular file" if path.exists() else "does not exist"   # a folder, a pipe, a device
        raise DatasetError(f"{what} file {path} {state}: check dataset.{key}" if what != "edge"
                           else f"edge list {path} {state}: check dataset.path")
    lines = [(i + 1, line) for i, line in enumerate(io.StringIO(_text(path), newline=""))
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise DatasetError(f"{path} is empty: it needs lines source,target[,weight]" if what == "edge"
                           else f"{path} is empty: drop dataset.{key} or fill it")
    delimiter = "\t" if "\t" in lines[0][1] else ","
    return [(number, [x.strip() for x in next(csv.reader([line], delimiter=delimiter))])
            for number, line in lines]


def without_header(rows: List[Tuple[int, List[str]]], nodes: Collection[str]) -> List[Tuple[int, List[str]]]:
    """`rows` less the first when it is a header: two or more cells, each a header word (any case),
    none of them in `nodes` (the module's docstring says why)."""
    first = rows[0][1]
    header = len(first) >= 2 and all(x.lower() in HEADER_WORDS and x not in nodes for x in first)
    return rows[1:] if header else rows


def _number(text: str, path: str | Path, line: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{path}, line {line}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}, line {line}: {what} {text!r} is not finite")
    return value


def read_edges(path: str | Path) -> EdgeList:
    """The edge list at `path`; a missing column, a non-numeric or negative weight, no edge with a
    positive weight, or only self-loops is a DatasetError with the line."""
    index: Dict[str, int] = {}
    src, dst, weight = [], [], []
    rows = _rows(path, "edge")
    for line, fields in without_header(rows, {x for _, row in rows[1:] for x in row[:2]}):
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise DatasetError(f"{path}, line {line}: missing column: expected source,target[,weight], "
                               f"got {','.join(fields)!r}")
        w = _number(fields[2], path, line, "weight") if len(fields) > 2 and fields[2] else 1.0
        if w < 0:
            raise DatasetError(f"{path}, line {line}: negative weight {w}: edge weights must be >= 0")
        for name in fields[:2]:
            index.setdefault(name, len(index))
        src.append(index[fields[0]])
        dst.append(index[fields[1]])
        weight.append(w)
    if not weight or max(weight) == 0:
        raise DatasetError(f"{path} has no edge with a positive weight: nothing to train on")
    if all(s == d for s, d, w in zip(src, dst, weight) if w > 0):
        raise DatasetError(f"{path} has only self-loops: no pair of distinct nodes to train on")
    return EdgeList(list(index), torch.tensor(src), torch.tensor(dst), torch.tensor(weight, dtype=torch.float64))


def _node(fields: List[str], index: Dict[str, int], path: str | Path, line: int, columns: str) -> int:
    if len(fields) < 2:
        raise DatasetError(f"{path}, line {line}: missing column: expected {columns}")
    if fields[0] not in index:
        raise DatasetError(f"{path}, line {line}: node {fields[0]!r} is not in the edge list (dataset.path)")
    return index[fields[0]]


def read_labels(path: str | Path, index: Dict[str, int]) -> Tuple[Tensor, List[str]]:
    """Labels (n,) int64 (-1: unlabelled) and the class names (sorted) from CSV lines node,label; a
    node given two different labels is a DatasetError naming both lines."""
    rows = without_header(_rows(path, "labels"), index)
    classes = sorted({fields[1] for _, fields in rows if len(fields) >= 2})
    of = {c: i for i, c in enumerate(classes)}
    labels = torch.full((len(index),), -1, dtype=torch.long)
    first: Dict[int, int] = {}   # node row -> the line that labelled it
    for line, fields in rows:
        row = _node(fields, index, path, line, "node,label")
        if row in first and labels[row] != of[fields[1]]:
            raise DatasetError(f"{path}, lines {first[row]} and {line}: node {fields[0]!r} has two labels, "
                               f"{classes[labels[row]]!r} and {fields[1]!r}: keep one line per node")
        first.setdefault(row, line)
        labels[row] = of[fields[1]]
    return labels, classes


def read_features(path: str | Path, index: Dict[str, int]) -> Tensor:
    """Node features (n, F) float32 from CSV lines node,f1,...,fF; every node needs one line."""
    features: Dict[int, List[float]] = {}
    width = None
    for line, fields in without_header(_rows(path, "features"), index):
        row = _node(fields, index, path, line, "node,f1,f2,...")
        values = [_number(x, path, line, "feature") for x in fields[1:]]
        if width is not None and len(values) != width:
            raise DatasetError(f"{path}, line {line}: {len(values)} features, earlier lines have {width}")
        width = len(values)
        features[row] = values
    missing = [name for name, row in index.items() if row not in features]
    if missing:
        raise DatasetError(f"{path} has no features for node {missing[0]!r} (and {len(missing) - 1} more): "
                           "every node of the edge list needs a line")
    return torch.tensor([features[i] for i in range(len(index))], dtype=torch.float32)


def node_image_files(path: str | Path, index: Dict[str, int]) -> List[Path]:
    """Each node's image file, in row order, from CSV lines node,path (a path relative to the CSV's
    folder, or absolute); every node of the edge list needs one line, and one file that exists."""
    folder, files = Path(path).parent, {}
    for line, fields in without_header(_rows(path, "images"), index):
        row = _node(fields, index, path, line, "node,path")
        file = folder / fields[1].strip()
        if not file.is_file():
            raise DatasetError(f"{path}, line {line}: no image file {file} for node {fields[0]!r}: fix the "
                               "path (relative to the CSV's folder)")
        files[row] = file
    missing = [name for name, row in index.items() if row not in files]
    if missing:
        raise DatasetError(f"{path} has no image for node {missing[0]!r} (and {len(missing) - 1} more): "
                           "every node of the edge list needs a line node,path")
    return [files[i] for i in range(len(index))]
