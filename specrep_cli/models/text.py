"""The text tower: a small Transformer encoder over token ids, with the image tower's projector.

    encoder = text_encoder(cfg.objective.text, cfg.encoder, vocab_size, pad_id)
    z = encoder(ids)                     # ids int64 (N, L) -> (N, projector_out_dim)
    h = encoder.backbone(ids)            # (N, width): the representation

The ids come from the tokenizer (data/tokenizer.py); positions holding `pad_id` are masked out.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import EncoderConfig, TextTowerConfig
from .encoders import Encoder, head_options, projector


class TextTransformer(nn.Module):
    """ids (B, L) -> representation h (B, width): the text backbone.

    x = token_embedding[ids] + position_embedding[:L]            (B, L, width)
    x = `layers` pre-norm Transformer encoder layers (GELU MLP of 4 width, padding keys masked out)
    h = sum_l mask_l LayerNorm(x)_l / sum_l mask_l               (masked mean over the tokens)
    mask defaults to ids != pad_id; every row needs at least one True (encode always gives <eos>).
    """

    def __init__(self, vocab_size: int, width: int = 128, layers: int = 2, heads: int = 4,
                 context_length: int = 32, dropout: float = 0.0, pad_id: int = 0):
        super().__init__()
        if width % heads:
            raise ValueError(f"text width {width} is not divisible by heads {heads}")
        self.context_length = context_length
        self.pad_id = pad_id
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
        mask = ids != self.pad_id if mask is None else mask  # (B, L), True on real tokens
        x = self.token_embedding(ids) + self.position_embedding[:L]  # (B, L, width)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)  # True in a key padding mask means "ignore"
        x = self.norm(x)
        w = mask.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, width)


class TextEncoder(Encoder):
    """An `Encoder` whose backbone is a `TextTransformer`: ids (B, L) -> h (B, width) -> z (B, out_dim).

    The projector is `encoders.projector(backbone.out_dim, projector_hidden_dim, out_dim, projector_layers, **head)`,
    built as for the image tower (`build_encoder`): with projector_layers = 0 it is the identity and
    `out_dim` becomes `width`. `encoder(ids)` and `encoder.backbone(ids)` take the ids alone (the mask
    is ids != pad_id), so the text tower plugs in wherever an image `Encoder` does (EMA copies,
    feature extraction through `.backbone`); an explicit mask may be passed as a second argument.
    """

    def __init__(self, backbone: TextTransformer, out_dim: int, projector_hidden_dim: int, projector_layers: int,
                 head: dict | None = None):
        head = projector(backbone.out_dim, projector_hidden_dim, out_dim, projector_layers, **(head or {}))
        super().__init__(backbone, head, out_dim if projector_layers > 0 else backbone.out_dim)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.projector(self.backbone(ids, mask))


def text_encoder(text_cfg: TextTowerConfig, encoder_cfg: EncoderConfig, vocab_size: int, pad_id: int) -> TextEncoder:
    """The text tower of a two-tower objective: objective.text sets the Transformer, the encoder group
    the projector (so that both towers end in the same dimension)."""
    backbone = TextTransformer(vocab_size, text_cfg.width, text_cfg.layers, text_cfg.heads, text_cfg.context_length,
                               pad_id=pad_id)
    return TextEncoder(backbone, encoder_cfg.projector_out_dim, encoder_cfg.projector_hidden_dim,
                       encoder_cfg.projector_layers, head=head_options(encoder_cfg))
