"""dataset=graph: the truth against closed forms, the edge sampler against A, the alignment metric on
known subspaces, the nested losses against a brute-force loop over prefixes, file errors, and a short
spectral run on an SBM that must find the block eigenspace (embeddings.pt, `specrep eval` too)."""
from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from specrep_cli import config
from specrep_cli.config import GraphConfig, from_dict
from specrep_cli.data.graphs import Graph, load_graph, ring, sbm, undirected
from specrep_cli.data.pairs import EdgePairs
from specrep_cli.errors import DatasetError
from specrep_cli.eval import eigensolvers
from specrep_cli.eval.graph_truth import graph_report, subspace_alignment, top_eigenpairs
from specrep_cli.objectives import losses as O
from specrep_cli.report.report import objective_value

config.register()


def graph_cfg(**keys):
    return from_dict(GraphConfig, keys)


# ------------------------------------------------------------------------------------- the truth
@pytest.mark.parametrize("n, hops", [(60, 1), (61, 3)])
def test_ring_eigenvalues_are_its_fourier_modes(n, hops):
    """A ring's K = A / (2h) (every degree 2h): lambda_m = (1/h) sum_{j=1..h} cos(2 pi m j / n)."""
    closed = sorted(((1 / hops) * sum(math.cos(2 * math.pi * m * j / n) for j in range(1, hops + 1))
                     for m in range(n)), reverse=True)
    values, vectors = top_eigenpairs(ring(n, hops), 9)
    assert torch.allclose(values, torch.tensor(closed[:9], dtype=torch.float64), atol=1e-10)
    assert torch.allclose(vectors.T @ vectors, torch.eye(9, dtype=torch.float64), atol=1e-10)
    mode = torch.cos(2 * math.pi * torch.arange(n, dtype=torch.float64) / n)   # m = 1 lies in the top pair
    mode = mode / mode.norm()
    assert float((vectors[:, 1:3].T @ mode).pow(2).sum()) == pytest.approx(1.0, abs=1e-9)


def test_sparse_lanczos_gives_the_dense_answer(monkeypatch):
    pytest.importorskip("scipy", reason="the sparse solver is the [graph] extra: pip install 'specrep[graph]'")
    graph = sbm(3, 30, 0.4, 0.02, seed=1)
    dense_values, dense_vectors = top_eigenpairs(graph, 4)
    monkeypatch.setattr(eigensolvers, "seconds_per_cube", lambda: 1.0)   # a dense eigh "too slow": the sparse path
    values, vectors = top_eigenpairs(graph, 4)
    assert torch.allclose(values, dense_values, atol=1e-8)
    assert subspace_alignment(vectors, dense_vectors) == pytest.approx(1.0, abs=1e-8)


# ------------------------------------------------------------------------------------ the metric
def test_alignment_is_one_for_the_same_subspace_in_any_basis_and_zero_for_an_orthogonal_one():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(50, 6, generator=g, dtype=torch.float64))
    v, w = q[:, :3], q[:, 3:]
    mix = torch.randn(3, 3, generator=g, dtype=torch.float64)   # any invertible change of basis, any scale
    assert subspace_alignment(v @ mix, v) == pytest.approx(1.0, abs=1e-10)
    assert subspace_alignment(w * 5, v) == pytest.approx(0.0, abs=1e-10)
    half = torch.cat([v[:, :1], w[:, :2]], 1)   # shares one of three directions: cos^2 = 1, 0, 0
    assert subspace_alignment(half, v) == pytest.approx(1 / 3, abs=1e-10)


def test_the_exact_minimiser_scores_perfectly():
    """phi(x) = sqrt(lambda_k) v_k(x) / sqrt(p(x)): alignment 1, the true spectrum, no excess error."""
    graph = sbm(4, 25, 0.5, 0.02, seed=0)
    values, vectors = top_eigenpairs(graph, 4)
    phi = vectors * values.sqrt() / graph.node_weights().sqrt()[:, None]
    section = graph_report(graph, phi)
    assert section["subspace_alignment"] == pytest.approx(1.0, abs=1e-9)
    assert section["learned_spectrum"] == pytest.approx(values.tolist(), abs=1e-9)
    assert section["eckart_young"]["excess"] == pytest.approx(0.0, abs=1e-9)
    dense = graph.dense()
    p = dense.sum(1)
    k = dense / (p[:, None] * p[None, :]).sqrt()
    full = torch.linalg.eigvalsh(k)
    assert section["eckart_young"]["best"] == pytest.approx(
        float((full.pow(2).sum() - values.pow(2).sum()) / full.pow(2).sum()), abs=1e-9)


def test_a_d_that_splits_a_pair_is_warned_about():
    graph = ring(40, 2)
    values, vectors = top_eigenpairs(graph, 2)
    section = graph_report(graph, vectors / graph.node_weights().sqrt()[:, None], mu=1e-6)
    assert any("splits a near-degenerate eigenspace" in w for w in section["warnings"])
    assert any("caps the norm" in w for w in section["warnings"])


def test_components_of_a_long_ring_take_linear_time():
    """A 20,000-node ring has diameter 10,000: propagating labels along edges took that many rounds."""
    import time

    from specrep_cli.data.graphs import components
    two = ring(20_000, 1)
    n, half = two.num_nodes, two.src < 10_000   # cut into two rings of 10,000 and 5 isolated nodes
    src = torch.where(half, two.src, two.src % 10_000 + 10_000)
    dst = torch.where(half, two.dst % 10_000, two.dst % 10_000 + 10_000)
    graph = Graph(*undirected(src, dst, torch.ones(src.shape[0]), n + 5), [str(k) for k in range(n + 5)])
    start = time.perf_counter()
    assert components(ring(20_000, 1)) == 1 and components(graph) == 7
    assert time.perf_counter() - start < 2.0


def test_components_without_scipy_agree_with_scipy_on_random_graphs():
    csgraph = pytest.importorskip("scipy.sparse.csgraph")
    from scipy.sparse import coo_matrix

    from specrep_cli.data.graphs import component_roots
    g = torch.Generator().manual_seed(0)
    for n, e in [(1, 0), (50, 20), (300, 250), (2000, 1800), (2000, 6000)]:
        src, dst = torch.randint(n, (e,), generator=g), torch.randint(n, (e,), generator=g)
        roots = component_roots(n, src, dst)
        count, labels = csgraph.connected_components(coo_matrix(([1] * e, (src.numpy(), dst.numpy())), (n, n)),
                                                     directed=False)
        assert torch.unique(roots).numel() == count
        pairs = torch.unique(torch.stack([roots, torch.as_tensor(labels, dtype=torch.long)]), dim=1)
        assert pairs.shape[1] == count   # the same partition: each root with one scipy label
    long = ring(200_000, 1)
    assert bool((component_roots(long.num_nodes, long.src, long.dst) == 0).all())


# ---------------------------------------------------------------------------------- the sampler
def test_edge_pairs_are_drawn_with_probability_a_over_its_sum():
    src, dst = torch.tensor([0, 0, 1, 2, 3, 3]), torch.tensor([1, 2, 2, 3, 4, 3])
    s, d, w = undirected(src, dst, torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5, 4.0]), 5)
    graph = Graph(s, d, w, [str(i) for i in range(5)])
    pairs = EdgePairs(graph, torch.arange(5), torch.device("cpu"))
    torch.manual_seed(0)
    draws = 200_000
    x, y = pairs(torch.zeros(draws), torch.zeros(draws))
    counts = torch.bincount(x * 5 + y, minlength=25).double()
    expected = graph.dense().flatten() * draws
    support = expected > 0
    assert counts[~support].sum() == 0   # never a pair that is not an edge
    chi2 = float(((counts[support] - expected[support]).pow(2) / expected[support]).sum())
    dof = int(support.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), chi2   # ~ 6 sigma above the chi-square's mean


# ----------------------------------------------------------------------------------- the losses
def brute_nested_spectral(z_a, z_b, mu):
    r = math.sqrt(mu)
    a = z_a * (r / z_a.norm(dim=1, keepdim=True).clamp_min(r))
    b = z_b * (r / z_b.norm(dim=1, keepdim=True).clamp_min(r))
    B, d = a.shape
    total = 0
    for k in range(1, d + 1):
        for i in range(B):
            total = total - 2 / B * (a[i, :k] @ b[i, :k]) / mu
            for j in range(B):
                if i != j:
                    total = total + (a[i, :k] @ b[j, :k]) ** 2 / (B * (B - 1)) / mu
    return total


def brute_nested_pca(psi_a, psi_b, lam):
    B, d = psi_a.shape
    total = 0
    for k in range(1, d + 1):
        a, b = psi_a[:, :k], psi_b[:, :k]
        c = (a.T @ a + b.T @ b) / (2 * B)
        total = total - (a * b).sum() / B + lam * ((c - torch.eye(k, dtype=c.dtype)) ** 2).sum()
    return total


@pytest.mark.parametrize("mu", [0.5, 100.0])   # 0.5: some rows are projected onto the ball
def test_nested_spectral_loss_and_gradient_match_the_sum_over_prefixes(mu):
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    fast, brute = O.nested_spectral_contrastive(z_a, z_b, mu), brute_nested_spectral(z_a, z_b, mu)
    assert fast.item() == pytest.approx(brute.item(), rel=1e-10)
    grads = torch.autograd.grad(fast, (z_a, z_b))
    expected = torch.autograd.grad(brute, (z_a, z_b))
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-10)


def test_nested_pca_loss_and_gradient_match_the_sum_over_prefixes():
    g = torch.Generator().manual_seed(1)
    psi_a = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    psi_b = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fast, brute = O.pca_penalty(psi_a, psi_b, 0.7, nested=True), brute_nested_pca(psi_a, psi_b, 0.7)
    assert fast.item() == pytest.approx(brute.item(), rel=1e-10)
    for got, want in zip(torch.autograd.grad(fast, (psi_a, psi_b)), torch.autograd.grad(brute, (psi_a, psi_b))):
        assert torch.allclose(got, want, atol=1e-10)


# ---------------------------------------------------------------------------------------- files
BAD_FILES = [
    ("a,b\nc\n", "line 2: missing column"),
    ("source,target,weight\na,b,1\nb,c,-2\n", "line 3: negative weight"),
    ("a\tb\tx\n", "line 1: weight 'x' is not a number"),
    ("a,a\nb,b,2\n", "only self-loops"),
    ("# just a comment\n\n", "is empty"),
]


@pytest.mark.parametrize("text, needle", BAD_FILES, ids=[n for _, n in BAD_FILES])
def test_a_bad_edge_list_is_one_line_naming_the_file_and_line(tmp_path, text, needle):
    path = tmp_path / "edges.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=needle) as err:
        load_graph(graph_cfg(source="file", path=str(path)))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_an_edge_list_with_names_labels_and_features(tmp_path, caplog):
    (tmp_path / "edges.tsv").write_text("source\ttarget\tweight\nann\tbob\t2\nbob\tann\t1\ncat\tdan\t1\n")
    (tmp_path / "labels.csv").write_text("ann,x\nbob,x\ncat,y\ndan,y\n")
    (tmp_path / "features.csv").write_text("ann,1,0\nbob,1,0.5\ncat,0,1\ndan,0.2,1\n")
    with caplog.at_level(logging.WARNING, logger="specrep"):
        data = load_graph(graph_cfg(source="file", path=str(tmp_path / "edges.tsv"),
                                    labels_path=str(tmp_path / "labels.csv"),
                                    features_path=str(tmp_path / "features.csv")))
    assert "2 connected components" in caplog.text and "repeated 2 times" in caplog.text
    g = data.graph
    assert g.names == ["ann", "bob", "cat", "dan"] and g.classes == ["x", "y"]
    dense = g.dense() * 8   # repeated edges add up (2 + 1), both ways: A[ann, bob] = 3; total 2 * 4
    assert dense[0, 1] == dense[1, 0] == 3 and dense[2, 3] == 1 and float(dense.sum()) == 8
    assert data.inputs.shape == (4, 2) and data.in_channels == 2
    (tmp_path / "labels.csv").write_text("ann,x\neve,y\n")
    with pytest.raises(DatasetError, match=r"labels.csv, line 2: node 'eve' is not in the edge list"):
        load_graph(graph_cfg(source="file", path=str(tmp_path / "edges.tsv"), labels_path=str(tmp_path / "labels.csv")))


def ring_lines(n: int) -> str:
    return "".join(f"n{k},n{(k + 1) % n}\n" for k in range(n))


def test_a_byte_order_mark_before_the_header_adds_no_node(tmp_path):
    from specrep_cli.data.graph_files import read_edges, read_labels
    (tmp_path / "edges.csv").write_text("\ufeffsource,target\n" + ring_lines(200), encoding="utf-8")
    edges = read_edges(tmp_path / "edges.csv")
    assert len(edges.names) == 200 and edges.src.numel() == 200 and edges.names[0] == "n0"
    (tmp_path / "labels.csv").write_text("\ufeffn0,a\nn1,b\n", encoding="utf-8")   # no header: n0 is a node
    labels, classes = read_labels(tmp_path / "labels.csv", {name: i for i, name in enumerate(edges.names)})
    assert classes == ["a", "b"] and labels[:3].tolist() == [0, 1, -1]


@pytest.mark.parametrize("first, edges, nodes", [
    ("u,v", 600, 599),                       # u and v are nodes of later lines: an edge
    ("u,v,1", 600, 599),                     # the same
    ("Source,Target", 599, 599),             # header words, none a node: a header (any case)
    ("src\tdst\tweight", 599, 599),
    ("source,n5", 600, 600),                 # n5 is not a header word: an edge
])
def test_a_first_line_is_a_header_only_when_made_of_header_words_that_are_not_nodes(tmp_path, first, edges, nodes):
    from specrep_cli.data.graph_files import read_edges
    body = ring_lines(597) + "n0,u\nv,n1\n"   # 599 edges; u and v are nodes
    sep = "\t" if "\t" in first else ","
    (tmp_path / "edges.csv").write_text(first + "\n" + body.replace(",", sep))
    read = read_edges(tmp_path / "edges.csv")
    assert (read.src.numel(), len(read.names)) == (edges, nodes)


def test_a_node_given_two_labels_is_refused_naming_the_lines(tmp_path):
    from specrep_cli.data.graph_files import read_labels
    path = tmp_path / "labels.csv"
    path.write_text("node,label\nann,x\nbob,y\nann,x\n# later\nann,y\n")
    index = {"ann": 0, "bob": 1}
    with pytest.raises(DatasetError) as err:
        read_labels(path, index)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "lines 2 and 6" in message and "'ann'" in message
    path.write_text("node,label\nann,x\nbob,y\nann,x\n")   # the same label twice: fine
    assert read_labels(path, index)[0].tolist() == [0, 1]


@pytest.mark.parametrize("data, offset, line", [(b"a,b\nb,c\n\xff\xfe,d\n", 8, 3),
                                                (b"\xef\xbb\xbfa,b\nb,\xe9\n", 9, 2)])
def test_an_edge_list_that_is_not_utf8_is_one_line_with_the_byte_offset(tmp_path, data, offset, line):
    path = tmp_path / "edges.csv"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as err:
        load_graph(graph_cfg(source="file", path=str(path)))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and f"byte {offset}" in message
    assert f"line {line}" in message and "UTF-8" in message


# ------------------------------------------------------------------------------ a training run
SHORT = ["dataset=graph", "dataset.blocks=4", "dataset.block_size=40", "dataset.p_in=0.4", "dataset.p_out=0.01",
         "encoder.dim=4", "objective.mu=100", "optim.lr=0.02", "optim.weight_decay=0", "trainer.batch_size=256",
         "dataset.pairs_per_epoch=5120", "trainer.epochs=10", "trainer.device=cpu", "trainer.precision=fp32",
         "eval.random_init=false", "eval.every_n_epochs=5", "eval.probe.fast.steps=30"]


@pytest.mark.integration   # a whole run
def test_a_short_spectral_run_finds_the_block_eigenspace_and_eval_writes_the_embeddings(tmp_path):
    from specrep_cli.eval.command import evaluate_checkpoint
    from specrep_cli.train.loop import train
    cfg = config.compose_config("train", SHORT)
    report = train(cfg, tmp_path / "run")
    graph = report["graph"]
    assert graph["subspace_alignment"] >= 0.95, graph
    assert graph["eigengap"] > 0.3 and report["linear_probe"]["top1"] >= 95
    embeddings = torch.load(tmp_path / "run" / "embeddings.pt", weights_only=True)
    assert embeddings["nodes"] == [str(i) for i in range(160)]
    assert embeddings["phi"].shape == (160, 4) and embeddings["h"].shape == (160, 4)
    assert "## The graph's eigenspace" in (tmp_path / "run" / "report.md").read_text()
    assert (tmp_path / "run" / "plots" / "graph.png").is_file()
    eval_cfg = config.compose_config("eval", [f"checkpoint={tmp_path / 'run'}", "device=cpu"])
    again = evaluate_checkpoint(eval_cfg, tmp_path / "eval")
    assert again["graph"]["subspace_alignment"] == pytest.approx(graph["subspace_alignment"], abs=1e-6)
    reloaded = torch.load(tmp_path / "eval" / "embeddings.pt", weights_only=True)
    assert torch.allclose(reloaded["phi"], embeddings["phi"])
    written = json.loads((tmp_path / "run" / "report.json").read_text())
    assert written["graph"]["d"] == 4
    for key in (k for k in config.REPORT_METRICS if k.startswith("graph.")):
        assert not math.isnan(objective_value(written, key, tmp_path / "run")), key
