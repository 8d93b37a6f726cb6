"""The encoder's projector options build the heads the papers describe."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from specrep_cli import config
from specrep_cli.config import from_dict
from specrep_cli.models.encoders import build_encoder, uses_channels_last


def encoder(**head):
    cfg = from_dict(config.ImageEncoderConfig, {"name": "convnet", "width": 4, "projector_hidden_dim": 16,
                                                "projector_out_dim": 8,
                           "projector_layers": 3, **head})
    return build_encoder(cfg, 3)


def kinds(module: nn.Module) -> list[str]:
    return [type(m).__name__ for m in module.projector]


def test_the_default_head_is_linear_bn_relu_without_biases():
    head = encoder().projector
    assert kinds(encoder()) == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert all(m.bias is None for m in head if isinstance(m, nn.Linear))


@pytest.mark.parametrize("head, expected", [
    ({"projector_hidden_bn": False, "projector_bias": True},            # solo-learn's SimCLR head
     ["Linear", "ReLU", "Linear", "ReLU", "Linear"]),
    ({"projector_out_bn": True, "projector_bias": True},                # HaoChen et al.'s spectral head
     ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]),
])
def test_projector_options(head, expected):
    enc = encoder(**head)
    assert kinds(enc) == expected
    assert all(m.bias is not None for m in enc.projector if isinstance(m, nn.Linear))
    z = enc(torch.randn(5, 3, 16, 16))
    assert z.shape == (5, 8)
    if head.get("projector_out_bn"):   # a BatchNorm output in train mode: zero mean per coordinate
        torch.testing.assert_close(z.mean(0), torch.zeros(8), atol=1e-5, rtol=0)


def test_channels_last_for_conv_encoders_but_not_narrow_resnets():
    # oneDNN's channels_last weight gradient of a strided 1x1 conv with < 8 input channels corrupts
    # the heap on one thread of an AVX2 CPU (torch 2.14): a ResNet of width 4 stays contiguous
    def encoder(name: str, width: int):
        cfg = config.ImageEncoderConfig(name=name, width=width)
        return build_encoder(cfg, 3)
    assert uses_channels_last(encoder("convnet", 4)) and uses_channels_last(encoder("resnet18", 8))
    assert not uses_channels_last(encoder("resnet18", 4))
    assert not uses_channels_last(nn.Sequential(nn.Linear(4, 4)))
