"""Seconds per epoch of the real training step on one GPU: ResNet-18 on CIFAR-10-sized data (#7).

    python benchmarks/gpu_epoch.py                       # simclr and spectral, batch 512, compile off and on
    python benchmarks/gpu_epoch.py --compile on --objectives spectral
    python benchmarks/gpu_epoch.py --device cpu --max-steps 1 --batch-size 32 --compile off --data random

The issue's target: one epoch of CIFAR-10 (50,000 images, batch 512: 97 steps) with ResNet-18 (CIFAR
variant, `encoder=resnet18`) in at most 2 s on one H100/H200, 1 s as a stretch.

Data: the real CIFAR-10 train split (benchmarks/common.cifar10_train()) when it is there, else random
uint8 of the same shape (50000, 3, 32, 32); the first line says which. `--data` forces either. The
images sit on the device as one uint8 tensor, as `specrep train` keeps them.

Each step is the one `specrep train` runs: a uint8 batch drawn by an on-device permutation
(specrep_cli.data.batches), two views augmented on the device (specrep_cli.pairs.ViewPairs), the
learning rate of the schedule, forward and backward under bf16 autocast with channels_last
(specrep_cli.train.forward_backward, trainer.precision=auto), the optimizer step, method.after_step,
and the loss terms summed on the device and pulled to the host every trainer.log_every_n_steps steps.
Monitoring, checkpoints and evaluation, which the loop runs once an epoch, are not timed.

Timing: CUDA events recorded between the steps, read once the epoch is over, so the timing adds no
host sync (on the CPU, where every op is synchronous: time.perf_counter). `--compile on` compiles the
encoder in place (method.encoder.compile(), i.e. nn.Module.compile, inductor, as trainer.compile
does) before the epoch; its first steps then take longer. "first steps extra" is that extra time: the first --warmup-steps steps' time less as
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
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from common import build_training, cifar10_train, compose_train, hardware
from specrep_cli.data import batches, channel_stats
from specrep_cli import config
from specrep_cli.optimizers import lr_schedule
from specrep_cli.pairs import ViewPairs
from specrep_cli.train import forward_backward, resolve_bf16

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


def load_images(kind: str, device: torch.device) -> tuple[torch.Tensor, str]:
    """uint8 (N, 3, 32, 32) on `device` and a line saying what they are."""
    if kind in ("auto", "cifar10"):
        data = cifar10_train()
        if data is not None and isinstance(data.ssl_images, torch.Tensor):
            return data.ssl_images.to(device), f"CIFAR-10 train split, {data.ssl_images.shape[0]:,} real images"
        if kind == "cifar10":
            raise SystemExit("--data cifar10: the CIFAR-10 train split is not available (above)")
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, CIFAR10_SHAPE, dtype=torch.uint8, generator=generator)
    return images.to(device), f"random uint8 of CIFAR-10's shape {CIFAR10_SHAPE} (not real images)"


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


def step_flops(cfg, images, pairs, device, bf16: bool) -> int:
    """FLOPs of one eager step's forward and backward (matmuls and convolutions)."""
    method, optimizer, channels_last, _ = build_training(cfg, device)
    batch_size = cfg.trainer.batch_size
    index = torch.arange(batch_size, device=device)
    x, y = pairs(images[:batch_size], index)
    with FlopCounterMode(display=False) as counter:
        forward_backward(method, optimizer, x, y, channels_last, bf16)
    return counter.get_total_flops()


def run_epoch(cfg, images, pairs, device, bf16: bool, compiled: bool, compile_mode: str,
              max_steps: int | None) -> tuple[list[float], float]:
    """Step times (s) of one epoch (or its first max_steps steps) and the last logged mean loss."""
    method, optimizer, channels_last, lr = build_training(cfg, device)
    if compiled:
        method.encoder.compile(mode=None if compile_mode == "default" else compile_mode)
    tr = cfg.trainer
    steps_per_epoch = images.shape[0] // tr.batch_size
    lrs = lr_schedule(lr, steps_per_epoch, round(cfg.optim.warmup_epochs * steps_per_epoch), cfg.optim.min_lr_ratio)
    steps = min(steps_per_epoch, max_steps or steps_per_epoch)
    torch.manual_seed(0)
    perm = torch.randperm(images.shape[0], device=device)
    loss_sum, logged = None, float("nan")
    clock = Clock(device)
    method.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    clock.stamp()
    for i, batch in enumerate(batches(images, perm[:steps * tr.batch_size], tr.batch_size, device, drop_last=True)):
        for group in optimizer.param_groups:
            group["lr"] = lrs[i]
        x, y = pairs(batch, perm[i * tr.batch_size:(i + 1) * tr.batch_size])
        terms = forward_backward(method, optimizer, x, y, channels_last, bf16)
        optimizer.step()
        method.after_step((i + 1) / steps_per_epoch)
        loss = terms["loss"].detach().float()
        loss_sum = loss if loss_sum is None else loss_sum + loss
        if (i + 1) % tr.log_every_n_steps == 0 or i == steps - 1:
            logged = loss_sum.item() / ((i % tr.log_every_n_steps) + 1)   # the loop's host sync
            loss_sum = None
        clock.stamp()
    times = clock.intervals()
    if compiled:
        torch._dynamo.reset()
    return times, logged


def summarize(times: list[float], warmup: int, steps_per_epoch: int) -> dict:
    """Steady seconds per epoch (extrapolated to the full epoch), the first steps' extra time."""
    warm = min(warmup, len(times) - 1)
    median = statistics.median(times[warm:])
    extra = max(0.0, sum(times[:warm]) - warm * median)
    steady = sum(times) - extra
    return {"steps": len(times), "epoch_s": steady * steps_per_epoch / len(times), "extra_s": extra,
            "step_s": steady / len(times)}


def main() -> None:
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
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    torch.backends.cudnn.benchmark = True   # as train.py sets it

    images, what = load_images(args.data, device)
    print(f"data: {what}, on {device}")
    mean, std = channel_stats(images)
    mean, std = mean.to(device), std.to(device)
    steps_per_epoch = images.shape[0] // args.batch_size
    peak = bf16_peak_tflops(device)
    settings = {"both": [False, True], "off": [False], "on": [True]}[args.compile]

    rows, best = [], {}
    for objective in args.objectives:
        cfg = compose_train(["encoder=resnet18", f"objective={objective}", "augmentation=simclr",
                             f"trainer.batch_size={args.batch_size}"])
        config.validate(cfg)
        bf16 = resolve_bf16(cfg.trainer.precision, device)
        pairs = ViewPairs(cfg.augmentation, mean, std)
        flops = step_flops(cfg, images, pairs, device, bf16)
        for compiled in settings:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            times, loss = run_epoch(cfg, images, pairs, device, bf16, compiled, args.compile_mode, args.max_steps)
            s = summarize(times, args.warmup_steps, steps_per_epoch)
            tflops = flops / s["step_s"] / 1e12
            memory = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "n/a"
            name = ("off" if not compiled else "on" if args.compile_mode == "default" else f"on ({args.compile_mode})")
            rows.append([objective, name, f"{s['steps']}/{steps_per_epoch}", f"{s['epoch_s']:.3f}",
                         f"{args.batch_size / s['step_s']:,.0f}", f"{s['extra_s']:.2f}", memory,
                         f"{flops / 1e9:,.0f}", f"{tflops:.1f}" if tflops >= 1 else f"{tflops:.3f}",
                         f"{100 * tflops / peak:.1f} %" if peak else "-",
                         f"{loss:.4f}"])
            if objective not in best or s["epoch_s"] < best[objective][0]:
                best[objective] = (s["epoch_s"], name, s["steps"])

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

    on_target_hw = device.type == "cuda" and any(g in torch.cuda.get_device_name(device) for g in ("H100", "H200"))
    for objective, (epoch_s, name, steps) in best.items():
        verdict = ("meets the 2 s target and the 1 s stretch" if epoch_s <= STRETCH_S else
                   "meets the 2 s target, misses the 1 s stretch" if epoch_s <= TARGET_S else
                   "misses the 2 s target")
        note = "" if steps == steps_per_epoch else f", extrapolated from {steps} step{'s' if steps > 1 else ''}"
        print(f"verdict, {objective}: {epoch_s:.3f} s per epoch (compile {name}{note}): {verdict}"
              + ("" if on_target_hw else f" (the target is for one H100/H200; this is {hardware(device)})"))


if __name__ == "__main__":
    main()
