"""Every objective with its defaults (and the default encoder) on the real CIFAR-10, for the same epochs.

    python benchmarks/real_data.py                       # 10 objectives x 20 epochs: about an hour on 2 cores with bf16
    python benchmarks/real_data.py --epochs 2 --objectives spectral simclr
    python benchmarks/real_data.py -- objective.mu=2     # extra overrides for every run

The data: ../shared/data/cifar10-jpeg (or $SPECREP_CIFAR_JPEG), CIFAR-10's 50,000 train and 10,000 test
images as an image folder, decoded once and cached. Each run is `specrep train objective=NAME
dataset=imagefolder dataset.root=... trainer.epochs=N` (benchmarks/default_runs.py runs it), scored as
every run is: the fast linear probe, kNN, the random-init baseline, the spectrum, Rayleigh-Ritz (with
the probe on h's principal components beside the Ritz order: eval.ritz_pca_prefix). Then the targets:
every objective at least 10 points of probe top-1 over its random init, and the default objective
(spectral) within 1 point of SimCLR or above; then the Rayleigh-Ritz table (ritz_table).
"""
from __future__ import annotations

import argparse

import torch
from common import CIFAR_JPEG, hardware
from default_runs import CONF, run_table


def targets(results: list) -> list[str]:
    lines, probes = [], {}
    for objective, _cpu, _wall, r in results:
        probe, rand = r["linear_probe"]["top1"], r["random_init"]["linear_probe_top1"]
        probes[objective] = probe
        lines.append(f"{objective}: probe {probe:.2f} %, {probe - rand:+.2f} over random init (>= +10): "
                     f"{'meets' if probe - rand >= 10 else 'misses'}")
    if "spectral" in probes and "simclr" in probes:
        gap = probes["spectral"] - probes["simclr"]
        lines.append(f"spectral - simclr: {gap:+.2f} points (>= -1): {'meets' if gap >= -1 else 'misses'}")
    return lines


def ritz_table(results: list) -> list[str]:
    """Rayleigh-Ritz of each run (eval.ritz_pca_prefix on): its top Ritz values, effective dimension,
    the probe on the first k Ritz-ordered functions, and the ordered dimensions that reach 95 % of the
    probe on all of them, against h's principal components (ordered by variance)."""
    ks = [p["k"] for p in results[0][3]["ritz"]["prefix"]] if results else []
    lines = ["| objective | Ritz values 1-4 | effective dim | " + " | ".join(f"probe k={k}" for k in ks)
             + " | dims for 95 %: Ritz | dims for 95 %: PCA |", "|" + " --- |" * (len(ks) + 5)]
    for objective, _cpu, _wall, r in results:
        ritz = r["ritz"]
        probes = " | ".join(f"{p['probe_top1']:.1f}" for p in ritz["prefix"])
        values = " / ".join(f"{v:.3f}" for v in ritz["values"][:4])
        lines.append(f"| {objective} | {values} | {ritz['effective_dim']:.1f} | {probes} | "
                     f"{ritz['dims_for_95']} | {ritz.get('pca_dims_for_95', '-')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs of every run (20: about an hour on 2 cores with native bf16, "
                             "4-5x that on AVX2 in fp32)")
    parser.add_argument("--objectives", nargs="+", default=["all"], help="objective options, or 'all'")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (after --)")
    args = parser.parse_args()
    if not (CIFAR_JPEG / "train").is_dir():
        raise SystemExit(f"CIFAR-10 as an image folder not found at {CIFAR_JPEG} (set SPECREP_CIFAR_JPEG)")
    objectives = args.objectives
    if objectives == ["all"]:
        objectives = sorted(p.stem for p in (CONF / "objective").glob("*.yaml"))
    overrides = ["dataset=imagefolder", f"dataset.root={CIFAR_JPEG}", f"trainer.epochs={args.epochs}",
                 "eval.ritz_pca_prefix=true", *args.overrides]
    machine = hardware(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    results = run_table(objectives, ["native"], overrides,
                        f"CIFAR-10 (50,000 / 10,000 real images), {args.epochs} epochs, on {machine}")
    for line in targets(results):
        print(line)
    for line in ritz_table(results):
        print(line)


if __name__ == "__main__":
    main()
