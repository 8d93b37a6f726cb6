"""Captions for image-text pairs: written for the built-in shapes, or read from a `captions.tsv`.

`shapes_captions(factors, seed)` describes each shapes image from the factors that generated it
(shapes.generate): "a small red star on a blue background, top left". Every factor has several
phrasings and some factors are left out, chosen per image by a seeded generator, so a text tower must
learn what the words mean rather than memorise a handful of strings.

`read_captions_tsv(path)` reads a user's pairs: one `<relative image path><TAB><caption>` per line;
`read_captions_csv(path, img_key, caption_key, separator)` open_clip's CSV/TSV (a header row naming
the columns; image paths relative to the file, or absolute).
"""
from __future__ import annotations

import csv
import posixpath
import re
from pathlib import Path, PureWindowsPath
from typing import Sequence

import torch
from torch import Tensor

from ..errors import DatasetError
from . import shapes
from .tokenizer import SPECIALS, Tokenizer

_words = Tokenizer(SPECIALS, level="word").tokenize   # words exactly as the text tower's tokenizer splits them

# Each class's phrases; the first is its name in shapes.CLASSES. No phrase of one class occurs, as whole
# words, inside a phrase of another, so the class is recoverable from any caption (`caption_classes`).
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "ring": ("ring", "donut"),
    "triangle": ("triangle",),
    "square": ("square",),
    "star": ("star", "five-pointed star"),
    "cross": ("cross", "plus sign"),
    "crescent": ("crescent", "crescent moon"),
    "heart": ("heart",),
    "arrow": ("arrow",),
    "L-shape": ("L-shape", "L shape"),
}
SYNONYM_P = 0.25  # probability of a synonym (drawn uniformly among the others) instead of the name
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "scarlet"),
    "blue": ("blue", "dark blue"),
    "white": ("white", "off-white"),
    "black": ("black", "jet black"),
}
SIZE_BINS = (0.633, 0.767)  # SIZE_RANGE (0.5, 0.9) in thirds: size <= 0.633 small, > 0.767 large
SIZE_WORDS = (("small", "little", "tiny"), ("medium-sized", "medium", "mid-sized"), ("large", "big", "huge"))
POS_BINS = (0.4, 0.6)  # x (y) <= 0.4: left (top); > 0.6: right (bottom); between: centre (middle)
ROWS, COLS = ("top", "middle", "bottom"), ("left", "centre", "right")
OMIT_P = {"size": 0.2, "fg": 0.15, "bg": 0.3, "pos": 0.3}  # probability each factor is left out

# (row, col) -> phrases; "{v}"/"{h}" are the row/column words, "{V}" the row's other word (upper/lower)
_CORNER = ("{v} {h}", "in the {v} {h}", "in the {V} {h} corner", "at the {v} {h}")
_EDGE_V = ("{v} centre", "at the {v}", "near the {v}", "along the {v}")  # top/bottom, centred in x
_EDGE_H = ("middle {h}", "on the {h}", "on the {h} side", "at the {h}")  # left/right, centred in y
_CENTRE = ("in the centre", "in the middle", "centred", "at the centre")
_UPPER_LOWER = {"top": "upper", "bottom": "lower"}
_BACKGROUNDS = ("on {a_bg} background", "against {a_bg} background", "on {bg}", "over {a_bg} backdrop")
# Sentence templates; an omitted piece is "" and `_tidy` removes the separators it leaves behind.
_TEMPLATES = (
    "{thing} {bg}, {pos}",
    "{thing} {pos} {bg}",
    "a picture of {thing} {bg}, {pos}",
    "there is {thing} {pos}, {bg}",
    "{pos}: {thing} {bg}",
    "an image showing {thing} {bg} {pos}",
)


def shapes_captions(factors: dict[str, Tensor], seed: int) -> list[str]:
    """One caption per image of `shapes.generate(...).factors`, a pure function of (factors, seed).

    Per image, from one seeded uniform draw (N, 12): the shape's phrase (its name, or with probability
    SYNONYM_P one of SHAPE_WORDS' synonyms), the size word (bin of `size` in SIZE_BINS), the colour
    words of fg_color and bg_color, the position phrase (3 x 3 grid of (y, x) by POS_BINS, y downward),
    the background phrase and the sentence template, each uniform over its options; size, fg, bg and
    position are each left out with probability OMIT_P. The shape is never left out.
    """
    n = factors["shape"].numel()
    u = torch.rand(n, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
    size_bin = torch.bucketize(factors["size"].double(), torch.tensor(SIZE_BINS, dtype=torch.float64))
    col = torch.bucketize(factors["x"].double(), torch.tensor(POS_BINS, dtype=torch.float64))
    row = torch.bucketize(factors["y"].double(), torch.tensor(POS_BINS, dtype=torch.float64))
    columns = zip(factors["shape"].tolist(), factors["fg_color"].tolist(), factors["bg_color"].tolist(),
                  size_bin.tolist(), row.tolist(), col.tolist(), u)
    return [_caption(*c) for c in columns]


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def _caption(shape: int, fg: int, bg: int, size_bin: int, row: int, col: int, u: list[float]) -> str:
    """The caption of one image from its binned factors and 12 uniforms u."""
    names = SHAPE_WORDS[shapes.CLASSES[shape]]
    thing = names[0] if u[0] >= SYNONYM_P or len(names) == 1 else _pick(names[1:], u[1])
    size = "" if u[2] < OMIT_P["size"] else _pick(SIZE_WORDS[size_bin], u[3])
    fg_word = "" if u[4] < OMIT_P["fg"] else _pick(COLOR_WORDS[shapes.COLORS[fg]], u[5])
    bg_word = _pick(COLOR_WORDS[shapes.COLORS[bg]], u[11])
    bg_phrase = "" if u[6] < OMIT_P["bg"] else _pick(_BACKGROUNDS, u[7]).format(
        bg=bg_word, a_bg=f"{_article(bg_word)} {bg_word}")
    pos = "" if u[8] < OMIT_P["pos"] else _position(row, col, u[9])
    noun = " ".join(w for w in (size, fg_word, thing) if w)
    text = _pick(_TEMPLATES, u[10]).format(thing=f"{_article(noun)} {noun}", bg=bg_phrase, pos=pos)
    return _tidy(text)


def _position(row: int, col: int, u: float) -> str:
    v, h = ROWS[row], COLS[col]
    if row != 1 and col != 1:
        return _pick(_CORNER, u).format(v=v, h=h, V=_UPPER_LOWER[v])
    if row != 1:
        return _pick(_EDGE_V, u).format(v=v)
    if col != 1:
        return _pick(_EDGE_H, u).format(h=h)
    return _pick(_CENTRE, u)


def _article(phrase: str) -> str:
    """'an' before a vowel sound ("an off-white", "an L-shape"), else 'a'."""
    return "an" if phrase[0] in "aeiouAEIO" or re.match(r"L\b", phrase) else "a"


def _tidy(text: str) -> str:
    """Drop what an empty piece leaves behind: doubled spaces, ' ,', a leading ': ', a trailing ','."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r" ([,:])", r"\1", text)
    text = re.sub(r",(?=[,:]|$)", "", text)
    return re.sub(r"^: ", "", text).strip(" ,")


def caption_classes(caption: str) -> set[str]:
    """The classes (names in shapes.CLASSES) one of whose SHAPE_WORDS occurs in `caption` as whole words.

    Words are compared as the word-level tokenizer sees them (lower case, split on non-alphanumerics),
    so "L-shape" and "L shape" are the same phrase. For a `shapes_captions` caption it is {its class}.
    """
    words = f" {' '.join(_words(caption))} "
    return {name for name, phrases in SHAPE_WORDS.items()
            if any(f" {' '.join(_words(p))} " in words for p in phrases)}


# --------------------------------------------------------------------------------- captions.tsv
def read_captions_tsv(path: Path) -> list[tuple[str, str]]:
    """(image path, caption) pairs of a captions.tsv, in file order.

    One pair per line: `<image path relative to the tsv's folder><TAB><caption>` (the first tab splits;
    both sides are stripped of surrounding whitespace). An image may have several lines. Blank lines
    and lines starting with '#' are skipped. The path is returned normalised, with '/' separators
    ("a/./b.jpg" -> "a/b.jpg"). Raises DatasetError, one line naming the file, the line number and the
    problem, on a row with no tab, an empty path or caption, an absolute path, a path that leaves the
    folder through '..', or a path with no file behind it; also on an unreadable file or one without
    any row.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").split("\n")  # not splitlines: \v, \x1c... are text
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the captions file ({e.__class__.__name__}: {e})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue

        def bad(problem: str) -> DatasetError:
            return _row_error(path, number, problem)  # noqa: B023 (called at once, in this iteration)

        if "\t" not in line:
            raise bad(f"no tab in {line[:60]!r}")
        image, caption = (part.strip() for part in line.split("\t", 1))
        if not image:
            raise bad("empty image path")
        if not caption:
            raise bad(f"empty caption for {image!r}")
        if image.startswith(("/", "\\")) or PureWindowsPath(image).drive:
            raise bad(f"absolute image path {image!r}")
        image = posixpath.normpath(image.replace("\\", "/"))
        if image == ".." or image.startswith("../"):
            raise bad(f"image path {image!r} leaves the folder")
        rows.append((number, image, caption))
    return with_files(path, rows, TSV_FORM)


TSV_FORM = "want '<relative image path><TAB><caption>'"


def with_files(path: Path, rows: Sequence[tuple[int, str, str]], form: str) -> list[tuple[str, str]]:
    """(image, caption) of rows (line number, image path, caption) whose image files exist, each looked
    up once, from the captions file's folder; a missing one, or no row at all, is one line (`form`: the
    format the file should have)."""
    checked = set()
    for number, image, _ in rows:
        if image not in checked:
            if not (path.parent / image).is_file():
                raise _row_error(path, number, f"no image file {image!r} in {path.parent}", form)
            checked.add(image)
    if not rows:
        raise DatasetError(f"{path}: no caption rows ({form} lines)")
    return [(image, caption) for _, image, caption in rows]


def _row_error(path: Path, number: int, problem: str, form: str = TSV_FORM) -> DatasetError:
    return DatasetError(f"{path}:{number}: {problem} ({form})")


def folder_classes(path: Path, images: Sequence[str]) -> list[str]:
    """The classes of captions.tsv's images: their first folders, sorted; one line if one is in none."""
    flat = [p for p in images if "/" not in p]
    if flat:
        raise DatasetError(f"{path}: image {flat[0]!r} is not in a class folder: put each image under "
                           "<class>/ (one folder for all is fine; the folder names are the classes)")
    return sorted({p.split("/", 1)[0] for p in images})


# ------------------------------------------------------------------------ open_clip's CSV / TSV
def read_captions_csv(path: Path, img_key: str, caption_key: str, separator: str) -> list[tuple[str, str]]:
    """(image path, caption) pairs of open_clip's format: a header row, then one row per pair, columns
    `img_key` and `caption_key` separated by `separator` (open_clip: filepath, title, a tab), quoted as
    CSV. A relative path is taken from the file's folder and normalised; an absolute one as it is.
    Raises DatasetError naming the file and line: a missing column, an empty path or caption, or a
    path with no file behind it."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter=separator)
            columns = reader.fieldnames or []
            missing = [k for k in (img_key, caption_key) if k not in columns]
            if missing:
                raise DatasetError(f"{path}: no column {missing[0]!r} in the header (columns: "
                                   f"{', '.join(map(repr, columns))}); set dataset.csv_img_key, "
                                   "dataset.csv_caption_key and dataset.csv_separator")
            rows = [(reader.line_num, row.get(img_key) or "", row.get(caption_key) or "") for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot read the captions file ({e.__class__.__name__}: {e})") from None
    form = f"want a header naming {img_key!r} and {caption_key!r}, then rows; paths relative to the file"
    cleaned = []
    for number, image, caption in rows:
        image, caption = image.strip(), caption.strip()
        if not image or not caption:
            raise _row_error(path, number, f"empty {'image path' if not image else 'caption'}", form)
        image = image if Path(image).is_absolute() else posixpath.normpath(image.replace("\\", "/"))
        cleaned.append((number, image, caption))
    return with_files(path, cleaned, form)
