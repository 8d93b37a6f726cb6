"""Model selection never reads the test split: the monitor's kNN (which picks best.pt) scores a fixed
validation part of the train split against a disjoint memory bank, and the final kNN's validation
figure (what a search on knn.top1 reads) comes from the train split alone."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from specrep_cli.config import EvalConfig, KNNConfig
from specrep_cli.data.splits import ImageData
from specrep_cli.eval.features import Features, Split
from specrep_cli.eval.probes import knn_top1, probe_split
from specrep_cli.eval.suite import Evaluation, monitor, monitor_split, probe_and_knn


class TestSplit:
    """A test split that must not be read: any use of it fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the test split was read ({name})")

    def __getitem__(self, index):
        raise AssertionError("the test split was read")


class Reader:
    """A FeatureReader whose features are the rows themselves; it records every row it encodes."""

    def __init__(self):
        self.compute = SimpleNamespace(device=torch.device("cpu"))
        self.read: list[torch.Tensor] = []

    def features(self, encoder, images, order=None, **_):
        order = torch.arange(images.shape[0]) if order is None else order
        self.read.append(order)
        return images[order], images[order] * 2


def _data(n: int = 300, classes: int = 3) -> ImageData:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, classes, (n,), generator=g)
    rows = torch.nn.functional.one_hot(labels, classes).float() + 0.8 * torch.randn(n, classes, generator=g)
    return ImageData(rows, labels, TestSplit(), TestSplit(), [str(c) for c in range(classes)])


@pytest.mark.parametrize("n, monitor_images", [(10000, 2000), (300, 2000), (256, 40), (3, 1)])
def test_the_validation_part_is_disjoint_from_the_memory_bank_and_fixed(n, monitor_images):
    bank, val = monitor_split(n, monitor_images)
    assert val.numel() == min(max(1, monitor_images // 2), n // 3) and 0 < bank.numel() <= monitor_images
    assert not set(bank.tolist()) & set(val.tolist())
    assert 0 <= min(bank.min(), val.min()) and max(bank.max(), val.max()) < n   # rows of the train split
    again = monitor_split(n, monitor_images)
    assert torch.equal(again[0], bank) and torch.equal(again[1], val)   # the same at every epoch


def test_without_labels_every_monitored_image_is_in_the_bank():
    bank, val = monitor_split(500, 200, labelled=False)
    assert val.numel() == 0 and bank.numel() == 200


def test_the_monitor_scores_validation_images_of_the_train_split_never_the_test_split():
    data, reader = _data(), Reader()
    cfg = EvalConfig(monitor_images=120, knn=KNNConfig(k=20))
    watched = monitor(torch.nn.Identity(), data, cfg, reader)   # a read of the test split fails here
    bank, val = monitor_split(300, 120)
    assert [r.tolist() for r in reader.read] == [bank.tolist(), val.tolist()]
    expected = knn_top1(data.train_images[bank], data.train_labels[bank], data.train_images[val],
                        data.train_labels[val], 3, cfg.knn)
    assert watched["knn_top1"] == expected and watched["knn_top1"] > 50
    assert (watched["validation_images"], watched["memory_bank_images"]) == (60, 120)


def test_the_final_knns_validation_figure_reads_the_train_split_alone(tmp_path: Path):
    data, reader = _data(), Reader()
    cfg = EvalConfig(knn=KNNConfig(k=20))
    evaluation = Evaluation(towers=None, data=data, cfg=cfg, reader=reader, seed=3, run_dir=tmp_path)
    train = Split(data.train_images, data.train_images)
    data.test_labels = torch.zeros(50, dtype=torch.long)
    figures = {probe_and_knn(evaluation, None, Features(train, Split(rows, rows)))["knn"]["val_top1"]
               for rows in (torch.randn(50, 3), torch.zeros(50, 3))}   # two test splits, one validation figure
    fit, val = probe_split(300, cfg.probe.fast.val_fraction, 3)   # the fast probe's held-out part
    assert not set(fit.tolist()) & set(val.tolist())
    expected = knn_top1(data.train_images[fit], data.train_labels[fit], data.train_images[val],
                        data.train_labels[val], 3, cfg.knn)
    assert figures == {expected}
