"""Seconds per epoch of the real training step on one GPU: ResNet-18 on CIFAR-10-sized data (#7).

    python benchmarks/gpu_epoch.py                       # simclr and spectral, batch 512, compile off and on
    python benchmarks/gpu_epoch.py --compile on --objectives spectral
    python benchmarks/gpu_epoch.py --device cpu --max-steps 1 --batch-size 32 --compile off --data random

The issue's target: one epoch of CIFAR-10 (50,000 images, batch 512: 97 steps) with ResNet-18 (CIFAR
variant, `encoder=resnet18`) in at most 2 s on one H100/H200, 1 s as a stretch.

Data: the real CIFAR-10 train split (benchmarks/common.cifar10_train()) when it is there, else random
uint8 of the same shape (50000, 3, 32, 32); the first line says which. `--data` forces either. The
images sit on the device as one uint8 tensor, as `specrep train` keeps them.

Each step is the one `specrep train` runs, through the same functions on a run built by the same
build_run: the epoch's batches (specrep_cli.train.loop.epoch_batches: a uint8 batch drawn by an
on-device permutation), take_step (the schedule's learning rate, two views augmented on the device,
forward and backward under bf16 autocast with channels_last, trainer.precision=auto, the optimizer
step, method.after_step), and the loss terms summed on the device (Meter) and pulled to the host every
trainer.log_every_n_steps steps. Monitoring, checkpoints and evaluation, which the loop runs once an
epoch, are not timed.

Timing: CUDA events recorded between the steps, read once the epoch is over, so the timing adds no
host sync (on the CPU, where every op is synchronous: time.perf_counter). `--compile on` builds the run
with trainer.compile=true (the encoder compiled in place, nn.Module.compile, inductor; another
--compile-mode compiles it with that mode instead) before the epoch; its first steps then take longer.
"first steps extra" is that extra time: the first --warmup-steps steps' time less as
many median steps. With compile on it is the compile time; with compile off, the warm-up that remains
(cuDNN autotuning, the allocator growing). Seconds per epoch and images/s leave it out; with
--max-steps they are extrapolated from the steps run to the full epoch. Inductor caches compiled
kernels on disk, so a later run (the second objective: the same encoder) can compile faster.

FLOPs: one step's forward and backward (the encoder and the loss, not the augmentation nor the
optimizer), counted once per objective by torch.utils.flop_counter.FlopCounterMode on an eager step:
matrix multiplications and convolutions only, as that counter does (BN, activations and other
elementwise ops are not counted). Achieved TFLOP/s = FLOPs per step x steps / time, against the
device's dense bf16 tensor-core peak from the vendor's datasheets (BF16_DENSE_PEAK_TFLOPS: dense, no
sparsity; the H100, H200 and L4 datasheets print the figure with sparsity, twice these; the RTX 4090's
is from NVIDIA's Ada Lovelace whitepaper, FP32 accumulate). Peak memory:
torch.cuda.max_memory_allocated over the run, the data included (n/a on the CPU).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import build, cifar10_train, hardware
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from specrep_cli.data.datasets import channel_stats
from specrep_cli.data.splits import ImageData
from specrep_cli.train.loop import Meter, epoch_batches, epoch_permutation, forward_backward, take_step
from specrep_cli.train.setup import LoopState, Run

CIFAR10_SHAPE = (50000, 3, 32, 32)
TARGET_S, STRETCH_S = 2.0, 1.0   # seconds per epoch on one H100/H200 (#7)

# Dense bf16 tensor-core peaks, TFLOP/s, from the vendors' datasheets (no sparsity; FP32 accumulate).
# (match, peak): `match(name)` on torch.cuda.get_device_name(); the first match wins.
BF16_DENSE_PEAK_TFLOPS = [
    (lambda n: "H100" in n and "PCIE" not in n and "NVL" not in n, 989.0),   # H100 SXM5 ("H100 80GB HBM3")
    (lambda n: "H200" in n and "NVL" not in n, 989.0),                       # H200 SXM
    (lambda n: "A100" in n, 312.0),                                          # A100 SXM4 and PCIe
    (lambda n: "L4" in n.split(), 121.0),                                    # L4 (not L40/L40S)
    (lambda n: "RTX 4090" in n, 165.0),                                      # GeForce RTX 4090
]


def bf16_peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, or None for a CPU or a device not in the table."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).upper()
    return next((peak for match, peak in BF16_DENSE_PEAK_TFLOPS if match(name)), None)


def load_images(kind: str, device: torch.device) -> tuple[ImageData, str]:
    """The training images as ImageData, uint8 (N, 3, 32, 32) on `device`, and a line saying what they are."""
    if kind in ("auto", "cifar10"):
        data = cifar10_train(device=device)
        if data is not None and isinstance(data.ssl_images, torch.Tensor):
            return data, f"CIFAR-10 train split, {data.ssl_images.shape[0]:,} real images"
        if kind == "cifar10":
            raise SystemExit("--data cifar10: the CIFAR-10 train split is not available (above)")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, CIFAR10_SHAPE, dtype=torch.uint8, generator=generator).to(device)
    labels = torch.zeros(CIFAR10_SHAPE[0], dtype=torch.int64)
    mean, std = channel_stats(images)
    data = ImageData(images, labels, images[:1000], labels[:1000], ["random"], mean=mean, std=std)
    return data, f"random uint8 of CIFAR-10's shape {CIFAR10_SHAPE} (not real images)"


class Clock:
    """Time stamps between steps: CUDA events on a GPU (read at the end, no sync in between), else
    time.perf_counter (CPU ops are synchronous)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.stamps: list = []

    def stamp(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.stamps.append(event)
        else:
            self.stamps.append(time.perf_counter())

    def intervals(self) -> list[float]:
        """Seconds between consecutive stamps."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.stamps, self.stamps[1:])]
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def step_flops(run: Run) -> int:
    """FLOPs of one eager step's forward and backward (matmuls and convolutions)."""
    batch_size = run.cfg.trainer.batch_size
    images = run.data.ssl_images
    index = torch.arange(batch_size, device=images.device)
    x, y = run.pairs(images[:batch_size], index)
    with FlopCounterMode(display=False) as counter:
        forward_backward(run.model, run.optimizer, x, y, run.channels_last, run.compute)
    return counter.get_total_flops()


def time_epoch(run: Run, max_steps: int | None) -> tuple[list[float], float]:
    """Step times (s) of one epoch (or its first max_steps steps) and the last logged mean loss."""
    tr, state = run.cfg.trainer, LoopState()
    steps = min(run.steps_per_epoch, max_steps or run.steps_per_epoch)
    perm = epoch_permutation(run.data.ssl_images.shape[0], run.cfg.seed, 1, run.perm_device)
    meter, logged = Meter(), float("nan")
    clock = Clock(run.compute.device)
    run.method.train()
    run.compute.synchronize()
    clock.stamp()
    for i, batch, index in epoch_batches(run, perm, 0):
        if i == steps:
            break
        meter.add(take_step(run, state, batch, index))
        if state.progress.step % tr.log_every_n_steps == 0 or i == steps - 1:
            logged, meter = meter.mean()["loss"], Meter()   # the loop's host sync
        clock.stamp()
    return clock.intervals(), logged


def summarize(times: list[float], warmup: int, steps_per_epoch: int) -> dict:
    """Steady seconds per epoch (extrapolated to the full epoch), the first steps' extra time."""
    warm = min(warmup, len(times) - 1)
    median = statistics.median(times[warm:])
    extra = max(0.0, sum(times[:warm]) - warm * median)
    steady = sum(times) - extra
    return {"steps": len(times), "epoch_s": steady * steps_per_epoch / len(times), "extra_s": extra,
            "step_s": steady / len(times)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="+", default=["simclr", "spectral"])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--compile", choices=["both", "off", "on"], default="both")
    parser.add_argument("--compile-mode", default="default",
                        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--data", choices=["auto", "cifar10", "random"], default="auto",
                        help="auto: the real CIFAR-10 train split when present, else random uint8")
    parser.add_argument("--max-steps", type=int, default=None, help="time only the first N steps (smoke runs)")
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="first steps whose extra time over the median is compile / warm-up")
    return parser.parse_args()


def measure(args: argparse.Namespace, overrides: list[str], data: ImageData, compiled: bool,
            flops: int) -> tuple[dict, bool, float]:
    """One timed epoch of one setting: (summarize()'s figures, whether bf16 ran, the last logged loss)."""
    device = data.ssl_images.device
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    default_mode = args.compile_mode == "default"
    run = build(overrides + [f"trainer.compile={compiled and default_mode}"], data)
    if compiled and not default_mode:   # as trainer.compile does, in another inductor mode
        run.method.encoder.compile(mode=args.compile_mode)
    times, loss = time_epoch(run, args.max_steps)
    if compiled:
        torch._dynamo.reset()
    s = summarize(times, args.warmup_steps, run.steps_per_epoch)
    s["tflops"] = flops / s["step_s"] / 1e12
    s["memory"] = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "n/a"
    return s, run.compute.bf16, loss


def print_table(rows: list[list[str]], args: argparse.Namespace, bf16: bool, device: torch.device,
                peak: float | None) -> None:
    precision = "bf16 autocast" if bf16 else "fp32"
    table = Table(title=f"resnet18 (CIFAR), batch {args.batch_size}, {precision}, channels_last, "
                        f"on {hardware(device)}, torch {torch.__version__}")
    for col in ("objective", "compile", "steps timed", "s / epoch", "images / s", "first steps extra s",
                "peak mem GiB", "GFLOP / step", "TFLOP/s", "of bf16 peak", "loss"):
        table.add_column(col, justify="left" if col in ("objective", "compile") else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    (console if console.is_terminal else Console(width=150)).print(table)
    print(f"bf16 dense peak of this device: {f'{peak:.0f} TFLOP/s' if peak else '- (not in the table)'}; "
          "images / s counts images (two views each)")


def print_verdicts(best: dict, steps_per_epoch: int, device: torch.device) -> None:
    """Each objective's fastest setting against the 2 s target and the 1 s stretch."""
    on_target_hw = device.type == "cuda" and any(g in torch.cuda.get_device_name(device) for g in ("H100", "H200"))
    for objective, (epoch_s, name, steps) in best.items():
        verdict = ("meets the 2 s target and the 1 s stretch" if epoch_s <= STRETCH_S else
                   "meets the 2 s target, misses the 1 s stretch" if epoch_s <= TARGET_S else
                   "misses the 2 s target")
        note = "" if steps == steps_per_epoch else f", extrapolated from {steps} step{'s' if steps > 1 else ''}"
        print(f"verdict, {objective}: {epoch_s:.3f} s per epoch (compile {name}{note}): {verdict}"
              + ("" if on_target_hw else f" (the target is for one H100/H200; this is {hardware(device)})"))


def main() -> None:
    args = parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    data, what = load_images(args.data, device)
    print(f"data: {what}, on {device}")
    steps_per_epoch = data.ssl_images.shape[0] // args.batch_size
    peak = bf16_peak_tflops(device)
    rows, best, bf16 = [], {}, False
    for objective in args.objectives:
        overrides = ["encoder=resnet18", f"objective={objective}", "augmentation=simclr",
                     f"trainer.batch_size={args.batch_size}", f"trainer.device={device.type}"]
        flops = step_flops(build(overrides, data))
        for compiled in {"both": [False, True], "off": [False], "on": [True]}[args.compile]:
            s, bf16, loss = measure(args, overrides, data, compiled, flops)
            name = "off" if not compiled else "on" if args.compile_mode == "default" else f"on ({args.compile_mode})"
            tflops = s["tflops"]
            rows.append([objective, name, f"{s['steps']}/{steps_per_epoch}", f"{s['epoch_s']:.3f}",
                         f"{args.batch_size / s['step_s']:,.0f}", f"{s['extra_s']:.2f}", s["memory"],
                         f"{flops / 1e9:,.0f}", f"{tflops:.1f}" if tflops >= 1 else f"{tflops:.3f}",
                         f"{100 * tflops / peak:.1f} %" if peak else "-", f"{loss:.4f}"])
            # a line per setting as it is measured: kept if a later one is cut off (device_check.sh reads it)
            print(f"measured, {objective}, compile {name}: {s['epoch_s']:.3f} s per epoch, {rows[-1][4]} images/s, "
                  f"{rows[-1][8]} TFLOP/s ({rows[-1][9]} of the bf16 peak)", flush=True)
            if objective not in best or s["epoch_s"] < best[objective][0]:
                best[objective] = (s["epoch_s"], name, s["steps"])
    print_table(rows, args, bf16, device, peak)
    print_verdicts(best, steps_per_epoch, device)


if __name__ == "__main__":
    main()
