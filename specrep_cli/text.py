"""The text tower: a tokenizer built from the training captions and a small Transformer encoder.

Nothing here downloads anything. The tokenizer's vocabulary is plain data (`Tokenizer.state()`), so it
is saved inside a checkpoint loaded with `torch.load(weights_only=True)` and rebuilt from it alone:

    tok = Tokenizer.build(train_captions, level="word")
    ids, mask = tok.encode(captions, length=32)      # int64 (N, 32), bool (N, 32)
    encoder = TextEncoder(len(tok), out_dim=128, projector_hidden_dim=512, projector_layers=2)
    z = encoder(ids)                                 # (N, 128); encoder.backbone(ids) is h, (N, width)

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
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from .encoders import Encoder, projector

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


class TextTransformer(nn.Module):
    """ids (B, L) -> representation h (B, width): the text backbone.

    x = token_embedding[ids] + position_embedding[:L]            (B, L, width)
    x = `layers` pre-norm Transformer encoder layers (GELU MLP of 4 width, padding keys masked out)
    h = sum_l mask_l LayerNorm(x)_l / sum_l mask_l               (masked mean over the tokens)
    mask defaults to ids != <pad>; every row needs at least one True (encode always gives <eos>).
    """

    def __init__(self, vocab_size: int, width: int = 128, layers: int = 2, heads: int = 4,
                 context_length: int = 32, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"text width {width} is not divisible by heads {heads}")
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.empty(context_length, width))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out_dim = width
        nn.init.normal_(self.token_embedding.weight, std=0.02)  # CLIP's text tower initialisation
        nn.init.normal_(self.position_embedding, std=0.01)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        L = ids.shape[1]
        if L > self.context_length:
            raise ValueError(f"captions of {L} tokens exceed the text context length {self.context_length}")
        mask = ids != PAD_ID if mask is None else mask  # (B, L), True on real tokens
        x = self.token_embedding(ids) + self.position_embedding[:L]  # (B, L, width)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)  # True in a key padding mask means "ignore"
        x = self.norm(x)
        w = mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, width)


class TextEncoder(Encoder):
    """An `Encoder` whose backbone is a `TextTransformer`: ids (B, L) -> h (B, width) -> z (B, out_dim).

    The projector is `encoders.projector(width, projector_hidden_dim, out_dim, projector_layers)`,
    built as for the image tower (`build_encoder`): with projector_layers = 0 it is the identity and
    `out_dim` becomes `width`. `encoder(ids)` and `encoder.backbone(ids)` take the ids alone (the mask
    is ids != <pad>), so the text tower plugs in wherever an image `Encoder` does (EMA copies,
    feature extraction through `.backbone`); an explicit mask may be passed as a second argument.
    """

    def __init__(self, vocab_size: int, out_dim: int, projector_hidden_dim: int, projector_layers: int,
                 width: int = 128, layers: int = 2, heads: int = 4, context_length: int = 32,
                 dropout: float = 0.0):
        backbone = TextTransformer(vocab_size, width, layers, heads, context_length, dropout)
        head = projector(width, projector_hidden_dim, out_dim, projector_layers)
        super().__init__(backbone, head, out_dim if projector_layers > 0 else width)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.projector(self.backbone(ids, mask))


def encode_texts(encoder: nn.Module, tokenizer: Tokenizer, captions: Sequence[str], length: int,
                 batch_size: int = 1024) -> Tensor:
    """Embeddings (N, d) of `captions` by `encoder(ids)`, in batches, on the encoder's device, no grad.

    The encoder's train/eval mode is left as it is (the caller puts it in eval mode).
    """
    if not captions:
        raise ValueError("encode_texts needs at least one caption")
    device = next(encoder.parameters()).device
    ids, _ = tokenizer.encode(captions, length)
    with torch.no_grad():
        parts = [encoder(ids[i:i + batch_size].to(device)) for i in range(0, len(captions), batch_size)]
    return torch.cat(parts)



def text_encoder(text_cfg: Any, encoder_cfg: Any, vocab_size: int) -> TextEncoder:
    """The text tower of a two-tower objective: objective.text sets the Transformer, the encoder group
    the projector (so that both towers end in the same dimension)."""
    return TextEncoder(vocab_size, encoder_cfg.projector_out_dim, encoder_cfg.projector_hidden_dim,
                       encoder_cfg.projector_layers, text_cfg.width, text_cfg.layers, text_cfg.heads,
                       text_cfg.context_length)
