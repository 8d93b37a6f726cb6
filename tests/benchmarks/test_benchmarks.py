"""The benchmark scripts still run against the current code (smoke runs: tiny sizes, figures ignored)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import CIFAR, REPO, TINY

BENCH = REPO / "benchmarks"
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason=f"CIFAR-10 JPEG copy not found at {CIFAR}")


def run(script: str, *args: str, tmp_path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPECREP_CACHE": str(tmp_path / "cache"), "SPECREP_CIFAR_JPEG": str(CIFAR), **(env or {})}
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH, env=env,
                          capture_output=True, text=True, timeout=600)


@needs_cifar
@pytest.mark.parametrize("script, args", [
    ("augment.py", ["--images", "512", "--workers", "1"]),
    ("train_step.py", ["--encoder", "convnet", "--batch-size", "64", "--steps", "1", "--warmup", "0"]),
])
def test_cifar_benchmarks_run(script, args, tmp_path):
    proc = run(script, *args, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ratio" in proc.stdout


def test_loss_scaling_benchmark_runs(tmp_path):
    proc = run("loss_scaling.py", "--quick", "--repeats", "1", "--dim", "16", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(name in proc.stdout for name in ("siglip", "spectral_clip", "info_nce"))
    only = run("loss_scaling.py", "--sizes", "32", "64", "--only", "clip", "spectral_clip", "--repeats", "1",
               "--dim", "8", tmp_path=tmp_path)
    assert only.returncode == 0 and "spectral_clip" in only.stdout and "info_nce" not in only.stdout, only.stdout


def test_the_graph_benchmarks_run(tmp_path):
    truth = run("spectral_truth.py", "--only", "spectral", "--graphs", "sbm", "trainer.epochs=1", tmp_path=tmp_path)
    assert truth.returncode == 0 and "| spectral | sbm | 0." in truth.stdout, truth.stdout + truth.stderr
    plain = run("graph_defaults.py", "--only", "spectral", "--graphs", "ring 400 (20 hops)", tmp_path=tmp_path)
    assert plain.returncode == 0 and "| spectral | ring 400 (20 hops) | 1.000 |" in plain.stdout, plain.stdout


def test_the_image_graph_and_bipartite_benchmarks_run(tmp_path):
    world = run("shapes_world.py", "--only", "nested spectral", "trainer.epochs=1", "dataset.pairs_per_epoch=1024",
                "dataset.world_classes=2", "dataset.world_grid=1", "encoder.projector_out_dim=2", "encoder.width=4",
                tmp_path=tmp_path)
    assert world.returncode == 0 and "| nested spectral | 0." in world.stdout, world.stdout + world.stderr
    two = run("bipartite_truth.py", "--only", "spectral_clip", "--graphs", "seed 1", "trainer.epochs=4",
              tmp_path=tmp_path)   # an SBM: networkx (the real graph) is not a dependency
    assert two.returncode == 0 and "| spectral_clip | bipartite sbm seed 1 (3 x 300 | 3 x 100) | 0." in two.stdout, \
        two.stdout + two.stderr


def test_two_tower_step_benchmark_runs(tmp_path):
    proc = run("two_tower_step.py", "--batch", "64", "--ranks", "1", "--objectives", "spectral_clip", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| spectral_clip |" in proc.stdout and "failed" not in proc.stdout


def test_default_runs_benchmark_runs(tmp_path):
    # clip alone: its image-text columns are default_runs.py's own; a spectral run goes through the
    # same run_table in the real_data.py smoke run below
    proc = run("default_runs.py", "--objectives", "clip", "--cpu", "avx2", "--", *TINY,
               tmp_path=tmp_path)
    assert proc.returncode == 0 and "failed" not in proc.stdout, proc.stdout + proc.stderr
    assert "avx2" in proc.stdout


def two_class_folder(root):
    """An image folder of 2 classes (dark, bright) x 40 train / 10 test 32-px PNGs: root/{train,test}/."""
    from PIL import Image
    for split in ("train", "test"):
        for c, colour in (("dark", (30, 30, 30)), ("bright", (220, 220, 220))):
            (root / split / c).mkdir(parents=True)
            for i in range(40 if split == "train" else 10):
                Image.new("RGB", (32, 32), tuple(v + i for v in colour)).save(root / split / c / f"{i}.png")
    return root


def test_real_data_benchmark_runs(tmp_path):
    # on a tiny folder in CIFAR-10's place: decoding the real 60,000 images into a fresh cache would
    # take longer than the two runs
    env = {"SPECREP_CIFAR_JPEG": str(two_class_folder(tmp_path / "folder"))}
    proc = run("real_data.py", "--epochs", "1", "--objectives", "spectral", "simclr", "--",
               "encoder.width=8", "encoder.projector_hidden_dim=64", "encoder.projector_out_dim=32",
               "trainer.batch_size=32", "eval.probe.fast.steps=20", "eval.every_n_epochs=0", tmp_path=tmp_path, env=env)
    assert proc.returncode == 0 and "failed" not in proc.stdout, proc.stdout + proc.stderr
    assert "spectral - simclr:" in proc.stdout


def test_probe_benchmark_runs(tmp_path):
    proc = run("probe.py", "--synthetic", "--synthetic-train", "5000", "--standard-epochs", "2", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the fault run mounts a tmpfs, which needs root "
                                            "(tests/cli/test_disk_full.py patches the writes instead)")
def test_disk_full_fault_run_on_a_tmpfs(tmp_path):
    proc = run("disk_full.py", "--cases", "cache", "--quick", tmp_path=tmp_path)
    assert proc.returncode == 0 and "FAIL" not in proc.stdout, proc.stdout + proc.stderr


def test_decode_benchmark_runs(tmp_path):
    proc = run("decode.py", "--images", "16", "--repeats", "1", "--sizes", "32", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "as 384 x 288 photos" in proc.stdout and "speed-up" in proc.stdout


def test_device_check_runs_its_cpu_fallback(tmp_path):
    """benchmarks/device_check.sh --device cpu --smoke: every step of the GPU check, tiny, on the CPU
    (the CUDA tests skip; gpu_epoch.py runs one step of each objective on random data, compile off:
    inductor on a CPU takes minutes), and the summary naming each step's exit status."""
    two_class_folder(tmp_path / "folder")
    # PYTHON: the script runs this interpreter, not the python3 on PATH (another one unless a venv is activated)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SPECREP_CACHE": str(tmp_path / "cache"),
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(BENCH / "device_check.sh"), "--device", "cpu", "--smoke",
                           "--data", str(tmp_path / "folder")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fitted = re.search(r"== spectral_cifar10: (\d+) epochs fit in \d+ s", proc.stdout)   # from gpu_epoch's figure
    assert fitted, proc.stdout
    assert "device check summary" in proc.stdout
    assert f"spectral_cifar10, {fitted[1]} epochs: probe top-1" in proc.stdout
    for step in ("cuda_tests", "gpu_epoch", "spectral_cifar10"):
        assert f"step {step}: exit 0" in proc.stdout
    assert "gpu_epoch: data: random uint8" in proc.stdout
    for objective in ("simclr", "spectral"):
        assert f"gpu_epoch: verdict, {objective}: " in proc.stdout
        assert f"gpu_epoch: measured, {objective}, compile off: " in proc.stdout
    # what the device tool brings back from $OUT: at most 8 files, 16 MiB each (the checkpoints stay behind)
    back = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert back == ["cuda_tests.log", "gpu_epoch.log", "spectral_cifar10.log", "spectral_cifar10_loss.png",
                    "spectral_cifar10_report.json", "spectral_cifar10_report.md", "spectral_cifar10_spectrum.png",
                    "summary.txt"], back
    assert "step spectral_cifar10: exit 0" in (tmp_path / "out" / "summary.txt").read_text()


def test_cifar_pack_gives_back_the_same_files(tmp_path):
    """How CIFAR-10 travels to a lent GPU: pack, then unpack, gives the same paths and bytes."""
    two_class_folder(tmp_path / "folder")
    odd = tmp_path / "folder" / "train" / "chat noir" / "épreuve 1.jpg"
    odd.parent.mkdir(parents=True)
    odd.write_bytes(b"\x00\xffnot a jpeg")
    script = str(BENCH / "cifar_pack.py")
    for args in (["pack", tmp_path / "folder", tmp_path / "p.npz"], ["unpack", tmp_path / "p.npz", tmp_path / "back"]):
        proc = subprocess.run([sys.executable, script, *map(str, args)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert files(tmp_path / "back") == files(tmp_path / "folder") and len(files(tmp_path / "back")) > 2
