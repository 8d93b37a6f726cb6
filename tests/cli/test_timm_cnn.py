"""`specrep train encoder=timm encoder.model_name=resnet18` trains with no other key: the ViT sizes
follow the model, and the checkpoint stores what the model got."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

pytest.importorskip("timm", reason="encoder=timm is an extra: pip install 'specrep[timm]'")

SMALL = ["dataset.num_train=32", "dataset.num_test=32", "trainer.batch_size=16", "trainer.epochs=1",
         "encoder.projector_hidden_dim=32", "encoder.projector_out_dim=16", "eval.probe.fast.steps=5",
         "eval.random_init=false", "eval.alignment_images=0", "eval.every_n_epochs=0", "eval.ritz=false"]


def test_a_timm_cnn_trains_without_size_keys(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", "encoder=timm", "encoder.model_name=resnet18", *SMALL, f"hydra.run.dir={run}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((run / "report.json").read_text())["run"]["encoder"] == "timm"
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["encoder"]["image_size"] is None and ckpt["config"]["encoder"]["patch_size"] is None
