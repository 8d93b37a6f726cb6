"""Backbones from timm (`encoder=timm encoder.model_name=...`, `pip install 'specrep[timm]'`).

    specrep train encoder=timm encoder.model_name=vit_tiny_patch16_224   # 32-px CIFAR in 4-px patches
    specrep train encoder=timm encoder.model_name=resnet50

The model is timm's own (`timm.create_model(model_name, num_classes=0, in_chans=C, ...)`: its
classifier removed, so it returns the pooled features), with its representation dimension read from
the model (`num_features`). ViT-like models take `image_size` and `patch_size` (img_size, patch_size):
a 32-px image in 4-px patches gives ViT-Tiny 64 tokens, the small-image variant CIFAR needs. At `auto`
(the default) they follow the model: `resolve_sizes` gives a model that takes them the data's image size
in patches of an eighth of it, and a CNN neither; an int is passed as given (and a model that takes no
such size is an error), null leaves the model's own. Its state dict keys are timm's, so an export loads
into timm directly.
No weights are downloaded unless `encoder.pretrained=true`.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..config import TimmEncoderConfig, TrainConfig
from ..errors import ConfigError
from .encoders import BACKBONES


def timm_kwargs(cfg: TimmEncoderConfig, in_channels: int) -> dict:
    """What timm.create_model is called with (besides the model's name and `pretrained`): the sizes
    that are ints (resolve_sizes turns auto into ints or null)."""
    sizes = {"img_size": cfg.image_size, "patch_size": cfg.patch_size}
    return {"num_classes": 0, "in_chans": in_channels, **{k: v for k, v in sizes.items() if isinstance(v, int)}}


def with_model_sizes(cfg: TrainConfig, image_size: int | None) -> TrainConfig:
    """A training config whose encoder=timm has its auto sizes resolved for the data (resolve_sizes),
    so that the checkpoint stores what the model got; any other config as it is."""
    if not isinstance(cfg.encoder, TimmEncoderConfig) or "auto" not in (cfg.encoder.image_size, cfg.encoder.patch_size):
        return cfg
    return replace(cfg, encoder=resolve_sizes(cfg.encoder, image_size))


def _auto_patch(image_size: int) -> int:
    """An eighth of the image (8 x 8 patches), or the nearest smaller divisor of it."""
    return next(p for p in range(max(1, image_size // 8), 0, -1) if image_size % p == 0)


def resolve_sizes(cfg: TimmEncoderConfig, image_size: int | None) -> TimmEncoderConfig:
    """cfg with image_size and patch_size at auto resolved for `image_size`-px data: ints where the
    model takes them (a ViT: the data's size, patches of an eighth of it), null where it does not (a
    CNN) or where the data's size is unknown (None: the model's own). An int the model does not take
    is one line. The model is probed on the meta device (no memory, no weights)."""
    keys = {"img_size": "image_size", "patch_size": "patch_size"}
    sizes = {"image_size": cfg.image_size, "patch_size": cfg.patch_size}
    if sizes["image_size"] == "auto":
        sizes["image_size"] = image_size
    if sizes["patch_size"] == "auto":
        sizes["patch_size"] = _auto_patch(sizes["image_size"]) if isinstance(sizes["image_size"], int) else None
    auto = {key for key in sizes if getattr(cfg, key) == "auto"}
    while any(isinstance(v, int) for v in sizes.values()):
        probe = replace(cfg, image_size=sizes["image_size"], patch_size=sizes["patch_size"])
        try:
            with torch.device("meta"):
                create_timm_model(cfg.model_name, timm_kwargs(probe, 3))
            break
        except ConfigError as err:
            refused = [key for kwarg, key in keys.items() if f"'{kwarg}'" in str(err.__cause__ or "")]
            if not refused or refused[0] not in auto:
                raise
            sizes[refused[0]] = None   # auto: the model takes no such size
    return replace(cfg, **sizes)


def create_timm_model(model_name: str, kwargs: dict, pretrained: bool = False) -> nn.Module:
    """timm.create_model, its failures as one line each (an unknown name, a size a CNN does not take,
    weights that cannot be downloaded)."""
    try:
        import timm
    except ImportError:
        raise ConfigError("encoder=timm needs timm: pip install 'specrep[timm]'") from None
    if not timm.is_model(model_name):
        raise ConfigError(f"encoder.model_name={model_name} is not a timm model (e.g. resnet18, "
                          "vit_tiny_patch16_224, convnext_atto; timm.list_models() lists them)")
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except TypeError as err:   # a keyword the model's class does not take
        for kwarg, key in (("img_size", "image_size"), ("patch_size", "patch_size")):
            if f"'{kwarg}'" in str(err):
                raise ConfigError(f"{model_name} takes no {key.replace('_', ' ')}: leave encoder.{key} at auto "
                                  f"(it follows the model), got encoder.{key}={kwargs[kwarg]}") from err
        raise
    except Exception as err:   # the download: no network, no such weights (many types)
        if not pretrained:
            raise
        raise ConfigError(f"encoder.pretrained=true: the weights of {model_name} could not be fetched "
                          f"({type(err).__name__}); train from scratch with encoder.pretrained=false, or "
                          "put them in the Hugging Face cache first") from None


@BACKBONES.register("timm")
def _timm(cfg: TimmEncoderConfig, in_channels: int) -> nn.Module:
    if "auto" in (cfg.image_size, cfg.patch_size):   # not resolved for data (training resolves): the model's own
        cfg = resolve_sizes(cfg, None)
    model = create_timm_model(cfg.model_name, timm_kwargs(cfg, in_channels), cfg.pretrained)
    model.out_dim = model.num_features   # the representation: the pooled features (classifier removed)
    return model
