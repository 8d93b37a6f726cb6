"""Backbones, the projector MLP, and the name-to-builder encoder registry.

An `Encoder` is a backbone (image -> representation h, the features that are probed) followed by a
projector (h -> z, what the objectives see). Encoders are rebuilt from their config by name, so a
checkpoint only needs the config and the state dict:

    encoder = build_encoder(cfg.encoder, in_channels=3)
    encoder = seeded_encoder(cfg.encoder, in_channels=3, seed=0)   # a run's start, and its random-init baseline
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..config import EncoderConfig, ImageEncoderConfig
from ..registry import Registry
from .lab import INPUTS, LabInput

# encoder=<name> -> `builder(cfg, in_channels) -> nn.Module`, a module that exposes `out_dim` (the size
# of the representation); register one with @BACKBONES.register("name").
BACKBONES: Registry[Callable[[EncoderConfig, int], nn.Module]] = Registry("encoder")


def _conv_bn(c_in: int, c_out: int, relu: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


def _pool_relu() -> nn.Sequential:
    """2x2 max-pool, then ReLU: the same values and gradients as ReLU then pool (max commutes with
    the monotone ReLU), with the ReLU on a quarter of the pixels (its backward is a large share of a
    CPU step)."""
    return nn.Sequential(nn.MaxPool2d(2), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """Four conv-BN-ReLU stages of widths w, 2w, 4w, 8w; 2x2 max-pool between them; global average pool."""

    def __init__(self, width: int, in_channels: int):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(in_channels, w), _pool_relu(),            # (B, w, H/2, W/2)
            _conv_bn(w, 2 * w), _pool_relu(),                  # (B, 2w, H/4, W/4)
            _conv_bn(2 * w, 4 * w), _pool_relu(),              # (B, 4w, H/8, W/8)
            _conv_bn(4 * w, 8 * w, relu=True),                 # (B, 8w, H/8, W/8)
            nn.AdaptiveAvgPool2d(1), nn.Flatten())             # (B, 8w)
        self.out_dim = 8 * w

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


@BACKBONES.register("convnet")
def _convnet(cfg: ImageEncoderConfig, in_channels: int) -> nn.Module:
    return ConvNet(cfg.width, in_channels)


@BACKBONES.register("resnet18")
def _resnet18(cfg: ImageEncoderConfig, in_channels: int) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: 3x3 stride-1 first conv and no max-pool; the
    representation is the 8 * width global-average-pooled feature (no fc)."""
    from torchvision.models.resnet import BasicBlock, ResNet  # seconds to import: only when a ResNet is built
    width = cfg.width
    net = ResNet(BasicBlock, [2, 2, 2, 2], width_per_group=64)
    if width != 64:  # rebuild the stages at another width, keeping torchvision's block code
        net.inplanes = width
        net.layer1 = net._make_layer(BasicBlock, width, 2)
        net.layer2 = net._make_layer(BasicBlock, 2 * width, 2, stride=2)
        net.layer3 = net._make_layer(BasicBlock, 4 * width, 2, stride=2)
        net.layer4 = net._make_layer(BasicBlock, 8 * width, 2, stride=2)
        net.bn1 = nn.BatchNorm2d(width)
    net.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.out_dim = 8 * width
    for m in net.modules():  # torchvision's initialisation, applied again to the replaced layers
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def projector(in_dim: int, hidden_dim: int, out_dim: int, layers: int, hidden_bn: bool = True,
              out_bn: bool = False, bias: bool = False) -> nn.Module:
    """MLP of `layers` linear layers, Linear-[BN]-ReLU between them and Linear-[BN] at the end; 0
    layers is the identity.

    hidden_bn: BatchNorm after each hidden layer (solo-learn's SimCLR head has none); out_bn:
    BatchNorm (affine, no ReLU) after the last layer, as in HaoChen et al.'s spectral head; bias:
    biases in the linear layers. The default has none: BN supplies the shifts inside, and an output
    bias is a direction every embedding shares, which objectives without normalisation (PCA, VICReg,
    spectral BYOL) grow without bound. The papers' heads have them (a recipe turns them on).
    """
    if layers == 0:
        return nn.Identity()
    dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    blocks: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        blocks.append(nn.Linear(d_in, d_out, bias=bias))
        last = i == layers - 1
        if (hidden_bn and not last) or (out_bn and last):
            blocks.append(nn.BatchNorm1d(d_out))
        if not last:
            blocks.append(nn.ReLU(inplace=True))
    return nn.Sequential(*blocks)


def head_options(cfg: EncoderConfig) -> dict:
    """The projector's shape options of an encoder config (encoder.projector_*)."""
    return {"hidden_bn": cfg.projector_hidden_bn, "out_bn": cfg.projector_out_bn, "bias": cfg.projector_bias}


class Encoder(nn.Module):
    """backbone (x -> h, the representation) followed by projector (h -> z)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, out_dim: int):
        super().__init__()
        self.backbone = backbone
        self.projector = head
        self.representation_dim = backbone.out_dim
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.backbone(x))


def build_encoder(cfg: EncoderConfig, in_channels: int, input: str = "rgb") -> Encoder:
    """Build `cfg.name` from the registry; raises KeyError with the known names for an unknown one.

    input: "rgb" (the images as they come), or "lab_l" / "lab_ab" (RGB images in [0, 1] converted to
    Lab inside the encoder, which then sees 1 or 2 channels).
    """
    builder = BACKBONES.get(cfg.name)
    if input == "rgb":
        backbone = builder(cfg, in_channels)
    elif input in INPUTS and in_channels == 3:
        backbone = LabInput(input, builder(cfg, 1 if input == "lab_l" else 2))
    else:
        raise ValueError(f"encoder input {input!r} needs 3-channel RGB images (inputs: {', '.join(INPUTS)}), "
                         f"got {in_channels} channels")
    out_dim = cfg.projector_out_dim if cfg.projector_layers > 0 else backbone.out_dim
    head = projector(backbone.out_dim, cfg.projector_hidden_dim, cfg.projector_out_dim,
                     cfg.projector_layers, **head_options(cfg))
    return Encoder(backbone, head, out_dim)


def seeded_encoder(cfg: EncoderConfig, in_channels: int, seed: int, input: str = "rgb") -> Encoder:
    """The encoder a run with this seed starts from (also the random-init baseline)."""
    torch.manual_seed(seed)
    return build_encoder(cfg, in_channels, input)


def uses_channels_last(module: nn.Module) -> bool:
    """Conv encoders run faster in channels_last memory format on both CPU (oneDNN) and CUDA (convnet,
    width 16, batch 128, fp32 on a 2-core AVX2 CPU: 112 ms a step against 158 ms), except those with a
    strided 1x1 conv of fewer than 8 input channels (a ResNet of width < 8): with torch 2.14 oneDNN's
    channels_last weight gradient of such a conv corrupts the heap on one thread of an AVX2 CPU."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    fragile = any(m.kernel_size == (1, 1) and m.stride != (1, 1) and m.in_channels < 8 for m in convs)
    return bool(convs) and not fragile


@torch.no_grad()
def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
