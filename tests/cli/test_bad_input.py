"""Every bad input: one line on stderr, a non-zero exit, no traceback, earlier runs untouched."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_one_line_error, run_cli
from PIL import Image
from support import snapshot

from specrep_cli.checkpoint import FORMAT_VERSION, save_checkpoint


def folder(root: Path, classes: bool = True, images: bool = True, corrupt: bool = False) -> Path:
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        if classes:
            (root / split / "a").mkdir(exist_ok=True)
            if images:
                Image.new("RGB", (8, 8), (200, 10, 10)).save(root / split / "a" / "0.png")
    if corrupt:
        (root / "train" / "a" / "1.jpg").write_bytes(b"\xff\xd8 truncated")
    return root


TRAIN_CASES = {
    "unknown group option": (lambda tmp: ["objective=spectrall"],
                             "Could not find 'objective/spectrall'; available: barlow_twins"),
    "unknown option in a sweep": (lambda tmp: ["--multirun", "objective=simclr,spectrall"], "spectrall"),
    "unknown key": (lambda tmp: ["trainer.epoch=3"], "Key 'epoch' not in 'TrainerConfig'"),
    "another objective's key": (lambda tmp: ["objective.temperature=0.1"], "not in 'SpectralConfig'"),
    "override syntax": (lambda tmp: ["trainer.epochs=[1"], "no viable alternative"),
    "force-added key": (lambda tmp: ["+trainer.epoch=3"], "unknown config key 'trainer.epoch'"),
    "wrong type": (lambda tmp: ["trainer.epochs=abc"], "trainer.epochs=abc: Value 'abc'"),
    "zero epochs": (lambda tmp: ["trainer.epochs=0"], "trainer.epochs must be in 1..1,000,000"),
    "negative epochs": (lambda tmp: ["trainer.epochs=-2"], "trainer.epochs must be in 1..1,000,000"),
    "zero batch size": (lambda tmp: ["trainer.batch_size=0"], "trainer.batch_size must be >= 2"),
    "zero lr": (lambda tmp: ["optim.lr=0"], "optim.lr must be > 0"),
    "negative lr": (lambda tmp: ["optim.lr=-0.1"], "optim.lr must be > 0"),
    "batch larger than the data": (lambda tmp: ["dataset.num_train=100", "trainer.batch_size=128"],
                                   "larger than the training set"),
    "missing dataset path": (lambda tmp: ["dataset=imagefolder", f"dataset.root={tmp / 'nowhere'}"],
                             "does not exist"),
    "folder without class folders": (lambda tmp: ["dataset=imagefolder",
                                                  f"dataset.root={folder(tmp / 'd', classes=False)}"],
                                     "has no class folders"),
    "folder without images": (lambda tmp: ["dataset=imagefolder",
                                           f"dataset.root={folder(tmp / 'd', images=False)}"],
                              "holds no images"),
    "unreadable image": (lambda tmp: ["dataset=imagefolder", f"dataset.root={folder(tmp / 'd', corrupt=True)}",
                                      "trainer.batch_size=2"], "cannot read image"),
    "unwritable output dir": (lambda tmp: ["hydra.run.dir=/proc/specrep/run"], "cannot create the output directory"),
}


# found only once the job reads its data; every other case stops before Hydra makes a run directory
NEEDS_THE_DATA = {"batch larger than the data", "missing dataset path", "folder without class folders",
                  "folder without images", "unreadable image"}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_bad_input(case, tmp_path: Path, trained_run: Path):
    before = snapshot(trained_run)
    make_args, needle = TRAIN_CASES[case]
    args = make_args(tmp_path)
    key = "hydra.sweep.dir=" if "--multirun" in args else "hydra.run.dir="
    run_dir = [] if any(a.startswith(key) for a in args) else [f"{key}{tmp_path / 'run'}"]
    tiny = [o for o in TINY if not o.startswith("dataset.num_")] if "dataset=imagefolder" in args else TINY
    proc = run_cli("train", *tiny, *args, *run_dir, cwd=tmp_path)
    assert_one_line_error(proc, needle)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(trained_run) == before
    if case not in NEEDS_THE_DATA:
        assert not (tmp_path / "run").exists()


def _variant(trained_run: Path, tmp: Path, name: str) -> Path:
    """A checkpoint file for each way `specrep eval` can be handed a bad one."""
    good = trained_run / "checkpoints" / "last.pt"
    path = tmp / f"{name}.pt"
    if name == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    elif name == "foreign":
        torch.save({"model": {"w": torch.ones(3)}}, path)
    elif name == "newer":
        ckpt = torch.load(good, weights_only=True)
        ckpt["format_version"] = FORMAT_VERSION + 1
        torch.save(ckpt, path)
    elif name == "one_channel":   # an encoder for 1-channel images, evaluated on the RGB shapes
        ckpt = torch.load(good, weights_only=True)
        key = next(k for k in ckpt["encoder"] if k.endswith("weight") and ckpt["encoder"][k].ndim == 4)
        ckpt["encoder"][key] = ckpt["encoder"][key][:, :1].clone()
        ckpt["data"]["in_channels"] = 1
        ckpt["data"]["mean"], ckpt["data"]["std"] = ckpt["data"]["mean"][:1], ckpt["data"]["std"][:1]
        save_checkpoint(path, {k: v for k, v in ckpt.items() if k not in ("format", "format_version")})
    return path


EVAL_CASES = {
    "no checkpoint": (None, "no checkpoint given"),
    "unknown dataset option": ("dataset=shapess", "Could not find 'dataset/shapess'"),
    "missing file": ("missing", "does not exist"),
    "truncated file": ("truncated", "truncated or corrupt"),
    "not a specrep checkpoint": ("foreign", "not a specrep checkpoint"),
    "newer format version": ("newer", "upgrade specrep"),
    "channels that do not fit": ("one_channel", "takes 1 channels"),
}


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_eval_bad_input(case, tmp_path: Path, trained_run: Path):
    before = snapshot(trained_run)
    variant, needle = EVAL_CASES[case]
    if variant is None or "=" in variant:
        args = [] if variant is None else [variant]
    else:
        args = [f"checkpoint={_variant(trained_run, tmp_path, variant)}"]
    proc = run_cli("eval", *args, "eval.probe.fast.steps=5", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert_one_line_error(proc, needle)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(trained_run) == before
