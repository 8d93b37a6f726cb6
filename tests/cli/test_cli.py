"""The CLI end to end, in subprocesses: train, eval, sweeps, help, and bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import CIFAR, REPO, TINY, assert_one_line_error, run_cli

REPORT_KEYS = {"run", "linear_probe", "knn", "random_init", "timing"}


def test_bare_command_lists_subcommands():
    for args in ([], ["--help"]):
        proc = run_cli(*args)
        assert proc.returncode == 0
        assert "train" in proc.stdout and "eval" in proc.stdout


def test_python_dash_m_specrep_is_the_same_command(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["train", "objective=spectrall"]   # through the dispatcher and the preflight: exit 1, one line
    forwarded = subprocess.run([sys.executable, "-m", "specrep", *args], capture_output=True, text=True,
                               cwd=tmp_path, env=env)
    direct = run_cli(*args, cwd=tmp_path)
    assert forwarded.returncode == direct.returncode == 1
    assert (forwarded.stdout, forwarded.stderr) == (direct.stdout, direct.stderr)


def test_unknown_subcommand_exits_2_with_the_list():
    proc = run_cli("trian")
    assert proc.returncode == 2
    assert "unknown command 'trian'" in proc.stderr and "eval" in proc.stderr


def test_train_help_lists_groups_and_options():
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    for line in ("objective: ", "encoder: convnet, embedding, mlp, resnet18, timm",
                 "dataset: cifar10, cifar100, graph, image_text, imagefolder, shapes, stl10"):
        assert line in proc.stdout


def test_shell_completion_routes_to_the_subcommand(monkeypatch):
    install = run_cli("-sc", "install=bash", script=True)
    assert install.returncode == 0
    assert "complete -o nospace -o default -F hydra_bash_completion specrep" in install.stdout
    monkeypatch.setenv("COMP_LINE", "specrep train objective=spectral_")
    completions = run_cli("-sc", "query=bash", script=True).stdout.split()
    assert completions == ["objective=spectral_byol", "objective=spectral_clip"]
    monkeypatch.setenv("COMP_LINE", "specrep ev")
    assert run_cli("-sc", "query=bash", script=True).stdout.split() == ["eval"]


def test_cfg_job_prints_the_composed_config():
    proc = run_cli("train", "objective=simclr", "--cfg", "job")
    assert proc.returncode == 0
    assert "name: simclr" in proc.stdout and "temperature: 0.5" in proc.stdout


def test_train_writes_the_documented_run_dir(trained_run: Path):
    for name in (".hydra/config.yaml", "train.log", "metrics.jsonl", "checkpoints/last.pt",
                 "checkpoints/epoch_0001.pt", "checkpoints/best.pt", "report.json", "report.md"):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    for key in ("objective", "encoder", "augmentation", "dataset", "epochs", "batch_size", "seed",
                "device", "precision", "git_sha"):
        assert key in report["run"]
    assert 0 <= report["linear_probe"]["top1"] <= 100 and 0 <= report["linear_probe"]["top5"] <= 100
    assert report["linear_probe"]["top5"] >= report["linear_probe"]["top1"]
    assert report["knn"]["k"] == 200 and 0 <= report["knn"]["top1"] <= 100
    assert 0 <= report["random_init"]["linear_probe_top1"] <= 100
    assert report["timing"]["train_seconds"] > 0 and report["timing"]["train_images_per_second"] > 0
    lines = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4]
    assert {"attract", "repel", "lr"} <= set(steps[0])
    assert any("epoch_loss" in r for r in lines)
    monitored = [r["monitor"] for r in lines if "monitor" in r]
    assert len(monitored) == 1 and 0 <= monitored[0]["knn_top1"] <= 100
    assert 1 <= monitored[0]["effective_rank_projection"] <= 32
    assert report["history"] == [{"epoch": 1, **monitored[0]}]
    assert "epoch 1/1" in (trained_run / "train.log").read_text()


def test_checkpoint_holds_weights_config_and_state(trained_run: Path):
    ckpt = torch.load(trained_run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["format"] == "specrep-checkpoint"
    for key in ("encoder", "objective", "optimizer", "epoch", "step", "rng", "config", "data",
                "specrep_version", "torch_version"):
        assert key in ckpt
    assert ckpt["config"]["encoder"]["width"] == 8
    assert any(k.startswith("backbone.") for k in ckpt["encoder"])
    assert any(k.startswith("projector.") for k in ckpt["encoder"])
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4


def test_eval_rebuilds_the_encoder_from_the_checkpoint(trained_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    # The eval config's defaults know nothing of width 8: the encoder must come from the checkpoint.
    proc = run_cli("eval", f"checkpoint={trained_run / 'checkpoints' / 'last.pt'}", "eval.probe.fast.steps=20",
                   f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS - {"timing"} <= set(report)
    assert report["run"]["encoder"] == "convnet" and report["run"]["epochs"] == 1
    trained = json.loads((trained_run / "report.json").read_text())
    # Same weights, same data, same probe: the same accuracy as the end-of-training report.
    assert report["knn"]["top1"] == pytest.approx(trained["knn"]["top1"], abs=1.0)
    assert (out / "report.md").is_file() and (out / "eval.log").is_file()


def test_eval_accepts_a_run_directory_and_another_dataset(trained_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    proc = run_cli("eval", f"checkpoint={trained_run}", "dataset=shapes", "dataset.num_train=200",
                   "dataset.num_test=100", "dataset.seed=7", "eval.probe.fast.steps=10",
                   f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "report.json").read_text())["run"]["dataset"] == "shapes"


def test_multirun_sweeps_two_jobs(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = run_cli("train", "--multirun", "objective=spectral,simclr", *TINY, "eval.random_init=false",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for job, objective in (("0", "spectral"), ("1", "simclr")):
        report = json.loads((sweep / job / "report.json").read_text())
        assert report["run"]["objective"] == objective


def test_a_diverging_run_stops_with_the_step_and_every_term(tmp_path: Path):
    proc = run_cli("train", *TINY, "objective=vicreg", "optim=sgd", "optim.lr=50", "trainer.epochs=3",
                   f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "non-finite loss at step", "invariance=", "variance=", "covariance=")
    line = proc.stderr.strip().splitlines()[-1]
    assert "no checkpoint yet" in line or "last good checkpoint: " in line


def test_max_bad_steps_skips_that_many_then_stops(tmp_path: Path):
    # temperature 1e-45 underflows to 0 in fp32: every step's loss is inf or nan
    proc = run_cli("train", *TINY, "objective=binary_nce", "objective.temperature=1e-45",
                   "trainer.max_bad_steps=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "non-finite loss at step 3 after skipping 2 bad steps", "positive=")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "skipped step 1" in log and "skipped step 2" in log


@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"CIFAR-10 JPEG copy not found at {CIFAR}")
def test_one_epoch_on_cifar10_jpeg_subset(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = run_cli("train", "dataset=imagefolder", f"dataset.root={CIFAR}", "dataset.subset=512",
                   "trainer.epochs=1", "trainer.batch_size=128", "encoder.width=8", "eval.probe.fast.steps=20",
                   "eval.random_init=false", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["dataset"] == "imagefolder"
    assert report["linear_probe"]["top1"] > 10.0   # above chance on real CIFAR-10 test images


MODEL = [o for o in TINY if not o.startswith("dataset.")]   # TINY without the shapes-only keys


@pytest.mark.parametrize("dataset, extra", [
    ("cifar10", []),
    ("stl10", ["dataset.image_size=32"]),
    ("imagefolder", ["dataset.in_memory=false", "dataset.workers=2"]),   # streamed through workers
])
def test_one_epoch_on_each_dataset_format(tmp_path: Path, dataset: str, extra):
    from fake_datasets import write_cifar, write_stl10
    from PIL import Image
    root = tmp_path / "data"
    if dataset == "cifar10":
        write_cifar(root, per_batch=16, test=32)
    elif dataset == "stl10":
        write_stl10(root, train=40, test=20, unlabeled=64)
    else:
        for split in ("train", "val"):
            for c in range(2):
                (root / split / str(c)).mkdir(parents=True)
                for i in range(40):
                    Image.new("RGB", (24 + i % 5, 20), (100 * c, i * 6, 50)).save(root / split / str(c) / f"{i}.png")
    run_dir = tmp_path / "run"
    proc = run_cli("train", f"dataset={dataset}", f"dataset.root={root}", *extra, *MODEL,
                   "trainer.batch_size=32", "eval.knn.k=5", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["dataset"] == dataset and 0.0 <= report["linear_probe"]["top1"] <= 100.0
    log = (run_dir / "train.log").read_text()
    assert ("streamed from files by 2 DataLoader workers" in log) == (dataset == "imagefolder")


def test_wheel_ships_every_config(tmp_path: Path):
    pytest.importorskip("build", reason="the `build` package (pip install -e '.[test]') is needed")
    import importlib.util
    import subprocess
    import sys
    # --no-isolation builds with this interpreter's setuptools; without one, build fetches it as pip would
    isolation = ["--no-isolation"] if importlib.util.find_spec("setuptools") else []
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", *isolation, "--outdir",
                           str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheel = next(tmp_path.glob("specrep-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert yamls
    for rel in yamls:
        assert f"specrep_cli/conf/{rel}" in names, rel
    assert "specrep_cli/conf/__init__.py" in names

    # A plain (non-editable) install of that wheel composes its configs from anywhere. The wheel alone
    # (--no-deps) goes into a folder of its own, first on this interpreter's path: the dependencies are
    # this interpreter's wherever they live (a venv, conda, the main Python, ~/.local), and the checkout's
    # editable install, which comes after PYTHONPATH, is not the copy imported.
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile",
                           "--quiet", "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # only that folder on PYTHONPATH: a worktree's tests run with the checkout on it, which would come first
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import specrep_cli, specrep_cli.conf, specrep_cli.cli\n"
                            "for m in (specrep_cli, specrep_cli.conf, specrep_cli.cli): print(m.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert where.returncode == 0, where.stderr
    files = [Path(f).resolve() for f in where.stdout.splitlines()]
    assert len(files) == 3 and all(f.is_relative_to(site.resolve()) for f in files), where.stdout   # the wheel's copy
    proc = subprocess.run([str(site / "bin" / "specrep"), "train", "objective=simclr", "--cfg", "job"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "temperature: 0.5" in proc.stdout
