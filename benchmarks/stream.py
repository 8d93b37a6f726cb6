"""Training throughput from webdataset shards against the same images in memory: what streaming costs.

    python benchmarks/make_shards.py --out /tmp/cifar_shards --root $SPECREP_CIFAR_JPEG   # once
    python benchmarks/stream.py --shards /tmp/cifar_shards                              # workers 0, 1, 2

Both runs are built by the build_run of `specrep train` (objective=spectral, the default convnet, batch
256, two SimCLR views augmented on the device) and step through the loop's own epoch_batches and
take_step, side by side in one process: `dataset=imagefolder` (the CIFAR-10 JPEG folder decoded once,
in memory) and `dataset=webdataset` on the shards written from that folder (decoded by
dataset.workers DataLoader processes, 0: in the training process, as the epoch is read), with
dataset.eval_root the same folder. Images/s over --steps steps after --warmup steps; the ratio is the
stream's to memory's. objective=spectral_clip on the stream (captions tokenized by the workers too)
is the last row.
"""
from __future__ import annotations

import argparse
import time

import torch
from common import CIFAR_JPEG, build, hardware

from specrep_cli.train.loop import epoch_batches, epoch_permutation, take_step
from specrep_cli.train.setup import LoopState, Run


def images_per_second(run: Run, steps: int, warmup: int) -> float:
    """Images/s of the loop's steps on `run`'s data: the first epoch's batches, `warmup` untimed."""
    state, batch = LoopState(), run.cfg.trainer.batch_size
    perm = epoch_permutation(run.data.ssl_images.shape[0], run.cfg.seed, 1, run.perm_device)
    t0 = None
    for i, images, index in epoch_batches(run, perm, 0, 1):
        if i == warmup:
            t0 = time.perf_counter()
        take_step(run, state, images, index)
        if i + 1 == warmup + steps:
            break
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", required=True, help="the folder make_shards.py wrote from CIFAR-10")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="dataset.workers of the stream")
    args = parser.parse_args()
    samples = (args.steps + args.warmup) * 256
    common = ["trainer.batch_size=256", "objective=spectral"]
    memory = build([*common, "dataset=imagefolder", f"dataset.root={CIFAR_JPEG}"])
    print(f"hardware: {hardware(torch.device('cpu'))}; torch {torch.__version__}; {args.steps} steps of 256")
    print("| data | objective | workers | images/s | vs memory |")
    print("| --- | --- | --- | --- | --- |")
    base = images_per_second(memory, args.steps, args.warmup)
    print(f"| CIFAR-10 in memory | spectral | - | {base:.0f} | 1.00 |")
    stream = ["dataset=webdataset", f"dataset.shards='{args.shards}/train-{{000000..000049}}.tar'",
              f"dataset.eval_root={CIFAR_JPEG}", f"dataset.samples_per_epoch={samples}"]
    for workers in args.workers:
        rate = images_per_second(build([*common, *stream, f"dataset.workers={workers}"]), args.steps, args.warmup)
        print(f"| CIFAR-10 shards, streamed | spectral | {workers} | {rate:.0f} | {rate / base:.2f} |")
    workers = max(args.workers)
    clip = build(["trainer.batch_size=256", "objective=spectral_clip", *stream, f"dataset.workers={workers}"])
    rate = images_per_second(clip, args.steps, args.warmup)
    print(f"| CIFAR-10 shards, streamed | spectral_clip | {workers} | {rate:.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
