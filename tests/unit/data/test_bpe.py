"""objective.text.tokenizer=bpe: open_clip's BPE behind specrep's tokenizer interface, laid out as
open_clip lays it out, and rebuilt from a checkpoint's state."""
from __future__ import annotations

import pytest
import torch

open_clip = pytest.importorskip("open_clip",
                                reason="objective.text.tokenizer=bpe is an extra: pip install 'specrep[bpe]'")

from specrep_cli.data.tokenizer import build_tokenizer, tokenizer_from_state  # noqa: E402

CAPTIONS = ["A red star, on the left!", "a blue L-shape at the top right of a picture of many many words", "x"]


def test_the_ids_are_open_clips_own_and_every_row_ends_in_end_of_text():
    tok = build_tokenizer(["ignored"], "bpe")
    ids, mask = tok.encode(CAPTIONS, length=12)
    theirs = open_clip.tokenize(CAPTIONS, context_length=12)   # [sot, tokens, eot, 0 ...], truncated with eot last
    assert torch.equal(ids, theirs.long()) and torch.equal(mask, theirs != 0)
    assert len(tok) == 49408 and tok.pad_id == 0
    assert tok.decode(ids[:1]) == ["a red star , on the left !"]


def test_the_state_is_small_and_rebuilds_the_same_tokenizer():
    tok = build_tokenizer([], "bpe")
    state = tok.state()
    assert state == {"level": "bpe", "vocab_size": 49408}
    assert tokenizer_from_state(state) == tok
    with pytest.raises(ValueError, match="49407 tokens"):
        tokenizer_from_state({"level": "bpe", "vocab_size": 49407})
    assert tokenizer_from_state(build_tokenizer(["a b"], "word").state()).level == "word"
