"""What the benchmark scripts share: the machine's name, the real CIFAR-10 images, a run built from
the train config by the same build_run that `specrep train` uses, and a whole run through its train()
(train_report)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from specrep_cli import config
from specrep_cli.config import ImageFolderConfig
from specrep_cli.data import load_dataset
from specrep_cli.data.splits import ImageData
from specrep_cli.errors import TrainingError
from specrep_cli.train.loop import train
from specrep_cli.train.setup import Run, RunDirs, build_run

CIFAR_JPEG = Path(os.environ.get("SPECREP_CIFAR_JPEG",
                                 Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def cifar10_train(subset: int | None = None, device: torch.device = torch.device("cpu")) -> ImageData | None:
    """The real CIFAR-10 train split (JPEG ImageFolder at CIFAR_JPEG, or $SPECREP_CIFAR_JPEG) as ImageData
    on `device` (when it fits), decoded once and cached; None with the reason printed when it is absent."""
    if not CIFAR_JPEG.is_dir():
        print(f"CIFAR-10 JPEG folder not found at {CIFAR_JPEG} (set SPECREP_CIFAR_JPEG)")
        return None
    return load_dataset(ImageFolderConfig(root=str(CIFAR_JPEG), subset=subset, image_size=32), device)


def compose_train(overrides: list[str]) -> config.TrainConfig:
    """The `specrep train` config with these overrides, typed and validated as the CLI validates it."""
    return config.compose_config("train", overrides)


def train_report(cfg: config.TrainConfig, run_dir: Path) -> tuple[dict | str, float]:
    """(report.json of `specrep train` with the typed config `cfg` in run_dir, or the first clause of
    why it stopped: a diverged run is a finding too; seconds of train()). The run's own report table
    is not printed: the scripts print theirs."""
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            train(cfg, run_dir)
    except TrainingError as err:
        return str(err).split(";")[0], time.perf_counter() - t0
    return json.loads((Path(run_dir) / "report.json").read_text()), time.perf_counter() - t0


def build(overrides: list[str], data: ImageData | None = None) -> Run:
    """The run `specrep train <overrides>` would build (build_run), on `data` when given, in a fresh
    temporary job dir (nothing is written there unless a checkpoint or metrics are)."""
    cfg = compose_train(overrides)
    return build_run(cfg, RunDirs.of(cfg, Path(tempfile.mkdtemp(prefix="specrep-benchmark-"))), data=data)


# ------------------------------------------------------------------- the graph benchmarks' tables
def graph_steps(cfg: config.TrainConfig) -> int:
    """The optimizer steps of a graph run: epochs x (pairs per epoch // batch size)."""
    return cfg.trainer.epochs * ((cfg.dataset.pairs_per_epoch or 0) // cfg.trainer.batch_size)


def alignments(groups: list[dict]) -> str:
    """Each eigenspace's alignment, in order: "1.00 / 0.97 / ..."."""
    return " / ".join(f"{s['alignment']:.2f}" for s in groups)


def print_header(columns: list[str]) -> None:
    """The hardware line, then a markdown table's header for `columns`."""
    print(f"hardware: {hardware(torch.device('cpu'))}; torch {torch.__version__}")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
