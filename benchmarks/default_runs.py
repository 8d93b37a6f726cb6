"""Default `specrep train` runs, timed end to end, with their probe results in one table.

    python benchmarks/default_runs.py                          # the default run (objective=spectral)
    python benchmarks/default_runs.py --objectives spectral clip --cpu native avx2   # the first run, both CPUs
    python benchmarks/default_runs.py --objectives all         # every objective with its defaults
    python benchmarks/default_runs.py --objectives simclr byol -- trainer.epochs=5

Each run is a real `specrep train` subprocess in a temporary directory. `--cpu avx2` runs it as on a
CPU without native bf16 (most laptops): ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 and
trainer.precision=fp32; `native` as this CPU is. Printed per run: wall time (start-up, data, training
and evaluation), training time and images/s, linear-probe and kNN top-1, the random-init probe top-1
and the margin over it, the effective rank of the representation; for image-text runs the zero-shot
top-1 and the retrieval recall@1 both ways. Then the first run's targets: the default run at most 3
minutes with a probe of at least 85 % and 30 points over its random init, objective=clip at most 5
minutes with zero-shot at least 60 %, on a 2-core CPU without bf16.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import hardware
from rich.console import Console
from rich.table import Table

CONF = Path(__file__).resolve().parents[1] / "conf"
CPU_KINDS = {"native": ({}, []),
             "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, ["trainer.precision=fp32"])}
COLUMNS = ("objective", "cpu", "epochs", "wall s", "train s", "img/s", "probe top-1", "kNN top-1",
           "random-init top-1", "margin", "eff. rank", "zero-shot top-1", "i->t R@1", "t->i R@1")


def two_tower_columns(report) -> list:
    """Zero-shot top-1 and retrieval R@1 of an image-text run; '-' for the others."""
    if "zero_shot" not in report:
        return ["-", "-", "-"]
    retrieval = report.get("retrieval", {})
    return [f"{report['zero_shot']['top1']:.1f}",
            *(f"{retrieval[d]['r1']:.1f}" if d in retrieval else "-" for d in ("image_to_text", "text_to_image"))]


def run_one(objective: str, cpu: str, overrides: list[str], tmp: Path) -> tuple[float, dict | str]:
    """(wall seconds, report.json) of one `specrep train` run, or its last error line."""
    env_extra, cpu_overrides = CPU_KINDS[cpu]
    run_dir = tmp / f"{objective}-{cpu}"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "specrep_cli", "train", f"objective={objective}",
                           *cpu_overrides, *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp,
                          capture_output=True, text=True, env={**os.environ, **env_extra})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return wall, (proc.stderr.strip().splitlines() or ["no output"])[-1][:80]
    return wall, json.loads((run_dir / "report.json").read_text())


def row(objective: str, cpu: str, wall: float, r: dict) -> list[str]:
    probe = r["linear_probe"]["top1"]
    rand = r.get("random_init", {}).get("linear_probe_top1")
    rank = r.get("spectrum", {}).get("representation", {}).get("effective_rank")
    return [objective, cpu, str(r["run"]["epochs"]), f"{wall:.0f}", f"{r['timing']['train_seconds']:.0f}",
            f"{r['timing']['train_images_per_second']:.0f}", f"{probe:.1f}", f"{r['knn']['top1']:.1f}",
            "-" if rand is None else f"{rand:.1f}", "-" if rand is None else f"{probe - rand:+.1f}",
            "-" if rank is None else f"{rank:.1f}", *two_tower_columns(r)]


def verdicts(results: list[tuple[str, str, float, dict]]) -> list[str]:
    """The first run's targets, for the runs of the default settings that were made."""
    lines = []
    for objective, cpu, wall, r in results:
        probe, rand = r["linear_probe"]["top1"], r.get("random_init", {}).get("linear_probe_top1", 0.0)
        if objective == "spectral":
            ok = wall <= 180 and probe >= 85 and probe - rand >= 30
            lines.append(f"{objective} on {cpu}: {wall:.0f} s (<= 180), probe {probe:.1f} % (>= 85), "
                         f"{probe - rand:+.1f} over random init (>= 30): {'meets' if ok else 'misses'} the targets")
        if objective == "clip" and "zero_shot" in r:
            zs = r["zero_shot"]["top1"]
            ok = wall <= 300 and zs >= 60
            lines.append(f"{objective} on {cpu}: {wall:.0f} s (<= 300), zero-shot {zs:.1f} % (>= 60): "
                         f"{'meets' if ok else 'misses'} the targets")
    return lines


def run_table(objectives: list[str], cpus: list[str], overrides: list[str], title: str) -> list:
    """Run every (objective, cpu) one after another; print the table; return the finished runs."""
    table = Table(title=title)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("objective", "cpu") else "right")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for objective in objectives:
            for cpu in cpus:
                wall, r = run_one(objective, cpu, overrides, Path(tmp))
                if isinstance(r, str):
                    table.add_row(objective, cpu, "", f"{wall:.0f}", "failed", r, *[""] * (len(COLUMNS) - 6))
                    continue
                results.append((objective, cpu, wall, r))
                table.add_row(*row(objective, cpu, wall, r))
                Console().print(f"{objective} ({cpu}): done in {wall:.0f} s")
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="+", default=["spectral"], help="objective options, or 'all'")
    parser.add_argument("--cpu", nargs="+", choices=sorted(CPU_KINDS), default=["native"],
                        help="native: as this CPU is; avx2: as a CPU without bf16 (fp32)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (after --)")
    args = parser.parse_args()
    objectives = args.objectives
    if objectives == ["all"]:
        objectives = sorted(p.stem for p in (CONF / "objective").glob("*.yaml"))
    machine = hardware(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    results = run_table(objectives, args.cpu, args.overrides, f"default runs on {machine}")
    if not args.overrides:
        for line in verdicts(results):
            print(line)


if __name__ == "__main__":
    main()
