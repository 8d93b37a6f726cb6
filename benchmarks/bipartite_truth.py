"""Two towers against the exact SVD: spectral_clip, clip and siglip on bipartite graphs.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bipartite_truth.py [--only spectral_clip] [--graphs sbm]

Each run is `specrep train dataset=graph objective=X encoder.dim=d` on a bipartite graph, through the same
train() as the CLI: a bipartite SBM (dataset.source=bipartite_sbm), one with unequal sides, and Davis's
southern women and the events they attended (networkx, written to an edge list and read with
dataset.source=file dataset.bipartite=true, as a user's file would be; skipped, saying so, without
networkx). phi(x) and nu(y) are scored against the top-d left and right singular vectors of
D_x^-1/2 A D_y^-1/2; d sits at a singular gap of each graph. spectral_clip runs the plain command (its
schedule: conf/tuned/graph/spectral_clip_adamw.yaml); clip and siglip take the same schedule on the
command line (AdamW lr 0.03, no weight decay, 3,600 steps of 512 pairs). Printed per run: each tower's
subspace alignment, the mean singular value error, the gap, the steps and the seconds.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compose_train, graph_steps, print_header, train_report  # noqa: E402

GRAPHS = {   # name -> (its dataset overrides, d at a singular gap)
    "bipartite sbm (4 x 250 | 4 x 250)": (["dataset.source=bipartite_sbm"], 4),
    "bipartite sbm seed 1 (3 x 300 | 3 x 100)": (["dataset.source=bipartite_sbm", "dataset.seed=1", "dataset.blocks=3",
                                                   "dataset.block_size=300", "dataset.block_size_y=100",
                                                   "dataset.p_in=0.08", "dataset.p_out=0.01"], 3),
    "southern women (18 | 14)": (["dataset.source=file", "dataset.bipartite=true"], 3),
}
SCHEDULE = ["optim.lr=0.03", "optim.weight_decay=0", "trainer.batch_size=512", "trainer.epochs=72",
            "dataset.pairs_per_epoch=25600"]   # conf/tuned/graph/table.yaml's, for the objectives without it
OBJECTIVES = {"spectral_clip": ["objective=spectral_clip"], "clip": ["objective=clip", *SCHEDULE],
              "siglip": ["objective=siglip", *SCHEDULE]}
QUIET = ["trainer.device=cpu", "trainer.checkpoint_every_n_epochs=1000", "trainer.keep_best=false"]


def southern_women(folder: Path) -> list[str] | None:
    """Davis's southern women as `woman,event` lines (x: the women): the dataset.path override."""
    try:
        import networkx
    except ImportError:
        return None
    graph = networkx.davis_southern_women_graph()
    women = {n for n, side in graph.nodes(data="bipartite") if side == 0}
    path = folder / "southern_women.csv"
    path.write_text("".join(f"{a},{b}\n" if a in women else f"{b},{a}\n" for a, b in graph.edges()))
    return [f"dataset.path={path}"]


def row(objective: str, graph: str, report: dict | str, seconds: float, steps: int) -> str:
    if isinstance(report, str):
        return f"| {objective} | {graph} | {report} | | | | {steps} | {seconds:.0f} |"
    b = report["bipartite"]
    return (f"| {objective} | {graph} | {b['phi']['subspace_alignment']:.3f} | {b['nu']['subspace_alignment']:.3f} | "
            f"{b['singular_value_error']:.3f} | {b['singular_gap']:.3f} | {steps} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(OBJECTIVES), help="objectives, comma-separated")
    parser.add_argument("--graphs", default=None, help="graphs whose name contains any of these, comma-separated")
    parser.add_argument("overrides", nargs="*", help="more overrides for every run")
    args = parser.parse_args()
    logging.getLogger("specrep").setLevel(logging.WARNING)
    print_header(["objective", "graph", "phi alignment", "nu alignment", "singular value error", "singular gap",
                  "steps", "seconds"])
    wanted = args.graphs.split(",") if args.graphs else None
    with tempfile.TemporaryDirectory() as tmp:
        for graph, (overrides, d) in GRAPHS.items():
            if wanted and not any(w in graph for w in wanted):
                continue
            extra = southern_women(Path(tmp)) if "women" in graph else []
            if extra is None:
                print(f"| - | {graph} | skipped: pip install networkx | | | | | |")
                continue
            for objective in args.only.split(","):
                cfg = compose_train(["dataset=graph", *overrides, *extra, f"encoder.dim={d}", *OBJECTIVES[objective],
                                     *QUIET, *args.overrides])
                report, seconds = train_report(cfg, Path(tmp) / f"{objective}_{len(graph)}")
                print(row(objective, graph, report, seconds, graph_steps(cfg)), flush=True)


if __name__ == "__main__":
    main()
