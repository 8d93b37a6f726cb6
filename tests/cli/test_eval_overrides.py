"""`specrep eval` with dataset overrides, on tiny real runs: dataset keys alone change the checkpoint's
dataset (recorded as dataset=checkpoint, which reruns the same), a graph checkpoint is scored on
another graph of as many nodes (dataset=graph, a ring or an edge list), and what cannot work is one
line and no run dir: another node count (both counts named), a mistyped key, an encoder or optimizer
set, dataset keys without one checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY, assert_one_line_error, run_cli, train_into

EVAL = ["eval.random_init=false", "eval.probe.fast.steps=10", "eval.alignment_images=0"]
GRAPH = ["dataset=graph", "dataset.source=ring", "dataset.num_nodes=60", "dataset.hops=2", "encoder.dim=4",
         "trainer.epochs=1", "trainer.batch_size=64", "dataset.pairs_per_epoch=128", "trainer.device=cpu",
         "eval.random_init=false", "eval.every_n_epochs=0", "eval.probe.fast.steps=10"]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    return train_into(tmp_path_factory.mktemp("images"), *TINY, "eval.random_init=false", "eval.every_n_epochs=0")


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory) -> Path:
    return train_into(tmp_path_factory.mktemp("graph"), *GRAPH)


def evaluate(run: Path, out: Path, *overrides: str):
    return run_cli("eval", f"checkpoint={run}", *overrides, f"hydra.run.dir={out}", cwd=out.parent)


def composed(out: Path) -> dict:
    return yaml.safe_load((out / ".hydra" / "config.yaml").read_text())


def test_a_dataset_key_alone_changes_the_checkpoints_dataset_and_the_recorded_command_reruns(image_run, tmp_path):
    out = tmp_path / "eval"
    proc = evaluate(image_run, out, "dataset.num_test=100", *EVAL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dataset = composed(out)["dataset"]
    assert dataset["num_test"] == 100 and dataset["num_train"] == 256   # the checkpoint's, not shapes' 10000
    assert "dataset=checkpoint" in yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())
    again = tmp_path / "again"   # the recorded command: dataset=checkpoint chosen by hand
    proc = evaluate(image_run, again, "dataset=checkpoint", "dataset.num_test=100", *EVAL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert composed(again)["dataset"] == dataset
    first, second = (json.loads((d / "report.json").read_text())["linear_probe"]["top1"] for d in (out, again))
    assert first == second


@pytest.mark.parametrize("overrides, needles", [
    (["dataset.num_tst=100"], ["Key 'num_tst' not in 'ShapesConfig'", "num_test"]),
    (["encoder=mlp"], ["specrep eval takes no encoder"]),
    (["encoder.width=4"], ["specrep eval takes no encoder"]),
    (["optim.lr=0.1"], ["specrep eval takes no optim (nothing is trained)"]),
], ids=["mistyped key", "encoder", "encoder key", "optim key"])
def test_what_eval_cannot_take_is_one_line_and_no_run_dir(image_run, tmp_path, overrides, needles):
    out = tmp_path / "eval"
    assert_one_line_error(evaluate(image_run, out, *overrides), *needles)
    assert not out.exists()


def test_dataset_keys_need_one_checkpoint(image_run, tmp_path):
    proc = run_cli("eval", "dataset.num_test=100", cwd=tmp_path)
    assert_one_line_error(proc, "give one checkpoint=PATH")
    proc = run_cli("eval", "--multirun", f"checkpoint={image_run},{image_run}", "dataset.num_test=100", cwd=tmp_path)
    assert_one_line_error(proc, "to sweep over checkpoints, choose the dataset too")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".specrep-cache") == []


def ring_edges(path: Path, n: int) -> Path:
    """A ring of n nodes with a chord every 10 nodes, as an edge list with a header."""
    chords = [f"{i},{(i + 5) % n}" for i in range(0, n, 10)]
    lines = ["source,target"] + [f"{i},{(i + 1) % n}" for i in range(n)] + chords
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["ring", "file"])
def test_a_graph_checkpoint_is_scored_on_another_graph_of_as_many_nodes(graph_run, tmp_path, kind):
    other = {"ring": ["dataset.source=ring", "dataset.num_nodes=60", "dataset.hops=5"],
             "file": ["dataset.source=file", f"dataset.path={ring_edges(tmp_path / 'edges.csv', 60)}"]}[kind]
    out = tmp_path / "eval"
    proc = evaluate(graph_run, out, "dataset=graph", *other, *EVAL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["graph"]["nodes"] == 60 and report["run"]["dataset"] == "graph"
    assert composed(out)["encoder"] is None and composed(out)["optim"] is None   # the checkpoint's encoder
    assert report["graph"]["edges"] == {"ring": 60 * 5, "file": 60 + 6}[kind]   # the other graph's, not 60 * 2


def test_a_graph_key_alone_keeps_the_checkpoints_graph(graph_run, tmp_path):
    out = tmp_path / "eval"
    proc = evaluate(graph_run, out, "dataset.hops=4", *EVAL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dataset = composed(out)["dataset"]
    assert (dataset["source"], dataset["num_nodes"], dataset["hops"]) == ("ring", 60, 4)


def test_a_graph_of_another_size_names_both_counts(graph_run, tmp_path):
    proc = evaluate(graph_run, tmp_path / "eval", "dataset=graph", "dataset.source=ring", "dataset.num_nodes=80",
                    "dataset.hops=2", *EVAL)
    assert_one_line_error(proc, "dataset graph has 80 nodes", "encoder=embedding has one row per node",
                          "evaluate it on a graph of 60 nodes")
