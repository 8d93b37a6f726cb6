"""Forward+backward time and peak memory of every loss in specrep_cli.objectives, as B grows.

    python benchmarks/loss_scaling.py                 # B in {256, 1024, 4096, 16384, 65536}, d = 128
    python benchmarks/loss_scaling.py --quick         # smoke run, small B
    python benchmarks/loss_scaling.py --sizes 1024 4096 --only clip siglip spectral_clip   # the two-tower losses
    python benchmarks/loss_scaling.py --device cuda --repeats 10

Time is the median over --repeats runs of forward+backward after one warm-up run. Growth is
t(B_max) / t(B_1) with B_1 the second size (1024 in the full run): about 16 for a loss linear in B,
about 256 for a quadratic one. The exponent is the log-log slope of time from B_1 to the largest B
measured: about 1 for linear, about 2 for quadratic. Quadratic losses whose B x B logits would exceed
--max-gib are skipped and shown as "-". On a shared CPU, --threads 1 gives steadier times. The
two-tower losses (clip, siglip, spectral_clip) take z_a as the image tower's output and z_b as the
other tower's: their cost depends on B and d only, not on the towers.
"""

import argparse
import math
import statistics
import sys
import time

import torch
from common import hardware
from rich.console import Console
from rich.table import Table
from torch.profiler import ProfilerActivity, profile

from specrep_cli.objectives import losses as obj

FULL_SIZES = [256, 1024, 4096, 16384, 65536]
QUICK_SIZES = [64, 128, 256, 512]


def make_losses(d: int, device: torch.device):
    """name -> (loss of (z_a, z_b), bytes of its largest B x B fp32 matrix or None if linear)."""

    def param(value):
        return torch.tensor(value, device=device, requires_grad=True)

    t, bias, logit_scale, log_t = param(0.1), param(-10.0), param(math.log(10)), param(math.log(10))
    lam = torch.eye(d, device=device)
    return {
        "info_nce": (lambda a, b: obj.info_nce(a, b, t), lambda B: 4 * (2 * B) ** 2),
        "binary_nce k=1": (lambda a, b: obj.binary_nce(a, b, t, bias, 1), None),
        "binary_nce k=B-1": (lambda a, b: obj.binary_nce(a, b, t, bias), lambda B: 4 * B**2),
        "clip": (lambda a, b: obj.clip_loss(a, b, logit_scale), lambda B: 4 * B**2),
        "siglip": (lambda a, b: obj.siglip_loss(a, b, log_t, bias), lambda B: 4 * B**2),
        "spectral_clip": (lambda a, b: obj.spectral_clip_loss(a, b), None),
        "spectral_contrastive": (lambda a, b: obj.spectral_contrastive(a, b), None),
        "spectral_byol": (lambda a, b: obj.spectral_byol(a, b, lam), None),
        "pca_penalty": (lambda a, b: obj.pca_penalty(a, b, 1.0), None),
        "pca_penalty_surrogate": (lambda a, b: obj.pca_penalty_surrogate(a, b, 1.0, lam), None),
        "byol": (lambda a, b: obj.byol_loss(a, b), None),
        "barlow_twins": (lambda a, b: obj.barlow_twins_loss(a, b), None),
        "vicreg": (lambda a, b: obj.vicreg_loss(a, b), None),
    }


def forward_backward(loss_fn, z_a, z_b):
    z_a.grad = z_b.grad = None
    loss_fn(z_a, z_b).backward()


def median_time(loss_fn, z_a, z_b, repeats: int, device: torch.device) -> float:
    """Median seconds of forward+backward, after one warm-up run."""
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        forward_backward(loss_fn, z_a, z_b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def peak_bytes(loss_fn, z_a, z_b, device: torch.device) -> int:
    """Peak bytes of tensors live during forward+backward, above those live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward_backward(loss_fn, z_a, z_b)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    # CPU: replay the profiler's allocation and free events in time order
    z_a.grad = z_b.grad = None  # free the last run's gradients before profiling starts
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(loss_fn, z_a, z_b)
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == torch._C._profiler._EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help=f"B in {QUICK_SIZES} instead of {FULL_SIZES}")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="batch sizes B (overrides --quick)")
    parser.add_argument("--only", nargs="+", default=None, help="these losses only (names as in the table)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--max-gib", type=float, default=None,
                        help="skip quadratic losses whose B x B logits exceed this (default: 2 on CPU, 32 on CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    max_bytes = (args.max_gib or (32.0 if device.type == "cuda" else 2.0)) * 2**30
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    b1, b_max = sizes[1], sizes[-1]
    memory_method = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                     else "torch.profiler allocation events (CPU allocator), replayed in time order")

    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(f"device: {device} ({hardware(device)}), torch {torch.__version__}, d = {args.dim}, "
                  f"fp32, median of {args.repeats} repeats after 1 warm-up")
    console.print(f"peak memory: bytes allocated during forward+backward above the inputs, by {memory_method}")

    time_table = Table(title="forward+backward time, ms (median)")
    mem_table = Table(title="peak memory, MiB")
    for table in (time_table, mem_table):
        table.add_column("loss", no_wrap=True)
        for B in sizes:
            table.add_column(f"B={B}", justify="right")
    time_table.add_column(f"t({b_max})/t({b1})", justify="right")
    time_table.add_column("exponent", justify="right")

    for name, (loss_fn, matrix_bytes) in make_losses(args.dim, device).items():
        if args.only and name not in args.only:
            continue
        times, peaks = {}, {}
        for B in sizes:
            if matrix_bytes is not None and matrix_bytes(B) > max_bytes:
                continue
            z_a = torch.randn(B, args.dim, device=device, requires_grad=True)
            z_b = torch.randn(B, args.dim, device=device, requires_grad=True)
            times[B] = median_time(loss_fn, z_a, z_b, args.repeats, device)
            peaks[B] = peak_bytes(loss_fn, z_a, z_b, device)
        growth = times[b_max] / times[b1] if b_max in times else None
        b_top = max(times)
        exponent = math.log(times[b_top] / times[b1]) / math.log(b_top / b1) if b_top > b1 else None
        time_table.add_row(
            name, *(f"{times[B] * 1e3:.2f}" if B in times else "-" for B in sizes),
            f"{growth:.1f}" if growth is not None else "-",
            f"{exponent:.2f}" + ("" if b_top == b_max else f" (to {b_top})") if exponent is not None else "-")
        mem_table.add_row(name, *(f"{peaks[B] / 2**20:.1f}" if B in peaks else "-" for B in sizes))
        console.print(f"  done: {name}", style="dim")

    console.print(time_table)
    console.print(mem_table)
    console.print(f"'-': skipped, its B x B logits would exceed {max_bytes / 2**30:g} GiB (--max-gib).")


if __name__ == "__main__":
    main()
