"""Helpers several test files share: fake runs and reports, tiny image folders, a run dir's snapshot,
and the README's export snippets run as written. Plain functions (the fixtures are in conftest.py)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
import yaml
from conftest import REPO
from PIL import Image

from specrep_cli import config
from specrep_cli.checkpoint import load_checkpoint, trained
from specrep_cli.config import from_dict
from specrep_cli.export import trained_backbone


def readme_load(name: str, export_dir: Path) -> torch.nn.Module:
    """Run the README's code block marked `<!-- tests/cli/test_export.py: name -->` on export_dir; its model."""
    text = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- tests/cli/test_export.py: {name} -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) == 5, block
    namespace: dict = {}
    exec(block.replace("run/export", str(export_dir)), namespace)
    return namespace["model"].eval()


def specrep_features(checkpoint: Path, x: torch.Tensor) -> torch.Tensor:
    """h = phi's backbone on x, phi rebuilt from the checkpoint as `specrep eval` does."""
    backbone, _ = trained_backbone(trained(load_checkpoint(checkpoint)), checkpoint)
    with torch.no_grad():
        return backbone(x)


def normalised_images(meta: dict, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, meta["in_channels"], meta["image_size"], meta["image_size"], generator=g)
    return (x - torch.tensor(meta["mean"]).view(1, -1, 1, 1)) / torch.tensor(meta["std"]).view(1, -1, 1, 1)


def snapshot(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def fake_report(probe: float, knn: float, seed: int = 0, rank: float = 3.0) -> dict:
    return {"run": {"objective": "spectral", "encoder": "convnet", "dataset": "shapes", "seed": seed},
            "linear_probe": {"top1": probe, "top5": 99.0, "protocol": "fast"},
            "knn": {"top1": knn, "k": 200, "temperature": 0.07},
            "spectrum": {side: {"eigenvalues": [4.0, 1.0, 1.0, 0.0], "effective_rank": rank,
                                "top_variance_share": {"1": 4 / 6, "10": 1.0, "100": 1.0},
                                "orthonormality_error": 0.5} for side in ("representation", "projection")},
            "alignment": {"representation": 0.3, "projection": 0.2},
            "uniformity": {"representation": -1.5, "projection": -2.5},
            "history": [{"epoch": 1, "knn_top1": 20.0, "effective_rank_representation": 3.0,
                         "effective_rank_projection": 2.0, "projection_dim": 4},
                        {"epoch": 2, "knn_top1": 30.0, "effective_rank_representation": 3.5,
                         "effective_rank_projection": 2.5, "projection_dim": 4}],
            "timing": {"train_seconds": 10.0 + seed, "train_images_per_second": 1000.0, "eval_seconds": 1.0}}


def fake_run(run_dir: Path, config: dict, report: dict) -> Path:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={config['seed']}"]))
    (run_dir / "report.json").write_text(json.dumps(report))
    return run_dir


def config_of(objective: str, seed: int, width: int = 8) -> dict:
    objective_cfg = {"name": objective, **({"temperature": 0.5} if objective == "simclr" else {"mu": 4.0})}
    return {"seed": seed, "resume": None, "objective": objective_cfg,
            "encoder": {"name": "convnet", "width": width}, "trainer": {"epochs": 1, "batch_size": 64}}


def folder_cfg(root: Path, cache: Path, **kw):
    return from_dict(config.ImageFolderConfig, {"root": str(root), "cache_dir": str(cache), "image_size": 16, **kw})


def make_folder(root: Path) -> Path:
    """Two classes; RGB, grayscale, RGBA and odd-sized images."""
    for split in ("train", "test"):
        for c, value in (("cat", 40), ("dog", 200)):
            d = root / split / c
            d.mkdir(parents=True)
            Image.new("RGB", (31, 17), (value, 0, 0)).save(d / "rgb.png")
            Image.new("L", (9, 40), value).save(d / "gray.jpg")
            Image.new("RGBA", (16, 16), (0, value, 0, 128)).save(d / "rgba.png")
    return root
