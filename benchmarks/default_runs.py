"""Default `specrep train` runs, timed end to end, with their probe results in one table.

    python benchmarks/default_runs.py                          # the default run (objective=spectral)
    python benchmarks/default_runs.py --objectives all         # every objective with its defaults
    python benchmarks/default_runs.py --objectives simclr byol -- trainer.epochs=5

Each run is a real `specrep train` subprocess in a temporary directory. Printed per run: wall time
(start-up, data, training and evaluation), training time, linear-probe and kNN top-1, the random-init
probe top-1 and the margin over it; for image-text runs (clip, siglip on shapes) the zero-shot top-1
and the retrieval recall@1 both ways.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common import hardware

CONF = Path(__file__).resolve().parents[1] / "conf"


def two_tower_columns(report) -> list:
    """Zero-shot top-1 and retrieval R@1 of an image-text run; '-' for the others."""
    if "zero_shot" not in report:
        return ["-", "-", "-"]
    retrieval = report.get("retrieval", {})
    return [f"{report['zero_shot']['top1']:.1f}",
            *(f"{retrieval[d]['r1']:.1f}" if d in retrieval else "-" for d in ("image_to_text", "text_to_image"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="+", default=["spectral"],
                        help="objective options to run, or 'all'")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (after --)")
    args = parser.parse_args()
    objectives = args.objectives
    if objectives == ["all"]:
        objectives = sorted(p.stem for p in (CONF / "objective").glob("*.yaml"))

    import torch
    machine = hardware(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    table = Table(title=f"default runs on {machine}")
    for col in ("objective", "wall s", "train s", "probe top-1", "kNN top-1", "random-init top-1", "margin",
                "zero-shot top-1", "i->t R@1", "t->i R@1"):
        table.add_column(col, justify="right" if col != "objective" else "left")
    with tempfile.TemporaryDirectory() as tmp:
        for objective in objectives:
            run_dir = Path(tmp) / objective
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "specrep_cli", "train", f"objective={objective}",
                                   *args.overrides, f"hydra.run.dir={run_dir}"], cwd=tmp,
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                table.add_row(objective, f"{wall:.0f}", "failed", proc.stderr.strip().splitlines()[-1][:60],
                              *[""] * 6)
                continue
            r = json.loads((run_dir / "report.json").read_text())
            probe, rand = r["linear_probe"]["top1"], r["random_init"]["linear_probe_top1"]
            table.add_row(objective, f"{wall:.0f}", f"{r['timing']['train_seconds']:.0f}", f"{probe:.1f}",
                          f"{r['knn']['top1']:.1f}", f"{rand:.1f}", f"{probe - rand:+.1f}",
                          *two_tower_columns(r))
            Console().print(f"{objective}: done in {wall:.0f} s")
    Console().print(table)


if __name__ == "__main__":
    main()
