"""Typed schemas of every config group, registered in Hydra's ConfigStore.

The YAML files under conf/ hold the values and a comment for every knob; the dataclasses here hold the
types, so that Hydra rejects a mistyped key or a wrong type while it composes the config. Groups whose
options have different fields (objective, dataset, optim) get one schema per option, stored under
`schema/<group>/<option>` and named by the option's YAML in its defaults list.

`validate(cfg)` runs before any work: it rejects keys that were force-added with `+` and checks value
ranges (`__post_init__` of each dataclass), raising ConfigError with one line.
"""
from __future__ import annotations

import copy
import importlib.util
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from .errors import ConfigError
from .figures import REPORT_METRICS


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_range(name: str, pair: List[float], low: float, high: float) -> None:
    _require(len(pair) == 2 and low <= pair[0] <= pair[1] <= high,
             f"{name} must be [min, max] with {low} <= min <= max <= {high}, got {list(pair)}")


def _one_slot(template: str) -> bool:
    """A prompt template with exactly one positional {} and nothing else str.format would fill."""
    try:
        return "{}" in template and template.format("x") != template and template.count("{}") == 1
    except (IndexError, KeyError, ValueError):
        return False


def installed(module: str) -> bool:
    """Whether an optional package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def specrep_folders() -> List[Path]:
    """The folders of specrep's own code and configs: no place for a run (a run dir named conf/ there
    would hide the configs)."""
    spec = importlib.util.find_spec("specrep_cli.conf")
    return [Path(__file__).parent, *map(Path, spec.submodule_search_locations or [])]


def _require_installed(module: str, chosen: str, extra: str) -> None:
    _require(installed(module), f"{chosen}, which needs: pip install 'specrep[{extra}]'")


def _check_probability(name: str, p: float) -> None:
    _require(0.0 <= p <= 1.0, f"{name} must be a probability in [0, 1], got {p}")


MAX_SEED = 2**32 - 1   # what every generator takes (torch's, numpy's, CUDA's), with room for per-rank offsets


def _check_seed(name: str, seed: int) -> None:
    _require(0 <= seed <= MAX_SEED, f"{name} must be in 0..{MAX_SEED:,}, got {seed}")


def _check_momentum(momentum: float) -> None:
    _require(0 <= momentum < 1, f"optim.momentum must be in [0, 1), got {momentum}")


# --------------------------------------------------------------------------------------- encoder
@dataclass
class EncoderConfig:
    """What every encoder has: its name and the projector head that follows the backbone."""
    name: str = MISSING
    projector_hidden_dim: int = 512
    projector_out_dim: int = 128
    projector_layers: int = 2
    projector_hidden_bn: bool = True
    projector_out_bn: bool = False
    projector_bias: bool = False

    def __post_init__(self) -> None:
        _require(self.projector_layers >= 0, "encoder.projector_layers must be >= 0")
        _require(self.projector_hidden_dim > 0 and self.projector_out_dim > 0,
                 "encoder.projector_hidden_dim and encoder.projector_out_dim must be > 0")


@dataclass
class ImageEncoderConfig(EncoderConfig):
    """The built-in image backbones (convnet, resnet18): widths w, 2w, 4w, 8w by stage."""
    width: int = 16

    def __post_init__(self) -> None:
        _require(self.width > 0, f"encoder.width must be > 0, got {self.width}")
        super().__post_init__()


@dataclass
class TimmEncoderConfig(EncoderConfig):
    """Any timm model as the backbone (`pip install 'specrep[timm]'`), its classifier removed."""
    name: str = "timm"
    model_name: str = "vit_tiny_patch16_224"
    # ViT-like: the input size (img_size); auto: the data's; null: the model's own
    image_size: Optional[Union[int, str]] = "auto"
    # ViT-like: the patch size; auto: image_size / 8; null: the model's own
    patch_size: Optional[Union[int, str]] = "auto"
    pretrained: bool = False

    def __post_init__(self) -> None:
        for key, low in (("image_size", 8), ("patch_size", 1)):
            value = getattr(self, key)
            _require(value is None or value == "auto" or (isinstance(value, int) and value >= low),
                     f"encoder.{key} must be auto (follows the model), null (the model's own) or an int >= {low}, "
                     f"got {value!r}")
        if isinstance(self.image_size, int) and isinstance(self.patch_size, int):
            _require(self.image_size % self.patch_size == 0, f"encoder.image_size={self.image_size} is not a "
                     f"multiple of encoder.patch_size={self.patch_size}")
        _require_installed("timm", "encoder=timm", "timm")
        super().__post_init__()


@dataclass
class EmbeddingEncoderConfig(EncoderConfig):
    """A lookup table phi(x) in R^dim per node of a graph (dataset=graph), then the usual projector."""
    name: str = "embedding"
    dim: int = 8
    init_std: float = 0.1
    projector_layers: int = 0

    def __post_init__(self) -> None:
        _require(self.dim > 0, f"encoder.dim must be > 0, got {self.dim}")
        _require(self.init_std > 0, f"encoder.init_std must be > 0, got {self.init_std}")
        super().__post_init__()


@dataclass
class MLPEncoderConfig(EncoderConfig):
    """An MLP over a graph's node features (dataset.features_path): width hidden units, dim outputs."""
    name: str = "mlp"
    width: int = 64
    dim: int = 8
    layers: int = 2
    projector_layers: int = 0

    def __post_init__(self) -> None:
        _require(self.width > 0, f"encoder.width must be > 0, got {self.width}")
        _require(self.dim > 0 and self.layers >= 1, "encoder.dim must be > 0 and encoder.layers >= 1")
        super().__post_init__()


ENCODER_SCHEMAS = {"convnet": ImageEncoderConfig, "resnet18": ImageEncoderConfig, "timm": TimmEncoderConfig,
                   "embedding": EmbeddingEncoderConfig, "mlp": MLPEncoderConfig}
GRAPH_ENCODERS = ("embedding", "mlp")   # encoders of graph nodes (dataset=graph), not of images


def encoder_schema(name: str) -> type:
    """The schema of an encoder option (what a checkpoint's encoder config is read back with)."""
    if name not in ENCODER_SCHEMAS:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(ENCODER_SCHEMAS)}")
    return ENCODER_SCHEMAS[name]


# ------------------------------------------------------------------------------------- objective
@dataclass
class ObjectiveConfig:
    name: str = MISSING


@dataclass
class SimCLRConfig(ObjectiveConfig):
    name: str = "simclr"
    temperature: float = 0.5

    def __post_init__(self) -> None:
        _require(self.temperature > 0, "objective.temperature must be > 0")


@dataclass
class BinaryNCEConfig(ObjectiveConfig):
    name: str = "binary_nce"
    temperature: float = 0.3
    learn_temperature: bool = False
    num_negatives: Optional[int] = 64

    def __post_init__(self) -> None:
        _require(self.temperature > 0, "objective.temperature must be > 0")
        _require(self.num_negatives is None or self.num_negatives >= 1,
                 "objective.num_negatives must be null (all B-1) or >= 1")


@dataclass
class SpectralConfig(ObjectiveConfig):
    name: str = "spectral"
    mu: float = 4.0
    nested: bool = False

    def __post_init__(self) -> None:
        _require(self.mu > 0, "objective.mu must be > 0")


@dataclass
class SpectralBYOLConfig(ObjectiveConfig):
    name: str = "spectral_byol"
    target_momentum: float = 0.99
    second_moment_momentum: float = 0.99
    lambda_source: str = "ema"

    def __post_init__(self) -> None:
        _check_probability("objective.target_momentum", self.target_momentum)
        _check_probability("objective.second_moment_momentum", self.second_moment_momentum)
        _require(self.lambda_source in ("ema", "other_view"),
                 f"objective.lambda_source must be ema or other_view, got {self.lambda_source!r}")


@dataclass
class PCAConfig(ObjectiveConfig):
    name: str = "pca"
    lam: float = 1.0
    penalty_estimate: str = "batch"
    second_moment_momentum: float = 0.9
    nested: bool = False

    def __post_init__(self) -> None:
        _require(self.lam >= 0, "objective.lam must be >= 0")
        _require(self.penalty_estimate in ("batch", "ema"),
                 f"objective.penalty_estimate must be batch or ema, got {self.penalty_estimate!r}")
        _check_probability("objective.second_moment_momentum", self.second_moment_momentum)


TOKENIZERS = ("word", "char", "bpe")


@dataclass
class TextTowerConfig:
    tokenizer: str = "word"
    context_length: int = 32
    width: int = 128
    layers: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        _require(self.tokenizer in TOKENIZERS,
                 f"objective.text.tokenizer must be {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")
        if self.tokenizer == "bpe":
            _require_installed("open_clip", "objective.text.tokenizer=bpe", "bpe")
        _require(self.context_length >= 2, "objective.text.context_length must be >= 2")
        _require(self.width > 0 and self.layers >= 0 and self.heads > 0,
                 "objective.text.width and heads must be > 0, layers >= 0")
        _require(self.width % self.heads == 0,
                 f"objective.text.width ({self.width}) must be divisible by objective.text.heads ({self.heads})")


@dataclass
class TwoTowerConfig(ObjectiveConfig):
    """What the two-tower objectives share: what the two towers see, and the text tower."""
    pairs: str = "auto"
    text: TextTowerConfig = field(default_factory=TextTowerConfig)

    def __post_init__(self) -> None:
        _require(self.pairs in ("auto", "views", "text"),
                 f"objective.pairs must be auto, views or text, got {self.pairs!r}")


@dataclass
class CLIPConfig(TwoTowerConfig):
    name: str = "clip"
    logit_scale_init: float = 2.6592600369262695  # log(1 / 0.07)
    learn_logit_scale: bool = True


@dataclass
class SigLIPConfig(TwoTowerConfig):
    name: str = "siglip"
    log_t_init: float = 2.302585092994046   # log(10)
    bias_init: float = -10.0
    learn_t_and_bias: bool = True


@dataclass
class SpectralCLIPConfig(TwoTowerConfig):
    """The spectral loss across two towers: phi(x)^T nu(y) fits p(x, y) / (p(x) p(y)); mu and nested as
    in objective=spectral."""
    name: str = "spectral_clip"
    mu: float = 16.0
    nested: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.mu > 0, "objective.mu must be > 0")


@dataclass
class BYOLConfig(ObjectiveConfig):
    name: str = "byol"
    target_momentum: float = 0.99
    predictor_hidden_dim: int = 512

    def __post_init__(self) -> None:
        _check_probability("objective.target_momentum", self.target_momentum)
        _require(self.predictor_hidden_dim > 0, "objective.predictor_hidden_dim must be > 0")


@dataclass
class BarlowTwinsConfig(ObjectiveConfig):
    name: str = "barlow_twins"
    lam: float = 0.0051
    scale_loss: float = 1.0

    def __post_init__(self) -> None:
        _require(self.lam >= 0, "objective.lam must be >= 0")
        _require(self.scale_loss > 0, "objective.scale_loss must be > 0")


@dataclass
class VICRegConfig(ObjectiveConfig):
    name: str = "vicreg"
    sim: float = 25.0
    var: float = 25.0
    cov: float = 1.0

    def __post_init__(self) -> None:
        _require(min(self.sim, self.var, self.cov) >= 0, "objective.sim/var/cov must be >= 0")


OBJECTIVE_SCHEMAS = {c().name: c for c in (SimCLRConfig, BinaryNCEConfig, SpectralConfig,
                                            SpectralBYOLConfig, PCAConfig, CLIPConfig, SigLIPConfig,
                                            SpectralCLIPConfig, BYOLConfig,
                                            BarlowTwinsConfig, VICRegConfig)}
# The objectives with two towers phi and nu (an image tower and a text, image or Lab tower).
TWO_TOWER_OBJECTIVES = tuple(name for name, c in OBJECTIVE_SCHEMAS.items() if issubclass(c, TwoTowerConfig))


# ---------------------------------------------------------------------------------- augmentation
@dataclass
class ViewConfig:
    crop_scale: List[float] = field(default_factory=lambda: [0.2, 1.0])
    crop_ratio: List[float] = field(default_factory=lambda: [0.75, 4.0 / 3.0])
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: List[float] = field(default_factory=lambda: [0.1, 2.0])
    solarize_p: float = 0.0

    def __post_init__(self) -> None:
        _check_range("crop_scale", self.crop_scale, 1e-6, 1.0)
        _check_range("crop_ratio", self.crop_ratio, 1e-6, float("inf"))
        _check_range("blur_sigma", self.blur_sigma, 1e-6, float("inf"))
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _check_probability(name, getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0")
        _require(0 <= self.hue <= 0.5, f"hue must be in [0, 0.5], got {self.hue}")


@dataclass
class AugmentationConfig:
    name: str = MISSING
    lab_split: bool = False
    view_a: ViewConfig = field(default_factory=ViewConfig)
    view_b: ViewConfig = field(default_factory=ViewConfig)


# --------------------------------------------------------------------------------------- dataset
RESIZE_MODES = ("shorter_side_center_crop", "stretch")   # how image files become image_size x image_size


@dataclass
class DatasetConfig:
    """What every dataset has: its name (image datasets and graphs have their own keys below)."""
    name: str = MISSING


@dataclass
class ImageDatasetConfig(DatasetConfig):
    """What every image dataset has: how much of it, where it is kept and decoded, and a holdout."""
    subset: Optional[int] = None
    in_memory: str = "auto"
    memory_budget_gib: Optional[float] = None
    unlabelled_root: Optional[str] = None
    resize: str = RESIZE_MODES[0]
    holdout: Optional[float] = None
    cache_dir: Optional[str] = None   # decoded image files (image folders, unlabelled_root)
    workers: int = 4                  # their DataLoader decoders when streamed

    def __post_init__(self) -> None:
        _require(self.subset is None or self.subset > 0, "dataset.subset must be null or > 0")
        _require(self.workers >= 0, "dataset.workers must be >= 0")
        _require(self.resize in RESIZE_MODES,
                 f"dataset.resize must be {' or '.join(RESIZE_MODES)}, got {self.resize!r}")
        self.in_memory = str(self.in_memory).lower()   # YAML's true/false arrive as 'True'/'False'
        _require(self.in_memory in ("auto", "true", "false"),
                 f"dataset.in_memory must be auto, true or false, got {self.in_memory!r}")
        _require(self.memory_budget_gib is None or self.memory_budget_gib > 0,
                 "dataset.memory_budget_gib must be null or > 0")
        _require(self.holdout is None or 0 < self.holdout < 1,
                 "dataset.holdout must be null or a fraction in (0, 1)")


def _check_image_size(size: int) -> None:
    _require(size >= 8, f"dataset.image_size must be >= 8, got {size}")


@dataclass
class ShapesConfig(ImageDatasetConfig):
    name: str = "shapes"
    num_train: int = 10000
    num_test: int = 2000
    image_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.num_train > 0 and self.num_test > 0, "dataset.num_train and num_test must be > 0")
        _check_image_size(self.image_size)
        _check_seed("dataset.seed", self.seed)


@dataclass
class CIFARConfig(ImageDatasetConfig):
    name: str = "cifar10"
    root: str = MISSING
    download: bool = False
    image_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_size(self.image_size)


@dataclass
class STL10Config(ImageDatasetConfig):
    name: str = "stl10"
    root: str = MISSING
    download: bool = False
    image_size: int = 96
    ssl_split: str = "unlabeled"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_size(self.image_size)
        _require(self.ssl_split in ("unlabeled", "train", "train+unlabeled"),
                 f"dataset.ssl_split must be unlabeled, train or train+unlabeled, got {self.ssl_split!r}")
        _require(self.unlabelled_root is None or self.ssl_split == "train",
                 "dataset.unlabelled_root replaces STL-10's unlabelled split as the SSL set: "
                 "add dataset.ssl_split=train")


@dataclass
class ImageFolderConfig(ImageDatasetConfig):
    name: str = "imagefolder"
    root: Optional[str] = None
    image_size: int = 32
    train_split: str = "train"
    test_split: Optional[str] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_size(self.image_size)
        _require(self.root is not None or self.unlabelled_root is not None,
                 "dataset=imagefolder needs dataset.root (train/ and test/ class folders: the probe's) or "
                 "dataset.unlabelled_root (any folder of images to train on), or both")


@dataclass
class ImageTextConfig(ImageDatasetConfig):
    name: str = "image_text"
    root: str = MISSING
    captions: str = "captions.tsv"
    csv_img_key: Optional[str] = None
    csv_caption_key: str = "title"
    csv_separator: str = "\t"
    image_size: int = 32
    test_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_image_size(self.image_size)
        _require(0 < self.test_fraction < 1, "dataset.test_fraction must be in (0, 1)")
        _check_seed("dataset.split_seed", self.split_seed)
        _require(len(self.csv_separator) == 1,
                 f"dataset.csv_separator must be one character, got {self.csv_separator!r}")


BAD_SAMPLES = ("skip", "stop")


@dataclass
class WebDatasetConfig(ImageDatasetConfig):
    """open_clip's tar shards: streamed for training, an evaluation set read whole (data/shards.py)."""
    name: str = "webdataset"
    shards: Any = MISSING                     # a brace pattern or a list of local paths and URLs
    samples_per_epoch: Optional[int] = None   # null: the shards' sizes.json
    eval_shards: Any = None                   # labelled shards (.cls), read whole: the probe's splits
    classes: Optional[str] = None             # the names of .cls 0, 1, ...: a text file, one per line
    eval_root: Optional[str] = None           # or a labelled image folder: <eval_root>/{train,test}/<class>/
    image_size: int = 32
    test_fraction: float = 0.1
    split_seed: int = 0
    shuffle_buffer: int = 1000
    bad_samples: str = "skip"
    peek_samples: int = 2048

    def __post_init__(self) -> None:
        super().__post_init__()
        _require_installed("webdataset", "dataset=webdataset", "webdataset")
        _check_image_size(self.image_size)
        for key in ("shards", "eval_shards"):
            value = getattr(self, key)
            _require(value is None and key == "eval_shards" or _shard_spec(value),
                     f"dataset.{key} must be a brace pattern (e.g. 'dataset.{key}=\"train-{{000000..000009}}.tar\"') "
                     f"or a non-empty list of paths and URLs, got {value!r}")
        _require(self.eval_shards is not None or self.eval_root is not None,
                 "dataset=webdataset needs one evaluation set: dataset.eval_shards=<labelled shards> (with "
                 ".cls and dataset.classes) or dataset.eval_root=<folder with train/ and test/ class folders>")
        _require(self.eval_shards is None or self.eval_root is None,
                 "dataset.eval_shards and dataset.eval_root are both set: give one evaluation set (set the "
                 "other to null)")
        _require(self.samples_per_epoch is None or self.samples_per_epoch > 0,
                 "dataset.samples_per_epoch must be null (the shards' sizes.json) or > 0")
        _require(0 < self.test_fraction < 1, "dataset.test_fraction must be in (0, 1)")
        _check_seed("dataset.split_seed", self.split_seed)
        _require(self.shuffle_buffer >= 1, "dataset.shuffle_buffer must be >= 1 (1: the shards' own order)")
        _require(self.bad_samples in BAD_SAMPLES,
                 f"dataset.bad_samples must be {' or '.join(BAD_SAMPLES)}, got {self.bad_samples!r}")
        _require(self.peek_samples >= 1, "dataset.peek_samples must be >= 1")
        _require(self.subset is None and self.unlabelled_root is None,
                 "dataset=webdataset streams its shards: drop dataset.subset (dataset.samples_per_epoch sets "
                 "an epoch's length) and dataset.unlabelled_root")


def _shard_spec(value: Any) -> bool:
    """A brace pattern (one string) or a non-empty list of non-empty strings."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, (list, tuple, ListConfig)) and len(value) > 0 and all(
        isinstance(v, str) and v.strip() for v in value)


GRAPH_SOURCES = ("sbm", "ring", "file", "shapes_world", "bipartite_sbm")


@dataclass
class GraphConfig(DatasetConfig):
    """A finite graph whose normalised adjacency is the augmentation kernel (data/graphs.py)."""
    name: str = "graph"
    source: str = "sbm"
    seed: int = 0
    blocks: int = 4
    block_size: int = 250
    block_size_y: Optional[int] = None
    p_in: float = 0.1
    p_out: float = 0.005
    num_nodes: int = 1000
    hops: int = 100
    path: Optional[str] = None
    labels_path: Optional[str] = None
    features_path: Optional[str] = None
    bipartite: bool = False
    images: Optional[str] = None
    image_size: int = 32
    world_classes: int = 4
    world_grid: int = 2
    world_class_change: float = 0.375
    world_move: float = 0.1
    test_fraction: float = 0.5
    pairs_per_epoch: Optional[int] = None

    @property
    def two_sided(self) -> bool:
        """Whether the graph is bipartite: x nodes (the first column, or an SBM's left side) and y nodes."""
        return self.source == "bipartite_sbm" or self.bipartite

    @property
    def image_nodes(self) -> bool:
        """Whether the nodes are images (dataset.images, or the shapes_world's renders)."""
        return self.source == "shapes_world" or (self.source == "file" and self.images is not None)

    def __post_init__(self) -> None:
        _require(self.source in GRAPH_SOURCES,
                 f"dataset.source must be {', '.join(GRAPH_SOURCES)}, got {self.source!r}")
        _check_seed("dataset.seed", self.seed)
        _require(self.blocks >= 1 and self.block_size >= 2, "dataset.blocks must be >= 1, dataset.block_size >= 2")
        _check_probability("dataset.p_in", self.p_in)
        _check_probability("dataset.p_out", self.p_out)
        _require(self.num_nodes >= 3 and 1 <= self.hops < self.num_nodes / 2,
                 f"dataset.num_nodes must be >= 3 and 1 <= dataset.hops < num_nodes / 2, got "
                 f"{self.num_nodes} and {self.hops}")
        _require(self.source != "file" or self.path is not None,
                 "dataset.source=file needs dataset.path=EDGES.csv (source,target[,weight] per line)")
        _require(0 < self.test_fraction < 1, "dataset.test_fraction must be in (0, 1)")
        _require(self.pairs_per_epoch is None or self.pairs_per_epoch >= 2,
                 "dataset.pairs_per_epoch must be null or >= 2")
        _require(not self.bipartite or self.source == "file",
                 "dataset.bipartite=true reads a file's columns as two node sets: use it with dataset.source=file "
                 "(dataset.source=bipartite_sbm is bipartite by itself)")
        _require(self.block_size_y is None or self.block_size_y >= 1, "dataset.block_size_y must be null or >= 1")
        _require(not self.bipartite or (self.features_path is None and self.images is None),
                 "dataset.bipartite=true reads node ids for two tables: drop dataset.features_path and dataset.images")
        _require(self.images is None or self.source == "file",
                 "dataset.images (CSV node,path) gives a file graph's nodes images: use it with dataset.source=file")
        _require(self.images is None or self.features_path is None,
                 "a node is an image (dataset.images) or a feature row (dataset.features_path), not both: drop one")
        _check_image_size(self.image_size)
        _require(2 <= self.world_classes <= 10 and 1 <= self.world_grid <= 8,
                 f"dataset.world_classes must be in 2..10 (shapes) and dataset.world_grid in 1..8, got "
                 f"{self.world_classes} and {self.world_grid}")
        most = (self.world_classes - 1) / self.world_classes   # the kernel's eigenvalues stay >= 0 up to these
        _require(0 < self.world_class_change <= most and 0 <= self.world_move <= 0.25,
                 f"dataset.world_class_change must be in (0, {most:.3g}] ((classes - 1) / classes) and "
                 f"dataset.world_move in [0, 0.25], got {self.world_class_change} and {self.world_move}")


DATASET_SCHEMAS = {"graph": GraphConfig, "shapes": ShapesConfig, "cifar10": CIFARConfig, "cifar100": CIFARConfig,
                   "stl10": STL10Config, "imagefolder": ImageFolderConfig, "image_text": ImageTextConfig,
                   "webdataset": WebDatasetConfig}


# ----------------------------------------------------------------------------------------- optim
@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = 0.1
    scale_lr: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0
    exclude_bias_and_norm: bool = True

    def __post_init__(self) -> None:
        _require(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, "optim.weight_decay must be >= 0")
        _require(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _require(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio must be in [0, 1]")


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_momentum(self.momentum)
        _require(not self.nesterov or self.momentum > 0, "optim.nesterov=true needs optim.momentum > 0")


@dataclass
class AdamWConfig(OptimConfig):
    name: str = "adamw"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"optim.betas must be two values in [0, 1) (e.g. [0.9, 0.999]), got {list(self.betas)}")


@dataclass
class LARSConfig(OptimConfig):
    name: str = "lars"
    momentum: float = 0.9
    eta: float = 0.02
    clip_lr: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.eta > 0, "optim.eta must be > 0")
        _check_momentum(self.momentum)


OPTIM_SCHEMAS = {"sgd": SGDConfig, "adamw": AdamWConfig, "lars": LARSConfig}


# ------------------------------------------------------------------------------ trainer and eval
LOGGERS = ("jsonl", "tensorboard", "wandb")
MAX_EPOCHS = 1_000_000   # more is a typo (trainer.epochs=1000000000), not a plan: refused before anything starts


@dataclass
class WandbConfig:
    project: str = "specrep"
    entity: Optional[str] = None
    mode: str = "online"
    tags: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _require(self.mode in ("online", "offline", "disabled"),
                 f"trainer.wandb.mode must be online, offline or disabled, got {self.mode!r}")


MAX_THREADS = 1024   # more is a typo: the OpenMP runtime cannot start that many threads (a crash, not an error)


def _check_threads(key: str, threads: Union[int, str]) -> None:
    _require(threads == "auto" or (isinstance(threads, int) and 1 <= threads <= MAX_THREADS),
             f"{key} must be auto (the physical cores this process may use) or an int in 1..{MAX_THREADS}, "
             f"got {threads!r}")


@dataclass
class TrainerConfig:
    epochs: int = 15
    batch_size: int = 128
    device: str = "auto"
    precision: str = "auto"
    log_every_n_steps: int = 20
    checkpoint_every_n_epochs: int = 10
    max_bad_steps: int = 0
    keep_best: bool = True
    devices: int = 1
    sync_batchnorm: bool = False
    compile: bool = False
    loggers: List[str] = field(default_factory=lambda: ["jsonl"])
    wandb: WandbConfig = field(default_factory=WandbConfig)
    deterministic: bool = False
    threads: Union[int, str] = "auto"

    def __post_init__(self) -> None:
        _check_threads("trainer.threads", self.threads)
        _require(0 < self.epochs <= MAX_EPOCHS, f"trainer.epochs must be in 1..{MAX_EPOCHS:,}, got {self.epochs}")
        unknown = [name for name in self.loggers if name not in LOGGERS]
        _require(not unknown, f"trainer.loggers: unknown logger {', '.join(map(repr, unknown))}; "
                 f"choose from {', '.join(LOGGERS)}")
        for name in ("tensorboard", "wandb"):
            if name in self.loggers:
                _require_installed(name, f"trainer.loggers contains {name}", name)
        _require(self.batch_size >= 2, f"trainer.batch_size must be >= 2, got {self.batch_size}")
        _require(self.device in ("auto", "cpu", "cuda"),
                 f"trainer.device must be auto, cpu or cuda, got {self.device!r}")
        _require(self.precision in ("auto", "fp32", "bf16"),
                 f"trainer.precision must be auto, fp32 or bf16, got {self.precision!r}")
        _require(self.log_every_n_steps > 0, "trainer.log_every_n_steps must be > 0")
        _require(self.checkpoint_every_n_epochs > 0, "trainer.checkpoint_every_n_epochs must be > 0")
        _require(self.max_bad_steps >= 0, "trainer.max_bad_steps must be >= 0")
        _require(self.devices >= 1, f"trainer.devices must be >= 1, got {self.devices}")
        _require(self.batch_size % self.devices == 0,
                 f"trainer.batch_size={self.batch_size} (the global batch) must be divisible by "
                 f"trainer.devices={self.devices}")
        _require(not (self.sync_batchnorm and self.device == "cpu"),
                 "trainer.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel)")


@dataclass
class FastProbeConfig:
    """eval.probe.fast: a logistic regression on frozen features by full-batch L-BFGS."""
    val_fraction: float = 0.1
    weight_decays: List[float] = field(default_factory=lambda: [0.0, 1e-5, 1e-4, 1e-3, 1e-2])
    steps: int = 300

    def __post_init__(self) -> None:
        _require(0 < self.val_fraction < 1, "eval.probe.fast.val_fraction must be in (0, 1)")
        _require(len(self.weight_decays) > 0 and min(self.weight_decays) >= 0,
                 "eval.probe.fast.weight_decays must be a non-empty list of values >= 0")
        _require(self.steps > 0, "eval.probe.fast.steps must be > 0")


@dataclass
class StandardProbeConfig:
    """eval.probe.standard: the papers' protocol, SGD on the features of augmented images."""
    epochs: int = 100
    batch_size: int = 256
    lr: float = 0.03
    weight_decay: float = 0.0
    standardize: bool = True
    test_resize: Optional[int] = None

    def __post_init__(self) -> None:
        _require(self.epochs > 0, "eval.probe.standard.epochs must be > 0")
        _require(self.batch_size > 0, "eval.probe.standard.batch_size must be > 0")
        _require(self.lr > 0, "eval.probe.standard.lr must be > 0")
        _require(self.weight_decay >= 0, "eval.probe.standard.weight_decay must be >= 0")
        _require(self.test_resize is None or self.test_resize >= 8,
                 "eval.probe.standard.test_resize must be null or >= 8 (pixels)")


PROBE_PROTOCOLS = ("fast", "standard")


@dataclass
class ProbeConfig:
    """eval.probe: which linear probe scores the representation, and each protocol's settings."""
    protocol: str = "fast"
    fast: FastProbeConfig = field(default_factory=FastProbeConfig)
    standard: StandardProbeConfig = field(default_factory=StandardProbeConfig)

    def __post_init__(self) -> None:
        _require(self.protocol in PROBE_PROTOCOLS,
                 f"eval.probe.protocol must be {' or '.join(PROBE_PROTOCOLS)}, got {self.protocol!r}")


@dataclass
class KNNConfig:
    """eval.knn: the weighted kNN classifier on cosine similarity (Wu et al. 2018)."""
    k: int = 200
    temperature: float = 0.07

    def __post_init__(self) -> None:
        _require(self.k > 0, "eval.knn.k must be > 0")
        _require(self.temperature > 0, "eval.knn.temperature must be > 0")


@dataclass
class EvalConfig:
    batch_size: int = 1024
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    knn: KNNConfig = field(default_factory=KNNConfig)
    random_init: bool = True
    every_n_epochs: int = 5
    monitor_images: int = 2000
    collapse_fraction: float = 0.05
    alignment_images: int = 1000
    zero_shot_templates: List[str] = field(default_factory=lambda: [
        "a {}", "a picture of a {}", "there is a {}", "an image showing a {}"])
    zero_shot_class_names: Dict[str, str] = field(default_factory=dict)
    objective_metric: str = "linear_probe.top1"
    truth_budget_s: float = 60.0
    ritz: bool = True
    ritz_pairs: int = 2048
    ritz_pca_prefix: bool = False
    ritz_knn_images: Optional[int] = 500

    def __post_init__(self) -> None:
        _require(self.ritz_knn_images is None or self.ritz_knn_images >= 1,
                 "eval.ritz_knn_images must be >= 1 (test images the prefix kNN classifies) or null (all of them)")
        _require(self.ritz_pairs >= 2, "eval.ritz_pairs must be >= 2 (pairs of the train split for Rayleigh-Ritz)")
        _require(self.truth_budget_s >= 0, "eval.truth_budget_s must be >= 0 (seconds; 0: no exact truth)")
        _require(self.objective_metric in REPORT_METRICS,
                 f"eval.objective_metric must be a figure of report.json, one of: {', '.join(REPORT_METRICS)}; "
                 f"got {self.objective_metric!r}")
        _require(len(self.zero_shot_templates) > 0 and all(_one_slot(t) for t in self.zero_shot_templates),
                 "eval.zero_shot_templates must be a non-empty list of prompts with one {} for the class name")
        _require(self.alignment_images == 0 or self.alignment_images >= 2,
                 "eval.alignment_images must be 0 (skip alignment and uniformity) or >= 2")
        _require(self.every_n_epochs >= 0, "eval.every_n_epochs must be >= 0 (0: no monitoring)")
        _require(self.monitor_images > 0, "eval.monitor_images must be > 0")
        _require(0 <= self.collapse_fraction <= 1, "eval.collapse_fraction must be in [0, 1]")
        _require(self.batch_size > 0, "eval.batch_size must be > 0")


# Keys of earlier versions, and where they live now: refused on the command line with the new name, and
# read in the new place from the configs of checkpoints and run dirs written before (upgrade()).
RENAMED_KEYS = {
    "eval.knn_k": "eval.knn.k", "eval.knn_temperature": "eval.knn.temperature",
    "eval.protocol": "eval.probe.protocol", "eval.probe_val_fraction": "eval.probe.fast.val_fraction",
    "eval.probe_weight_decays": "eval.probe.fast.weight_decays", "eval.probe_steps": "eval.probe.fast.steps",
    **{f"eval.standard_{key}": f"eval.probe.standard.{key}"
       for key in ("epochs", "batch_size", "lr", "weight_decay", "standardize", "test_resize")},
    "objective.text.level": "objective.text.tokenizer",
}


@dataclass
class TrainConfig:
    seed: int = 0
    resume: Optional[str] = None
    encoder: EncoderConfig = MISSING
    objective: ObjectiveConfig = MISSING
    augmentation: AugmentationConfig = MISSING
    dataset: DatasetConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check_seed("seed", self.seed)
        graph, node_encoder = self.dataset.name == "graph", self.encoder.name in GRAPH_ENCODERS
        pixels = graph and self.dataset.image_nodes
        _require(not node_encoder or graph, f"encoder={self.encoder.name} takes graph nodes (ids or features): "
                 f"use it with dataset=graph, or an image encoder with dataset={self.dataset.name}")
        _require(not (node_encoder and pixels), f"the graph's nodes are images (dataset.source="
                 f"{self.dataset.source if graph else ''}{', dataset.images' if graph and self.dataset.images else ''}"
                 f"): encoder={self.encoder.name} does not read pixels; use encoder=convnet, resnet18 or timm "
                 "(dataset=shapes_world brings a convnet)")
        _require(not (graph and self.augmentation.lab_split), "augmentation=lab_split splits an image dataset's "
                 "colour channels between two towers; a graph's pairs are its edges: choose another augmentation")
        _require(not graph or node_encoder or pixels, f"dataset=graph takes encoder="
                 f"{' or encoder='.join(GRAPH_ENCODERS)} (node ids or features); encoder={self.encoder.name} needs "
                 "nodes that are images: dataset.source=shapes_world, or dataset.images=NODES.csv (node,path)")
        _require(not graph or self.objective.name not in TWO_TOWER_OBJECTIVES or self.objective.pairs != "text",
                 f"objective={self.objective.name} on a graph trains on edges as two views: use objective.pairs=views")
        _require(not isinstance(self.encoder, MLPEncoderConfig)
                 or (isinstance(self.dataset, GraphConfig) and self.dataset.features_path is not None),
                 "encoder=mlp runs over node features: give dataset.features_path (CSV node,f1,f2,...), or use "
                 "encoder=embedding")
        if self.augmentation.lab_split:
            _require(self.objective.name in TWO_TOWER_OBJECTIVES and self.objective.pairs != "text",
                     "augmentation=lab_split gives the L and ab channels to two towers: use "
                     + " or ".join(f"objective={name}" for name in TWO_TOWER_OBJECTIVES)
                     + " (with objective.pairs auto or views)")


@dataclass
class EvalAppConfig:
    checkpoint: Optional[str] = None
    seed: int = 0
    augmentation: Optional[AugmentationConfig] = None
    dataset: Optional[DatasetConfig] = None
    device: str = "auto"
    precision: str = "auto"
    threads: Union[int, str] = "auto"
    eval: EvalConfig = field(default_factory=EvalConfig)
    encoder: Any = None   # always None: conf/eval.yaml's slots for what a dataset option brings along (encoder=...)
    optim: Any = None

    def __post_init__(self) -> None:
        _check_seed("seed", self.seed)
        _check_threads("threads", self.threads)
        _require(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        _require(self.precision in ("auto", "fp32", "bf16"),
                 f"precision must be auto, fp32 or bf16, got {self.precision!r}")


EXPORT_FORMATS = ("torchvision", "timm", "safetensors")


@dataclass
class ExportAppConfig:
    checkpoint: Optional[str] = None
    format: str = "torchvision"
    out: Optional[str] = None

    def __post_init__(self) -> None:
        _require(self.format in EXPORT_FORMATS,
                 f"format must be one of {', '.join(EXPORT_FORMATS)}, got {self.format!r}")


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalAppConfig)
    cs.store(name="export_schema", node=ExportAppConfig)
    for group, schemas in (("objective", OBJECTIVE_SCHEMAS), ("dataset", DATASET_SCHEMAS),
                           ("optim", OPTIM_SCHEMAS), ("encoder", ENCODER_SCHEMAS)):
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


def to_dict(cfg: object) -> Dict[str, Any]:
    """A typed config (a dataclass of this module) as plain dicts and lists: what checkpoints store."""
    return asdict(cfg)


def from_dict(schema: type, values: Dict[str, Any]) -> Any:
    """`values` (e.g. a section of a checkpoint's config) as the typed dataclass `schema`, checked as a
    command line is. Raises ConfigError."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except ConfigError:
        raise
    except Exception as err:  # omegaconf's MissingMandatoryValue, ValidationError...
        raise ConfigError(f"invalid config: {str(err).splitlines()[0]}") from None


def renamed(key: str, value: str | None) -> str | None:
    """One line for an override of a key that earlier versions had (key eval.knn_k, value "5", as
    specrep_cli.overrides reads them), naming today's key."""
    if key in RENAMED_KEYS:
        return f"{key} is now {RENAMED_KEYS[key]}: write {RENAMED_KEYS[key]}" + ("" if value is None else f"={value}")
    return None


def _move(tree: Dict[str, Any], old: str, new: str) -> None:
    *old_path, old_key = old.split(".")
    parent = tree
    for key in old_path:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or old_key not in parent:
        return
    value = parent.pop(old_key)
    *new_path, new_key = new.split(".")
    node = tree
    for key in new_path:
        node = node.setdefault(key, {})
    node[new_key] = value


def upgrade(config: Dict[str, Any]) -> Dict[str, Any]:
    """A config written by an earlier version (a checkpoint's, a run dir's .hydra/config.yaml) in
    today's shape: renamed keys moved (RENAMED_KEYS), and the keys an option's schema no longer has
    dropped (encoder.width of timm and embedding, the image keys of dataset=graph, all null or at their
    old defaults there)."""
    tree = copy.deepcopy(config)
    for old, new in RENAMED_KEYS.items():
        _move(tree, old, new)
    for group, schemas in (("encoder", ENCODER_SCHEMAS), ("dataset", DATASET_SCHEMAS)):
        section = tree.get(group)
        if isinstance(section, dict) and section.get("name") in schemas:
            known = {f.name for f in fields(schemas[section["name"]])}
            tree[group] = {k: v for k, v in section.items() if k in known}
    return tree


def flatten(node: Any, prefix: str = "") -> dict:
    """A resolved config as dotted keys: {"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if isinstance(node, dict) and node:
        return {k: v for key, child in node.items() for k, v in flatten(child, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


# ------------------------------------------------------------------------------------ validation
def _unknown_keys(node: Any, schema: type, path: str) -> List[str]:
    """Keys present in the composed node but absent from its dataclass (added with `+key=`)."""
    names = {f.name: f for f in fields(schema)}
    unknown = []
    for key in node.keys():
        full = f"{path}.{key}" if path else str(key)
        if key not in names:
            unknown.append(full)
            continue
        child = node[key]
        child_type = OmegaConf.get_type(node, key) if isinstance(child, DictConfig) else None
        if isinstance(child, DictConfig) and child_type is not None and is_dataclass(child_type):
            unknown.extend(_unknown_keys(child, child_type, full))
    return unknown


def compose_config(command: str, overrides: List[str]) -> "TrainConfig | EvalAppConfig | ExportAppConfig":
    """The typed config `specrep <command> <overrides...>` runs with: composed from conf/ by Hydra and
    validated, for callers in Python (benchmarks, tests, notebooks). Raises ConfigError."""
    register()
    with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
        return validate(compose(config_name=command, overrides=overrides))


def validate(cfg: DictConfig) -> "TrainConfig | EvalAppConfig | ExportAppConfig":
    """Check a composed config fully; return it as typed dataclass objects. Raises ConfigError."""
    schema = OmegaConf.get_type(cfg)
    unknown = _unknown_keys(cfg, schema, "")
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}: check its spelling "
                          f"(`specrep train --cfg job` shows every key)")
    try:
        typed = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as err:  # omegaconf's MissingMandatoryValue, ValidationError...
        msg = str(err).splitlines()[0]
        raise ConfigError(f"invalid config: {msg}") from None
    _check_values(typed)
    return typed


def _leaves(node: Any, key: str = "") -> List[tuple]:
    """(dotted key, value) of every value in a typed config: dataclass fields, dict and list items."""
    if is_dataclass(node):
        children = [(f.name, getattr(node, f.name)) for f in fields(node)]
    elif isinstance(node, dict):
        children = [(str(k), v) for k, v in node.items()]
    elif isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{key}[{i}]")]
    else:
        return [(key, node)]
    return [leaf for name, v in children for leaf in _leaves(v, f"{key}.{name}" if key else name)]


def _check_values(typed: object) -> None:
    """What every value must be, whatever its key: a number finite (nan and inf pass `> 0` checks, then
    wreck a run or a figure), a text not empty (`resume=$RUN` with RUN unset would start a new run)."""
    for key, value in _leaves(typed):
        _require(not isinstance(value, float) or math.isfinite(value),
                 f"{key}={value} is not a finite number: give a finite value")
        _require(value != "", f"{key} is empty ({key}=''; an unset shell variable?): give it a value, or leave "
                              f"it out for its default")
