"""`specrep train` at trainer.threads=auto and trainer.threads=1, on the machine as it is and under a
synthetic load, timed side by side in one run.

    python benchmarks/threads.py                       # the default run, 4 runs in all
    python benchmarks/threads.py --epochs 1 --load 4   # shortened: one epoch, 4 busy-loop processes
    python benchmarks/threads.py --epochs 1 -- dataset.num_train=2000   # overrides after --

Each run is a real `specrep train` subprocess (python -m specrep_cli) in a temporary directory, with
OMP_NUM_THREADS unset so that auto means the physical cores this process may use. The load is --load
processes that spin on the CPU, started before the loaded runs and stopped after them (each also ends
by itself after --max-load-seconds). Printed: the machine, then per condition and thread setting the
load average at the start, the wall time (start-up, data, training, evaluation), the training time,
and the ratio of auto's time to threads=1's. The thread count each run used is read from its
train.log (auto takes one thread when the cores are already busy). The load average counts every
process of the machine: on a shared machine "quiet" is the load it already has, printed beside each run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_name
from rich.console import Console
from rich.table import Table

from specrep_cli.runtime import allowed_cpus, physical_cores, resolve_threads

SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def start_load(n: int, seconds: float) -> list[subprocess.Popen]:
    """n processes that keep a CPU busy for at most `seconds` each."""
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(n)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def train(threads: str, epochs: int | None, overrides: list[str]) -> dict:
    """One `specrep train trainer.threads=THREADS` run: its load average at start and its times."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with tempfile.TemporaryDirectory(prefix="specrep-threads-") as work:
        args = [f"trainer.threads={threads}", *([f"trainer.epochs={epochs}"] if epochs else []), *overrides,
                f"hydra.run.dir={work}/run"]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "specrep_cli", "train", *args], cwd=work, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"specrep train {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
        report = json.loads((Path(work) / "run" / "report.json").read_text())
        log = (Path(work) / "run" / "train.log").read_text()
        used = re.search(r"CPU threads: (\d+)", log)
    return {"load": load, "wall": wall, "train": report["timing"]["train_seconds"],
            "busy_line": "runs faster here" in log, "threads": used.group(1) if used else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="trainer.epochs (default: the config's)")
    parser.add_argument("--load", type=int, default=2 * len(allowed_cpus()),
                        help="busy-loop processes of the loaded runs (default: twice the CPUs this process may use)")
    parser.add_argument("--max-load-seconds", type=float, default=3600.0, help="each busy loop ends by then")
    parser.add_argument("overrides", nargs="*", help="more `specrep train` overrides (after --)")
    args = parser.parse_args()
    console = Console()
    auto = resolve_threads("auto")
    machine = (f"{cpu_name()}: {os.cpu_count()} CPUs, {len(allowed_cpus())} of them this process's, "
               f"{physical_cores()} physical cores; trainer.threads=auto is {auto} on a quiet machine")
    console.print(machine)
    rows = []
    for condition in ("as it is", f"+{args.load} busy loops"):
        load = start_load(args.load, args.max_load_seconds) if condition != "as it is" else []
        try:
            if load:
                time.sleep(60)   # the 1-minute load average catches up with the busy loops
            results = {t: train(t, args.epochs, args.overrides) for t in ("auto", "1")}
        finally:
            stop_load(load)
        for t, r in results.items():
            ratio = r["wall"] / results["1"]["wall"]
            rows.append((condition, f"{t} ({r['threads']})", f"{r['load']:.1f}", f"{r['wall']:.1f}",
                         f"{r['train']:.1f}", f"{ratio:.2f}", "yes" if r["busy_line"] else "no"))
    command = "python benchmarks/threads.py " + " ".join(sys.argv[1:])
    table = Table(title=f"specrep train, trainer.threads=auto vs 1 ({command.strip()})")
    for heading in ("machine load", "trainer.threads", "load avg at start", "wall s", "train s",
                    "wall / threads=1's", "busy line"):
        table.add_column(heading, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
