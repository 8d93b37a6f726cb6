"""dataset=webdataset end to end: shards written by benchmarks/make_shards.py, a sweep of clip and
spectral_clip that trains on them, evaluates zero-shot and resumes inside an epoch, bad shards, and
the mistakes a user makes."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_one_line_error, run_cli, start_train, wait_for

pytest.importorskip("webdataset", reason="dataset=webdataset is an extra: pip install 'specrep[webdataset]'")

SMALL = ["trainer.batch_size=32", "encoder.width=8", "encoder.projector_hidden_dim=64",
         "encoder.projector_out_dim=32", "eval.probe.fast.steps=20", "eval.random_init=false",
         "eval.ritz_pairs=128", "trainer.log_every_n_steps=2", "objective.text.width=32",
         "objective.text.layers=1"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """shapes as shards, by the script users run: 512 training samples in 8 shards, 256 labelled ones in 4."""
    out = tmp_path_factory.mktemp("shards")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_shards.py"), "--out", str(out),
                           "--num-train", "512", "--num-test", "256", "--per-shard", "64"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "train: 512 samples in 8 shards" in proc.stdout and (out / "classes.txt").is_file()
    return out


def data(shards: Path, train: str = "train-{000000..000007}.tar") -> list:
    return ["dataset=webdataset", f"dataset.shards='{shards}/{train}'",
            f"dataset.eval_shards='{shards}/test-{{000000..000003}}.tar'", "dataset.test_fraction=0.25"]


def weights(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    return {**{f"encoder.{k}": v for k, v in ckpt["encoder"].items()}, **ckpt["objective"]}


def test_a_sweep_of_clip_and_spectral_clip_trains_scores_zero_shot_and_resumes_inside_an_epoch(shards, tmp_path):
    common = [*data(shards), *SMALL, "trainer.epochs=2", "dataset.workers=2"]
    proc = run_cli("train", "--multirun", "objective=clip,spectral_clip", *common,
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, objective in enumerate(("clip", "spectral_clip")):
        run = tmp_path / "sweep" / str(job)
        report = json.loads((run / "report.json").read_text())
        assert report["run"]["objective"] == objective
        assert 0 <= report["zero_shot"]["top1"] <= 100 and report["retrieval"]["image_to_text"]["r1"] >= 0
        log = (run / "train.log").read_text()
        assert "streamed from 8 shards by 2 DataLoader workers, 512 samples an epoch" in log
        assert "16 steps/epoch" in log
    summary = run_cli("report", str(tmp_path / "sweep"), cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert "zero-shot top-1 %" in summary.stdout and "image->text R@1 %" in summary.stdout
    # spectral_clip again, stopped by Ctrl-C inside its second epoch, then resumed: the sweep's weights
    run = tmp_path / "stopped"
    args = ["objective=spectral_clip", *common, f"hydra.run.dir={run}"]
    proc = start_train(args, tmp_path)
    wait_for(proc, "epoch 1/2")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "resume with:" in err, err[-2000:]
    resumed = run_cli("train", *args[:-1], f"resume={run}", f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full, part = weights(tmp_path / "sweep" / "1"), weights(run)
    assert full.keys() == part.keys() and all(torch.equal(full[k], part[k]) for k in full)
    scored = run_cli("eval", f"checkpoint={run}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["zero_shot"]["top1"] == \
        json.loads((run / "report.json").read_text())["zero_shot"]["top1"]


def broken_copy(shards: Path, folder: Path) -> Path:
    """The training shards, one of them cut in half and one missing a caption and an image's bytes."""
    import tarfile
    folder.mkdir()
    for k in range(8):
        shutil.copy(shards / f"train-{k:06d}.tar", folder)
    raw = (shards / "train-000003.tar").read_bytes()
    (folder / "train-000003.tar").write_bytes(raw[:len(raw) // 2])
    with tarfile.open(shards / "train-000005.tar") as src, tarfile.open(folder / "train-000005.tar", "w") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith("0330.txt"):
                continue
            if member.name.endswith("0331.png"):
                data = b"broken"
                member.size = len(data)
            out.addfile(member, __import__("io").BytesIO(data))
    return folder


def test_bad_shards_are_skipped_and_counted_or_stop_the_run_in_one_line(shards, tmp_path):
    broken = broken_copy(shards, tmp_path / "broken")
    args = ["objective=spectral_clip", *data(broken), f"dataset.eval_shards='{shards}/test-{{000000..000003}}.tar'",
            *SMALL, "trainer.epochs=1", "dataset.workers=2", "dataset.samples_per_epoch=512"]
    proc = run_cli("train", *args, f"hydra.run.dir={tmp_path / 'skip'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "skip" / "train.log").read_text()
    assert "bad sample(s) of the shards (dataset.bad_samples=skip)" in log
    assert "train-000003.tar: truncated" in log or "train-000005.tar: train" in log
    counted = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert [r["bad_samples"] for r in counted if "bad_samples" in r][0] >= 3   # a cut tar, a caption, an image
    proc = run_cli("train", *args, "dataset.bad_samples=stop", f"hydra.run.dir={tmp_path / 'stop'}", cwd=tmp_path)
    assert_one_line_error(proc, "error: bad shard ", "train-000003.tar: truncated", "dataset.bad_samples=skip")
    assert not (tmp_path / "stop" / "checkpoints").exists()


def test_a_labelled_folder_scores_a_run_of_two_views_on_shards(shards, tmp_path):
    from support import make_folder
    folder = make_folder(tmp_path / "folder")
    proc = run_cli("train", "objective=spectral", "dataset=webdataset",
                   f"dataset.shards='{shards}/train-{{000000..000007}}.tar'", f"dataset.eval_root={folder}",
                   *SMALL[:-2], "trainer.epochs=1", "dataset.workers=0", "dataset.image_size=16",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["linear_probe"]["top1"] >= 0 and "zero_shot" not in report


@pytest.mark.parametrize("overrides, needles", [
    (["dataset.shards='{s}/train-{{000000..000009}}.tar'"], ["train-000008.tar does not exist", "make_shards.py"]),
    (["dataset.shards={s}/train-{{000000..000001}}.tar"], ["a brace pattern goes in quotes"]),
])
def test_mistakes_are_one_line(shards, tmp_path, overrides, needles):
    args = [o.format(s=shards) for o in overrides]
    proc = run_cli("train", "objective=clip", *data(shards), *SMALL, "trainer.epochs=1", *args,
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, *needles)
