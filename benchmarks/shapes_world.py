"""The spectral view on images: every objective on dataset=shapes_world, a convnet on the nodes' pixels.

    python benchmarks/shapes_world.py [--only spectral,pca] [-- trainer.epochs=40 ...]

Each run is the plain command `specrep train dataset=shapes_world objective=...` (its shipped schedule:
conf/tuned/shapes_world/), through the same train() as the CLI, on trainer.threads=2 unless given. The
world's 512 images (4 shapes x 2 x 2 grid cells x 32 nuisance states) are the nodes; the pairs come
from its known kernel, whose top 16 eigenfunctions are the functions of (shape, cell) in six groups
of equal eigenvalues (1, 0.8, 0.64, 0.5, 0.4, 0.32), then 0. A row per run, from its report.json: the
subspace alignment of phi (d = 16) with them, the alignment of each group with phi's coordinates in the
same positions (what nested=true orders) and with phi's Ritz-ordered functions (eval.ritz: any
objective, no retraining), the probe on the shape, seconds (training and evaluation) and steps.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alignments, compose_train, graph_steps, print_header, train_report  # noqa: E402

OBJECTIVES = {   # objective -> its overrides: none but the objective (the plain command)
    "spectral": ["objective=spectral"],
    "nested spectral": ["objective=spectral", "objective.nested=true"],
    "spectral_byol": ["objective=spectral_byol"],
    "pca": ["objective=pca"],
    "simclr": ["objective=simclr"],
    "binary_nce": ["objective=binary_nce"],
    "barlow_twins": ["objective=barlow_twins"],
    "vicreg": ["objective=vicreg"],
    "byol": ["objective=byol"],
    "clip": ["objective=clip"],
}
COMMON = ["dataset=shapes_world", "trainer.threads=2", "eval.random_init=false", "trainer.keep_best=false"]


def row(objective: str, report: dict | str, seconds: float, steps: int) -> str:
    if isinstance(report, str):
        return f"| {objective} | {report} | | | | {seconds:.0f} | {steps} |"
    g = report["graph"]
    ritz = alignments(g["ritz_eigenspaces"]) if "ritz_eigenspaces" in g else g.get("ritz_skipped", "-")
    converged = "not converged" if g.get("convergence", {}).get("converged") is False else ""
    return (f"| {objective} | {g['subspace_alignment']:.3f} | {alignments(g['eigenspaces'])} | {ritz} | "
            f"{report['linear_probe']['top1']:.1f} | {seconds:.0f} | {steps} {converged} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(OBJECTIVES), help="objectives, comma-separated")
    parser.add_argument("--runs", default=None, help="keep the run dirs here (default: a temporary dir)")
    parser.add_argument("overrides", nargs="*", help="more overrides for every run, e.g. trainer.epochs=40")
    args = parser.parse_args()
    logging.getLogger("specrep").setLevel(logging.WARNING)
    print_header(["objective", "subspace alignment", "per eigenspace, in order", "after Rayleigh-Ritz",
                  "probe top-1 %", "seconds", "steps"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(args.runs or tmp)
        for objective in args.only.split(","):
            cfg = compose_train(COMMON + OBJECTIVES[objective] + args.overrides)
            report, seconds = train_report(cfg, tmp / objective.replace(" ", "_"))
            print(row(objective, report, seconds, graph_steps(cfg)), flush=True)


if __name__ == "__main__":
    main()
