"""Features once: one evaluation encodes each split exactly once per tower, and every metric (probe,
kNN, spectra, zero-shot, retrieval, a graph's truth and embeddings.pt) reads those features. Counted
with forward hooks on the towers of a run as build_run makes it (untrained: the count is what matters)."""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from conftest import TINY
from torch import nn

from specrep_cli import config
from specrep_cli.eval.suite import Evaluation, evaluate_run
from specrep_cli.eval.towers import Towers
from specrep_cli.train.setup import RunDirs, build_run

BATCH = 100   # eval.batch_size: the splits take several batches
RITZ = 64     # eval.ritz_pairs: the pairs Rayleigh-Ritz encodes


class Counted:
    """The batches and rows that go through a module's forward."""

    def __init__(self, module: nn.Module):
        self.calls = self.rows = 0
        module.register_forward_hook(self._count)

    def _count(self, module, inputs, output) -> None:
        self.calls += 1
        self.rows += inputs[0].shape[0]

    def expect(self, *sizes: int) -> None:
        """Each of `sizes` (rows encoded together, e.g. a split) went through once, BATCH at a time."""
        assert (self.rows, self.calls) == (sum(sizes), sum(math.ceil(n / BATCH) for n in sizes))


def evaluate(tmp_path, overrides: list[str]):
    """evaluate_run on the towers of a freshly built run, counting phi's, its baseline's and the text
    tower's forward passes; (report, run, phi, baseline, text)."""
    cfg = config.compose_config("train", [*overrides, f"eval.batch_size={BATCH}", "eval.random_init=true",
                                          f"eval.ritz_pairs={RITZ}"])
    run = build_run(cfg, RunDirs.of(cfg, tmp_path))
    towers = Towers.from_run(cfg, run.method, run.data.in_channels, run.input, run.tokenizer, run.compute.device)
    phi = Counted(towers.encoder.backbone)
    text = Counted(towers.text.encoder.backbone) if towers.text is not None else None
    fresh: list[nn.Module] = []

    def counted_fresh() -> nn.Module:
        fresh.append(towers.fresh())
        fresh.append(Counted(fresh[-1].backbone))
        return fresh[-2]

    evaluation = Evaluation(towers=replace(towers, fresh=counted_fresh), data=run.data, cfg=cfg.eval,
                            reader=run.reader, seed=cfg.seed, run_dir=tmp_path, views=cfg.augmentation)
    report = evaluate_run(evaluation, {"run": {}})
    assert len(fresh) == 2, "the baseline encoder is made once"
    return report, run, phi, fresh[1], text


def test_an_image_run_encodes_train_and_test_once_and_its_baseline_once(tmp_path):
    report, run, phi, baseline, _ = evaluate(tmp_path, [*TINY, "eval.probe.protocol=fast", "eval.alignment_images=10"])
    n_train, n_test = run.data.train_images.shape[0], run.data.test_images.shape[0]
    assert (n_train, n_test) == (256, 128)
    # the splits once; the two augmented views of 10 test images; Rayleigh-Ritz's two views of RITZ train images
    phi.expect(n_train, n_test, 10, 10, RITZ, RITZ)
    baseline.expect(n_train, n_test)
    assert {"linear_probe", "knn", "spectrum", "alignment", "random_init"} <= set(report)


def test_a_two_tower_run_encodes_the_test_images_once_and_each_prompt_and_caption_once(tmp_path):
    report, run, phi, baseline, text = evaluate(tmp_path, [*TINY, "objective=clip", "eval.alignment_images=0"])
    data, cfg = run.data, run.cfg.eval
    # zero-shot and retrieval read the test z; Rayleigh-Ritz's cross form one view of RITZ train images
    phi.expect(data.train_images.shape[0], data.test_images.shape[0], RITZ)
    baseline.expect(data.train_images.shape[0], data.test_images.shape[0])
    text.expect(len(data.classes) * len(cfg.zero_shot_templates), len(data.test_captions.texts), RITZ)
    assert "zero_shot" in report and "retrieval" in report


def test_a_graph_run_encodes_every_node_once_and_solves_the_truth_once(tmp_path, monkeypatch):
    from specrep_cli.eval import eigensolvers
    solved, solve = [], eigensolvers.top_eigenpairs
    monkeypatch.setattr(eigensolvers, "top_eigenpairs", lambda *a, **k: solved.append(a[1]) or solve(*a, **k))
    report, run, phi, baseline, _ = evaluate(tmp_path, ["dataset=graph", "dataset.source=ring", "dataset.num_nodes=200",
                                                        "dataset.hops=5", "encoder.dim=4", "trainer.batch_size=64"])
    phi.expect(200)   # the probe's splits, the spectra, the truth and embeddings.pt: rows of one pass
    baseline.expect(200)
    assert solved == [5]   # one eigensolve (d + 1 pairs) for phi's section and the Ritz-ordered functions
    assert "ritz_eigenspaces" in report["graph"]
    embeddings = torch.load(tmp_path / "embeddings.pt", weights_only=True)
    assert embeddings["phi"].shape == (200, 4) and "graph" in report and "linear_probe" in report
