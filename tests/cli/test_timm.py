"""encoder=timm: a timm ViT in its small-image variant trains for an epoch on the built-in data, its
representation size read from the model, and its export loads into timm with the same features."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, run_cli
from support import normalised_images, readme_load, specrep_features

from specrep_cli import cli

timm = pytest.importorskip("timm", reason="encoder=timm is an extra: pip install 'specrep[timm]'")

VIT = ["encoder=timm", "encoder.model_name=vit_tiny_patch16_224", "encoder.image_size=32", "encoder.patch_size=4",
       "dataset.num_train=32", "dataset.num_test=32", "trainer.batch_size=32", "trainer.epochs=1",
       "encoder.projector_hidden_dim=64", "encoder.projector_out_dim=32", "eval.probe.fast.steps=5",
       "eval.random_init=false", "eval.alignment_images=0", "eval.every_n_epochs=0", "eval.ritz=false"]


def test_a_timm_vit_trains_for_an_epoch_and_exports_to_timm(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", *VIT, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["run"]["encoder"] == "timm" and 0 <= report["linear_probe"]["top1"] <= 100
    assert len(report["spectrum"]["representation"]["eigenvalues"]) == 192   # ViT-Tiny's num_features
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["encoder"]["backbone.pos_embed"].shape == (1, 65, 192)   # 8 x 8 patches of 4 px + the class token

    assert cli.run_command("export", [f"checkpoint={run}", "format=timm"]) == 0   # `specrep export` in this process
    meta = json.loads((run / "export" / "last_timm.json").read_text())
    assert meta["timm"] == {"model_name": "vit_tiny_patch16_224",
                            "kwargs": {"num_classes": 0, "in_chans": 3, "img_size": 32, "patch_size": 4}}
    assert meta["changes"] == {} and meta["representation_dim"] == 192
    model = readme_load("timm", run / "export")
    x = normalised_images(meta, n=4)
    with torch.no_grad():
        assert torch.allclose(model(x), specrep_features(run / "checkpoints" / "last.pt", x), atol=1e-5)


def test_pretrained_weights_that_cannot_be_fetched_are_one_line(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")           # as on a machine without a network
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # and an empty cache
    proc = run_cli("train", *VIT, "encoder.pretrained=true", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "encoder.pretrained=true: the weights of vit_tiny_patch16_224 could not be fetched",
                          "encoder.pretrained=false")
