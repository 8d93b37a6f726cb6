"""Image-text training end to end: clip and siglip on the shapes captions, zero-shot and retrieval in
the report, the text tower back from the checkpoint in `specrep eval`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_line_error, run_cli

from specrep_cli.config import from_dict


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

    again = run_cli("eval", f"checkpoint={run}", "eval.random_init=false", "eval.probe.fast.steps=20",
                    f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    scored = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert scored["zero_shot"]["top1"] == pytest.approx(report["zero_shot"]["top1"], abs=1e-6)
    for direction in ("image_to_text", "text_to_image"):
        assert scored["retrieval"][direction] == pytest.approx(report["retrieval"][direction], abs=1e-6)


def test_the_bpe_tokenizer_trains_is_saved_and_rebuilt_by_eval(tmp_path: Path):
    pytest.importorskip("open_clip", reason="objective.text.tokenizer=bpe is an extra: pip install 'specrep[bpe]'")
    run = tmp_path / "run"
    proc = run_cli("train", "objective=clip", "objective.text.tokenizer=bpe", *TINY, "objective.text.width=32",
                   "objective.text.heads=2", "eval.random_init=false", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run / "report.json").read_text())
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["tokenizer"] == {"level": "bpe", "vocab_size": 49408}
    assert ckpt["objective"]["encoder_y.backbone.token_embedding.weight"].shape[0] == 49408
    again = run_cli("eval", f"checkpoint={run}", "eval.random_init=false", f"hydra.run.dir={tmp_path / 'eval'}",
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    scored = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert scored["zero_shot"]["top1"] == pytest.approx(report["zero_shot"]["top1"], abs=1e-6)


def test_the_old_tokenizer_key_says_its_new_name(tmp_path: Path):
    proc = run_cli("train", "objective=clip", "objective.text.level=char", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)
    assert_one_line_error(proc, "objective.text.level is now objective.text.tokenizer")


def test_text_pairs_on_a_dataset_without_captions_is_one_line(tmp_path: Path):
    from fake_datasets import write_cifar
    write_cifar(tmp_path / "data")
    proc = run_cli("train", "objective=clip", "objective.pairs=text", "dataset=cifar10",
                   f"dataset.root={tmp_path / 'data'}", "trainer.batch_size=8", cwd=tmp_path)
    assert_one_line_error(proc, "objective.pairs=text needs image captions")


def test_lab_towers_see_the_l_and_ab_channels_of_rgb_input():
    from specrep_cli.config import ImageEncoderConfig
    from specrep_cli.models.encoders import build_encoder
    from specrep_cli.models.lab import lab_split
    cfg = from_dict(ImageEncoderConfig, {"name": "convnet", "width": 4})
    x = torch.rand(5, 3, 16, 16)
    for part, channels in (("lab_l", 1), ("lab_ab", 2)):
        torch.manual_seed(0)
        tower = build_encoder(cfg, 3, part).eval()
        torch.manual_seed(0)
        plain = build_encoder(cfg, channels).eval()   # the same weights, fed the Lab part by hand
        l_part, ab_part = lab_split(x)
        assert torch.allclose(tower(x), plain(l_part if part == "lab_l" else ab_part), atol=1e-6)
    with pytest.raises(ValueError, match="needs 3-channel RGB"):
        build_encoder(cfg, 1, "lab_l")


def test_lab_split_run_trains_two_towers_and_eval_rebuilds_the_l_tower(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", "objective=clip", "augmentation=lab_split", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["data"]["input"] == "lab_l" and "tokenizer" not in ckpt
    assert ckpt["encoder"]["backbone.inner.features.0.0.weight"].shape[1] == 1          # phi takes L
    assert ckpt["objective"]["encoder_y.backbone.inner.features.0.0.weight"].shape[1] == 2   # nu takes ab
    report = json.loads((run / "report.json").read_text())
    again = run_cli("eval", f"checkpoint={run}", "eval.probe.fast.steps=20", f"hydra.run.dir={tmp_path / 'eval'}",
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    scored = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert scored["knn"]["top1"] == pytest.approx(report["knn"]["top1"], abs=1e-6)
    plain = run_cli("train", "objective=clip", "objective.pairs=views", *TINY, "trainer.epochs=2", f"resume={run}",
                    cwd=tmp_path)   # resuming without augmentation=lab_split
    assert_one_line_error(plain, "what the towers see (checkpoint lab_l, config rgb")


def test_lab_split_needs_a_two_tower_objective(tmp_path: Path):
    assert_one_line_error(run_cli("train", "augmentation=lab_split", cwd=tmp_path), "use objective=clip")


def test_clip_on_your_own_image_text_pairs(tmp_path: Path):
    from fake_datasets import write_image_text
    root = write_image_text(tmp_path / "pairs", per_class=40)
    run = tmp_path / "run"
    model = [o for o in TINY if not o.startswith("dataset.")]
    proc = run_cli("train", "objective=clip", "dataset=image_text", f"dataset.root={root}", *model,
                   "trainer.batch_size=32", "eval.knn.k=5", "objective.text.width=32", "objective.text.heads=2",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["run"]["dataset"] == "image_text" and "zero_shot" in report
    assert set(report["retrieval"]) == {"image_to_text", "text_to_image"}
