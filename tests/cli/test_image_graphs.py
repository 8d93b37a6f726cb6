"""Graphs whose nodes are images, through the CLI: a small shapes_world trained by a convnet on its pixels
and scored against the exact eigenvectors (train and `specrep eval`), a file graph with a nodes.csv of
image files, and its bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from PIL import Image

SMALL = ["encoder.width=4", "encoder.projector_hidden_dim=32", "trainer.epochs=2", "trainer.batch_size=128",
         "dataset.pairs_per_epoch=1024", "eval.random_init=false", "eval.every_n_epochs=1",
         "eval.probe.fast.steps=10", "trainer.device=cpu", "trainer.precision=fp32"]
WORLD = ["dataset=shapes_world", "dataset.world_classes=2", "dataset.world_grid=1", "dataset.image_size=16",
         "encoder.projector_out_dim=2", *SMALL]   # 2 shapes x 1 cell x 32 nuisance states; top 2 then 0


def test_a_convnet_on_shapes_world_is_scored_against_the_truth_and_eval_agrees(tmp_path: Path):
    run = tmp_path / "run"
    proc = run_cli("train", *WORLD, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run / "report.json").read_text())
    graph = report["graph"]
    assert graph["nodes"] == 64 and graph["d"] == 2
    assert graph["true_spectrum"] == pytest.approx([1.0, 0.25]) and graph["eigengap"] == pytest.approx(0.25)
    assert 0 <= graph["subspace_alignment"] <= 1 and "ritz_eigenspaces" in graph
    assert report["run"]["encoder"] == "convnet" and "16x16 images" in (run / "train.log").read_text()
    embeddings = torch.load(run / "embeddings.pt", weights_only=True)
    assert embeddings["phi"].shape == (64, 2) and len(embeddings["nodes"]) == 64
    again = tmp_path / "eval"
    proc = run_cli("eval", f"checkpoint={run / 'checkpoints' / 'last.pt'}", "precision=fp32", f"hydra.run.dir={again}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    scored = json.loads((again / "report.json").read_text())["graph"]
    assert abs(scored["subspace_alignment"] - graph["subspace_alignment"]) < 1e-5


def image_graph(folder: Path, n: int = 12) -> None:
    """A cycle of n nodes, each an image file of its own colour, labelled by half."""
    (folder / "img").mkdir()
    for i in range(n):
        Image.new("RGB", (20, 20), (20 * i, 255 - 20 * i, (97 * i) % 256)).save(folder / "img" / f"n{i}.png")
    (folder / "edges.csv").write_text("".join(f"n{i},n{(i + 1) % n}\n" for i in range(n)))
    (folder / "nodes.csv").write_text("node,path\n" + "".join(f"n{i},img/n{i}.png\n" for i in range(n)))
    (folder / "labels.csv").write_text("".join(f"n{i},{'ab'[i * 2 // n]}\n" for i in range(n)))


def test_a_file_graph_with_node_images_trains_a_convnet_and_bad_images_are_one_line(tmp_path: Path):
    image_graph(tmp_path)
    args = ["dataset=graph", "dataset.source=file", f"dataset.path={tmp_path / 'edges.csv'}",
            f"dataset.images={tmp_path / 'nodes.csv'}", f"dataset.labels_path={tmp_path / 'labels.csv'}",
            "dataset.image_size=16", "encoder=convnet", "encoder.projector_out_dim=3", *SMALL]
    run = tmp_path / "run"
    proc = run_cli("train", *args, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["graph"]["nodes"] == 12 and report["graph"]["d"] == 3 and "top1" in report["linear_probe"]
    (tmp_path / "img" / "n5.png").unlink()
    proc = run_cli("train", *args, f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert proc.returncode != 0 and "line 7: no image file" in proc.stderr and "n5.png" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad" / "report.json").exists()
