"""The name -> builder registries: one Registry class behind objective=, encoder= and dataset=, each
agreeing with config.py's schemas and conf/'s YAMLs, and an unknown name is an error naming the known ones."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from specrep_cli import config
from specrep_cli.data.datasets import load_dataset
from specrep_cli.data.loaders import LOADERS
from specrep_cli.errors import DatasetError
from specrep_cli.models import build_encoder
from specrep_cli.models.encoders import BACKBONES
from specrep_cli.objectives.methods import METHODS, Method, build_method
from specrep_cli.registry import Registry

CONF = Path(__file__).resolve().parents[2] / "conf"
ENCODER = config.from_dict(config.ImageEncoderConfig, {"name": "convnet", "width": 2, "projector_hidden_dim": 8,
                                                        "projector_out_dim": 4})


def yamls(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml")}


def test_register_get_and_names():
    things: Registry[int] = Registry("thing")
    things.register("b")(2)
    assert things.register("a")(1) == 1   # the decorator returns what it registers
    assert things.get("a") == 1 and things.names() == ["a", "b"] == list(things)
    assert "a" in things and "c" not in things


@pytest.mark.parametrize("error", [KeyError, DatasetError])
def test_an_unknown_name_names_the_known_ones(error):
    things: Registry[int] = Registry("thing", error=error)
    things.register("b")(2)
    things.register("a")(1)
    with pytest.raises(error, match="unknown thing 'c'; known: a, b"):
        things.get("c")


def test_a_name_is_registered_once():
    things: Registry[int] = Registry("thing")
    things.register("a")(1)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.register("a")(2)


def test_the_registries_agree_with_the_schemas_and_the_yamls():
    assert set(METHODS) == set(config.OBJECTIVE_SCHEMAS) == yamls("objective")
    assert set(BACKBONES) == set(config.ENCODER_SCHEMAS) == yamls("encoder")
    # dataset=graph is no image format: load_dataset hands it to graphs.load_graph; dataset=shapes_world
    # is dataset=graph with its own settings (no schema of its own)
    assert set(LOADERS) | {"graph"} == set(config.DATASET_SCHEMAS) == yamls("dataset") - {"shapes_world"}


def test_unknown_names_fail_before_any_work():
    with pytest.raises(KeyError, match="unknown objective 'nope'; known: barlow_twins, binary_nce"):
        build_method(dataclasses.replace(config.SimCLRConfig(), name="nope"), lambda tower="x": None, 8)
    with pytest.raises(KeyError, match="unknown encoder 'nope'; known: convnet, embedding"):
        build_encoder(dataclasses.replace(ENCODER, name="nope"), 3)
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known: cifar10, cifar100"):
        load_dataset(dataclasses.replace(config.ShapesConfig(), name="nope"))


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_is_built_from_its_schema_phi_first(name):
    """cls(cfg, make_encoder, batch_size): phi is the first encoder built, nu (two towers) the second."""
    asked = []

    def make_encoder(tower: str = "x"):
        asked.append(tower)
        return build_encoder(ENCODER, 3)

    torch.manual_seed(0)
    method = build_method(config.OBJECTIVE_SCHEMAS[name](), make_encoder, 8)
    assert isinstance(method, Method) and type(method) is METHODS.get(name)
    assert asked == (["x", "y"] if name in config.TWO_TOWER_OBJECTIVES else ["x"])
    torch.manual_seed(0)
    first = build_encoder(ENCODER, 3)   # the same draws: phi is built before anything else of the method
    assert all(torch.equal(a, b) for a, b in zip(method.encoder.state_dict().values(),
                                                 first.state_dict().values()))
