"""Captions of the built-in shapes, and captions.tsv reading with one-line errors naming the row."""
import re

import pytest
import torch

from specrep_cli.data import shapes
from specrep_cli.data.captions import (
    COLOR_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    caption_classes,
    read_captions_tsv,
    shapes_captions,
)
from specrep_cli.data.tokenizer import Tokenizer
from specrep_cli.errors import DatasetError


@pytest.fixture(scope="module")
def split():
    return shapes.generate(600, seed=3, image_size=16)


def words(text):
    return " " + " ".join(re.findall(r"[^\W_]+", text.lower())) + " "


def has(caption, phrase):
    return words(phrase) in words(caption)


# ---------------------------------------------------------------------------------- shapes captions
def test_one_caption_per_image_deterministic_in_seed(split):
    caps = shapes_captions(split.factors, seed=0)
    assert len(caps) == 600 and all(isinstance(c, str) and c for c in caps)
    assert caps == shapes_captions(split.factors, seed=0)
    assert caps != shapes_captions(split.factors, seed=1)


def test_class_always_present_and_recoverable(split):
    caps = shapes_captions(split.factors, seed=0)
    for cap, label in zip(caps, split.labels.tolist()):
        assert caption_classes(cap) == {shapes.CLASSES[label]}, cap
    # synonyms are used, but the name dominates
    named = sum(has(c, SHAPE_WORDS[shapes.CLASSES[y]][0]) and not any(
        has(c, s) for s in SHAPE_WORDS[shapes.CLASSES[y]][1:]) for c, y in zip(caps, split.labels.tolist()))
    assert 0.65 < named / len(caps) < 0.95


def test_shape_phrases_are_unambiguous():
    for name, phrases in SHAPE_WORDS.items():
        assert phrases[0] == name and name in shapes.CLASSES
        for other, other_phrases in SHAPE_WORDS.items():
            if other != name:
                assert not any(has(p, q) for p in phrases for q in other_phrases), (name, other)
    assert set(SHAPE_WORDS) == set(shapes.CLASSES)


def colour_mentions(caption):
    """Colour names (palette keys) a caption mentions, longest phrases first ("dark blue" is blue)."""
    found, text = [], words(caption)
    for name, phrases in COLOR_WORDS.items():
        for p in sorted(phrases, key=len, reverse=True):
            if words(p) in text:
                found.append(name)
                text = text.replace(words(p), " ", 1)
    return found


def test_words_agree_with_the_factors(split):
    caps = shapes_captions(split.factors, seed=0)
    f = split.factors
    checked = {"fg": 0, "bg": 0, "size": 0, "pos": 0}
    for n, cap in enumerate(caps):
        fg, bg = shapes.COLORS[f["fg_color"][n]], shapes.COLORS[f["bg_color"][n]]
        # the noun phrase "<size> <fg> <shape>" comes before the background phrase "... <bg> ..."
        text = words(cap)
        at = min(text.find(words(p)) for p in SHAPE_WORDS[shapes.CLASSES[f["shape"][n]]] if words(p) in text)
        before, after = colour_mentions(text[:at + 1]), colour_mentions(text[at:])
        assert set(before) <= {fg} and set(after) <= {bg}, cap
        checked["fg"] += fg in before
        checked["bg"] += bg in after
        size = float(f["size"][n])
        for bin_, size_words in enumerate(SIZE_WORDS):
            if any(has(cap, w) for w in size_words):
                lo, hi = [(0.5, 0.634), (0.632, 0.768), (0.766, 0.9)][bin_]
                assert lo <= size <= hi, (cap, size)
                checked["size"] += 1
        x, y = float(f["x"][n]), float(f["y"][n])
        if has(cap, "left"):
            assert x <= 0.4, cap
        if has(cap, "right"):
            assert x > 0.6, cap
        if has(cap, "top") or has(cap, "upper"):
            assert y <= 0.4, cap
        if has(cap, "bottom") or has(cap, "lower"):
            assert y > 0.6, cap
        if has(cap, "centre") and not re.search(r"(top|bottom) centre", cap):
            assert 0.4 < x <= 0.6 and 0.4 < y <= 0.6, cap
        checked["pos"] += any(has(cap, w) for w in ("left", "right", "top", "bottom", "centre", "middle",
                                                    "centred", "upper", "lower"))
    # every factor is described often, and left out sometimes
    for key, count in checked.items():
        assert 0.4 * len(caps) < count < 0.97 * len(caps), (key, count)


def test_phrasings_vary(split):
    caps = shapes_captions(split.factors, seed=0)
    assert len(set(caps)) > 0.9 * len(caps)
    tok = Tokenizer.build(caps)
    lengths = torch.tensor([len(tok.tokenize(c)) for c in caps])
    assert lengths.min() >= 2 and lengths.max() <= 24  # fits context_length 32 with <eos>
    assert len(set(lengths.tolist())) >= 8
    for phrase in ("top left", "upper left corner", "in the top left", "background", "backdrop",
                   "a picture of", "there is"):
        assert any(phrase in c for c in caps), phrase
    # tidy punctuation, and "an" before a vowel
    assert not any(re.search(r"\s[,:]|,,|^\W|,$|  |\ba [aeiou]", c) for c in caps)


# ---------------------------------------------------------------------------------- captions.tsv
@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a.jpg", "b.png", "img/c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def write(folder, text):
    path = folder / "captions.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_pairs_skipping_comments_and_blank_lines(folder):
    path = write(folder, "# image\tcaption\n"
                         "a.jpg\ta red star\n"
                         "\n"
                         "a.jpg\t  the same image, again  \n"
                         "img/./c.jpg\ta caption\twith a tab\n"
                         "   \n"
                         "b.png\tlast, no newline")
    assert read_captions_tsv(path) == [("a.jpg", "a red star"), ("a.jpg", "the same image, again"),
                                       ("img/c.jpg", "a caption\twith a tab"), ("b.png", "last, no newline")]


def test_windows_line_endings_and_bom(folder):
    path = folder / "captions.tsv"
    path.write_bytes("\ufeffa.jpg\tone\r\nimg\\c.jpg\ttwo\r\n".encode("utf-8"))
    assert read_captions_tsv(path) == [("a.jpg", "one"), ("img/c.jpg", "two")]


@pytest.mark.parametrize("row,problem", [
    ("a.jpg a red star", "no tab"),
    ("\ta red star", "empty image path"),
    ("a.jpg\t   ", "empty caption"),
    ("/etc/passwd\tsecret", "absolute image path"),
    ("C:\\img\\a.jpg\tdrive", "absolute image path"),
    ("../a.jpg\toutside", "leaves the folder"),
    ("img/../../a.jpg\toutside", "leaves the folder"),
    ("missing.jpg\tnot there", "no image file 'missing.jpg'"),
    ("img\ta folder, not a file", "no image file 'img'"),
])
def test_bad_row_names_file_line_and_problem(folder, row, problem):
    path = write(folder, "# header\na.jpg\tfine\n\n" + row + "\nb.png\tfine too\n")
    with pytest.raises(DatasetError) as err:
        read_captions_tsv(path)
    message = str(err.value)
    assert message.startswith(f"{path}:4: ") and problem in message, message
    assert "\n" not in message


def test_dotdot_inside_the_folder_is_fine(folder):
    assert read_captions_tsv(write(folder, "img/../a.jpg\tok\n")) == [("a.jpg", "ok")]


def test_unreadable_or_empty_files(folder):
    with pytest.raises(DatasetError, match="cannot read"):
        read_captions_tsv(folder / "nope.tsv")
    with pytest.raises(DatasetError, match="no caption rows"):
        read_captions_tsv(write(folder, "# only a comment\n\n"))
    path = folder / "latin1.tsv"
    path.write_bytes("a.jpg\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="cannot read") as err:
        read_captions_tsv(path)
    assert "\n" not in str(err.value)


def test_line_numbers_count_only_newlines(folder):
    # a vertical tab or a line separator inside a caption is text, not a line break
    path = write(folder, "a.jpg\tone\x0bstill one\u2028and more\nb.png\ttwo\nmissing.jpg\tthree\n")
    with pytest.raises(DatasetError, match=r"captions.tsv:3: no image file"):
        read_captions_tsv(path)
