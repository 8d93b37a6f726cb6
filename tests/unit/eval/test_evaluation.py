"""Evaluation pieces against hand-made cases and their formulas: the probes, kNN, the spectral
diagnostics, the probe's held-out split, and evaluate_encoder on tiny images in memory and streamed."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from specrep_cli.config import FastProbeConfig, KNNConfig, StandardProbeConfig, from_dict
from specrep_cli.eval.probes import (
    fixed_probe,
    knn_top1,
    linear_probe,
    probe_split,
    standard_lr,
    standard_probe_on_features,
)
from specrep_cli.eval.spectra import alignment, effective_rank, orthonormality_error, spectrum, uniformity


def test_probe_recovers_a_linearly_separable_labelling_and_is_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, generator=g)
    x, xt = torch.randn(10000, 8, generator=g), torch.randn(1000, 8, generator=g)
    y, yt = (x @ w).argmax(1), (xt @ w).argmax(1)
    assert linear_probe(x, y, xt, yt, 4, FastProbeConfig(weight_decays=[0.0, 1e-4]))["top1"] > 99.0
    noise, noise_test = torch.randint(0, 4, (10000,), generator=g), torch.randint(0, 4, (1000,), generator=g)
    assert abs(linear_probe(x, noise, xt, noise_test, 4,
                            FastProbeConfig(weight_decays=[0.0, 1e-2]))["top1"] - 25.0) < 5.0


def test_the_fixed_strength_probe_is_the_penalised_logistic_regression_written_out():
    """One fit at a given L2 strength: argmin CE(x_s W + b, y) + (wd / 2) ||W||^2 on standardised x_s,
    solved here directly (float64, plain coordinates, many L-BFGS steps) and compared on the test split."""
    g = torch.Generator().manual_seed(1)
    x, xt = torch.randn(600, 5, generator=g) * torch.tensor([1.0, 3, 0.5, 2, 1]), torch.randn(400, 5, generator=g)
    y, yt = (x[:, :3] + 0.8 * torch.randn(600, 3, generator=g)).argmax(1), (xt[:, :3]).argmax(1)
    wd = 1e-2
    mean, std = x.double().mean(0), x.double().std(0)
    xs, xts = (x.double() - mean) / std, (xt.double() - mean) / std
    w = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ w + b, y) + 0.5 * wd * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    logits = (xts @ w + b).detach()
    expected = 100.0 * (logits.argmax(1) == yt).double().mean().item()
    expected5 = 100.0 * (logits.topk(3, 1).indices == yt[:, None]).any(1).double().mean().item()
    got = fixed_probe(x, y, xt, yt, 3, wd, steps=200)
    assert got["top1"] == pytest.approx(expected, abs=0.26) and got["top5"] == pytest.approx(expected5)


def test_held_out_split_comes_from_the_train_split_only():
    fit, held = probe_split(1000, 0.1, seed=3)
    assert len(held) == 100 and len(fit) == 900
    assert set(fit.tolist()) | set(held.tolist()) == set(range(1000))
    assert not set(fit.tolist()) & set(held.tolist())


def test_knn_on_a_hand_made_example():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.7, 0.3]])
    assert knn_top1(train, labels, test, torch.tensor([0, 1, 0]), 2, KNNConfig(k=2, temperature=0.1)) == 100.0
    assert knn_top1(train, labels, test, torch.tensor([1, 0, 1]), 2, KNNConfig(k=2, temperature=0.1)) == 0.0


def test_effective_rank_of_known_spectra():
    g = torch.Generator().manual_seed(0)
    isotropic = torch.randn(200000, 8, generator=g)
    assert effective_rank(isotropic) == pytest.approx(8.0, rel=1e-3)
    line = torch.randn(500, 1, generator=g) * torch.randn(1, 8, generator=g)
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    two = torch.cat([torch.randn(100000, 2, generator=g), torch.zeros(100000, 6)], dim=1)
    assert effective_rank(two) == pytest.approx(2.0, rel=1e-2)
    assert not math.isnan(effective_rank(torch.zeros(10, 4)))


# ------------------------------------------------------------------------------- issue #5 additions
def whitened(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """n x d features with mean exactly 0 and covariance exactly I (up to float64 rounding)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))
    return q * math.sqrt(n - 1)


def test_spectrum_of_a_known_covariance():
    scales = torch.tensor([2.0, 1.0, 1.0, 0.0], dtype=torch.float64)   # covariance diag(4, 1, 1, 0)
    spec = spectrum(whitened(500, 4) * scales)
    assert spec["eigenvalues"] == pytest.approx([4.0, 1.0, 1.0, 0.0], abs=1e-9)
    p = [4 / 6, 1 / 6, 1 / 6]
    assert spec["effective_rank"] == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)), rel=1e-9)
    assert spec["top_variance_share"] == pytest.approx({"1": 4 / 6, "10": 1.0, "100": 1.0})
    identity = spectrum(whitened(300, 16, seed=1))
    assert identity["effective_rank"] == pytest.approx(16.0, rel=1e-9)
    assert identity["top_variance_share"]["1"] == pytest.approx(1 / 16)
    assert identity["top_variance_share"]["10"] == pytest.approx(10 / 16)
    g = torch.Generator().manual_seed(2)
    rank_one = torch.randn(300, 1, generator=g) * torch.randn(1, 16, generator=g)
    assert spectrum(rank_one)["effective_rank"] == pytest.approx(1.0, abs=1e-6)


def test_orthonormality_error_of_orthonormal_and_scaled_features():
    n, d = 400, 8
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    psi = q * math.sqrt(n)                        # (1/n) psi^T psi = I
    assert orthonormality_error(psi) == pytest.approx(0.0, abs=1e-9)
    assert spectrum(psi)["orthonormality_error"] == pytest.approx(0.0, abs=1e-9)
    # (1/n) (2 psi)^T (2 psi) = 4 I: ||3 I||_F / sqrt(d) = 3
    assert orthonormality_error(2 * psi) == pytest.approx(3.0, rel=1e-9)


def test_alignment_and_uniformity_on_hand_made_points():
    f_a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    f_b = torch.tensor([[0.0, 3.0], [0.0, 1.0]])   # normalised: (0, 1) and (0, 1)
    assert alignment(f_a, f_b) == pytest.approx((2.0 + 0.0) / 2)
    assert alignment(f_a, 5 * f_a) == pytest.approx(0.0)
    points = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [0.0, 3.0]])   # squared distances 4, 2, 2
    expected = math.log((math.exp(-2 * 4) + 2 * math.exp(-2 * 2)) / 3)
    assert uniformity(points) == pytest.approx(expected, rel=1e-9)
    assert uniformity(torch.ones(5, 3)) == pytest.approx(0.0)


def test_knn_votes_are_weighted_by_exp_similarity_over_temperature():
    # cosine similarity to the test point: 1 for the one class-0 neighbour, 0.5 for the two of class 1
    train = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.5, -math.sqrt(3) / 2]])
    labels = torch.tensor([0, 1, 1])
    test, test_y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    # class 0: exp(1 / t); class 1: 2 exp(0.5 / t); class 0 wins iff exp(0.5 / t) > 2, i.e. t < 0.5 / ln 2
    assert knn_top1(train, labels, test, test_y, 2, KNNConfig(k=3, temperature=0.07)) == 100.0
    assert knn_top1(train, labels, test, test_y, 2, KNNConfig(k=3, temperature=1.0)) == 0.0
    assert knn_top1(train, labels, test, test_y, 2, KNNConfig(k=1, temperature=1.0)) == 100.0   # only the nearest votes


def test_the_l2_choice_never_looks_at_the_test_split():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 3, generator=g)
    x = torch.randn(600, 6, generator=g)
    y = (x @ w + 2.0 * torch.randn(600, 3, generator=g)).argmax(1)   # noisy: the L2 strength matters
    decays = [0.0, 1e-2, 1e-1, 1.0, 10.0]
    test_x, test_y = torch.randn(200, 6, generator=g), torch.randint(0, 3, (200,), generator=g)
    first = linear_probe(x, y, test_x, test_y, 3, FastProbeConfig(weight_decays=decays, steps=50))
    # any other test split, even the train split's own held-out part: the same choice
    fit, held = probe_split(600, 0.1, seed=0)
    for tx, ty in ((test_x * 100, 2 - test_y), (x[held], y[held]), (x[fit], y[fit])):
        other = linear_probe(x, y, tx, ty, 3, FastProbeConfig(weight_decays=decays, steps=50))
        assert (other["weight_decay"], other["val_top1"]) == (first["weight_decay"], first["val_top1"])


def test_standard_lr_steps_at_60_and_80_percent():
    assert [standard_lr(1.0, e, 100) for e in (0, 59, 60, 79, 80, 99)] == \
        pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert [standard_lr(0.5, e, 10) for e in range(10)] == pytest.approx([0.5] * 6 + [0.05] * 2 + [0.005] * 2)


def test_standard_protocol_on_features_recovers_a_separable_labelling_and_is_at_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, generator=g)
    x, xt = torch.randn(4000, 8, generator=g), torch.randn(1000, 8, generator=g)
    y, yt = (x @ w).argmax(1), (xt @ w).argmax(1)
    # SGD: slower than L-BFGS
    assert standard_probe_on_features(x, y, xt, yt, 4, StandardProbeConfig(epochs=20, lr=1.0))["top1"] > 98.0
    noise, noise_test = torch.randint(0, 4, (4000,), generator=g), torch.randint(0, 4, (1000,), generator=g)
    assert abs(standard_probe_on_features(x, noise, xt, noise_test, 4,
                                          StandardProbeConfig(epochs=5))["top1"] - 25.0) < 5.0


# --------------------------------------------------------------- evaluate_encoder on tiny images
def tiny_data(tmp_path, streamed: bool):
    """16 train and 8 test 16x16 RGB images of two classes (dark and bright), in memory or as files."""
    from PIL import Image

    from specrep_cli.data.files import ImageFiles
    from specrep_cli.data.splits import ImageData
    g = torch.Generator().manual_seed(0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in (("train", 16), ("test", 8)):
        labels = torch.arange(n) % 2
        images = (torch.rand(n, 3, 16, 16, generator=g) * 100 + 120 * labels[:, None, None, None]).to(torch.uint8)
        files = []
        for i, img in enumerate(images):
            files.append(tmp_path / f"{split}{i}.png")
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(files[-1])
        splits[split] = (ImageFiles(files, 16, 0) if streamed else images, labels)
    x = splits["train"][0]
    return ImageData(train_images=x, train_labels=splits["train"][1], test_images=splits["test"][0],
                     test_labels=splits["test"][1], classes=["dark", "bright"],
                     mean=torch.full((3,), 0.5), std=torch.full((3,), 0.25))


def eval_cfg(protocol="fast", **standard):
    from specrep_cli.config import EvalConfig
    return from_dict(EvalConfig, {"batch_size": 5, "alignment_images": 6, "knn": {"k": 4},
                                  "probe": {"protocol": protocol, "fast": {"steps": 20},
                                            "standard": {"epochs": 2, "batch_size": 4, **standard}}})


def tiny_encoder():
    from specrep_cli.config import ImageEncoderConfig
    from specrep_cli.models.encoders import build_encoder
    torch.manual_seed(0)
    return build_encoder(from_dict(ImageEncoderConfig, {"name": "convnet", "width": 4, "projector_hidden_dim": 16,
                                          "projector_out_dim": 8}), 3)


def reader(data, cfg):
    from specrep_cli.eval.features import FeatureReader
    from specrep_cli.runtime import Compute
    return FeatureReader(Compute(torch.device("cpu"), False), data.mean, data.std, cfg.batch_size)


def evaluation(data, cfg, views=None, encoder=None):
    """An Evaluation of tiny towers on `data` (seed 0), reading with reader(data, cfg)."""
    from specrep_cli.eval.suite import Evaluation
    from specrep_cli.eval.towers import Towers
    return Evaluation(towers=Towers(encoder or tiny_encoder(), tiny_encoder), data=data, cfg=cfg,
                      reader=reader(data, cfg), seed=0, run_dir=Path("."), views=views)


def evaluate(encoder, data, cfg, views=None):
    """evaluate_encoder on `encoder`'s features of data's splits, extracted once."""
    from specrep_cli.eval.features import extract
    from specrep_cli.eval.suite import evaluate_encoder
    ev = evaluation(data, cfg, views, encoder)
    return evaluate_encoder(ev, encoder, extract(encoder, data, ev.reader))


def none_views():
    from specrep_cli.config import AugmentationConfig
    flat = {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "flip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0}
    return from_dict(AugmentationConfig, {"name": "none", "view_a": flat, "view_b": flat})


@pytest.mark.parametrize("protocol", ["fast", "standard"])
def test_evaluate_encoder_reads_streamed_splits_like_tensors(tmp_path, protocol):
    encoder, cfg = tiny_encoder(), eval_cfg(protocol=protocol)
    a, b = tiny_data(tmp_path / "a", False), tiny_data(tmp_path / "b", True)
    in_memory = evaluate(encoder, a, cfg, none_views())
    streamed = evaluate(encoder, b, cfg, none_views())
    assert in_memory["linear_probe"]["protocol"] == protocol
    assert 0 <= in_memory["linear_probe"]["top1"] <= in_memory["linear_probe"]["top5"] <= 100
    for key in ("linear_probe", "knn", "alignment", "uniformity"):
        got = {k: v for k, v in streamed[key].items() if k != "seconds"}
        assert got == pytest.approx({k: v for k, v in in_memory[key].items() if k != "seconds"}), key
    assert len(in_memory["spectrum"]["representation"]["eigenvalues"]) == 32   # convnet: 8 * width
    assert len(in_memory["spectrum"]["projection"]["eigenvalues"]) == 8
    # identical views (augmentation none): the two views' features coincide
    assert in_memory["alignment"] == pytest.approx({"representation": 0.0, "projection": 0.0}, abs=1e-9)


def test_no_views_no_alignment_and_the_baseline_is_probe_and_knn_only(tmp_path):
    from specrep_cli.eval.suite import evaluate_towers, extract_towers
    data, cfg = tiny_data(tmp_path, False), eval_cfg()
    ev = evaluation(data, cfg)
    results = evaluate_towers(ev, extract_towers(ev))
    assert "alignment" not in results and "uniformity" not in results and "spectrum" in results
    assert set(results["random_init"]) == {"linear_probe_top1", "knn_top1"}


def test_zoom_is_torchvisions_resize_then_centre_crop():
    from torchvision.transforms.v2 import functional as TF

    from specrep_cli.eval.probes import zoom
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    want = torch.stack([TF.center_crop(TF.resize(img, [40], antialias=True), [32]) for img in images])
    got = zoom(images, 40)
    assert got.shape == want.shape
    assert (got.int() - want.int()).abs().max() <= 1   # rounding of the float interpolation


@pytest.mark.parametrize("standardize, resize", [(False, None), (True, 24)])
def test_standard_protocol_options_run_and_score(tmp_path, standardize, resize):
    data = tiny_data(tmp_path, False)
    cfg = eval_cfg(protocol="standard", standardize=standardize, test_resize=resize,
                   lr=30.0 if not standardize else 0.03)
    result = evaluate(tiny_encoder(), data, cfg, none_views())
    assert 0 <= result["linear_probe"]["top1"] <= 100
