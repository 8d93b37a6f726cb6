"""Everything a training run is made of, built once from the config: `build_run(cfg, dirs) -> Run`;
and where it starts: `start_state(run) -> LoopState`, fresh or restored from a checkpoint.

    dirs = RunDirs.of(cfg, job_dir)        # the run dir and the checkpoint to resume, decided once
    run = build_run(cfg, dirs, ranks)      # device, data, the step's pairs, method, optimizer, schedule
    state = start_state(run)               # epoch and step to start from; weights restored when resuming

The order of the random draws is fixed (torch.manual_seed(seed) right before the method builds its
first encoder, then a per-rank seed for the augmentations), so a run with a seed is reproducible and
the random-init baseline (models.seeded_encoder) is the encoder training started from.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from ..checkpoint import (
    Position,
    Progress,
    TrainedOn,
    check_resumable,
    load_checkpoint,
    reached,
    resolve_checkpoint_path,
    restore,
)
from ..config import TWO_TOWER_OBJECTIVES, ObjectiveConfig, TrainConfig, TwoTowerConfig
from ..data.datasets import load_dataset
from ..data.graphs import GraphData
from ..data.pairs import EdgePairs, StreamTextPairs, TextPairs, ViewPairs
from ..data.splits import ImageData
from ..data.stream import ShardStream
from ..data.tokenizer import Tokenizer, build_tokenizer
from ..errors import DatasetError, RunDirError, SpecrepError, TrainingError
from ..eval.features import FeatureReader
from ..eval.zeroshot import zero_shot_names
from ..models.encoders import build_encoder, uses_channels_last
from ..models.text import text_encoder
from ..models.timm_backbones import with_model_sizes
from ..objectives.methods import Method, build_method
from ..report.loggers import Loggers, open_loggers
from ..rundir import run_dir_of
from ..runtime import Compute, Ranks, git_sha, resolve_bf16, resolve_device
from .optimizers import Schedule, applied_lr, build_optimizer, lr_schedule
from .processes import join

log = logging.getLogger("specrep")


@dataclass(frozen=True)
class RunDirs:
    """Where a run's files go, decided once per job (before its run dir is locked)."""
    job_dir: Path                # this invocation's Hydra output dir (its train.log)
    run_dir: Path                # the run's own dir: checkpoints, metrics.jsonl, the report (resumed: the first's)
    resume_from: Path | None     # the checkpoint this invocation continues
    parent: Path | None = None   # a run continued from an older checkpoint of another run: that checkpoint

    @classmethod
    def of(cls, cfg: TrainConfig, job_dir: Path) -> RunDirs:
        """The checkpoint to continue: cfg.resume's, or checkpoints/last.pt already in the job's dir (a
        requeued SLURM job runs the same command again: it is resumed, never overwritten); the run dir:
        the resumed checkpoint's (<run>/checkpoints/x.pt), else the job's own (a fresh run, or a
        checkpoint from outside any run dir: ~/Downloads/model.pt).

        A checkpoint that is not its run's latest (the run went on past it) starts a new run in the
        job's dir, with that checkpoint as its parent, and leaves the run it came from as it is
        (RunDirError when the job's dir is that run's)."""
        job_dir = Path(job_dir)
        if cfg.resume is None and (job_dir / "checkpoints" / "last.pt").is_file():
            resume_from = resolve_checkpoint_path(job_dir)
        else:
            resume_from = resolve_checkpoint_path(cfg.resume) if cfg.resume else None
        run_dir = run_dir_of(resume_from)
        later = beyond(resume_from, run_dir) if resume_from and run_dir else None
        if run_dir is None or later is None:
            return cls(job_dir, run_dir or job_dir, resume_from)
        if run_dir.resolve() == job_dir.resolve():
            raise RunDirError(f"{resume_from} is not the latest of its run ({later}): continuing from it is a new "
                              f"run, which would overwrite {run_dir}'s later epochs; leave hydra.run.dir out or "
                              "choose an empty one")
        own = job_dir / "checkpoints" / "last.pt"   # the new run's own progress (a requeued job): go on from it
        log.info(f"{resume_from} is not the latest of its run ({later}): continuing from it as a new run in "
                 f"{job_dir}; {run_dir} is left as it is")
        return cls(job_dir, job_dir, own if own.is_file() else resume_from, parent=resume_from)


def resumed_run(resume: str) -> Path | None:
    """The run dir whose latest checkpoint `resume` names (the run dir itself, or its checkpoints/x.pt
    with nothing later there): `specrep train resume=RUN` goes on in RUN itself. None for anything
    else (a checkpoint outside any run, an older epoch, a path that is not there: RunDirs.of says why)."""
    try:
        checkpoint = resolve_checkpoint_path(resume)
    except SpecrepError:
        return None
    run_dir = run_dir_of(checkpoint)
    return run_dir if run_dir is not None and beyond(checkpoint, run_dir) is None else None


def beyond(checkpoint: Path, run_dir: Path) -> str | None:
    """What `run_dir` holds past `checkpoint`, one of its checkpoints ("checkpoints/last.pt is at step 80,
    this one at step 40"); None when it is the run's latest (or cannot be read: start_state says why)."""
    here = reached(checkpoint)
    if here is None:
        return None
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file() and not last.samefile(checkpoint):
        there = reached(last)
        if there is None:
            return "its checkpoints/last.pt cannot be read"
        if there[0] > here[0]:
            return f"checkpoints/last.pt is at step {there[0]}, this one at step {here[0]}"
    if (run_dir / "report.json").is_file() and not here[1]:
        return f"report.json holds the finished run, this checkpoint is at step {here[0]}"
    return None


@dataclass(frozen=True, kw_only=True)
class Run:
    """What a training run is made of, built once by build_run; the loop's stages read it and change
    only the state of its modules and optimizer."""
    cfg: TrainConfig
    ranks: Ranks
    compute: Compute
    dirs: RunDirs
    data: ImageData              # as loaded: nothing is written into it
    pairs: ViewPairs | TextPairs | EdgePairs  # batch -> (x, y): two views, an image and a caption, an edge's ends;
                                              # their mean and std are the run's normalisation (graphs: none)
    tokenizer: Tokenizer | None  # image-text pairs: the text tower's tokenizer
    method: Method
    model: nn.Module             # method, or its DistributedDataParallel wrapper: what a step calls
    optimizer: torch.optim.Optimizer
    lr: float                    # the peak learning rate (after the linear scaling rule)
    lrs: Schedule                # the learning rate of every step (lrs[step])
    steps_per_epoch: int
    channels_last: bool
    metrics: Loggers             # metrics.jsonl and the trackers of trainer.loggers (rank 0)
    console: Console
    sha: str | None

    @property
    def total_steps(self) -> int:
        return self.cfg.trainer.epochs * self.steps_per_epoch

    @property
    def local_batch(self) -> int:
        """Samples this rank takes of every global batch."""
        return self.cfg.trainer.batch_size // self.ranks.world

    @property
    def input(self) -> str:
        """What phi sees: rgb, or lab_l (augmentation=lab_split)."""
        return tower_input(self.cfg.augmentation.lab_split)

    @property
    def run_dir(self) -> Path:
        return self.dirs.run_dir

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def reader(self) -> FeatureReader:
        """How the monitoring and the final evaluation take features: normalised as the pairs are."""
        return FeatureReader(self.compute, self.pairs.mean, self.pairs.std, self.cfg.eval.batch_size)

    @property
    def trained_on(self) -> TrainedOn:
        """What the towers read, as the checkpoints record it and a resume checks it."""
        return TrainedOn(in_channels=self.data.in_channels, image_size=self.data.image_size,
                         classes=list(self.data.classes), input=self.input, num_train=self.data.ssl_images.shape[0],
                         mean=self.pairs.mean, std=self.pairs.std,
                         tokenizer=self.tokenizer.state() if self.tokenizer is not None else None)

    @property
    def perm_device(self) -> torch.device:
        """Where the epoch's permutation lives: with the images (streamed files: the host)."""
        images = self.data.ssl_images
        return images.device if isinstance(images, torch.Tensor) else torch.device("cpu")


@dataclass
class LoopState:
    """Where the loop stands; what a checkpoint saves of it is `progress` (and a mid-epoch position)."""
    progress: Progress = field(default_factory=Progress)
    position: Position | None = None       # resuming inside an epoch: its permutation and steps done
    last_checkpoint: Path | None = None
    bad_steps: int = 0                     # steps skipped for a non-finite loss (trainer.max_bad_steps)
    compile_seconds: float | None = None   # this invocation's first step under trainer.compile
    paced: bool = False                    # this invocation's pace logged (after its first epoch)

    @property
    def start_epoch(self) -> int:
        return self.progress.epoch if self.position is not None else self.progress.epoch + 1


def tower_input(lab: bool, tower: str = "x") -> str:
    """What an image tower sees: RGB, or (augmentation=lab_split) phi the L and nu the ab channels."""
    return ("lab_l" if tower == "x" else "lab_ab") if lab else "rgb"


def pairs_kind(objective: ObjectiveConfig, data: ImageData, lab: bool = False) -> str:
    """'text' (image, caption) or 'views' (two augmented views) for objective.pairs (auto: text when
    the dataset has captions and the views are not a Lab split); 'edges' for a graph (its edges are
    the two views of every objective that takes two)."""
    setting = objective.pairs if isinstance(objective, TwoTowerConfig) else "views"
    if isinstance(data, GraphData):
        if setting == "text":
            raise DatasetError("objective.pairs=text needs captions; a graph's pairs are its edges: use "
                               "objective.pairs=views")
        return "edges"
    streamed = isinstance(data.ssl_images, ShardStream)   # its .txt are the training captions
    has_captions = (streamed or data.train_captions is not None and data.unlabelled_images is None) and not lab
    if setting == "text" and not has_captions:
        raise DatasetError("objective.pairs=text needs image captions, and this dataset has none "
                           "(dataset=shapes has them); use objective.pairs=views")
    return "text" if setting == "text" or (setting == "auto" and has_captions) else "views"


def build_pairs(cfg: TrainConfig, data: ImageData,
                device: torch.device) -> tuple[ViewPairs | TextPairs | EdgePairs, Tokenizer | None]:
    """What a step's two inputs are: two augmented views, an augmented image and one of its captions
    (then also the tokenizer built from the training captions), or a graph's edges drawn by weight
    (augmentation.* applies only where the nodes are images). The pairs own the normalisation: the training
    images' per-channel mean and std; with augmentation=lab_split none (mean 0, std 1: the views
    stay RGB in [0, 1] and the towers take their L or ab channels themselves, models.lab.LabInput)."""
    lab = cfg.augmentation.lab_split
    kind = pairs_kind(cfg.objective, data, lab)
    if kind == "edges":   # the nodes' images (if they are images) augmented with augmentation.*
        cross = data.graph.bipartite and cfg.objective.name in TWO_TOWER_OBJECTIVES   # phi(x), nu(y)
        return EdgePairs(data.graph, data.inputs, device, cfg.augmentation, data.mean, data.std, cross), None
    mean, std = data.mean.to(device), data.std.to(device)
    if lab:
        mean, std = torch.zeros_like(mean), torch.ones_like(std)
    if kind == "views":
        return ViewPairs(cfg.augmentation, mean, std), None
    if cfg.encoder.projector_layers == 0:
        raise TrainingError("image-text pairs need encoder.projector_layers >= 1, so that the image and "
                            "the text tower both end in encoder.projector_out_dim dimensions")
    text = cfg.objective.text
    if isinstance(data.ssl_images, ShardStream):   # the workers tokenize; a word vocabulary from the first captions
        tokenizer = build_tokenizer(data.ssl_images.peek_captions(), text.tokenizer)
        data.ssl_images.caption_ids(tokenizer, text.context_length)
        return StreamTextPairs(cfg.augmentation, mean, std), tokenizer
    tokenizer = build_tokenizer(data.train_captions.texts, text.tokenizer)
    pairs = TextPairs(cfg.augmentation, mean, std, data.train_captions, data.ssl_images.shape[0], tokenizer,
                      cfg.objective.text.context_length)
    return pairs, tokenizer


def build_model(cfg: TrainConfig, data: ImageData, tokenizer: Tokenizer | None, ranks: Ranks,
                device: torch.device) -> tuple[Method, nn.Module, bool]:
    """(method, what a step calls: the method or its DDP wrapper, channels_last), seeded with cfg.seed
    so that phi starts as models.seeded_encoder(cfg.encoder, ..., cfg.seed) does."""
    lab, tr = cfg.augmentation.lab_split, cfg.trainer

    def make_encoder(tower: str = "x"):   # phi ("x"); a two-tower objective's nu ("y")
        if tower == "y" and tokenizer is not None:
            return text_encoder(cfg.objective.text, cfg.encoder, len(tokenizer), tokenizer.pad_id)
        return build_encoder(cfg.encoder, data.in_channels, tower_input(lab, tower))

    torch.manual_seed(cfg.seed)   # the method builds its (first) encoder first
    method = build_method(cfg.objective, make_encoder, tr.batch_size).to(device)   # the global batch
    channels_last = uses_channels_last(method)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    if tr.compile:   # in place (nn.Module.compile): the state dict keeps its keys
        for tower in (method.encoder, getattr(method, "encoder_y", None)):
            if tower is not None:
                tower.compile()
    model = method
    if ranks.world > 1:   # DDP averages the gradients over the ranks
        if tr.sync_batchnorm:
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None)
    return method, model, channels_last


def _join(cfg: TrainConfig, ranks: Ranks) -> torch.device:
    """This rank's device, once the global batch is known to split over the ranks."""
    tr = cfg.trainer
    if tr.batch_size % ranks.world:
        raise TrainingError(f"trainer.batch_size={tr.batch_size} (the global batch) must be divisible by the "
                            f"{ranks.world} processes of the run")
    device = join(ranks, resolve_device(tr.device))
    if tr.sync_batchnorm and ranks.world > 1 and device.type != "cuda":
        raise TrainingError("trainer.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); "
                            "drop it for gloo runs on the CPU")
    return device


def set_determinism(deterministic: bool) -> None:
    """cuDNN autotuning (fast; on CUDA the chosen kernels can differ from run to run), or
    trainer.deterministic: deterministic kernels everywhere torch has them (a warning where it has
    none), so that a run and its kill-and-resume give the same weights on a GPU too."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # cuBLAS's condition for determinism
    if deterministic or torch.are_deterministic_algorithms_enabled():   # the call imports torch._inductor:
        torch.use_deterministic_algorithms(deterministic, warn_only=True)   # seconds, for nothing when off


def build_run(cfg: TrainConfig, dirs: RunDirs, ranks: Ranks = Ranks(), data: ImageData | None = None) -> Run:
    """The run `cfg` describes, in `dirs`, as rank `ranks` of it (joining the process group); `data`
    replaces the configured dataset (benchmarks and tests hand in ready-made images)."""
    device = _join(cfg, ranks)
    compute = Compute(device, resolve_bf16(cfg.trainer.precision, device))
    set_determinism(cfg.trainer.deterministic)
    data = load_dataset(cfg.dataset, device) if data is None else data   # uint8 (N, C, H, W)
    cfg = with_model_sizes(cfg, getattr(data, "image_size", None))   # encoder=timm: auto sizes follow the model
    n_train, batch_size = data.ssl_images.shape[0], cfg.trainer.batch_size
    if batch_size > n_train:
        what = ("pairs per epoch (dataset.pairs_per_epoch)" if isinstance(data, GraphData) else
                "samples an epoch (dataset.samples_per_epoch)" if isinstance(data.ssl_images, ShardStream)
                else "images")
        raise DatasetError(f"trainer.batch_size={batch_size} is larger than the training set "
                           f"({n_train} {what}): lower the batch size or enlarge the dataset")
    pairs, tokenizer = build_pairs(cfg, data, device)
    if tokenizer is not None and data.labelled:   # before training: a wrong key, a name it cannot read
        zero_shot_names(data.classes, cfg.eval.zero_shot_class_names, tokenizer)
    method, model, channels_last = build_model(cfg, data, tokenizer, ranks, device)
    steps_per_epoch = n_train // batch_size   # the last partial batch is dropped
    if isinstance(data.ssl_images, ShardStream):
        data.ssl_images.assign(cfg.seed, ranks.rank, ranks.world, batch_size // ranks.world, steps_per_epoch)
    lr = applied_lr(cfg.optim, batch_size)
    lrs = lr_schedule(lr, cfg.trainer.epochs * steps_per_epoch,
                      round(cfg.optim.warmup_epochs * steps_per_epoch), cfg.optim.min_lr_ratio)
    optimizer = build_optimizer(method, cfg.optim, lr)
    torch.manual_seed(cfg.seed + 1_000_003 * ranks.rank)   # augmentations: each rank its own draws
    return Run(cfg=cfg, ranks=ranks, compute=compute, dirs=dirs, data=data, pairs=pairs, tokenizer=tokenizer,
               method=method, model=model, optimizer=optimizer, lr=lr, lrs=lrs, steps_per_epoch=steps_per_epoch,
               channels_last=channels_last, metrics=open_loggers(cfg, dirs.run_dir, ranks.main),
               console=Console(quiet=not ranks.main), sha=git_sha())


def start_state(run: Run) -> LoopState:
    """A fresh LoopState, or (resuming) the checkpoint's, with its weights, optimizer and RNG restored."""
    source, job_dir = run.dirs.resume_from, run.dirs.job_dir
    if source is None:
        return LoopState()
    if run.cfg.resume is None:
        log.info(f"{job_dir} already holds checkpoints/last.pt: resuming it instead of overwriting it "
                 "(choose another hydra.run.dir to start afresh)")
    ckpt = load_checkpoint(source)
    changes = check_resumable(ckpt, run.cfg, run.trained_on, source)
    progress, position = restore(ckpt, run.method, run.optimizer, run.ranks, source)
    if source == run.dirs.parent:   # a new run: its own trackers' runs (W&B), not its parent's
        progress.logger_ids.clear()
    if changes:   # in this invocation's log, and in metrics.jsonl, where the report finds every resume's
        log.info(f"resuming with changed settings: {'; '.join(changes)}")
        if isinstance(run.data.ssl_images, ShardStream) and any(c.startswith("dataset.workers") for c in changes):
            log.warning("dataset.workers changed: a webdataset epoch is dealt to ranks x workers readers, so the "
                        "rest of the run reads its samples in another order (not bit for bit the run left alone)")
        run.metrics.write({"step": progress.step, "epoch": progress.epoch, "resumed_from": str(source),
                           "changed": changes})
    if position is not None:
        position = (position[0].to(run.perm_device), position[1])
    state = LoopState(progress, position, source)
    log.info(f"resuming {source} at epoch {state.start_epoch}, step {progress.step}; this "
             f"invocation logs to {job_dir / 'train.log'}")
    return state
