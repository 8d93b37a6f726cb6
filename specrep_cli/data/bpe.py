"""objective.text.tokenizer=bpe: open_clip's byte-pair encoding (CLIP's 49,408 tokens), no download.

    tok = BPETokenizer()                             # the vocabulary that ships inside open_clip_torch
    ids, mask = tok.encode(captions, length=32)      # int64 (N, 32), bool (N, 32)
    captions = tok.decode(ids)

The same interface as tokenizer.Tokenizer, with CLIP's layout: a caption becomes [<start_of_text>,
t_1, ..., t_k, <end_of_text>, 0, ...], truncated to [<sot>, t_1, ..., t_{length-2}, <eot>] when it is
long, and 0 pads (as open_clip pads: the mask is ids != 0). The vocabulary is the package's, so a
checkpoint keeps only {"level": "bpe", "vocab_size"}; `specrep eval` rebuilds it from open_clip_torch
(`pip install 'specrep[bpe]'`), and a different vocabulary size is refused.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

PAD_ID = 0


def _simple_tokenizer():
    """open_clip's SimpleTokenizer (its BPE merges ship in the wheel); ImportError without the extra."""
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer()


class BPETokenizer:
    """CLIP's byte-pair encoding through open_clip: lower-cased, whitespace and HTML cleaned by open_clip."""

    level = "bpe"

    def __init__(self):
        self.bpe = _simple_tokenizer()
        self.sot, self.eot = self.bpe.sot_token_id, self.bpe.eot_token_id
        self.index = self.bpe.encoder   # token -> id: every text's tokens are in it (bytes as a last resort)

    @classmethod
    def from_state(cls, state: dict) -> "BPETokenizer":
        """Rebuild from `state()`; ValueError without open_clip_torch, or when its vocabulary size is not
        this open_clip's."""
        try:
            tok = cls()
        except ImportError:
            raise ValueError("its tokenizer is open_clip's BPE, which needs: pip install 'specrep[bpe]'") from None
        if state.get("vocab_size") != len(tok):
            raise ValueError(f"the checkpoint's BPE vocabulary has {state.get('vocab_size')} tokens and this "
                             f"open_clip_torch's {len(tok)}: install the open_clip_torch it was trained with")
        return tok

    def state(self) -> dict:
        return {"level": "bpe", "vocab_size": len(self)}

    @property
    def pad_id(self) -> int:
        return PAD_ID

    def __len__(self) -> int:
        return len(self.bpe.encoder)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and self.state() == other.state()

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={len(self)})"

    def tokenize(self, caption: str) -> list[str]:
        """The caption's BPE tokens (strings, "</w>" ending a word)."""
        return [self.bpe.decoder[i] for i in self.bpe.encode(caption)]

    def encode(self, captions: Sequence[str], length: int) -> tuple[Tensor, Tensor]:
        """ids int64 (N, length) and mask bool (N, length): [<sot>, tokens..., <eot>] then 0s; a caption
        too long keeps its first length - 2 tokens and still ends in <eot>."""
        if length < 2:
            raise ValueError(f"a BPE caption needs length >= 2 (<start_of_text>, <end_of_text>), got {length}")
        if isinstance(captions, str):
            raise TypeError("encode takes a list of captions, not one string")
        ids = torch.full((len(captions), length), PAD_ID, dtype=torch.int64)
        for n, caption in enumerate(captions):   # once per caption at the start of a run, not per step
            row = [self.sot, *self.bpe.encode(caption)[:length - 2], self.eot]
            ids[n, :len(row)] = torch.tensor(row)
        return ids, ids != PAD_ID

    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Rows of ids -> captions: the tokens between <sot> and the first <eot>, as open_clip decodes them."""
        rows = ids.tolist() if isinstance(ids, Tensor) else [list(r) for r in ids]
        out = []
        for row in rows:
            end = row.index(self.eot) if self.eot in row else len(row)
            out.append(self.bpe.decode([i for i in row[:end] if i not in (self.sot, PAD_ID)]).strip())
        return out
