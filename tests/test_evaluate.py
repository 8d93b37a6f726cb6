"""Evaluation pieces against hand-made cases: probe, kNN, effective rank, the probe's held-out split."""
from __future__ import annotations

import math

import pytest
import torch

from specrep_cli.evaluate import effective_rank, knn_top1, linear_probe, probe_split


def test_probe_recovers_a_linearly_separable_labelling_and_is_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, generator=g)
    x, xt = torch.randn(10000, 8, generator=g), torch.randn(1000, 8, generator=g)
    y, yt = (x @ w).argmax(1), (xt @ w).argmax(1)
    assert linear_probe(x, y, xt, yt, 4, [0.0, 1e-4])["top1"] > 99.0
    noise, noise_test = torch.randint(0, 4, (10000,), generator=g), torch.randint(0, 4, (1000,), generator=g)
    assert abs(linear_probe(x, noise, xt, noise_test, 4, [0.0, 1e-2])["top1"] - 25.0) < 5.0


def test_held_out_split_comes_from_the_train_split_only():
    fit, held = probe_split(1000, 0.1, seed=3)
    assert len(held) == 100 and len(fit) == 900
    assert set(fit.tolist()) | set(held.tolist()) == set(range(1000))
    assert not set(fit.tolist()) & set(held.tolist())


def test_knn_on_a_hand_made_example():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.7, 0.3]])
    assert knn_top1(train, labels, test, torch.tensor([0, 1, 0]), 2, k=2, temperature=0.1) == 100.0
    assert knn_top1(train, labels, test, torch.tensor([1, 0, 1]), 2, k=2, temperature=0.1) == 0.0


def test_effective_rank_of_known_spectra():
    g = torch.Generator().manual_seed(0)
    isotropic = torch.randn(200000, 8, generator=g)
    assert effective_rank(isotropic) == pytest.approx(8.0, rel=1e-3)
    line = torch.randn(500, 1, generator=g) * torch.randn(1, 8, generator=g)
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    two = torch.cat([torch.randn(100000, 2, generator=g), torch.zeros(100000, 6)], dim=1)
    assert effective_rank(two) == pytest.approx(2.0, rel=1e-2)
    assert not math.isnan(effective_rank(torch.zeros(10, 4)))
