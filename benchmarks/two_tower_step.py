"""One real training step of the two-tower losses at a large global batch, on gloo ranks of this CPU:
the peak memory of a rank, clip against spectral_clip.

    python benchmarks/two_tower_step.py                          # global batch 16,384 on 2 ranks
    python benchmarks/two_tower_step.py --batch 2048 --objectives clip spectral_clip siglip

Each run is `specrep train objective=NAME trainer.devices=RANKS trainer.batch_size=BATCH` on the built-in
shapes with its captions (image-text pairs: the convnet image tower and the word-level text tower),
dataset.num_train=BATCH so that the epoch is one step, trainer.threads=1 per rank, and an evaluation cut
to what the run must write (no random-init baseline, no Rayleigh-Ritz, a small probe). CLIP's loss
gathers every rank's features and builds the B x B logits on each rank (1 GiB in fp32 at 16,384);
spectral_clip all-reduces two d x d Grams. Printed per objective: the peak resident memory of the
largest process of the run (a rank: getrusage's RUSAGE_CHILDREN of a wrapper around the command, so
the largest of its descendants), the training seconds of the step (report.json's timing) and the
wall time of the whole command.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_name

# Runs the command given as arguments and prints the largest resident set of its descendants, in KiB.
WRAPPER = ("import resource, subprocess, sys\n"
           "code = subprocess.run(sys.argv[1:]).returncode\n"
           "print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
           "sys.exit(code)\n")


def run_one(objective: str, batch: int, ranks: int, folder: Path) -> dict:
    """The run's peak rank memory (GiB), training seconds and wall seconds, or why it failed."""
    run_dir = folder / objective
    command = [sys.executable, "-m", "specrep_cli", "train", f"objective={objective}", "dataset=shapes",
               f"dataset.num_train={batch}", "dataset.num_test=512", f"trainer.batch_size={batch}",
               f"trainer.devices={ranks}", "trainer.device=cpu", "trainer.threads=1", "trainer.epochs=1",
               "eval.random_init=false", "eval.ritz=false", "eval.every_n_epochs=0", "eval.alignment_images=0",
               "eval.probe.fast.steps=10", "trainer.keep_best=false", f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:100], "wall": wall}
    kib = int(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("maxrss_kib")))
    report = json.loads((run_dir / "report.json").read_text())
    return {"peak_gib": kib / 2**20, "train_s": report["timing"]["train_seconds"], "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16384, help="the global batch (image-text pairs per step)")
    parser.add_argument("--ranks", type=int, default=2, help="gloo processes")
    parser.add_argument("--objectives", nargs="+", default=["clip", "spectral_clip"])
    args = parser.parse_args()
    print(f"{cpu_name()}, {args.ranks} gloo ranks of 1 thread, global batch {args.batch:,} "
          f"({args.batch // args.ranks:,} per rank), one step of `specrep train` on shapes with captions")
    print("| objective | peak memory of a rank, GiB | step (training) s | command wall s |")
    print("| --- | --- | --- | --- |")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for objective in args.objectives:
            r = results[objective] = run_one(objective, args.batch, args.ranks, Path(tmp))
            if "error" in r:
                print(f"| {objective} | failed: {r['error']} | | {r['wall']:.0f} |", flush=True)
            else:
                print(f"| {objective} | {r['peak_gib']:.2f} | {r['train_s']:.1f} | {r['wall']:.0f} |", flush=True)
    if all("peak_gib" in results.get(o, {}) for o in ("clip", "spectral_clip")):
        ratio = results["clip"]["peak_gib"] / results["spectral_clip"]["peak_gib"]
        print(f"clip / spectral_clip peak memory: {ratio:.2f}x")


if __name__ == "__main__":
    main()
