"""Zero-shot classification and retrieval recall on hand-built embeddings with known answers."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from specrep_cli.eval.zeroshot import class_embeddings, retrieval_recall, zero_shot_accuracy, zero_shot_predict


# ---------------------------------------------------------------------------------- class embeddings
def test_prompt_ensembling_normalises_before_and_after_averaging():
    table = {"a cat": [3.0, 4.0], "the cat shape": [0.0, 2.0],
             "a dog": [1.0, 0.0], "the dog shape": [5.0, 0.0]}
    calls = []

    def encode(prompts):
        calls.append(list(prompts))
        return torch.tensor([table[p] for p in prompts])

    e = class_embeddings(encode, ["cat", "dog"], ["a {}", "the {} shape"])
    # cat: unit rows (0.6, 0.8) and (0, 1), mean (0.3, 0.9), normalised; dog: both (1, 0)
    want = torch.tensor([[0.3, 0.9], [1.0, 0.0]]) / torch.tensor([[math.sqrt(0.9)], [1.0]])
    torch.testing.assert_close(e, want)
    assert calls == [["a cat", "the cat shape", "a dog", "the dog shape"]]
    class_embeddings(encode, ["cat", "dog"], ["a {}", "the {} shape"], batch_size=3)
    assert [len(c) for c in calls[1:]] == [3, 1]


def test_bad_templates_and_empty_inputs():
    encode = lambda prompts: torch.ones(len(prompts), 2)  # noqa: E731
    with pytest.raises(ValueError, match="does not contain"):
        class_embeddings(encode, ["cat"], ["a photo"])
    with pytest.raises(ValueError, match="need class names"):
        class_embeddings(encode, [], ["a {}"])
    with pytest.raises(ValueError, match="need class names"):
        class_embeddings(encode, ["cat"], [])


# ---------------------------------------------------------------------------------- zero-shot
class BagOfWords(nn.Module):
    """A hand-built text tower nu: the sum of fixed word vectors ("a", "photo", ... add a shared offset)."""

    def __init__(self, vectors: dict):
        super().__init__()
        self.vectors = vectors

    def forward(self, prompts):
        return torch.stack([sum(self.vectors[w] for w in p.split()) for p in prompts])


def test_hand_built_two_tower_model_predicts_the_expected_classes():
    d = 3
    basis = torch.eye(d)
    noise = torch.tensor([0.2, 0.2, 0.2])
    nu = BagOfWords({"red": basis[0], "green": basis[1], "blue": basis[2], "a": noise, "photo": noise,
                     "of": noise, "shape": -noise})
    phi = nn.Linear(4, d, bias=False)  # the image tower: drops the 4th input, swaps channels 1 and 2
    with torch.no_grad():
        phi.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]))
    images = torch.tensor([[5.0, 1.0, 0.0, 9.0],    # phi -> (5, 0, 1): red
                           [0.0, 2.0, 3.0, -9.0],   # phi -> (0, 3, 2): green
                           [0.1, 4.0, 0.2, 0.0],    # phi -> (0.1, 0.2, 4): blue
                           [1.0, 0.9, 1.1, 0.0]])   # phi -> (1, 1.1, 0.9): green, then red
    classes = class_embeddings(nu, ["red", "green", "blue"], ["a photo of {}", "{} shape"])
    feats = phi(images).detach()
    assert zero_shot_predict(feats, classes).view(-1).tolist() == [0, 1, 2, 1]
    # each class embedding is alpha e_k + beta (1, 1, 1), alpha > 0: the order is that of phi's coordinates
    assert zero_shot_predict(feats, classes, k=3).tolist() == [[0, 2, 1], [1, 2, 0], [2, 1, 0], [1, 0, 2]]
    labels = torch.tensor([0, 1, 2, 0])
    acc = zero_shot_accuracy(feats, classes, labels)
    assert acc == {"top1": 75.0, "top5": 100.0}  # 3 classes: top-5 counts them all


def test_top1_top5_on_known_similarities():
    K = 8
    classes = torch.eye(K)
    # image n points at class order[n][0] most, order[n][1] next, ... (scores 1, 1/2, 1/3, ...)
    g = torch.Generator().manual_seed(0)
    order = torch.stack([torch.randperm(K, generator=g) for _ in range(20)])  # (20, K)
    feats = torch.zeros(20, K).scatter_(1, order, 1.0 / torch.arange(1, K + 1).float().expand(20, K))
    feats = feats * torch.rand(20, 1, generator=g).add(0.1)  # a positive scale per image changes nothing
    torch.testing.assert_close(zero_shot_predict(feats, classes, k=5), order[:, :5])
    rank = torch.tensor([3, 0, 5, 0, 1, 4, 7, 0, 2, 6, 0, 0, 1, 4, 5, 0, 3, 2, 0, 6])  # where the label sits
    labels = order.gather(1, rank[:, None]).squeeze(1)
    acc = zero_shot_accuracy(feats, classes, labels)
    assert acc["top1"] == pytest.approx(100 * 7 / 20)  # rank 0
    assert acc["top5"] == pytest.approx(100 * 15 / 20)  # rank < 5


# ---------------------------------------------------------------------------------- retrieval
# similarities s[i][j] of image i and text j; texts 0 and 1 both describe image 0
S = torch.tensor([[0.1, 0.8, 0.9, 0.0, 0.2],
                  [0.3, 0.1, 0.7, 0.2, 0.0],
                  [0.5, 0.6, 0.1, 0.4, 0.3],
                  [0.0, 0.2, 0.3, 0.9, 0.1]], dtype=torch.float64)
OWNER = torch.tensor([0, 0, 1, 2, 3])


def features_with_cosines(s):
    """Unit image rows e_i and text rows (s_:j, sqrt(1 - |s_:j|^2)): cos(image_i, text_j) = s_ij."""
    n, m = s.shape
    images = torch.cat([torch.eye(n, dtype=s.dtype), torch.zeros(n, 1, dtype=s.dtype)], 1)  # (N, N + 1)
    rest = (1 - s.pow(2).sum(0)).sqrt()[:, None]  # needs |s_:j| < 1
    return images, torch.cat([s.T, rest], 1)  # (M, N + 1)


def test_recall_on_a_hand_made_similarity_matrix():
    images, texts = features_with_cosines(S / 2)  # cosines S / 2: the same rankings
    torch.testing.assert_close(F.normalize(images, dim=1) @ F.normalize(texts, dim=1).T, S / 2)
    got = retrieval_recall(images * 3, texts * 0.5, OWNER, ks=(1, 2, 3), chunk=2)
    # image -> text: image 0's best own text (1, 0.8) is behind text 2 (0.9): rank 2, although its other
    # text 0 is last; image 1: rank 1; image 2: own 0.4 behind 0.5, 0.6: rank 3; image 3: own 0.1 behind
    # 0.2, 0.3, 0.9: rank 4
    assert got["image_to_text"] == pytest.approx({"r1": 25.0, "r2": 50.0, "r3": 75.0})
    # text -> image: text 0 rank 3 (0.1 behind 0.3, 0.5), text 1 rank 1, text 2 rank 2, text 3 rank 2,
    # text 4 rank 3
    assert got["text_to_image"] == pytest.approx({"r1": 20.0, "r2": 60.0, "r3": 100.0})


def ref_recall(s, owner, ks):
    """Recall@k from the definition, with Python loops over queries and sorted candidate lists."""
    n, m = s.shape
    t2i = []
    for j in range(m):
        ranked = sorted(range(n), key=lambda i: (-s[i, j].item(), i == owner[j]))  # ties: own image last
        t2i.append(ranked.index(owner[j].item()))
    i2t = []
    for i in range(n):
        own = [j for j in range(m) if owner[j] == i]
        if own:
            ranked = sorted(range(m), key=lambda j: (-s[i, j].item(), j in own))  # ties: own texts last
            i2t.append(min(ranked.index(j) for j in own))
    return ({f"r{k}": 100 * sum(r < k for r in i2t) / len(i2t) for k in ks},
            {f"r{k}": 100 * sum(r < k for r in t2i) / len(t2i) for k in ks})


def test_recall_matches_the_definition_on_random_features_any_chunk():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(30, 4, generator=g)
    texts = torch.randn(70, 4, generator=g)
    owner = torch.randint(0, 27, (70,), generator=g)  # several texts per image; images 27-29 have none
    s = F.normalize(images, dim=1) @ F.normalize(texts, dim=1).T
    want_i2t, want_t2i = ref_recall(s, owner, (1, 5, 10))
    for chunk in (1, 7, 1000):
        got = retrieval_recall(images, texts, owner, chunk=chunk)
        assert got["image_to_text"] == pytest.approx(want_i2t, abs=1e-9)
        assert got["text_to_image"] == pytest.approx(want_t2i, abs=1e-9)
    assert set(got["image_to_text"]) == {"r1", "r5", "r10"}


def test_ties_count_against_the_query():
    same = torch.ones(6, 3)
    got = retrieval_recall(same, same, torch.arange(6), ks=(1, 5, 6))
    assert got == {"image_to_text": {"r1": 0.0, "r5": 0.0, "r6": 100.0},
                   "text_to_image": {"r1": 0.0, "r5": 0.0, "r6": 100.0}}
    nan = torch.full((6, 3), float("nan"))
    assert retrieval_recall(nan, nan, torch.arange(6), ks=(1,))["text_to_image"]["r1"] == 0.0


def test_bad_text_to_image():
    with pytest.raises(ValueError, match="text_to_image"):
        retrieval_recall(torch.ones(3, 2), torch.ones(4, 2), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="text_to_image"):
        retrieval_recall(torch.ones(3, 2), torch.ones(4, 2), torch.tensor([0, 1, 2]))


def test_never_builds_the_whole_similarity_matrix():
    n = m = 512  # a full (N, M) float32 matrix would be 1 MiB
    images, texts = torch.randn(n, 8), torch.randn(m, 8)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        retrieval_recall(images, texts, torch.arange(m), chunk=64)
    largest = max(e.self_cpu_memory_usage for e in prof.events())
    assert largest <= 64 * m * 8 < n * m * 4  # chunk x M elements of at most 8 bytes (a bool sum's int64)
