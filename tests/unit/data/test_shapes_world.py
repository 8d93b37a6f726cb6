"""dataset.source=shapes_world and dataset.images: graphs whose nodes are images, with a known kernel."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from PIL import Image

from specrep_cli.config import GraphConfig, compose_config
from specrep_cli.data.datasets import load_dataset
from specrep_cli.data.graphs import make_graph
from specrep_cli.data.pairs import EdgePairs
from specrep_cli.data.shapes_world import COLOUR_PAIRS, ROTATIONS, SIZES, shapes_world
from specrep_cli.errors import DatasetError
from specrep_cli.eval.graph_truth import truth

NUISANCE = len(COLOUR_PAIRS) * len(SIZES) * len(ROTATIONS)


def kernel_by_definition(classes: int, grid: int, eps: float, move: float) -> torch.Tensor:
    """K[x, x'] written out from the pair law, state by state: keep the class w.p. 1 - eps (else each other
    class w.p. eps / (C - 1)); per axis, step to a neighbouring cell w.p. move each way, stay otherwise
    (a step off the board is a stay); the nuisance uniform."""
    def axis(a: int, b: int) -> float:
        if abs(a - b) == 1:
            return move
        if a == b:
            return 1 - move * ((a > 0) + (a < grid - 1))
        return 0.0

    states = list(itertools.product(range(classes), range(grid), range(grid), range(NUISANCE)))
    k = torch.zeros(len(states), len(states), dtype=torch.float64)
    for i, (c, r, q, _) in enumerate(states):
        for j, (c2, r2, q2, _) in enumerate(states):
            pc = 1 - eps if c == c2 else eps / (classes - 1)
            k[i, j] = pc * axis(r, r2) * axis(q, q2) / NUISANCE
    return k


@pytest.mark.parametrize("classes, grid, eps, move", [(2, 1, 0.3, 0.0), (3, 2, 0.2, 0.15), (2, 3, 0.4, 0.2)])
def test_the_world_is_the_kernel_of_its_pair_law_with_the_closed_form_spectrum(classes, grid, eps, move):
    world = shapes_world(classes, grid, eps, move, image_size=16, seed=0)
    expected = kernel_by_definition(classes, grid, eps, move)
    assert torch.allclose(world.kernel, expected, atol=1e-12)
    assert world.images.shape == (expected.shape[0], 3, 16, 16) and world.images.dtype == torch.uint8
    dense = torch.linalg.eigvalsh(expected).flip(0)   # symmetric, uniform p(x): its own normalised form
    assert torch.allclose(world.spectrum(), dense, atol=1e-10)
    assert world.labels.tolist() == [s // (grid * grid * NUISANCE) for s in range(expected.shape[0])]


def test_the_default_world_has_16_eigenfunctions_then_a_gap_to_zero_and_the_truth_finds_them():
    cfg = GraphConfig(source="shapes_world")
    graph = make_graph(cfg)
    assert graph.num_nodes == 4 * 4 * NUISANCE and graph.images.shape[1:] == (3, 32, 32)
    found = truth(graph, 17, 60)
    expected = [1, 0.8, 0.8, 0.64, 0.5, 0.5, 0.5, *[0.4] * 6, 0.32, 0.32, 0.32, 0.0]
    assert torch.allclose(found.values[:17], torch.tensor(expected, dtype=torch.float64), atol=1e-9)
    again = make_graph(cfg)   # rendered from the seed: the same bytes
    assert torch.equal(graph.images, again.images)
    images = graph.images.view(4, 4, NUISANCE, -1).float()
    assert (images[:, :, 0] - images[:, :, 1]).abs().mean() > 5   # the nuisance changes the pixels


def test_image_node_pairs_are_an_edge_s_two_images_normalised_or_augmented_on_top():
    world = ["dataset=shapes_world", "dataset.world_classes=2", "dataset.world_grid=1", "dataset.image_size=16"]
    cfg = compose_config("train", world)
    data = load_dataset(cfg.dataset)
    assert data.images and data.in_channels == 3 and data.image_size == 16 and data.mean.shape == (3,)
    pairs = EdgePairs(data.graph, data.inputs, torch.device("cpu"), cfg.augmentation, data.mean, data.std)
    torch.manual_seed(0)
    x, y = pairs(data.ssl_images[:64], torch.zeros(64))
    assert cfg.augmentation.name == "none" and x.shape == y.shape == (64, 3, 16, 16) and x.dtype == torch.float32
    flat = data.inputs.float().div(255).sub(data.mean[:, None, None]).div(data.std[:, None, None]).flatten(1)
    nearest = [torch.cdist(v.flatten(1), flat).min(1) for v in (x, y)]   # each view is a node's image
    assert max(float(n.values.max()) for n in nearest) < 0.05   # distinct nodes are > 5 apart
    same_class = (data.graph.labels[nearest[0].indices] == data.graph.labels[nearest[1].indices]).float().mean()
    assert 0.5 < same_class < 0.8   # the class kept with probability 1 - 0.375
    on_top = compose_config("train", [*world, "augmentation=simclr"]).augmentation
    pairs = EdgePairs(data.graph, data.inputs, torch.device("cpu"), on_top, data.mean, data.std)
    x, _ = pairs(data.ssl_images[:64], torch.zeros(64))
    assert torch.cdist(x.flatten(1), flat).min(1).values.median() > 1   # cropped, jittered: not a node's image


def write_png(path: Path, colour) -> None:
    Image.new("RGB", (20, 24), colour).save(path)


def test_a_file_graph_reads_its_nodes_images_relative_to_the_csv(tmp_path):
    (tmp_path / "img").mkdir()
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 255, 0)), ("c", (0, 0, 255))):
        write_png(tmp_path / "img" / f"{name}.png", colour)
    (tmp_path / "edges.csv").write_text("a,b\nb,c\n")
    (tmp_path / "nodes.csv").write_text("node,path\nc,img/c.png\na,img/a.png\nb,img/b.png\n")
    cfg = GraphConfig(source="file", path=str(tmp_path / "edges.csv"), images=str(tmp_path / "nodes.csv"),
                      image_size=8)
    graph = make_graph(cfg)
    assert graph.images.shape == (3, 3, 8, 8)
    assert graph.names == ["a", "b", "c"] and graph.images[:, :, 4, 4].tolist() == [[255, 0, 0], [0, 255, 0],
                                                                                    [0, 0, 255]]
    (tmp_path / "nodes.csv").write_text("a,img/a.png\nb,img/b.png\n")
    with pytest.raises(DatasetError, match="has no image for node 'c'"):
        make_graph(cfg)
    (tmp_path / "nodes.csv").write_text("a,img/a.png\nb,img/b.png\nc,img/missing.png\n")
    with pytest.raises(DatasetError, match="line 3: no image file .*missing.png for node 'c'"):
        make_graph(cfg)
    (tmp_path / "img" / "c.png").write_bytes(b"not a png")
    (tmp_path / "nodes.csv").write_text("a,img/a.png\nb,img/b.png\nc,img/c.png\n")
    with pytest.raises(DatasetError, match="cannot read image .*c.png"):
        make_graph(cfg)


@pytest.mark.parametrize("encoder", ["resnet18", "timm"])
def test_other_image_encoders_take_the_world_s_pixels(encoder):
    """encoder=resnet18 and timm train on image nodes as the convnet does: one step of the shipped objective."""
    if encoder == "timm":
        pytest.importorskip("timm", reason="encoder=timm is an extra: pip install 'specrep[timm]'")
    from specrep_cli.models.encoders import build_encoder
    from specrep_cli.models.timm_backbones import with_model_sizes
    from specrep_cli.objectives.methods import build_method
    world = ["dataset=shapes_world", "dataset.world_classes=2", "dataset.world_grid=1", "dataset.image_size=16",
             f"encoder={encoder}", "trainer.batch_size=16"]
    small = ["encoder.model_name=resnet10t"] if encoder == "timm" else ["encoder.width=8"]
    cfg = compose_config("train", world + small)
    data = load_dataset(cfg.dataset)
    cfg = with_model_sizes(cfg, data.image_size)
    method = build_method(cfg.objective, lambda tower="x": build_encoder(cfg.encoder, data.in_channels), 16)
    pairs = EdgePairs(data.graph, data.inputs, torch.device("cpu"), cfg.augmentation, data.mean, data.std)
    terms = method(*pairs(data.ssl_images[:16], torch.zeros(16)))
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and cfg.encoder.projector_out_dim == 16
