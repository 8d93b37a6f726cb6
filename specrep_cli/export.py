"""`specrep export checkpoint=RUN_OR_CKPT format=torchvision|timm|safetensors [out=PATH]`: phi's
backbone alone (no projector, no objective state), in a form other code loads without specrep, and a
JSON sidecar saying how.

    torchvision   a state dict whose keys load strict=True into torchvision.models.resnet18() once its
                  stem is the CIFAR one the sidecar names (conv1 3x3 stride 1, maxpool and fc Identity)
    timm          the same for timm.create_model("resnet18", num_classes=0), or for an encoder=timm
                  run the timm model itself (timm.create_model(name, **sidecar["timm"]["kwargs"]))
    safetensors   the backbone's tensors in a .safetensors file, whatever the backbone (the convnet too)

The weights come from checkpoint.trained() (the one reader of a checkpoint's keys) through the
encoder they were trained in: built by name, loaded strictly, and its `backbone` taken. Before
anything is written, the torchvision and timm exports are loaded strictly into the stock model the
sidecar describes.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

from . import __version__
from .checkpoint import Trained, load_checkpoint, load_strict, resolve_checkpoint_path, trained
from .config import EXPORT_FORMATS, EncoderConfig, TimmEncoderConfig, encoder_schema, from_dict, installed, to_dict
from .errors import CheckpointError, ConfigError
from .models.encoders import build_encoder
from .models.lab import LabInput
from .models.timm_backbones import create_timm_model, timm_kwargs
from .storage import atomic_write, atomic_write_text, reason

EXTRAS = {"timm": "timm", "safetensors": "safetensors"}   # format -> the package (and pip extra) it needs
CIFAR_STEM = {"conv1": "Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)",
              "maxpool": "Identity()", "fc": "Identity()"}
INPUTS = {"rgb": "RGB in [0, 1], normalised with mean and std (per channel)",
          "lab_l": "the L channel of CIE Lab (specrep_cli.models.lab.lab_split of RGB in [0, 1]), scaled to "
                   "[-1, 1] as L / 50 - 1",
          "lab_ab": "the a and b channels of CIE Lab (specrep_cli.models.lab.lab_split of RGB in [0, 1]), each "
                    "scaled to [-1, 1]"}


def trained_encoder(model: Trained, path: Path) -> Tuple[nn.Module, EncoderConfig]:
    """(phi, the backbone and projector, with its trained weights, in eval mode; the encoder config),
    built by name and loaded strictly."""
    enc = model.config["encoder"]
    try:
        enc_cfg = from_dict(encoder_schema(enc["name"]), enc)
        if isinstance(enc_cfg, TimmEncoderConfig):
            enc_cfg = replace(enc_cfg, pretrained=False)   # the checkpoint has the weights: nothing to download
        encoder = build_encoder(enc_cfg, model.in_channels, model.input)
    except (KeyError, ValueError, ConfigError) as err:
        raise CheckpointError(f"{path}: its encoder cannot be built ({str(err).splitlines()[0]})") from None
    return load_strict(encoder, model.encoder, path, "encoder").eval(), enc_cfg


def trained_backbone(model: Trained, path: Path) -> Tuple[nn.Module, EncoderConfig]:
    """(phi's backbone with its trained weights, in eval mode; the encoder config), built by name."""
    encoder, enc_cfg = trained_encoder(model, path)
    backbone = encoder.backbone
    if isinstance(backbone, LabInput):   # the Lab split is the input's preparation, not a layer
        backbone = backbone.inner
    return backbone.eval(), enc_cfg


def _stock_resnet18(fmt: str, in_channels: int) -> nn.Module:
    """torchvision's (or timm's) resnet18 with the CIFAR stem of CIFAR_STEM."""
    if fmt == "timm":
        model = create_timm_model("resnet18", {"num_classes": 0, "in_chans": in_channels})
    else:
        model = resnet18()
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool, model.fc = nn.Identity(), nn.Identity()
    return model


def target(fmt: str, enc_cfg: EncoderConfig, in_channels: int) -> Tuple[Dict[str, Any], nn.Module | None]:
    """(what the sidecar says the stock model is, that model to load into; None for safetensors of a
    backbone without a stock counterpart). One line when the format cannot hold this backbone."""
    name = enc_cfg.name
    resnet = name == "resnet18" and enc_cfg.width == 64
    if fmt in ("torchvision", "timm") and resnet:
        arch = "torchvision.models.resnet18" if fmt == "torchvision" else "timm.create_model('resnet18')"
        spec = {"architecture": arch, "changes": CIFAR_STEM}
        if fmt == "timm":
            spec["timm"] = {"model_name": "resnet18", "kwargs": {"num_classes": 0, "in_chans": in_channels}}
        return spec, _stock_resnet18(fmt, in_channels)
    if fmt in ("timm", "safetensors") and name == "timm":
        kwargs = timm_kwargs(enc_cfg, in_channels)
        spec = {"architecture": f"timm.create_model({enc_cfg.model_name!r})", "changes": {},
                "timm": {"model_name": enc_cfg.model_name, "kwargs": kwargs}}
        return spec, create_timm_model(enc_cfg.model_name, kwargs) if fmt == "timm" else None
    if fmt == "safetensors":
        if resnet:
            return {"architecture": "torchvision.models.resnet18", "changes": CIFAR_STEM}, None
        return {"architecture": f"specrep encoder={name} (specrep_cli.models.encoders.BACKBONES[{name!r}])",
                "changes": {}, "encoder": to_dict(enc_cfg)}, None
    if name == "timm":
        raise ConfigError("format=torchvision holds torchvision's resnet18: an encoder=timm backbone exports "
                          "with format=timm or format=safetensors")
    why = (f"encoder.width={enc_cfg.width} has no stock counterpart (resnet18 is width 64)" if name == "resnet18"
           else f"encoder={name} has no {fmt} counterpart")
    raise ConfigError(f"format={fmt} holds torchvision's resnet18" + (" or a timm model" if fmt == "timm" else "")
                      + f": {why}; export it with format=safetensors")


def _save(out: Path, state: Dict[str, Tensor], fmt: str) -> None:
    """Write the tensors atomically (storage.atomic_write)."""
    if fmt == "safetensors":
        from safetensors.torch import save  # optional: checked by export_checkpoint
        atomic_write(out, lambda f: f.write(save(state, metadata={"format": "pt"})))
    else:
        atomic_write(out, lambda f: torch.save(state, f))


def default_out(path: Path, fmt: str) -> Path:
    """<run dir>/export/<checkpoint name>_<format>.pt, or <checkpoint name>.safetensors."""
    name = f"{path.stem}.safetensors" if fmt == "safetensors" else f"{path.stem}_{fmt}.pt"
    return path.parent.parent / "export" / name


def export_paths(out: str | None, path: Path, fmt: str) -> Tuple[Path, Path]:
    """(weights, sidecar): `out` (a directory: default_out's name in it; no suffix: the format's added),
    or default_out; the sidecar is the weights' name with .json. One line when `out` is the sidecar's
    own name, or when either file exists (nothing is overwritten)."""
    weights = default_out(path, fmt)
    if out:
        given = Path(out).expanduser()
        if given.exists() and not (given.is_dir() or given.is_file()):
            raise ConfigError(f"out={out} is a device, pipe or socket: out names the weights file (or a folder for it)")
        if out.endswith(("/", os.sep)) or given.is_dir():
            weights = given / weights.name
        elif given.suffix.lower() == ".json":
            raise ConfigError(f"out={out} is where the JSON sidecar goes: out names the weights file and the "
                              f"sidecar takes its name with .json; pass e.g. out={given.with_suffix(weights.suffix)}")
        else:
            weights = given if given.suffix else given.with_name(given.name + weights.suffix)
    meta = weights.with_suffix(".json")
    folder = next(p for p in weights.absolute().parents if p.exists())
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder: pass an out=PATH inside a folder")
    for existing in (weights, meta):
        if existing.exists() or existing.is_symlink():
            raise ConfigError(f"{existing} exists: pass out=PATH for another file, or remove it")
    return weights, meta


def input_channels(model: Trained) -> int:
    """The channels the exported backbone takes: the checkpoint's, or the Lab tower's share of them."""
    return {"rgb": model.in_channels, "lab_l": 1, "lab_ab": 2}[model.input]


def sidecar(model: Trained, spec: Dict[str, Any], backbone: nn.Module, fmt: str, weights: Path,
            path: Path) -> Dict[str, Any]:
    lab = model.input != "rgb"
    channels = input_channels(model)
    return {"format": fmt, **spec, "weights": weights.name, "in_channels": channels,
            "image_size": model.image_size, "representation_dim": backbone.out_dim, "input": model.input,
            "input_description": INPUTS[model.input],
            "mean": None if lab else model.mean, "std": None if lab else model.std,
            "objective": model.config["objective"]["name"], "epoch": model.epoch,
            "source_checkpoint": str(path.resolve()), "trained_with_specrep": model.specrep_version,
            "specrep_version": __version__}


def export_checkpoint(checkpoint: str, fmt: str, out: str | None = None) -> Tuple[Path, Path]:
    """Write the backbone of `checkpoint` in `fmt` to export_paths' weights and its sidecar (the same
    name, .json); (weights, sidecar). Nothing is overwritten, and the two are never one file."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if fmt in EXTRAS and not installed(EXTRAS[fmt]):
        raise ConfigError(f"format={fmt} needs: pip install 'specrep[{EXTRAS[fmt]}]'")
    path = resolve_checkpoint_path(checkpoint)
    weights, meta = export_paths(out, path, fmt)
    model = trained(load_checkpoint(path), path)
    backbone, enc_cfg = trained_backbone(model, path)
    spec, stock = target(fmt, enc_cfg, input_channels(model))
    state = {k: v.detach().clone().contiguous() for k, v in backbone.state_dict().items()}
    if stock is not None:
        load_strict(stock, state, path, f"stock {spec['architecture']}")   # what a user will do
    try:
        _save(weights, state, fmt)
        atomic_write_text(meta, json.dumps(sidecar(model, spec, backbone, fmt, weights, path), indent=2) + "\n")
    except OSError as err:
        raise ConfigError(f"cannot write {weights} ({reason(err)}): pass a writable out=PATH") from None
    return weights, meta
