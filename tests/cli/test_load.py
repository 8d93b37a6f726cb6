"""from specrep_cli import load_backbone, load_encoder: phi from a run dir or a checkpoint, in eval mode
on the CPU, its backbone's features identical to `specrep export`'s weights."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, train_into

from specrep_cli import cli


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return train_into(tmp_path_factory.mktemp("load"), *TINY)


def test_import_stays_light_and_the_names_load_on_use():
    code = ("import sys, specrep_cli; assert 'torch' not in sys.modules; "
            "from specrep_cli import load_backbone, load_encoder; print(load_backbone.__module__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "specrep_cli.load", proc.stderr


def test_the_backbone_equals_the_safetensors_export(run: Path):
    safetensors = pytest.importorskip("safetensors.torch")
    from specrep_cli import checkpoint_path, load_backbone, load_encoder
    assert checkpoint_path(run) == run / "checkpoints" / "best.pt"   # keep_best: the best monitoring kNN
    backbone = load_backbone(run)
    assert isinstance(backbone, torch.nn.Module) and not backbone.training
    assert all(p.device.type == "cpu" for p in backbone.parameters())
    assert cli.run_command("export", [f"checkpoint={run / 'checkpoints' / 'best.pt'}", "format=safetensors"]) == 0
    meta = json.loads((run / "export" / "best.json").read_text())
    fresh = load_backbone(run)   # the exported weights into a zeroed backbone of the same build
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    fresh.load_state_dict(safetensors.load_file(run / "export" / "best.safetensors"), strict=True)
    x = torch.randn(4, meta["in_channels"], meta["image_size"], meta["image_size"])
    with torch.no_grad():
        assert torch.equal(backbone(x), fresh(x))
        encoder = load_encoder(run / "checkpoints" / "best.pt")
        assert not encoder.training and torch.equal(encoder.backbone(x), backbone(x))
        assert encoder(x).shape == (4, encoder.out_dim)


def test_a_checkpoint_file_gives_its_own_weights(run: Path):
    from specrep_cli import load_backbone
    backbone = load_backbone(run / "checkpoints" / "last.pt")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(v, ckpt["encoder"][f"backbone.{k}"]) for k, v in backbone.state_dict().items())
