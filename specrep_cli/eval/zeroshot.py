"""How two-tower (CLIP-style) models are evaluated: zero-shot classification and cross-modal retrieval.

Every score is a cosine similarity: features are L2-normalised rows, so the towers' scales do not
matter. Functions take plain feature tensors (and, for the class embeddings, a text-encoding
function), never a model, and return percentages as Python floats.

    classes = class_embeddings(encode_text, ["circle", "ring", ...], ["a photo of a {}", "a {} shape"])
    zero_shot_accuracy(image_features, classes, labels)               # {"top1": .., "top5": ..}
    retrieval_recall(image_features, text_features, text_to_image)    # {"image_to_text": {"r1": ..}, ..}

`text_features` embeds the class prompts and the test captions with a text tower once, and
`evaluate_two_towers` scores an image tower's test features against them; `encode_texts` embeds
captions with a text tower.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import EvalConfig
from ..data.splits import ImageData
from ..data.tokenizer import Tokenizer
from ..errors import DatasetError
from .towers import TextTower


@torch.no_grad()
def class_embeddings(encode_text: Callable[[list[str]], Tensor], classnames: Sequence[str],
                     templates: Sequence[str], batch_size: int = 1024) -> Tensor:
    """CLIP's prompt ensembling: (K, d) unit rows, one per class.

    e_k = normalize( (1/T) sum_t normalize(encode_text(templates[t].format(classnames[k]))) )
    encode_text takes a list of prompts and returns their (n, d) embeddings; it is called on at most
    batch_size prompts at a time, with gradients off. Raises ValueError on no class, no template, or a
    template that does not place the name ("{}").
    """
    if not classnames or not templates:
        raise ValueError(f"need class names and templates, got {len(classnames)} and {len(templates)}")
    for t in templates:
        if t.format("\0a") == t.format("\0b"):
            raise ValueError(f"template {t!r} does not contain '{{}}' for the class name")
    prompts = [t.format(name) for name in classnames for t in templates]  # class-major: (K * T)
    parts = [encode_text(prompts[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]
    e = F.normalize(torch.cat(parts).float(), dim=1)  # (K * T, d)
    return F.normalize(e.view(len(classnames), len(templates), -1).mean(1), dim=1)  # (K, d)


@torch.no_grad()
def zero_shot_predict(image_features: Tensor, class_embeds: Tensor, k: int = 1) -> Tensor:
    """(N, min(k, K)) int64: the classes of the k largest cos(image_n, class_j), best first."""
    sims = F.normalize(image_features.float(), dim=1) @ F.normalize(class_embeds.float(), dim=1).T
    return sims.topk(min(k, class_embeds.shape[0]), dim=1).indices  # (N, k)


@torch.no_grad()
def zero_shot_accuracy(image_features: Tensor, class_embeds: Tensor, labels: Tensor) -> dict[str, float]:
    """{"top1", "top5"} in percent: is labels_n among the 1 (5) classes of largest cosine similarity.

    With fewer than 5 classes, top5 counts all of them (100%).
    """
    top = zero_shot_predict(image_features, class_embeds, k=5)  # (N, <=5)
    hit = top == labels.to(top.device).view(-1, 1)  # (N, <=5), at most one True per row
    return {"top1": 100.0 * hit[:, 0].float().mean().item(),
            "top5": 100.0 * hit.any(1).float().mean().item()}


@torch.no_grad()
def retrieval_recall(image_features: Tensor, text_features: Tensor, text_to_image: Tensor,
                     ks: Sequence[int] = (1, 5, 10), chunk: int = 1024) -> dict[str, dict[str, float]]:
    """Recall@k in percent both ways, by cosine similarity s_ij = cos(image_i, text_j).

    text -> image: query text j hits at k when its image m = text_to_image[j] ranks in the top k of
      the N images: #{i != m : s_ij >= s_mj} < k.
    image -> text: query image i (one with at least one text; images with none are not queries) hits at
      k when any of its texts ranks in the top k of the M texts: with s*_i = max over its texts j of
      s_ij, #{j not of image i : s_ij >= s*_i} < k.
    Ties (and NaN) count against the query: a collapsed model scores about 0, not 100. Queries are
    taken `chunk` at a time, so at most chunk x N (chunk x M) similarities exist at once.
    Returns {"image_to_text": {"r1": .., "r5": .., "r10": ..}, "text_to_image": {...}} for ks=(1, 5, 10).
    """
    n, m = image_features.shape[0], text_features.shape[0]
    owner = text_to_image.to(device=text_features.device, dtype=torch.int64)
    if owner.shape != (m,) or (m and (owner.min() < 0 or owner.max() >= n)):
        raise ValueError(f"text_to_image must be ({m},) indices in [0, {n}), got shape {tuple(owner.shape)}")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive, got {ks}")
    img = F.normalize(image_features.float(), dim=1).to(text_features.device)  # (N, d)
    txt = F.normalize(text_features.float(), dim=1)  # (M, d)
    k = torch.tensor(list(ks), device=txt.device)  # (K,)

    t2i_hits = torch.zeros(len(ks), device=txt.device)
    for start in range(0, m, chunk):
        s = txt[start:start + chunk] @ img.T  # (c, N)
        own = s.gather(1, owner[start:start + chunk, None])  # (c, 1)
        ahead = (~(s < own)).sum(1) - 1  # (c,) other images at least as close (NaN: counted)
        t2i_hits += (ahead[:, None] < k).sum(0)

    has_text = torch.zeros(n, dtype=torch.bool, device=txt.device)
    has_text[owner] = True
    queries = has_text.nonzero().squeeze(1)  # (Q,)
    i2t_hits = torch.zeros(len(ks), device=txt.device)
    for start in range(0, queries.numel(), chunk):
        q = queries[start:start + chunk]  # (c,)
        s = img[q] @ txt.T  # (c, M)
        mine = owner[None, :] == q[:, None]  # (c, M), the query's own texts
        best = s.masked_fill(~mine, float("-inf")).amax(1, keepdim=True)  # (c, 1)
        ahead = (~(s < best) & ~mine).sum(1)  # (c,) other texts at least as close as its best
        i2t_hits += (ahead[:, None] < k).sum(0)

    def percent(hits: Tensor, total: int) -> dict[str, float]:
        return {f"r{kk}": 100.0 * h / max(total, 1) for kk, h in zip(ks, hits.tolist())}

    return {"image_to_text": percent(i2t_hits, queries.numel()), "text_to_image": percent(t2i_hits, m)}


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


def unseen_words(tokenizer: Tokenizer, names: Sequence[str]) -> dict[str, list[str]]:
    """name -> its tokens the tokenizer's vocabulary lacks (they read as <unk>), for the names with any."""
    unseen = {name: [t for t in tokenizer.tokenize(name) if t not in tokenizer.index] for name in names}
    return {name: tokens for name, tokens in unseen.items() if tokens}


def zero_shot_names(classes: Sequence[str], renamed: Mapping[str, str], tokenizer: Tokenizer) -> list[str]:
    """The names zero-shot prompts use: eval.zero_shot_class_names' for the classes it names (e.g.
    n01440764 -> tench), the class (folder) names otherwise. A key that is not a class is an error; a
    name with words the text tower never saw in training is a warning naming them."""
    unknown = sorted(set(renamed) - set(classes))
    if unknown:
        shown = ", ".join(list(classes)[:8]) + (" ..." if len(classes) > 8 else "")
        raise DatasetError(f"eval.zero_shot_class_names names {unknown[0]!r}, which is not a class of this "
                           f"dataset (classes: {shown})")
    names = [renamed.get(c, c) for c in classes]
    unseen = unseen_words(tokenizer, names)
    if unseen:
        shown = "; ".join(f"{name!r}: {', '.join(words)}" for name, words in list(unseen.items())[:5])
        logging.getLogger("specrep").warning(
            f"zero-shot class names with words the text tower never saw in training (they read as <unk>): "
            f"{shown}{' ...' if len(unseen) > 5 else ''}; rename them with eval.zero_shot_class_names")
    return names


@dataclass(frozen=True)
class TextFeatures:
    """The text tower's embeddings an evaluation reads, each computed once: the class prompts' (labelled
    data: zero-shot) and the test captions' (captioned test split: retrieval)."""
    class_names: list[str] | None   # the names the prompts use (zero_shot_names)
    classes: Tensor | None          # (K, d) unit rows: class_embeddings of the names in cfg.zero_shot_templates
    captions: Tensor | None         # (M, d) the test captions' embeddings


def text_features(tower: TextTower, data: ImageData, cfg: EvalConfig) -> TextFeatures:
    """The class-prompt and test-caption embeddings of the text tower (in eval mode, restored after)."""
    was_training = tower.encoder.training
    tower.encoder.eval()
    try:
        def encode(prompts: list[str]) -> Tensor:
            return encode_texts(tower.encoder, tower.tokenizer, prompts, tower.context_length, cfg.batch_size).float()

        names = classes = captions = None
        if data.labelled:   # captions without classes: retrieval only
            names = zero_shot_names(data.classes, cfg.zero_shot_class_names, tower.tokenizer)
            classes = class_embeddings(encode, names, list(cfg.zero_shot_templates), cfg.batch_size)
        if data.test_captions is not None:
            captions = encode(data.test_captions.texts)
    finally:
        tower.encoder.train(was_training)
    return TextFeatures(names, classes, captions)


def evaluate_two_towers(z_images: Tensor, text: TextFeatures, data: ImageData, cfg: EvalConfig) -> dict[str, Any]:
    """Zero-shot classification of the test images (z_images: their projections, (N, d)) and, when the
    test split has captions, image<->text retrieval; both in the towers' shared space."""
    results: dict[str, Any] = {}
    if text.classes is not None:
        results["zero_shot"] = {**zero_shot_accuracy(z_images, text.classes, data.test_labels.to(z_images.device)),
                                "templates": list(cfg.zero_shot_templates), "class_names": text.class_names}
    if text.captions is not None:
        results["retrieval"] = retrieval_recall(z_images, text.captions,
                                                data.test_captions.image_index.to(z_images.device))
    return results
