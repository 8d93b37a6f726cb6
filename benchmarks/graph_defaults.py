"""The plain command on graphs the defaults were not tuned on: `specrep train dataset=graph
objective=X encoder.dim=d` and the graph, nothing else, so that the settings come from conf/tuned/graph/.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/graph_defaults.py [--only spectral,pca] [--graphs karate]

conf/tuned/graph/ was chosen on SBMs of dataset.seed=0 (4 blocks x 250 nodes; 5 x 800), the
1,000-node ring and the Les Miserables co-appearance graph. The graphs here are others: SBMs of other
seeds, sizes and block counts, a smaller and sparser ring, and three real graphs from networkx
(Zachary's karate club, the Florentine families' marriages, Davis's southern women and their events),
written to an edge-list CSV and read with dataset.source=file as a user's would be (skipped, saying
so, without networkx). d sits at an eigengap of each graph. Each run is the same
train() the CLI calls; printed per run: subspace alignment with the true top-d eigenspace, the
alignment of each eigenspace in order after Rayleigh-Ritz, the eigengap, the optimizer steps, the
seconds, and whether the report says "not converged".
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alignments, compose_train, graph_steps, print_header, train_report  # noqa: E402

GRAPHS = {   # name -> (its dataset overrides, d at a gap)
    "sbm seed 1 (4 x 250)": (["dataset.source=sbm", "dataset.seed=1"], 4),
    "sbm seed 2 (3 x 600)": (["dataset.source=sbm", "dataset.seed=2", "dataset.blocks=3", "dataset.block_size=600",
                             "dataset.p_in=0.05", "dataset.p_out=0.004"], 3),
    "sbm seed 3 (8 x 60)": (["dataset.source=sbm", "dataset.seed=3", "dataset.blocks=8", "dataset.block_size=60",
                            "dataset.p_in=0.3", "dataset.p_out=0.01"], 8),
    "sbm seed 4 (5 x 800)": (["dataset.source=sbm", "dataset.seed=4", "dataset.blocks=5", "dataset.block_size=800",
                             "dataset.p_in=0.02", "dataset.p_out=0.001"], 5),
    "ring 400 (20 hops)": (["dataset.source=ring", "dataset.num_nodes=400", "dataset.hops=20"], 5),
    "karate club": (["dataset.source=file"], 3),
    "florentine families": (["dataset.source=file"], 3),
    "southern women": (["dataset.source=file"], 3),
}
NETWORKX = {"karate club": "karate_club_graph", "florentine families": "florentine_families_graph",
            "southern women": "davis_southern_women_graph"}
OBJECTIVES = {"spectral": ["objective=spectral"], "nested spectral": ["objective=spectral", "objective.nested=true"],
              "spectral_byol": ["objective=spectral_byol"], "pca": ["objective=pca"]}
QUIET = ["trainer.device=cpu", "trainer.checkpoint_every_n_epochs=1000", "trainer.keep_best=false"]


def edge_list(name: str, folder: Path) -> list[str] | None:
    """A networkx graph written as `source,target,weight` lines: the dataset.path override (None without networkx)."""
    try:
        import networkx
    except ImportError:
        return None
    graph = getattr(networkx, NETWORKX[name])()
    path = folder / f"{name.replace(' ', '_')}.csv"
    path.write_text("".join(f"{a},{b},{w.get('weight', 1)}\n" for a, b, w in graph.edges(data=True)))
    return [f"dataset.path={path}"]


def run_one(objective: str, graph: str, folder: Path) -> tuple[dict | str, float, int]:
    """(the run's report.json, or why it did not run; seconds of train(); optimizer steps)."""
    overrides, d = GRAPHS[graph]
    if graph in NETWORKX:
        path = edge_list(graph, folder)
        if path is None:
            return "skipped: pip install networkx", 0.0, 0
        overrides = overrides + path
    cfg = compose_train(["dataset=graph", *overrides, f"encoder.dim={d}", *OBJECTIVES[objective], *QUIET])
    run_dir = folder / "".join(c if c.isalnum() else "_" for c in f"{objective} {graph}")
    return (*train_report(cfg, run_dir), graph_steps(cfg))


def row(objective: str, graph: str, report: dict | str, seconds: float, steps: int) -> str:
    if isinstance(report, str):
        return f"| {objective} | {graph} | {report} | | | | {seconds:.0f} | |"
    g = report["graph"]
    ritz = alignments(g.get("ritz_eigenspaces", []))
    verdict = g.get("convergence", {}).get("converged")
    converged = {True: "yes", False: "not converged", None: "not judged"}[verdict]   # None: a moving target
    return (f"| {objective} | {graph} | {g['subspace_alignment']:.3f} | {ritz} | {g['eigengap']:.3f} | {steps} | "
            f"{seconds:.0f} | {converged} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(OBJECTIVES), help="objectives, comma-separated")
    parser.add_argument("--graphs", default=",".join(GRAPHS), help="graphs, comma-separated (names above)")
    args = parser.parse_args()
    logging.getLogger("specrep").setLevel(logging.ERROR)
    print_header(["objective", "graph", "subspace alignment", "per eigenspace after Ritz, in order", "eigengap",
                  "steps", "seconds", "converged"])
    with tempfile.TemporaryDirectory() as tmp:
        for graph in args.graphs.split(","):
            for objective in args.only.split(","):
                print(row(objective, graph, *run_one(objective, graph, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
