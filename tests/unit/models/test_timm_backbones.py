"""encoder=timm's image_size and patch_size follow the model at auto: a ViT gets the data's size in
patches of an eighth of it, a CNN neither; an int is passed as given and checked."""
from __future__ import annotations

import pytest

from specrep_cli import config
from specrep_cli.errors import ConfigError

pytest.importorskip("timm", reason="encoder=timm is an extra: pip install 'specrep[timm]'")
from specrep_cli.models.timm_backbones import resolve_sizes, timm_kwargs, with_model_sizes  # noqa: E402


def timm_cfg(*overrides: str):
    return config.compose_config("train", ["encoder=timm", *overrides])


def test_auto_gives_a_vit_the_data_size_and_a_cnn_none():
    cfg = timm_cfg()
    assert (cfg.encoder.image_size, cfg.encoder.patch_size) == ("auto", "auto")
    vit = with_model_sizes(cfg, 32).encoder
    assert (vit.image_size, vit.patch_size) == (32, 4)   # 8 x 8 patches: ViT-Tiny's 64 tokens
    assert timm_kwargs(vit, 3) == {"num_classes": 0, "in_chans": 3, "img_size": 32, "patch_size": 4}
    stl = resolve_sizes(timm_cfg("encoder.patch_size=auto").encoder, 96)
    assert (stl.image_size, stl.patch_size) == (96, 12)
    cnn = with_model_sizes(timm_cfg("encoder.model_name=resnet18"), 32).encoder
    assert (cnn.image_size, cnn.patch_size) == (None, None)
    assert timm_kwargs(cnn, 3) == {"num_classes": 0, "in_chans": 3}


def test_an_explicit_size_wins_and_is_checked():
    vit = resolve_sizes(timm_cfg("encoder.patch_size=8").encoder, 32)
    assert (vit.image_size, vit.patch_size) == (32, 8)
    own = resolve_sizes(timm_cfg("encoder.image_size=null", "encoder.patch_size=null").encoder, 32)
    assert (own.image_size, own.patch_size) == (None, None)   # null: the model's own (224 px, 16 px patches)
    with pytest.raises(ConfigError, match="resnet18 takes no image size: leave encoder.image_size at auto"):
        resolve_sizes(timm_cfg("encoder.model_name=resnet18", "encoder.image_size=32").encoder, 32)
    with pytest.raises(ConfigError, match="not a multiple of encoder.patch_size=4"):
        timm_cfg("encoder.image_size=30", "encoder.patch_size=4")
    with pytest.raises(ConfigError, match="encoder.patch_size must be auto"):
        timm_cfg("encoder.patch_size=large")
