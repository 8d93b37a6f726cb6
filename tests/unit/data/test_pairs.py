"""The inputs of a step: two views, or an image and one of its captions drawn on the device."""
from __future__ import annotations

import pytest
import torch

from specrep_cli.config import AugmentationConfig
from specrep_cli.data.pairs import TextPairs, ViewPairs
from specrep_cli.data.splits import Captions
from specrep_cli.data.tokenizer import EOS_ID, Tokenizer
from specrep_cli.errors import DatasetError

AUG = AugmentationConfig(name="simclr")
MEAN, STD = torch.full((3,), 0.5), torch.full((3,), 0.25)


def test_each_image_gets_one_of_its_own_captions_uniformly():
    # image 0: one caption, image 1: two, image 2: three; listed out of order on purpose
    texts = ["two b", "one a", "three c", "two a", "three a", "three b"]
    owner = torch.tensor([1, 0, 2, 1, 2, 2])
    tok = Tokenizer.build(texts)
    pairs = TextPairs(AUG, MEAN, STD, Captions(texts, owner), 3, tok, length=4)
    batch = torch.randint(0, 256, (3000, 3, 8, 8), dtype=torch.uint8)
    index = torch.arange(3).repeat(1000)
    torch.manual_seed(0)
    x, y = pairs(batch, index)
    # ids are padded to the longest caption (two words and <eos>: 3 tokens), not to length=4
    assert x.shape == (3000, 3, 8, 8) and x.dtype == torch.float32 and y.shape == (3000, 3)
    drawn = tok.decode(y)
    for image in range(3):
        own = sorted(t for t, o in zip(texts, owner.tolist()) if o == image)
        got = [d for d, i in zip(drawn, index.tolist()) if i == image]
        assert set(got) == set(own)                                # only its own captions, all of them
        for text in own:                                           # uniform: 1000 / len(own) each
            expected = 1000 / len(own)
            assert abs(got.count(text) - expected) < 4 * (expected * (1 - 1 / len(own))) ** 0.5 + 1


def test_captions_longer_than_the_length_are_cut_to_it():
    texts = ["a b c d e f", "a"]
    pairs = TextPairs(AUG, MEAN, STD, Captions(texts, torch.tensor([0, 1])), 2, Tokenizer.build(texts), length=4)
    assert pairs.ids.shape == (2, 4) and pairs.ids[0, -1] == EOS_ID


def test_an_image_without_a_caption_is_an_error():
    tok = Tokenizer.build(["a"])
    with pytest.raises(DatasetError, match="training image 1 has no caption"):
        TextPairs(AUG, MEAN, STD, Captions(["a", "a"], torch.tensor([0, 2])), 3, tok, length=4)


def test_view_pairs_are_two_different_views_of_the_batch():
    batch = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    x, y = ViewPairs(AUG, MEAN, STD)(batch, torch.arange(16))
    assert x.shape == y.shape == (16, 3, 8, 8) and not torch.equal(x, y)


def test_captions_subset_reindexes_to_the_kept_images():
    caps = Captions(["a0", "b1", "c1", "d2", "e3"], torch.tensor([0, 1, 1, 2, 3]))
    kept = caps.subset(torch.tensor([1, 3]))
    assert kept.texts == ["b1", "c1", "e3"] and kept.image_index.tolist() == [0, 0, 1]
