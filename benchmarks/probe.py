"""The fast linear probe against the standard protocol's classifier, on the same frozen features.

    python benchmarks/probe.py                        # CIFAR-10 (50,000 train / 10,000 test), 512-d features
    python benchmarks/probe.py --synthetic            # no data needed: a synthetic 10-class problem
    python benchmarks/probe.py --standard-epochs 10   # a quicker look

Features: the 512-d representation of a randomly initialised ResNet-18 (CIFAR stem, seed 0; no trained
checkpoint is needed, and a random network's features are a hard, non-separable probing problem) of
the CIFAR-10 JPEG copy under ../shared/data/cifar10-jpeg (--root), extracted once with specrep's own
extract_features and cached under $SPECREP_CACHE. Without the data (or with --synthetic): a 10-class
Gaussian mixture of 50,000 + 10,000 points in 512-d through a ReLU, stated as such in the output.

Both classifiers see the same features; neither sees augmentation (the standard protocol's crops and
flips need images; here the question is whether the fast probe reaches the same optimum):
- fast: specrep_cli.eval.probes.linear_probe with the eval config's defaults (L-BFGS, L2 strength chosen
  on a held-out 10% of the train split);
- standard: specrep_cli.eval.probes.standard_probe_on_features with the defaults of `eval.probe.protocol=standard`
  (SGD, momentum 0.9, batch 256, lr eval.probe.standard.lr = 0.03 stepped x0.1 at epochs 60 and 80 of 100;
  --standard-lr to try another).
The quality bar: the fast probe in <= 30 s on a CPU, its top-1 within 0.5 points of the standard one.
Timing excludes feature extraction. The load average before and after says whether the machine was busy.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import torch
from common import CIFAR_JPEG, cpu_name
from rich.console import Console
from rich.table import Table

from specrep_cli.config import FastProbeConfig, ImageEncoderConfig, ImageFolderConfig, StandardProbeConfig
from specrep_cli.data import load_dataset
from specrep_cli.data.files import cache_root
from specrep_cli.eval.features import FeatureReader
from specrep_cli.eval.probes import linear_probe, standard_probe_on_features
from specrep_cli.models.encoders import build_encoder
from specrep_cli.runtime import resolve_compute


def cifar_features(root: Path, width: int, batch_size: int, console: Console):
    """(train_h, train_y, test_h, test_y, description): a random-init ResNet-18's representation, cached."""
    key = hashlib.sha256(f"{root.resolve()}|resnet18|{width}|seed0|v1".encode()).hexdigest()[:16]
    cache = cache_root(None) / f"probe-benchmark-{key}.pt"
    what = f"CIFAR-10 ({root}), random-init ResNet-18 width {width} (seed 0), representation"
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        return (*saved["features"], what + " (cached features)")
    data = load_dataset(ImageFolderConfig(root=str(root)))
    torch.manual_seed(0)
    encoder = build_encoder(ImageEncoderConfig(name="resnet18", width=width, projector_layers=0), 3)
    reader = FeatureReader(resolve_compute("cpu", "auto"), data.mean, data.std, batch_size)
    t0 = time.perf_counter()
    train_h, _ = reader.features(encoder, data.train_images)
    test_h, _ = reader.features(encoder, data.test_images)
    console.print(f"extracted {train_h.shape[0]} + {test_h.shape[0]} features of dimension {train_h.shape[1]} "
                  f"in {time.perf_counter() - t0:.0f} s ({reader.compute.precision})")
    features = (train_h, data.train_labels, test_h, data.test_labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features": features}, cache)
    return (*features, what)


def synthetic_features(n_train: int, n_test: int, dim: int, classes: int, reason: str):
    """A 10-class mixture: relu(N(0, I) + 0.05 * class centre) in `dim` dimensions; overlapping classes."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(classes, dim, generator=g)
    y, yt = torch.randint(0, classes, (n_train,), generator=g), torch.randint(0, classes, (n_test,), generator=g)
    x = (torch.randn(n_train, dim, generator=g) + 0.05 * centres[y]).relu()
    xt = (torch.randn(n_test, dim, generator=g) + 0.05 * centres[yt]).relu()
    return x, y, xt, yt, f"synthetic: {classes}-class Gaussian mixture through a ReLU, {dim}-d ({reason})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=CIFAR_JPEG, help="CIFAR-10 as an image folder (train/, test/)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic features even if the data are there")
    parser.add_argument("--synthetic-train", type=int, default=50000, help="synthetic train features (test: a fifth)")
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width (representation: 8 x width)")
    parser.add_argument("--batch-size", type=int, default=512, help="images per forward pass when extracting")
    parser.add_argument("--standard-epochs", type=int, default=100)
    parser.add_argument("--standard-lr", type=float, default=StandardProbeConfig().lr,
                        help="the standard protocol's initial lr (default: eval.probe.standard.lr)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    if not console.is_terminal:   # a log file: room for the table
        console = Console(width=120)
    load_before = os.getloadavg()

    if not args.synthetic and (args.root / "train").is_dir():
        train_x, train_y, test_x, test_y, what = cifar_features(args.root, args.width, args.batch_size, console)
    else:
        reason = "--synthetic" if args.synthetic else f"no CIFAR-10 at {args.root}"
        n = args.synthetic_train
        train_x, train_y, test_x, test_y, what = synthetic_features(n, n // 5, 512, 10, reason)
    classes = int(train_y.max()) + 1
    standard_cfg = StandardProbeConfig(epochs=args.standard_epochs, lr=args.standard_lr)

    t0 = time.perf_counter()
    fast = linear_probe(train_x, train_y, test_x, test_y, classes, FastProbeConfig(), seed=0)
    fast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    standard = standard_probe_on_features(train_x, train_y, test_x, test_y, classes, standard_cfg, seed=0)
    standard_s = time.perf_counter() - t0
    load_after = os.getloadavg()

    diff = fast["top1"] - standard["top1"]
    table = Table(title=f"fast probe vs standard protocol: {train_x.shape[0]} x {train_x.shape[1]} train features, "
                        f"{test_x.shape[0]} test, {classes} classes")
    for col in ("classifier", "seconds", "top-1 %", "top-5 %", "settings"):
        table.add_column(col, justify="left" if col in ("classifier", "settings") else "right")
    table.add_row("fast (L-BFGS)", f"{fast_s:.1f}", f"{fast['top1']:.2f}", f"{fast['top5']:.2f}",
                  f"L2 {fast['weight_decay']:g} (chosen on held-out train: top-1 {fast['val_top1']:.2f}), "
                  f"final fit {fast['iterations']} iterations")
    table.add_row(f"standard (SGD, {args.standard_epochs} epochs)", f"{standard_s:.1f}", f"{standard['top1']:.2f}",
                  f"{standard['top5']:.2f}", f"batch {standard_cfg.batch_size}, lr {standard_cfg.lr:g}, "
                                             f"L2 {standard_cfg.weight_decay:g}")
    console.print(table)
    console.print(f"fast - standard: {diff:+.2f} points of top-1; verdicts: fast probe <= 30 s: "
                  f"{'yes' if fast_s <= 30 else 'NO'} ({fast_s:.1f} s); within 0.5 points: "
                  f"{'yes' if abs(diff) <= 0.5 else 'NO'} ({abs(diff):.2f})")
    console.print(f"features: {what}")
    console.print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
                  f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
