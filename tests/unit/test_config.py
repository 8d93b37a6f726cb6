"""Every option of every config group composes, validates and builds; typos are caught."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from specrep_cli import cli, config
from specrep_cli.data import load_dataset
from specrep_cli.data.augment import make_views
from specrep_cli.models.encoders import build_encoder
from specrep_cli.models.timm_backbones import with_model_sizes
from specrep_cli.objectives.methods import build_method
from specrep_cli.train.optimizers import build_optimizer
from specrep_cli.train.setup import tower_input

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_"))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))
           if g not in ("experiment", "tuned")]   # tuned/: chosen by the (objective, optim) pair, tested below
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")
                     if not p.stem.endswith("_graph"))   # the papers' recipes: tested below
GRAPH_EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*_graph.yaml"))
SMALL = ["encoder.width=4", "encoder.projector_hidden_dim=16", "encoder.projector_out_dim=8",
         "trainer.batch_size=8"]

config.register()


def compose_train(overrides):
    with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    """CIFAR-10, CIFAR-100 and STL-10 in torchvision's on-disk formats, and image-text pairs; a few images each."""
    from fake_datasets import write_cifar, write_image_text, write_shards, write_stl10
    root = tmp_path_factory.mktemp("datasets")
    write_image_text(root / "pairs")
    write_cifar(root, "cifar10")
    write_cifar(root, "cifar100")
    write_stl10(root)
    write_shards(root / "shards", "train")
    write_shards(root / "shards", "test", shards=2)
    return root


def dataset_overrides(option: str, tiny_folder: Path, fake_root: Path):
    """What each dataset option needs to load a few images here."""
    if option == "imagefolder":
        return [f"dataset.root={tiny_folder}", "dataset.image_size=16"]
    if option == "image_text":
        return [f"dataset.root={fake_root / 'pairs'}", "dataset.image_size=16"]
    if option == "webdataset":
        return [f"dataset.shards='{fake_root / 'shards'}/train-{{000000..000003}}.tar'",
                f"dataset.eval_shards='{fake_root / 'shards'}/test-{{000000..000001}}.tar'",
                "dataset.image_size=8", "dataset.workers=0"]
    if option in ("cifar10", "cifar100", "stl10"):
        return [f"dataset.root={fake_root}"] + (["dataset.image_size=32"] if option == "stl10" else [])
    return ["dataset.num_train=32", "dataset.num_test=16"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """An image folder with two classes per split, odd sizes and a grayscale image."""
    from PIL import Image
    root = tmp_path_factory.mktemp("folder")
    for split in ("train", "test"):
        for c, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            (root / split / c).mkdir(parents=True)
            for i in range(6):
                Image.new("RGB", (20 + i, 30), colour).save(root / split / c / f"{i}.png")
            Image.new("L", (17, 17), 128).save(root / split / c / "gray.jpg")
    return root


def test_every_group_has_options():
    assert {"encoder", "objective", "augmentation", "dataset", "optim", "trainer", "eval"} <= set(GROUPS)
    assert len(OPTIONS) >= 11


def test_every_yaml_opens_with_a_command_that_uses_it():
    for path in CONF.rglob("*.yaml"):
        lines = path.read_text().splitlines()
        first = next(line for line in lines if not line.startswith("# @"))   # Hydra's `# @package` header comes first
        assert first.startswith("# specrep "), path


GRAPH_OPTIONS = {("dataset", "graph"), ("dataset", "shapes_world"), ("encoder", "embedding"), ("encoder", "mlp")}


def graph_option_trains(option: str, tmp_path: Path) -> None:
    """A graph option: a small SBM (with a features file for encoder=mlp), one step on its edges."""
    from specrep_cli.data.pairs import EdgePairs
    extra = []
    if option == "mlp":
        (tmp_path / "e.csv").write_text("a,b\nb,c\nc,a\nc,d\n")
        (tmp_path / "f.csv").write_text("a,1,0\nb,0,1\nc,1,1\nd,0,0\n")
        extra = ["dataset.source=file", f"dataset.path={tmp_path / 'e.csv'}",
                 f"dataset.features_path={tmp_path / 'f.csv'}"]
    if option == "shapes_world":   # nodes that are images: its own option, a convnet on the pixels
        extra = ["dataset=shapes_world", "dataset.world_classes=2", "dataset.world_grid=1", "encoder.width=4"]
    else:
        extra = ["dataset=graph", f"encoder={'embedding' if option == 'graph' else option}", "dataset.block_size=4",
                 "encoder.dim=3", *extra]
    cfg = config.validate(compose_train([*extra, "trainer.batch_size=8"]))
    assert cfg.augmentation.name == "none" and cfg.optim.name == "adamw"   # what dataset=graph brings
    data = load_dataset(cfg.dataset)
    method = build_method(cfg.objective, lambda tower="x": build_encoder(cfg.encoder, data.in_channels), 8)
    pairs = EdgePairs(data.graph, data.inputs, torch.device("cpu"), cfg.augmentation, data.mean, data.std)
    x, y = pairs(data.ssl_images[:8], torch.zeros(8))
    terms = method(x, y)
    terms["loss"].backward()
    build_optimizer(method, cfg.optim, 0.01).step()
    assert torch.isfinite(terms["loss"])


def test_graph_and_image_options_do_not_mix():
    needs = "dataset=graph takes encoder=embedding or encoder=mlp .* needs nodes that are images: dataset.source="
    with pytest.raises(config.ConfigError, match=needs + "shapes_world, or dataset.images"):
        config.validate(compose_train(["dataset=graph", "encoder=convnet"]))
    with pytest.raises(config.ConfigError, match="encoder=embedding takes graph nodes"):
        config.validate(compose_train(["encoder=embedding"]))
    for images in (["dataset=shapes_world"], ["dataset=graph", "dataset.source=shapes_world", "encoder=resnet18"],
                   ["dataset=graph", "dataset.source=file", "dataset.path=e.csv", "dataset.images=n.csv",
                    "encoder=convnet"]):
        config.validate(compose_train(images))   # nodes that are images: image encoders take them
    for table in (["dataset=shapes_world", "encoder=embedding"], ["dataset=graph", "dataset.source=shapes_world"]):
        with pytest.raises(config.ConfigError, match="nodes are images .* use encoder=convnet"):
            config.validate(compose_train(table))
    with pytest.raises(config.ConfigError, match="a graph's pairs are its edges"):
        config.validate(compose_train(["dataset=shapes_world", "augmentation=lab_split", "objective=clip"]))
    with pytest.raises(config.ConfigError, match="drop dataset.features_path and dataset.images"):
        config.validate(compose_train(["dataset=graph", "dataset.source=file", "dataset.path=e.csv",
                                       "dataset.bipartite=true", "dataset.images=n.csv", "encoder=convnet"]))
    with pytest.raises(config.ConfigError, match="use it with dataset.source=file"):
        config.validate(compose_train(["dataset=graph", "dataset.images=n.csv", "encoder=convnet"]))
    with pytest.raises(config.ConfigError, match="encoder=mlp runs over node features"):
        config.validate(compose_train(["dataset=graph", "encoder=mlp"]))
    with pytest.raises(config.ConfigError, match="objective.pairs=views"):
        config.validate(compose_train(["dataset=graph", "objective=clip", "objective.pairs=text"]))
    for key in ("subset=10", "workers=0", "cache_dir=/tmp", "in_memory=false", "resize=stretch", "holdout=0.1"):
        problem = cli.preflight("train", ["dataset=graph", f"dataset.{key}"])   # image keys only: one line, naming
        assert f"Key '{key.split('=')[0]}' not in 'GraphConfig' (the keys it has: source," in problem   # the keys


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_validates_and_builds(group, option, tiny_folder, fake_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECREP_CACHE", str(tmp_path))
    if (group, option) in GRAPH_OPTIONS:
        return graph_option_trains(option, tmp_path)
    if (group, option) == ("encoder", "timm"):
        pytest.importorskip("timm", reason="encoder=timm is an extra: pip install 'specrep[timm]'")
    small = [o for o in SMALL if not ((group, option) == ("encoder", "timm") and o.startswith("encoder.width"))]
    data_option = option if group == "dataset" else "shapes"
    two_towers = ["objective=clip"] if option == "lab_split" else []   # lab_split needs two towers
    cfg = compose_train([f"{group}={option}", *two_towers, *small,
                         *dataset_overrides(data_option, tiny_folder, fake_root)])
    cfg = config.validate(cfg)
    if hasattr(getattr(cfg, group), "name"):   # eval and trainer have a single option, `default`, and no name
        assert getattr(cfg, group).name == option

    data = load_dataset(cfg.dataset)
    assert data.train_images.dtype == torch.uint8 and data.train_images.ndim == 4
    cfg = with_model_sizes(cfg, data.train_images.shape[-1])   # encoder=timm at auto: sized as training sizes it
    lab = cfg.augmentation.lab_split
    method = build_method(cfg.objective, lambda tower="x": build_encoder(cfg.encoder, data.in_channels,
                                                                         tower_input(lab, tower)), 8)
    optimizer = build_optimizer(method, cfg.optim, 0.01)
    images = data.train_images if option == "webdataset" else data.ssl_images   # a stream is not indexed
    view_a, view_b = make_views(images[:8], cfg.augmentation, data.mean, data.std)
    terms = method(view_a, view_b)
    terms["loss"].backward()
    optimizer.step()
    method.after_step(0.5)
    assert torch.isfinite(terms["loss"])
    assert cfg.trainer.batch_size == 8


def test_typed_schema_rejects_wrong_types_and_typos():
    with pytest.raises(Exception, match="trainer.epochs"):
        compose_train(["trainer.epochs=abc"])
    with pytest.raises(Exception, match="epoch"):
        compose_train(["trainer.epoch=3"])
    with pytest.raises(Exception, match="temperature"):
        compose_train(["objective=spectral", "objective.temperature=0.1"])   # simclr's key on spectral


def test_validate_rejects_force_added_keys_and_bad_ranges():
    with pytest.raises(config.ConfigError, match="unknown config key 'objective.mu2'"):
        config.validate(compose_train(["+objective.mu2=1"]))
    with pytest.raises(config.ConfigError, match="crop_scale"):
        config.validate(compose_train(["augmentation.view_a.crop_scale=[0.9,0.1]"]))
    with pytest.raises(config.ConfigError, match="trainer.device"):
        config.validate(compose_train(["trainer.device=tpu"]))


# ---------------------------------------------------------------------------- tuned/: an objective's optimizer settings
TUNED = sorted(p.stem for p in (CONF / "tuned").glob("*.yaml"))   # the pairs' files (every dataset)


@pytest.mark.parametrize("pair", TUNED)
def test_a_tuned_pair_applies_under_its_optimizer_only_and_the_command_line_wins(pair):
    objective, optim = pair.rsplit("_", 1)
    tuned = compose_train([f"objective={objective}", f"optim={optim}", "dataset=cifar10"])
    plain = compose_train([f"optim={optim}"])          # the optimizer's own defaults (objective=spectral)
    assert tuned.optim.name == optim and tuned.optim.lr != plain.optim.lr
    other = "adamw" if optim != "adamw" else "sgd"
    assert (compose_train([f"objective={objective}", f"optim={other}"]).optim.lr
            == compose_train([f"optim={other}"]).optim.lr)
    assert compose_train([f"objective={objective}", f"optim={optim}", "optim.lr=0.123"]).optim.lr == 0.123


def test_a_dataset_tuned_file_applies_on_that_dataset_only_over_the_pairs_file():
    # conf/tuned/shapes/vicreg_lars.yaml: lr 0.6 on shapes, over tuned/vicreg_lars.yaml's 0.3 (chosen on CIFAR-10)
    assert compose_train(["objective=vicreg"]).optim.lr == 0.6
    assert compose_train(["objective=vicreg", "dataset=cifar10"]).optim.lr == 0.3
    assert compose_train(["objective=vicreg", "dataset=imagefolder", "dataset.root=x"]).optim.lr == 0.3
    assert compose_train(["objective=vicreg", "optim.lr=0.123"]).optim.lr == 0.123
    assert compose_train(["objective=vicreg", "optim=sgd"]).optim.lr == compose_train(["optim=sgd"]).optim.lr
    assert compose_train(["objective=pca"]).optim.lr == 0.3        # no shapes file: the pair's file


@pytest.mark.parametrize("objective", ["spectral", "pca", "spectral_byol"])
def test_the_plain_graph_command_brings_the_graph_schedule_and_the_command_line_wins(objective):
    # conf/tuned/graph/<objective>_adamw.yaml over conf/tuned/graph/table.yaml
    cfg = compose_train(["dataset=graph", f"objective={objective}"])
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 0.03, 0.0)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs, cfg.dataset.pairs_per_epoch) == (512, 72, 25600)
    assert objective != "spectral" or cfg.objective.mu == 100.0
    mine = compose_train(["dataset=graph", f"objective={objective}", "optim.lr=0.5", "trainer.epochs=3"])
    assert (mine.optim.lr, mine.trainer.epochs) == (0.5, 3)
    elsewhere = compose_train([f"objective={objective}", "optim=adamw"])     # on images: untouched
    assert elsewhere.optim.lr == compose_train(["optim=adamw"]).optim.lr and elsewhere.trainer.batch_size != 512
    other = compose_train(["dataset=graph", "objective=simclr"])               # not tuned on graphs: the plain ones
    assert (other.optim.lr, other.trainer.batch_size) == (compose_train(["optim=adamw"]).optim.lr, 128)


@pytest.mark.parametrize("override", ["tuned=pca_lars", "tuned=pca_lasr", "+tuned=vicreg_lars", "~tuned",
                                      "tuned@_global_=shapes/pca_lars", "~tuned@_global_", "tuned/graph=table"])
def test_choosing_a_tuned_file_on_the_command_line_is_one_line_not_a_silent_choice(override, tmp_path):
    # Hydra alone would take a missing name (optional) as nothing and another pair's file as given
    from specrep_cli import cli
    problem = cli.preflight("train", [override, f"hydra.run.dir={tmp_path}"])
    assert problem is not None and problem.startswith("tuned is not an option to choose")
    assert "\n" not in problem


# ------------------------------------------------------------------------------- experiment/ recipes
PAPER_EPOCHS = {"spectral": 800, "simclr": 1000, "byol": 1000, "barlow_twins": 1000, "vicreg": 1000}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_recipe_composes_with_the_papers_epochs_and_they_can_be_overridden(name, fake_root):
    objective, dataset = name.rsplit("_", 1)
    cfg = compose_train([f"experiment={name}", f"dataset.root={fake_root}"])
    config.validate(cfg)
    assert (cfg.objective.name, cfg.dataset.name, cfg.encoder.name) == (objective, dataset, "resnet18")
    assert cfg.trainer.epochs == PAPER_EPOCHS[objective] and cfg.eval.probe.protocol == "standard"
    shorter = compose_train([f"experiment={name}", "trainer.epochs=3", "dataset=imagefolder", "dataset.root=x"])
    assert shorter.trainer.epochs == 3 and shorter.dataset.name == "imagefolder"   # the command line wins


@pytest.mark.parametrize("name", GRAPH_EXPERIMENTS)
def test_graph_recipes_compose_and_the_command_line_wins(name):
    cfg = compose_train([f"experiment={name}", "dataset.source=ring", "encoder.dim=7"])
    config.validate(cfg)
    assert (cfg.dataset.name, cfg.encoder.name, cfg.objective.name) == ("graph", "embedding", name.rsplit("_", 1)[0])
    assert cfg.encoder.dim == 7 and cfg.dataset.source == "ring"


@pytest.mark.integration   # a whole run
def test_a_recipe_trains_and_is_scored_with_its_papers_protocol(fake_root, tmp_path):
    """HaoChen et al.'s recipe end to end on a few CIFAR-format images: its head (output BatchNorm),
    every parameter decayed, and their linear evaluation (raw features, lr 30, test images zoomed)."""
    from conftest import run_cli
    run = tmp_path / "run"
    proc = run_cli("train", "experiment=spectral_cifar10", f"dataset.root={fake_root}", "trainer.epochs=1",
                   "trainer.batch_size=8", "encoder.width=4", "encoder.projector_hidden_dim=16",
                   "encoder.projector_out_dim=8", "eval.probe.standard.epochs=1", "eval.probe.standard.batch_size=8",
                   "eval.batch_size=16", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json
    report = json.loads((run / "report.json").read_text())
    assert report["linear_probe"]["protocol"] == "standard" and report["run"]["objective"] == "spectral"


# Checkpoints in the shape specrep 0.1.0 wrote: trained by today's code, then their config rewritten with
# the flat eval keys (RENAMED_KEYS backwards) and the keys the schemas have since dropped.
LEGACY_RUNS = {
    "image_v0": ["trainer.epochs=1", "dataset.subset=256", "dataset.num_train=256", "dataset.num_test=128",
                 "trainer.batch_size=64", "encoder.width=4", "encoder.projector_hidden_dim=16",
                 "encoder.projector_out_dim=8", "eval.random_init=false", "eval.every_n_epochs=0",
                 "trainer.keep_best=false"],
    "graph_v0": ["dataset=graph", "dataset.source=ring", "dataset.num_nodes=60", "dataset.hops=3", "encoder.dim=4",
                 "trainer.epochs=1", "trainer.batch_size=64", "eval.random_init=false", "eval.every_n_epochs=0",
                 "trainer.keep_best=false"],
}
DROPPED = {"encoder": {"width": None},   # what upgrade() removes, at the values 0.1.0 wrote for these options
           "dataset": {"subset": None, "in_memory": "auto", "memory_budget_gib": None, "unlabelled_root": None,
                       "resize": "shorter_side_center_crop", "holdout": None, "cache_dir": None, "workers": 4}}


def as_written_by_0_1_0(tree: dict) -> dict:
    """A checkpoint config of today in 0.1.0's shape: eval's nested keys flat, the dropped keys back."""
    flat = config.flatten(tree)
    for old, new in config.RENAMED_KEYS.items():
        if new in flat:
            flat[old] = flat.pop(new)
    out: dict = {}
    for key, value in flat.items():
        *path, leaf = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    for group, keys in DROPPED.items():
        if tree[group]["name"] in ("embedding", "graph"):
            out[group] = {**keys, **out[group]}
    return out


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> Path:
    """image_v0.pt and graph_v0.pt in a folder: tiny runs of today's code, saved in 0.1.0's config shape."""
    from specrep_cli.train.loop import train
    folder = tmp_path_factory.mktemp("legacy")
    for name, overrides in LEGACY_RUNS.items():
        run = folder / name
        train(config.compose_config("train", [*overrides, "trainer.device=cpu"]), run)
        ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
        ckpt["config"] = as_written_by_0_1_0(ckpt["config"])
        torch.save(ckpt, folder / f"{name}.pt")
    return folder


def test_the_legacy_shape_is_0_1_0_s_and_upgrade_undoes_it(legacy):
    old = torch.load(legacy / "graph_v0.pt", weights_only=False)["config"]
    assert old["eval"]["knn_k"] == 200 and old["eval"]["standard_lr"] == 0.03 and "probe" not in old["eval"]
    assert old["encoder"]["width"] is None and old["dataset"]["in_memory"] == "auto"
    assert config.upgrade(old) == config.to_dict(config.compose_config("train", [*LEGACY_RUNS["graph_v0"],
                                                                                 "trainer.device=cpu"]))


def test_validate_returns_each_groups_own_typed_schema():
    cfg = config.compose_config("train", ["encoder=timm", "optim=lars", "dataset=cifar10", "dataset.root=x"]) \
        if config.installed("timm") \
        else config.compose_config("train", ["optim=lars", "dataset=cifar10", "dataset.root=x"])
    assert isinstance(cfg, config.TrainConfig) and isinstance(cfg.optim, config.LARSConfig)
    assert isinstance(cfg.dataset, config.CIFARConfig) and isinstance(cfg.dataset, config.ImageDatasetConfig)
    assert isinstance(cfg.encoder, config.TimmEncoderConfig if config.installed("timm") else config.ImageEncoderConfig)
    assert isinstance(cfg.eval.probe.fast, config.FastProbeConfig) and cfg.eval.knn.k == 200
    graph = config.compose_config("train", ["dataset=graph"])
    assert isinstance(graph.dataset, config.GraphConfig) and not isinstance(graph.dataset, config.ImageDatasetConfig)
    assert isinstance(graph.encoder, config.EmbeddingEncoderConfig) and not hasattr(graph.encoder, "width")


@pytest.mark.parametrize("old, new", sorted(config.RENAMED_KEYS.items()))
def test_a_renamed_key_on_the_command_line_is_one_line_naming_the_new_key(old, new):
    for command in ("train", "eval"):
        problem = cli.preflight(command, [f"{old}=1"])
        assert problem == f"{old} is now {new}: write {new}=1"


def test_upgrade_moves_renamed_keys_and_drops_keys_the_option_no_longer_has():
    old = {"seed": 3, "eval": {"knn_k": 5, "protocol": "standard", "standard_lr": 30.0, "batch_size": 64},
           "encoder": {"name": "embedding", "width": None, "dim": 4},
           "dataset": {"name": "graph", "subset": None, "in_memory": "auto", "source": "ring"}}
    new = config.upgrade(old)
    assert new["eval"] == {"batch_size": 64, "knn": {"k": 5},
                           "probe": {"protocol": "standard", "standard": {"lr": 30.0}}}
    assert new["encoder"] == {"name": "embedding", "dim": 4}
    assert new["dataset"] == {"name": "graph", "source": "ring"} and new["seed"] == 3
    assert old["eval"]["knn_k"] == 5   # the argument is left as it was
    assert config.upgrade(config.to_dict(config.compose_config("train", []))) == \
        config.to_dict(config.compose_config("train", []))   # today's shape: unchanged


@pytest.mark.parametrize("name", ["image_v0", "graph_v0"])
def test_a_checkpoint_written_before_the_nested_keys_still_evaluates(name, legacy, tmp_path):
    from specrep_cli.eval.command import evaluate_checkpoint
    cfg = config.compose_config("eval", [f"checkpoint={legacy / f'{name}.pt'}", "device=cpu",
                                         "eval.random_init=false", "eval.probe.fast.steps=10"])
    report = evaluate_checkpoint(cfg, tmp_path)
    assert 0 <= report["linear_probe"]["top1"] <= 100 and (tmp_path / "report.json").is_file()
    if name == "graph_v0":
        assert 0 <= report["graph"]["subspace_alignment"] <= 1


def test_a_checkpoint_written_before_the_nested_keys_resumes_without_reporting_renamed_keys(legacy):
    from specrep_cli.checkpoint import TrainedOn, check_resumable, load_checkpoint
    ckpt = load_checkpoint(legacy / "image_v0.pt")
    trained_on = TrainedOn(in_channels=3, image_size=32, classes=[], input="rgb", num_train=256, mean=None, std=None,
                           tokenizer=None)
    cfg = config.compose_config("train", ["trainer.epochs=1", "dataset.subset=256", "dataset.num_train=256",
                                          "dataset.num_test=128", "trainer.batch_size=64", "encoder.width=4",
                                          "encoder.projector_hidden_dim=16", "encoder.projector_out_dim=8",
                                          "eval.random_init=false", "eval.every_n_epochs=0", "trainer.keep_best=false",
                                          "trainer.device=cpu"])
    changes = check_resumable(ckpt, cfg, trained_on, legacy / "image_v0.pt")
    assert changes == []


def test_an_absurd_epoch_count_is_one_line_before_anything_starts(tmp_path):
    problem = cli.preflight("train", ["trainer.epochs=1000000000", f"hydra.run.dir={tmp_path / 'run'}"])
    assert problem == "trainer.epochs must be in 1..1,000,000, got 1000000000"
    assert not (tmp_path / "run").exists()
