"""Backbones from timm (`encoder=timm encoder.model_name=...`, `pip install 'specrep[timm]'`).

    specrep train encoder=timm encoder.model_name=vit_tiny_patch16_224 encoder.image_size=32 encoder.patch_size=4
    specrep train encoder=timm encoder.model_name=resnet50 encoder.image_size=null encoder.patch_size=null

The model is timm's own (`timm.create_model(model_name, num_classes=0, in_chans=C, ...)`: its
classifier removed, so it returns the pooled features), with its representation dimension read from
the model (`num_features`). ViT-like models take `image_size` and `patch_size` (img_size, patch_size):
a 32-px image in 4-px patches gives ViT-Tiny 64 tokens, the small-image variant CIFAR needs; the
defaults are 32 and 4. Its state dict keys are timm's, so an export loads into timm directly.
No weights are downloaded unless `encoder.pretrained=true`.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..config import TimmEncoderConfig
from ..errors import ConfigError
from .encoders import register_backbone



def timm_kwargs(cfg: TimmEncoderConfig, in_channels: int) -> dict:
    """What timm.create_model is called with (besides the model's name and `pretrained`)."""
    sizes = {"img_size": cfg.image_size, "patch_size": cfg.patch_size}
    return {"num_classes": 0, "in_chans": in_channels, **{k: v for k, v in sizes.items() if v is not None}}


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
        if "img_size" in str(err) or "patch_size" in str(err):
            raise ConfigError(f"{model_name} takes no image or patch size: add encoder.image_size=null "
                              "encoder.patch_size=null") from None
        raise
    except Exception as err:   # the download: no network, no such weights (many types)
        if not pretrained:
            raise
        raise ConfigError(f"encoder.pretrained=true: the weights of {model_name} could not be fetched "
                          f"({type(err).__name__}); train from scratch with encoder.pretrained=false, or "
                          "put them in the Hugging Face cache first") from None


@register_backbone("timm")
def _timm(cfg: TimmEncoderConfig, in_channels: int) -> nn.Module:
    model = create_timm_model(cfg.model_name, timm_kwargs(cfg, in_channels), cfg.pretrained)
    model.out_dim = model.num_features   # the representation: the pooled features (classifier removed)
    return model
