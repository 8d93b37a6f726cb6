"""dataset=graph: a finite graph whose normalised adjacency is the augmentation kernel.

    graph = sbm(blocks, block_size, p_in, p_out, seed)   # or ring(num_nodes, hops), or make_graph(cfg) (files too)
    graph = bipartite_sbm(blocks, block_size, block_size_y, p_in, p_out, seed)   # x and y nodes: graph.num_x
    data = load_graph(cfg, device)                       # GraphData: what the loop and the evaluation read

A graph is a symmetric non-negative weight matrix A (kept as a coalesced list of directed edges, each
undirected edge both ways), the names of its nodes, optional labels and node features. Training pairs
are drawn from p(x, x') = A[x, x'] / sum(A) (pairs.EdgePairs); p(x) = sum_x' p(x, x') is a node's
weight. What the encoder sees (the "images" of the splits) is a node's id, its feature row, or its image
(dataset.images, or the shapes_world's renders: then any image encoder, the pairs normalised and,
with an augmentation chosen, augmented on top).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List

import numpy as np
import torch
from torch import Tensor

from ..config import GraphConfig
from ..errors import DatasetError
from .files import decode_images
from .graph_files import EdgeList, node_image_files, read_edges, read_features, read_labels
from .shapes_world import shapes_world
from .splits import ImageData

log = logging.getLogger("specrep")


@dataclass
class Graph:
    src: Tensor                     # int64 (E,): directed edges, each undirected edge both ways, coalesced
    dst: Tensor                     # int64 (E,)
    weight: Tensor                  # float64 (E,) > 0: A[src, dst] (repeated edges summed)
    names: List[str]                # node names, in row order
    labels: Tensor | None = None    # int64 (n,): class index, -1 for an unlabelled node; None: no labels
    classes: List[str] | None = None
    features: Tensor | None = None  # float32 (n, F): node features (encoder=mlp)
    images: Tensor | None = None    # uint8 (n, C, H, W): the nodes' images (image encoders)
    num_x: int | None = None        # bipartite: nodes [0, num_x) are x nodes, the rest y nodes (every edge joins two)

    @property
    def bipartite(self) -> bool:
        return self.num_x is not None

    def cross_edges(self) -> Tensor:
        """Bipartite: the directed edges x -> y (indices into src, dst, weight), p(x, y) = A_xy / sum(A_xy)."""
        return (self.src < self.num_x).nonzero().squeeze(1)

    @property
    def num_nodes(self) -> int:
        return len(self.names)

    @property
    def num_edges(self) -> int:
        """Undirected edges (a self-loop counts once)."""
        return int(((self.src < self.dst).sum() + (self.src == self.dst).sum()).item())

    def node_weights(self) -> Tensor:
        """p(x) = sum_x' A[x, x'] / sum(A), float64 (n,)."""
        p = torch.zeros(self.num_nodes, dtype=torch.float64).index_add_(0, self.src, self.weight)
        return p / p.sum()

    def dense(self) -> Tensor:
        """p(x, x') = A / sum(A) as a dense float64 (n, n) matrix."""
        a = torch.zeros(self.num_nodes, self.num_nodes, dtype=torch.float64)
        a.index_put_((self.src, self.dst), self.weight, accumulate=True)
        return a / a.sum()


def undirected(src: Tensor, dst: Tensor, weight: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each edge (u, v, w) both ways, repeated edges' weights added: coalesced (src, dst, weight)."""
    loop = src == dst   # a self-loop is one edge: A[u, u] += w, once
    s, d = torch.cat([src, dst[~loop]]), torch.cat([dst, src[~loop]])
    w = torch.cat([weight, weight[~loop]]).double()
    key, inverse = torch.unique(s * n + d, return_inverse=True)
    summed = torch.zeros(key.shape[0], dtype=torch.float64).index_add_(0, inverse, w)
    keep = summed > 0
    return key[keep] // n, key[keep] % n, summed[keep]


def sbm(blocks: int, block_size: int, p_in: float, p_out: float, seed: int) -> Graph:
    """A stochastic block model: an edge between two nodes with probability p_in inside a block and
    p_out between blocks, drawn once from `seed`; a node's label is its block."""
    n = blocks * block_size
    block = torch.arange(n) // block_size
    prob = torch.where(block[:, None] == block[None, :], p_in, p_out)
    upper = torch.triu(torch.rand(n, n, generator=torch.Generator().manual_seed(seed)) < prob, diagonal=1)
    src, dst = upper.nonzero().T
    src, dst, weight = undirected(src, dst, torch.ones(src.shape[0]), n)
    return Graph(src, dst, weight, [str(i) for i in range(n)], block, [f"block {b}" for b in range(blocks)])


def bipartite_sbm(blocks: int, block_size: int, block_size_y: int, p_in: float, p_out: float, seed: int) -> Graph:
    """A bipartite stochastic block model: blocks x block_size x nodes and blocks x block_size_y y nodes,
    an edge x-y with probability p_in when their blocks match, else p_out, drawn once from `seed`. An x
    node's label is its block (y nodes are unlabelled: the probe reads phi, the x tower)."""
    n_x, n_y = blocks * block_size, blocks * block_size_y
    bx, by = torch.arange(n_x) // block_size, torch.arange(n_y) // block_size_y
    prob = torch.where(bx[:, None] == by[None, :], p_in, p_out)
    x, y = (torch.rand(n_x, n_y, generator=torch.Generator().manual_seed(seed)) < prob).nonzero().T
    src, dst, weight = undirected(x, n_x + y, torch.ones(x.shape[0]), n_x + n_y)
    labels = torch.cat([bx, torch.full((n_y,), -1)])
    names = [f"x{i}" for i in range(n_x)] + [f"y{j}" for j in range(n_y)]
    return Graph(src, dst, weight, names, labels, [f"block {b}" for b in range(blocks)], num_x=n_x)


def first_seen(ids: Tensor) -> tuple[Tensor, Tensor]:
    """(the distinct values of ids in order of first appearance, each id's position among them)."""
    values, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((values.numel(),), ids.numel()).scatter_reduce(0, inverse, torch.arange(ids.numel()), "amin")
    order = first.argsort()
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel()))
    return values[order], rank[inverse]


def bipartite_file(cfg: GraphConfig, edges: EdgeList) -> Graph:
    """dataset.bipartite=true: the first column's names are x nodes and the second's y nodes (a name on
    both sides is two nodes), in order of first appearance; labels (dataset.labels_path) name x nodes."""
    xs, x = first_seen(edges.src)
    ys, y = first_seen(edges.dst)
    n_x, n_y = xs.numel(), ys.numel()
    index = {edges.names[i]: k for k, i in enumerate(xs.tolist())}
    labels, classes = read_labels(cfg.labels_path, index) if cfg.labels_path else (None, None)
    if labels is not None:
        labels = torch.cat([labels, torch.full((n_y,), -1)])
    src, dst, weight = undirected(x, n_x + y, edges.weight, n_x + n_y)
    names = [edges.names[i] for i in xs.tolist()] + [edges.names[i] for i in ys.tolist()]
    return Graph(src, dst, weight, names, labels, classes, num_x=n_x)


def ring(num_nodes: int, hops: int, arcs: int = 4) -> Graph:
    """A cycle where each node links to its `hops` neighbours on each side (weight 1); its normalised
    adjacency's eigenvectors are Fourier modes. A node's label is which of `arcs` equal arcs it is on."""
    i = torch.arange(num_nodes).repeat(hops)
    j = (i + torch.arange(1, hops + 1).repeat_interleave(num_nodes)) % num_nodes
    src, dst, weight = undirected(i, j, torch.ones(i.shape[0]), num_nodes)
    labels = torch.arange(num_nodes) * arcs // num_nodes
    return Graph(src, dst, weight, [str(k) for k in range(num_nodes)], labels, [f"arc {a}" for a in range(arcs)])


def component_roots(n: int, src: Tensor, dst: Tensor) -> Tensor:
    """Each node's component, as the smallest node id in it: vectorised union-find.

    Every round hooks, for each edge (u, v) between two trees, the larger root to the smaller
    (parent[max(ru, rv)] = min over such edges of min(ru, rv)), then compresses every path by pointer
    jumping (parent = parent[parent] until nothing changes), so each node points at its tree's root.
    A round that hooks nothing ends it: then every edge joins nodes of one tree, and trees only ever
    merge along edges. Roots only decrease and never form a cycle (a root hooks to a smaller one).
    """
    parent = torch.arange(n)
    while True:
        ru, rv = parent[src], parent[dst]
        hooked = parent.scatter_reduce(0, torch.maximum(ru, rv), torch.minimum(ru, rv), reduce="amin")
        while True:   # path compression: at most log2(depth) jumps
            jumped = hooked[hooked]
            if torch.equal(jumped, hooked):
                break
            hooked = jumped
        if torch.equal(hooked, parent):
            return parent
        parent = hooked


def components(graph: Graph) -> int:
    """Connected components: scipy.sparse.csgraph.connected_components (linear time) when scipy is
    importable, else component_roots' vectorised union-find. Linear or near it whatever the diameter
    (propagating labels along the edges takes as many rounds as the diameter: n^2 for a ring)."""
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
    except ImportError:
        return int(torch.unique(component_roots(graph.num_nodes, graph.src, graph.dst)).numel())
    n, ones = graph.num_nodes, np.ones(graph.src.shape[0])
    adjacency = coo_matrix((ones, (graph.src.numpy(), graph.dst.numpy())), shape=(n, n))
    return int(connected_components(adjacency, directed=False)[0])


@dataclass
class GraphData(ImageData):
    """ImageData for a graph: the splits' "images" are node inputs (ids, or feature rows) of the
    labelled nodes; `draws` numbers the pairs an epoch draws (EdgePairs draws the edges themselves)."""
    graph: Graph | None = None
    inputs: Tensor | None = None        # (n,) node ids or (n, F) features: what the encoder sees, every node
    train_nodes: Tensor | None = None   # int64: the probe's train split (node ids)
    test_nodes: Tensor | None = None
    draws: Tensor | None = None         # int64 (pairs_per_epoch,): an epoch's draws, on the device

    @property
    def ssl_images(self) -> Tensor:
        return self.draws

    @property
    def in_channels(self) -> int:
        """What the encoder is built for: the number of nodes (ids), of features per node, or of the
        nodes' image channels."""
        return self.inputs.shape[1] if self.inputs.ndim in (2, 4) else self.graph.num_nodes

    @property
    def image_size(self) -> int | None:
        """The side of the nodes' images; None when the nodes are ids or feature rows."""
        return self.inputs.shape[-1] if self.images else None

    @property
    def images(self) -> bool:
        """Whether the encoder sees the nodes' images (uint8 (n, C, H, W)), normalised by mean and std."""
        return self.inputs.ndim == 4


def node_split(labels: Tensor | None, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train, test) node ids: a fixed random test_fraction of the labelled nodes is the probe's test split."""
    if labels is None:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    labelled = (labels >= 0).nonzero().squeeze(1)
    perm = labelled[torch.randperm(labelled.numel(), generator=torch.Generator().manual_seed(seed))]
    n_test = max(1, round(labelled.numel() * test_fraction))
    if n_test >= labelled.numel():
        raise DatasetError(f"only {labelled.numel()} labelled nodes: too few for a train and a test split")
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def world_graph(cfg: GraphConfig) -> Graph:
    """dataset.source=shapes_world: A = the world's kernel (shapes_world.py), a node per state, its image."""
    world = shapes_world(cfg.world_classes, cfg.world_grid, cfg.world_class_change, cfg.world_move,
                         cfg.image_size, cfg.seed)
    src, dst = torch.triu(world.kernel > 0).nonzero().T   # each undirected edge once: `undirected` mirrors it
    src, dst, weight = undirected(src, dst, world.kernel[src, dst], world.kernel.shape[0])
    return Graph(src, dst, weight, world.names, world.labels, world.classes, images=world.images)


def make_graph(cfg: GraphConfig) -> Graph:
    if cfg.source == "sbm":
        return sbm(cfg.blocks, cfg.block_size, cfg.p_in, cfg.p_out, cfg.seed)
    if cfg.source == "ring":
        return ring(cfg.num_nodes, cfg.hops)
    if cfg.source == "shapes_world":
        return world_graph(cfg)
    if cfg.source == "bipartite_sbm":
        return bipartite_sbm(cfg.blocks, cfg.block_size, cfg.block_size_y or cfg.block_size, cfg.p_in, cfg.p_out,
                             cfg.seed)
    edges = read_edges(cfg.path)
    if cfg.bipartite:
        return bipartite_file(cfg, edges)
    n, index = len(edges.names), {name: i for i, name in enumerate(edges.names)}
    labels, classes = read_labels(cfg.labels_path, index) if cfg.labels_path else (None, None)
    features = read_features(cfg.features_path, index) if cfg.features_path else None
    images = decode_images(node_image_files(cfg.images, index), cfg.image_size) if cfg.images else None
    src, dst, weight = undirected(edges.src, edges.dst, edges.weight, n)
    return Graph(src, dst, weight, edges.names, labels, classes, features, images)


def load_graph(cfg: GraphConfig, device: torch.device = torch.device("cpu")) -> GraphData:
    """dataset=graph: the graph of cfg.source, checked, split and placed on `device`."""
    graph = make_graph(cfg)
    parts = components(graph)
    if parts > 1:
        log.warning(f"the graph has {parts} connected components: the top eigenvalue 1 of its normalised "
                    f"adjacency is repeated {parts} times (one indicator per component), so d < {parts} "
                    "splits that eigenspace and the alignment is not identifiable there")
    inputs = next(x for x in (graph.images, graph.features, torch.arange(graph.num_nodes)) if x is not None)
    train, test = node_split(graph.labels, cfg.test_fraction, cfg.seed)
    labels = graph.labels if graph.labels is not None else torch.zeros(graph.num_nodes, dtype=torch.long)
    draws = cfg.pairs_per_epoch or graph.num_edges
    inputs = inputs.to(device)
    return GraphData(inputs[train.to(device)], labels[train], inputs[test.to(device)], labels[test],
                     list(graph.classes or []), graph=graph, inputs=inputs, train_nodes=train, test_nodes=test,
                     draws=torch.arange(draws, device=device))
