"""Encoders of graph nodes (dataset=graph), registered as encoder=embedding and encoder=mlp.

Their input is a node's id (embedding: a lookup table) or its feature row (mlp), not an image; the
registry's `in_channels` is then the number of nodes or of features, so that `specrep eval` rebuilds
the table from the checkpoint alone.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..config import EmbeddingEncoderConfig, MLPEncoderConfig
from .encoders import BACKBONES, projector


class NodeEmbedding(nn.Module):
    """phi(x) = E[x], a learned row of dim numbers per node, initialised N(0, init_std^2)."""

    def __init__(self, num_nodes: int, dim: int, init_std: float):
        super().__init__()
        self.table = nn.Embedding(num_nodes, dim)
        nn.init.normal_(self.table.weight, std=init_std)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:   # (B,) int64 node ids -> (B, dim)
        return self.table(x)


@BACKBONES.register("embedding")
def _embedding(cfg: EmbeddingEncoderConfig, in_channels: int) -> nn.Module:
    return NodeEmbedding(in_channels, cfg.dim, cfg.init_std)


@BACKBONES.register("mlp")
def _mlp(cfg: MLPEncoderConfig, in_channels: int) -> nn.Module:
    """Linear-ReLU layers of `width` units over node features (B, F), then Linear to dim: the
    projector's MLP (encoders.projector) with biases and no BatchNorm."""
    net = projector(in_channels, cfg.width, cfg.dim, cfg.layers, hidden_bn=False, bias=True)
    net.out_dim = cfg.dim
    return net
