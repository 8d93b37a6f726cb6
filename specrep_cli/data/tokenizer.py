"""The tokenizer of the text tower: built from the training captions, plain data in a checkpoint.

Nothing here downloads anything. The vocabulary is plain data (`Tokenizer.state()`), so it is saved
inside a checkpoint loaded with `torch.load(weights_only=True)` and rebuilt from it alone:

    tok = Tokenizer.build(train_captions, level="word")
    ids, mask = tok.encode(captions, length=32)      # int64 (N, 32), bool (N, 32)
    captions = tok.decode(ids)
    tok = build_tokenizer(train_captions, "bpe")     # objective.text.tokenizer: word, char or bpe (bpe.py)
    tok = tokenizer_from_state(ckpt["tokenizer"])    # either kind, from a checkpoint

Tokens: captions are lower-cased; `level="word"` splits them into runs of letters and digits (any
script; everything else, punctuation, hyphens and underscores included, only separates:
"An L-shape!" -> ["an", "l", "shape"]); `level="char"` keeps every character, spaces and punctuation
included. Ids 0, 1, 2 are `<pad>`, `<unk>` (a token not in the vocabulary) and `<eos>` (end of caption).
"""
from __future__ import annotations

import re
from array import array
from collections import Counter
from itertools import chain
from typing import Iterable, Sequence

import torch
from torch import Tensor

from .bpe import BPETokenizer

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
SPECIALS: tuple[str, ...] = (PAD, UNK, EOS)
PAD_ID, UNK_ID, EOS_ID = 0, 1, 2
LEVELS = ("word", "char")
_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits: \w without the underscore
_WORD_OR_END = re.compile(r"[^\W_]+|\n")


class Tokenizer:
    """Maps captions to ids and back with a fixed vocabulary (`vocab[i]` is the token of id i).

    The vocabulary is the three specials followed by the training tokens seen at least `min_count`
    times, most frequent first, ties in alphabetical (code point) order: the same captions always
    give the same ids.
    """

    def __init__(self, vocab: Sequence[str], level: str = "word"):
        vocab = list(vocab)
        if level not in LEVELS:
            raise ValueError(f"tokenizer level must be one of {LEVELS}, got {level!r}")
        if tuple(vocab[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {list(SPECIALS)}, got {vocab[:len(SPECIALS)]}")
        if len(set(vocab)) != len(vocab) or not all(isinstance(t, str) and t for t in vocab):
            raise ValueError("a vocabulary holds distinct non-empty strings")
        if level == "char" and any(len(t) != 1 for t in vocab[len(SPECIALS):]):
            raise ValueError("a character vocabulary holds single characters")
        self.level = level
        self.vocab = vocab
        self.index = {t: i for i, t in enumerate(vocab)}

    # ------------------------------------------------------------------------------ building
    @classmethod
    def build(cls, captions: Iterable[str], level: str = "word", min_count: int = 1) -> "Tokenizer":
        """The vocabulary of `captions`: specials, then tokens with count >= min_count by (-count, token)."""
        if level not in LEVELS:
            raise ValueError(f"tokenizer level must be one of {LEVELS}, got {level!r}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        split = _splitter(level)
        counts = Counter(chain.from_iterable(split(c) for c in captions))
        kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        return cls([*SPECIALS, *kept], level)

    def state(self) -> dict:
        """Plain data (str and list of str) that `from_state` turns back into this tokenizer."""
        return {"level": self.level, "vocab": list(self.vocab)}

    @classmethod
    def from_state(cls, state: dict) -> "Tokenizer":
        """Rebuild from `state()`; raises ValueError when it is not one."""
        if not isinstance(state, dict) or set(state) != {"level", "vocab"}:
            raise ValueError(f"not a tokenizer state (want keys level, vocab): {type(state).__name__}")
        return cls(state["vocab"], state["level"])

    @property
    def pad_id(self) -> int:
        """The id of <pad>: what a text tower masks out."""
        return PAD_ID

    def __len__(self) -> int:
        return len(self.vocab)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.state() == other.state()

    def __repr__(self) -> str:
        return f"Tokenizer(level={self.level!r}, vocab_size={len(self)})"

    # ------------------------------------------------------------------------------ using
    def tokenize(self, caption: str) -> list[str]:
        """The caption's tokens (lower-cased), before the vocabulary lookup."""
        return _splitter(self.level)(caption)

    def encode(self, captions: Sequence[str], length: int) -> tuple[Tensor, Tensor]:
        """ids int64 (N, length) and mask bool (N, length), True on real tokens (<eos> included).

        Caption n with tokens t_1..t_k becomes [t_1, ..., t_k, <eos>, <pad>, ...]. When k >= length it
        is truncated to [t_1, ..., t_{length-1}, <eos>]: every row ends in <eos>, so a truncated
        caption is still marked as ended. Tokens not in the vocabulary become <unk>. The mask is
        exactly ids != <pad> (pad never occurs elsewhere).
        """
        if length < 1:
            raise ValueError(f"caption length must be >= 1, got {length}")
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not one string")
        flat, start, lengths = self._lookup(captions)  # caption n is flat[start_n : start_n + lengths_n]
        flat = torch.cat([flat, flat.new_tensor([PAD_ID])])  # so that every gather index below is valid
        pos = torch.arange(length)  # (length,)
        end = lengths.clamp(max=length - 1)[:, None]  # (N, 1) position of <eos>
        ids = flat[(start[:, None] + pos).clamp_(max=flat.numel() - 1)]  # (N, length); past end: junk
        ids = ids.masked_fill_(pos > end, PAD_ID).masked_fill_(pos == end, EOS_ID)
        return ids, pos <= end

    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Rows of ids -> captions: tokens up to the first <eos> (or the row's end), <pad> skipped.

        Words are joined by one space, characters by nothing; an unknown token reads "<unk>".
        decode(encode(c)) is the lower-cased caption's tokens so joined when every token is known and
        the caption fits.
        """
        rows = ids.tolist() if isinstance(ids, Tensor) else [list(r) for r in ids]
        sep = " " if self.level == "word" else ""
        out = []
        for row in rows:
            end = row.index(EOS_ID) if EOS_ID in row else len(row)
            out.append(sep.join(self.vocab[i] for i in row[:end] if i != PAD_ID))
        return out

    def _lookup(self, captions: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """Token ids of all captions in one int64 tensor, and each caption's start and length (N,) in it."""
        if self.level == "word":
            # one regex pass over all captions; "\n" (never inside a word) ends each caption
            text = "".join(c.replace("\n", " ") + "\n" for c in captions).lower()
            get = {**self.index, "\n": -1}.get
            flat = _as_tensor(array("q", [get(t, UNK_ID) for t in _WORD_OR_END.findall(text)]), torch.int64)
            stop = (flat == -1).nonzero().squeeze(1)  # (N,) where each caption's "\n" is
            start = torch.cat([stop.new_zeros(1), stop + 1])[:-1]
            return flat, start, stop - start
        # characters: code points of all captions at once, mapped through a lookup table
        lowered = [c.lower() for c in captions]
        lengths = torch.tensor([len(c) for c in lowered], dtype=torch.int64)
        points = _as_tensor(bytearray("".join(lowered).encode("utf-32-le")), torch.int32).long()
        chars = torch.tensor([ord(t) for t in self.vocab[len(SPECIALS):]], dtype=torch.int64)
        size = int(torch.cat([points, chars, torch.zeros(1, dtype=torch.int64)]).max()) + 1
        table = torch.full((size,), UNK_ID, dtype=torch.int64)
        table[chars] = torch.arange(len(SPECIALS), len(self.vocab))
        return table[points], lengths.cumsum(0) - lengths, lengths


def _as_tensor(buffer, dtype: torch.dtype) -> Tensor:
    """A 1-D tensor sharing a buffer's memory (torch.frombuffer refuses an empty one)."""
    return torch.frombuffer(buffer, dtype=dtype) if len(buffer) else torch.empty(0, dtype=dtype)


def _splitter(level: str):
    if level == "word":
        return lambda caption: _WORD.findall(caption.lower())
    return lambda caption: list(caption.lower())


def build_tokenizer(captions: Iterable[str], kind: str) -> "Tokenizer | BPETokenizer":
    """objective.text.tokenizer: `word` or `char` (Tokenizer.build: the training captions' vocabulary), or
    `bpe` (open_clip's fixed BPE vocabulary; the captions are not read)."""
    return BPETokenizer() if kind == "bpe" else Tokenizer.build(captions, level=kind)


def tokenizer_from_state(state: dict) -> "Tokenizer | BPETokenizer":
    """Either kind from its `state()` (a checkpoint's "tokenizer"); ValueError when it is neither."""
    if isinstance(state, dict) and state.get("level") == "bpe":
        return BPETokenizer.from_state(state)
    return Tokenizer.from_state(state)
