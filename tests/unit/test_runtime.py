"""trainer.threads (and eval's threads): the physical cores this process may use by default, an int
as given, applied to torch and exported to child processes; a busy machine gets one line naming the fix."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from specrep_cli import config, runtime
from specrep_cli.data import files
from specrep_cli.errors import ConfigError


@pytest.fixture
def restore_threads(monkeypatch):
    """use_threads changes the process's torch threads and environment: put them back."""
    before = torch.get_num_threads()
    for name in runtime.THREAD_ENV:
        monkeypatch.setenv(name, os.environ.get(name, ""))
    yield
    torch.set_num_threads(before)


def _topology(root: Path, siblings: dict[int, str]) -> Path:
    for cpu, text in siblings.items():
        (root / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (root / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(text + "\n")
    return root


def test_hyper_threads_of_one_core_count_once(tmp_path: Path):
    sysfs = _topology(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert runtime.physical_cores({0, 1, 2, 3}, sysfs) == 2
    assert runtime.physical_cores({0, 2}, sysfs) == 1          # both threads of one core
    assert runtime.physical_cores({0, 1, 5}, sysfs) == 3       # cpu5 has no topology: the CPU count


def test_auto_is_the_environment_or_the_cores_shared_among_the_ranks(monkeypatch):
    monkeypatch.setattr(runtime, "physical_cores", lambda: 8)
    monkeypatch.setattr(runtime, "ENV_THREADS", "")
    assert runtime.resolve_threads("auto") == 8
    assert runtime.resolve_threads("auto", processes=4) == 2
    assert runtime.resolve_threads("auto", processes=16) == 1
    assert runtime.resolve_threads(3, processes=4) == 3        # an int is per process, as given
    monkeypatch.setattr(runtime, "ENV_THREADS", "1")           # OMP_NUM_THREADS=1 specrep train
    assert runtime.resolve_threads("auto") == 1


def test_busy_cores_name_the_load_and_the_fix():
    line = runtime.busy_cores(2, load=4.0, cpus=2, machine=2)
    assert "load average 4.0" in line and "trainer.threads=1" in line
    assert runtime.busy_cores(2, load=1.4, cpus=2, machine=2) is None    # a core to spare
    assert runtime.busy_cores(1, load=9.0, cpus=2, machine=2) is None    # one thread already
    assert runtime.busy_cores(2, load=40.0, cpus=2, machine=64) is None  # 2 of 64 CPUs: their share is 1.25
    assert runtime.busy_cores(2, load=63.0, cpus=2, machine=64) is not None
    assert "threads=1" in runtime.busy_cores(4, load=8.0, cpus=4, machine=4, key="threads")


def test_use_threads_sets_torch_and_the_children_environment(restore_threads, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "busy_cores", lambda threads, key, auto: f"busy, {key}=1 runs faster here")
    with caplog.at_level(logging.INFO, logger="specrep"):
        assert runtime.use_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    assert "CPU threads: 1" in caplog.text
    assert any(r.levelno == logging.WARNING and "trainer.threads=1" in r.message for r in caplog.records)


def test_the_keys_are_typed_and_checked():
    assert config.compose_config("train", []).trainer.threads == "auto"
    assert config.compose_config("train", ["trainer.threads=2"]).trainer.threads == 2
    assert config.compose_config("eval", ["threads=1"]).threads == 1
    for bad in ("trainer.threads=0", "trainer.threads=many"):
        with pytest.raises(ConfigError, match="trainer.threads must be auto"):
            config.compose_config("train", [bad])


def test_image_decoding_uses_the_process_threads(restore_threads, monkeypatch, tmp_path: Path):
    from PIL import Image
    paths = []
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    pools = []
    real = files.ThreadPoolExecutor

    def recording(max_workers):
        pools.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(files, "ThreadPoolExecutor", recording)
    torch.set_num_threads(1)
    assert files.decode_images(paths, 8).shape == (3, 3, 8, 8)
    assert pools == [1]


def test_streamed_decoders_compute_on_one_thread(tmp_path: Path):
    """ImageFiles' DataLoader workers: one torch thread each, beside the training process's threads."""
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")

    class Probe(files.ImageFiles):
        def __getitem__(self, i):
            return torch.tensor(torch.get_num_threads())

    loader = torch.utils.data.DataLoader(Probe([tmp_path / "a.png"] * 2, 8, 1), batch_size=2, num_workers=1)
    assert next(iter(loader)).tolist() == [1, 1]


def test_auto_takes_one_thread_on_busy_cores_and_an_int_is_kept(restore_threads, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "ENV_THREADS", "")
    monkeypatch.setattr(runtime, "physical_cores", lambda: 2)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    monkeypatch.setattr(runtime, "allowed_cpus", lambda: {0, 1})
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    with caplog.at_level(logging.INFO, logger="specrep"):
        assert runtime.use_threads("auto") == 1
    assert "trainer.threads=auto takes 1 thread" in caplog.text and "trainer.threads=2 uses 2" in caplog.text
    assert runtime.use_threads(2) == 2   # asked for: kept, with the line that 1 runs faster
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert runtime.use_threads("auto") == 2   # quiet: the physical cores


def test_auto_precision_is_fp32_where_aten_runs_avx2_kernels():
    """precision=auto picks bf16 only where ATen runs its AVX-512 kernels: under ATEN_CPU_CAPABILITY=avx2
    (the slower kind of CPU, reproduced) it is fp32, whatever the CPU's flags say."""
    import subprocess
    import sys
    code = ("import torch; from specrep_cli.runtime import resolve_bf16; "
            "print(resolve_bf16('auto', torch.device('cpu')), resolve_bf16('bf16', torch.device('cpu')))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
