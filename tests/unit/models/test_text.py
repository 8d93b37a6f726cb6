"""The tokenizer (vocabulary, encode/decode, state) and the text tower (masking, pooling, Encoder fit)."""
import json
import time

import pytest
import torch
from torch import nn

from specrep_cli.data.tokenizer import EOS_ID, PAD_ID, UNK_ID, Tokenizer
from specrep_cli.eval.zeroshot import encode_texts
from specrep_cli.models.encoders import Encoder
from specrep_cli.models.text import TextEncoder, TextTransformer

CAPTIONS = ["A red star, top left.", "a blue star", "A RED circle on blue", "an L-shape!"]


# ---------------------------------------------------------------------------------- tokenizer
def test_vocabulary_order_is_frequency_then_alphabetical():
    tok = Tokenizer.build(CAPTIONS)
    # counts: a 3, blue 2, red 2, star 2, then once each: an circle l left on shape top
    assert tok.vocab == ["<pad>", "<unk>", "<eos>", "a", "blue", "red", "star",
                         "an", "circle", "l", "left", "on", "shape", "top"]
    assert [tok.index[s] for s in ("<pad>", "<unk>", "<eos>")] == [PAD_ID, UNK_ID, EOS_ID] == [0, 1, 2]
    assert Tokenizer.build(list(reversed(CAPTIONS))) == tok  # the order of the captions does not matter


def test_word_split_lowercases_and_splits_on_non_alphanumerics():
    tok = Tokenizer.build(CAPTIONS)
    assert tok.tokenize("An L-shape, top_left (x2)!") == ["an", "l", "shape", "top", "left", "x2"]
    assert tok.tokenize("Über café") == ["über", "café"]


def test_min_count_drops_rare_tokens():
    tok = Tokenizer.build(CAPTIONS, min_count=2)
    assert tok.vocab == ["<pad>", "<unk>", "<eos>", "a", "blue", "red", "star"]
    ids, _ = tok.encode(["a red circle"], 6)
    assert ids.tolist() == [[3, 5, UNK_ID, EOS_ID, PAD_ID, PAD_ID]]


def test_encode_pads_masks_and_ends_with_eos():
    tok = Tokenizer.build(CAPTIONS)
    ids, mask = tok.encode(["a red star", "", "Blue"], 5)
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool and ids.shape == mask.shape == (3, 5)
    assert ids.tolist() == [[3, 5, 6, EOS_ID, PAD_ID], [EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
                            [4, EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert mask.tolist() == [[True, True, True, True, False], [True, False, False, False, False],
                             [True, True, False, False, False]]


def test_truncation_keeps_eos_last():
    tok = Tokenizer.build(CAPTIONS)
    ids, mask = tok.encode(["a red star on blue", "a red star"], 4)
    assert ids.tolist() == [[3, 5, 6, EOS_ID], [3, 5, 6, EOS_ID]]  # 5 tokens cut to 3, and one exactly 3
    assert mask.all()
    assert tok.decode(ids) == ["a red star", "a red star"]
    assert tok.encode(["a red star"], 1)[0].tolist() == [[EOS_ID]]


def test_unknown_words_become_unk():
    tok = Tokenizer.build(CAPTIONS)
    ids, _ = tok.encode(["a purple star glows"], 8)
    assert ids[0, :5].tolist() == [3, UNK_ID, 6, UNK_ID, EOS_ID]
    assert tok.decode(ids) == ["a <unk> star <unk>"]


def test_round_trip_word_level():
    tok = Tokenizer.build(CAPTIONS)
    ids, _ = tok.encode(CAPTIONS, 16)
    assert tok.decode(ids) == ["a red star top left", "a blue star", "a red circle on blue", "an l shape"]
    assert tok.decode(ids.tolist()) == tok.decode(ids)  # lists of ints too


def test_char_level():
    tok = Tokenizer.build(["abc ab", "Zz!"], level="char")
    # counts: a 2, b 2, z 2, then ' ' ! c once each, by code point (' ' < '!' < 'c')
    assert tok.vocab == ["<pad>", "<unk>", "<eos>", "a", "b", "z", " ", "!", "c"]
    ids, mask = tok.encode(["Abz?", "", "zzzzzzzz"], 5)
    assert ids.tolist() == [[3, 4, 5, UNK_ID, EOS_ID], [EOS_ID, 0, 0, 0, 0], [5, 5, 5, 5, EOS_ID]]
    assert mask.sum(1).tolist() == [5, 1, 5]
    assert tok.decode(ids) == ["abz<unk>", "", "zzzz"]
    ids, _ = tok.encode(["ab c!", "cab"], 8)
    assert tok.decode(ids) == ["ab c!", "cab"]


def test_mask_is_ids_not_pad_on_random_captions():
    words = ["red", "blue", "star", "ring", "a", "on", "the", "left"]
    g = torch.Generator().manual_seed(0)
    caps = [" ".join(words[i] for i in torch.randint(8, (int(n),), generator=g))
            for n in torch.randint(0, 12, (200,), generator=g)]
    for level, length in (("word", 6), ("char", 20)):
        tok = Tokenizer.build(caps[:100], level)
        ids, mask = tok.encode(caps, length)
        assert torch.equal(mask, ids != PAD_ID)
        n_tokens = torch.tensor([len(tok.tokenize(c)) for c in caps])
        assert torch.equal(mask.sum(1), (n_tokens + 1).clamp(max=length))  # tokens + <eos>, capped
        assert (ids.gather(1, mask.sum(1, keepdim=True) - 1) == EOS_ID).all()  # last real token is <eos>
        fits = n_tokens < length
        want = [(" " if level == "word" else "").join(tok.tokenize(c)) for c in caps]
        got = tok.decode(ids)
        assert [g for g, f in zip(got, fits) if f] == [w for w, f in zip(want, fits) if f]


def test_state_is_plain_data_and_round_trips_through_a_safe_checkpoint(tmp_path):
    for level in ("word", "char"):
        tok = Tokenizer.build(CAPTIONS, level)
        state = tok.state()
        assert json.loads(json.dumps(state)) == state
        torch.save({"tokenizer": state, "w": torch.zeros(2)}, tmp_path / "ckpt.pt")
        loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
        again = Tokenizer.from_state(loaded["tokenizer"])
        assert again == tok and again.level == level
        assert torch.equal(again.encode(CAPTIONS, 12)[0], tok.encode(CAPTIONS, 12)[0])


@pytest.mark.parametrize("state,match", [
    ({"level": "word"}, "want keys"),
    ({"level": "bytes", "vocab": ["<pad>", "<unk>", "<eos>"]}, "level"),
    ({"level": "word", "vocab": ["<unk>", "<pad>", "<eos>", "a"]}, "starts with"),
    ({"level": "word", "vocab": ["<pad>", "<unk>", "<eos>", "a", "a"]}, "distinct"),
    ({"level": "char", "vocab": ["<pad>", "<unk>", "<eos>", "ab"]}, "single characters"),
])
def test_from_state_rejects_bad_states(state, match):
    with pytest.raises(ValueError, match=match):
        Tokenizer.from_state(state)


def test_bad_arguments():
    with pytest.raises(ValueError, match="level"):
        Tokenizer.build(CAPTIONS, level="bpe")
    with pytest.raises(ValueError, match="min_count"):
        Tokenizer.build(CAPTIONS, min_count=0)
    tok = Tokenizer.build(CAPTIONS)
    with pytest.raises(ValueError, match="length"):
        tok.encode(CAPTIONS, 0)
    with pytest.raises(TypeError, match="list of captions"):
        tok.encode("a red star", 4)


def test_encoding_50k_captions_is_fast():
    caps = [f"a small red star on a dark blue background, top left, number {i % 97}" for i in range(50_000)]
    for level, length in (("word", 32), ("char", 80)):
        tok = Tokenizer.build(caps[:1000], level)
        start = time.perf_counter()
        ids, _ = tok.encode(caps, length)
        elapsed = time.perf_counter() - start
        assert ids.shape == (50_000, length)
        assert elapsed < 1.5, f"{level}: {elapsed:.2f} s"  # ~0.3 s on a busy 2-core CPU


# ---------------------------------------------------------------------------------- text tower
def tiny(**kw):
    vocab_size, projector_layers = kw.get("vocab_size", 20), kw.get("projector_layers", 2)
    torch.manual_seed(0)
    backbone = TextTransformer(vocab_size, width=16, layers=2, heads=4, context_length=10)
    return TextEncoder(backbone, 8, 16, projector_layers).eval()


def test_is_an_encoder_with_representation_and_projection():
    enc = tiny()
    assert isinstance(enc, Encoder) and isinstance(enc.backbone, TextTransformer)
    assert enc.representation_dim == enc.backbone.out_dim == 16 and enc.out_dim == 8
    layers = [m for m in enc.backbone.layers]
    assert len(layers) == 2
    assert all(isinstance(m, nn.TransformerEncoderLayer) and m.norm_first for m in layers)
    ids = torch.tensor([[3, 4, 5, EOS_ID, 0, 0], [6, EOS_ID, 0, 0, 0, 0]])
    h, z = enc.backbone(ids), enc(ids)
    assert h.shape == (2, 16) and z.shape == (2, 8)
    torch.testing.assert_close(z, enc.projector(h))
    # projector like the image tower's: Linear-BN-ReLU-Linear, no biases
    kinds = [type(m) for m in enc.projector]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert enc.projector[0].bias is None and enc.projector[-1].out_features == 8


def test_no_projector_gives_width():
    enc = tiny(projector_layers=0)
    assert enc.out_dim == 16 and isinstance(enc.projector, nn.Identity)


def test_padding_does_not_change_the_representation():
    enc = tiny()
    short = torch.tensor([[3, 4, 5, EOS_ID], [6, EOS_ID, 0, 0]])
    long = torch.cat([short, torch.zeros(2, 6, dtype=torch.int64)], 1)  # more padding
    torch.testing.assert_close(enc(long), enc(short), rtol=1e-5, atol=1e-5)
    # what sits under a False mask is never read: junk ids there change nothing
    mask = short != PAD_ID
    junk = torch.where(mask, short, torch.full_like(short, 7))
    torch.testing.assert_close(enc(junk, mask), enc(short), rtol=1e-5, atol=1e-5)
    # a real token does change it
    assert not torch.allclose(enc(torch.tensor([[3, 4, 7, EOS_ID]])), enc(short[:1]), atol=1e-4)


def test_masked_mean_pooling_matches_its_formula():
    enc = tiny()
    ids = torch.tensor([[3, 4, 5, EOS_ID, 0], [6, EOS_ID, 0, 0, 0]])
    mask = ids != PAD_ID
    bb = enc.backbone
    x = bb.token_embedding(ids) + bb.position_embedding[:5]
    for layer in bb.layers:
        x = layer(x, src_key_padding_mask=~mask)
    x = bb.norm(x)
    want = torch.stack([x[0, :4].mean(0), x[1, :2].mean(0)])
    torch.testing.assert_close(bb(ids), want)


def test_position_matters_and_gradients_reach_every_parameter():
    enc = tiny().train()
    ids = torch.tensor([[3, 4, EOS_ID, 0], [4, 3, EOS_ID, 0], [5, 6, 7, EOS_ID]])
    h = enc.backbone(ids)
    assert not torch.allclose(h[0], h[1], atol=1e-4)  # same bag of words, other order
    enc(ids).pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
    assert enc.backbone.token_embedding.weight.grad[9].abs().sum() == 0  # unused token: no gradient


def test_context_length_and_heads_are_checked():
    with pytest.raises(ValueError, match="context length"):
        tiny()(torch.ones(1, 11, dtype=torch.int64))
    with pytest.raises(ValueError, match="divisible"):
        TextTransformer(20, width=18, heads=4)


def test_state_dict_round_trip_and_encode_texts():
    tok = Tokenizer.build(CAPTIONS)
    enc = tiny(vocab_size=len(tok))
    torch.manual_seed(1)
    other = TextEncoder(TextTransformer(len(tok), width=16, layers=2, heads=4, context_length=10), 8, 16, 2).eval()
    other.load_state_dict(enc.state_dict(), strict=True)
    z = encode_texts(other, tok, CAPTIONS, length=10, batch_size=3)
    torch.testing.assert_close(z, enc(tok.encode(CAPTIONS, 10)[0]))
