"""Image-text training end to end: clip and siglip on the shapes captions, zero-shot and retrieval in
the report, the text tower back from the checkpoint in `specrep eval`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, assert_one_line_error, run_cli


@pytest.mark.parametrize("objective", ["clip", "siglip"])
def test_image_text_run_reports_zero_shot_and_retrieval_and_eval_rebuilds_the_text_tower(tmp_path: Path, objective):
    run = tmp_path / "run"
    proc = run_cli("train", f"objective={objective}", *TINY, "objective.text.width=32", "objective.text.heads=2",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run / "report.json").read_text())
    assert 0 <= report["zero_shot"]["top1"] <= report["zero_shot"]["top5"] <= 100
    for direction in ("image_to_text", "text_to_image"):
        r = report["retrieval"][direction]
        assert 0 <= r["r1"] <= r["r5"] <= r["r10"] <= 100
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["tokenizer"]["level"] == "word" and "star" in ckpt["tokenizer"]["vocab"]
    assert any(k.startswith("encoder_y.backbone.token_embedding") for k in ckpt["objective"])

    again = run_cli("eval", f"checkpoint={run}", "eval.random_init=false", "eval.probe_steps=20",
                    f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    scored = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert scored["zero_shot"]["top1"] == pytest.approx(report["zero_shot"]["top1"], abs=1e-6)
    for direction in ("image_to_text", "text_to_image"):
        assert scored["retrieval"][direction] == pytest.approx(report["retrieval"][direction], abs=1e-6)


def test_text_pairs_on_a_dataset_without_captions_is_one_line(tmp_path: Path):
    from fake_datasets import write_cifar
    write_cifar(tmp_path / "data")
    proc = run_cli("train", "objective=clip", "objective.pairs=text", "dataset=cifar10",
                   f"dataset.root={tmp_path / 'data'}", "trainer.batch_size=8", cwd=tmp_path)
    assert_one_line_error(proc, "objective.pairs=text needs image captions")
