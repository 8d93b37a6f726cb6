"""The training loop, top to bottom: config -> data on the device -> method -> steps -> checkpoints -> report.

It knows no particular objective: a method (methods.py) turns two augmented views into named loss
terms, and this loop only steps the optimizer, logs the terms, saves checkpoints and evaluates.

The step has no host sync: loss terms are accumulated on the device and pulled to the host every
`trainer.log_every_n_steps` steps.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from . import __version__
from .pairs import TextPairs, ViewPairs
from .processes import Ranks, agree, gather_objects, join, leave, run_ranks, task_overrides
from .text import Tokenizer, text_encoder
from .zeroshot import evaluate_two_towers
from .config import flatten
from .checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint_path, save_checkpoint
from .data import DatasetError, ImageFiles, batches, load_dataset
from .encoders import build_encoder, param_count, uses_channels_last
from .errors import SpecrepError
from .evaluate import autocast, evaluate_with_baseline, monitor
from .methods import Method, build_method
from .optimizers import applied_lr, build_optimizer, lr_schedule
from .report import print_report, write_report

log = logging.getLogger("specrep")


class TrainingError(SpecrepError):
    """The run cannot go on (e.g. a non-finite loss)."""


class TrainingInterrupted(SpecrepError):
    """SIGINT/SIGTERM: a checkpoint was written and the message says how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopRequest:
    """SIGINT, SIGTERM (e.g. SLURM preemption) or SIGUSR2 (submitit's time-limit warning) during
    training asks the loop to stop after the
    current step and write a checkpoint; a second SIGINT stops at once."""

    def __init__(self):
        self.signum: int | None = None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: finishing the step and writing a checkpoint "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():   # signals need the main thread
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


# ------------------------------------------------------------------------------------ run setup
def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecrepError("trainer.device=cuda but no CUDA device is visible: use device=auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast: on CUDA, and on CPUs with native bf16 (AVX512-BF16 or AMX); fp32 otherwise."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def placement(images) -> str:
    """Where the training images live, for the log."""
    if isinstance(images, ImageFiles):
        return f"streamed from files by {images.workers} DataLoader workers"
    return f"in memory on {images.device} ({images.numel() / 2**30:.2f} GiB uint8)"


def git_sha() -> str | None:
    """The commit of the specrep source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def seeded_encoder(cfg: Any, in_channels: int, seed: int, input: str = "rgb"):
    """The encoder a run with this seed starts from (also the random-init baseline)."""
    torch.manual_seed(seed)
    return build_encoder(cfg, in_channels, input)


class MetricsLog:
    """metrics.jsonl: one JSON object per logging step and per epoch (written by rank 0 only)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def write(self, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _host(terms: Dict[str, torch.Tensor], count: int) -> Dict[str, float]:
    """Mean of accumulated terms, pulled to the host in one transfer."""
    if not terms:
        return {}
    keys = list(terms)
    values = (torch.stack([terms[k] for k in keys]) / max(count, 1)).tolist()
    return dict(zip(keys, values))


def _check_finite(values: Dict[str, float], step: int, last_checkpoint: Path | None,
                  bad_steps: int = 0, max_bad_steps: int = 0) -> None:
    """Stop on a non-finite loss; with max_bad_steps, only once more than that many were skipped."""
    if all(math.isfinite(v) for v in values.values()):
        return
    shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
    if bad_steps and bad_steps <= max_bad_steps:
        log.warning(f"skipped step {step}: non-finite loss ({shown}); {bad_steps}/{max_bad_steps} bad steps")
        return
    where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint yet"
    skipped = f" after skipping {max_bad_steps} bad steps" if max_bad_steps else ""
    raise TrainingError(f"non-finite loss at step {step}{skipped} ({shown}); {where}; lower optim.lr or "
                        "check the objective's settings (trainer.max_bad_steps skips bad steps)")


# ----------------------------------------------------------------------------------------- train
def train(cfg: DictConfig, run_dir: Path) -> Dict[str, Any] | None:
    """The Hydra job: train `cfg` in one process, or in trainer.devices (or torchrun's) ranks."""
    return run_ranks(train_rank, cfg, Path(run_dir))


def train_rank(cfg: DictConfig, run_dir: Path, ranks: Ranks = Ranks()) -> Dict[str, Any] | None:
    """Train `cfg` as one rank of the run; rank 0 writes checkpoints, metrics.jsonl and the report into
    run_dir and returns the report (the other ranks return None)."""
    tr = cfg.trainer
    if tr.batch_size % ranks.world:
        raise TrainingError(f"trainer.batch_size={tr.batch_size} (the global batch) must be divisible by the "
                            f"{ranks.world} processes of the run")
    device = join(ranks, resolve_device(tr.device))
    if tr.sync_batchnorm and ranks.world > 1 and device.type != "cuda":
        raise TrainingError("trainer.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); "
                            "drop it for gloo runs on the CPU")
    if not ranks.main:
        log.setLevel(logging.WARNING)   # one log: rank 0's
    console = Console(quiet=not ranks.main)
    run_dir = Path(run_dir)
    local_batch = tr.batch_size // ranks.world
    bf16 = resolve_bf16(tr.precision, device)
    torch.backends.cudnn.benchmark = True

    # Data: uint8 (N, C, H, W), on the device when it fits (else on the host, or streamed from files).
    data = load_dataset(cfg.dataset, device)
    images = data.ssl_images
    n_train = images.shape[0]
    if tr.batch_size > n_train:
        raise DatasetError(f"trainer.batch_size={tr.batch_size} is larger than the training set "
                           f"({n_train} images): lower the batch size or enlarge the dataset")
    perm_device = images.device if isinstance(images, torch.Tensor) else torch.device("cpu")

    # What a step's two inputs are: two augmented views, or an augmented image and one of its captions.
    # With augmentation=lab_split the views stay RGB in [0, 1] (no normalisation) and the towers take
    # their L or ab channels themselves (encoders.LabInput).
    lab = cfg.augmentation.lab_split
    if lab:
        data.mean, data.std = torch.zeros_like(data.mean), torch.ones_like(data.std)
    mean, std = data.mean.to(device), data.std.to(device)
    tokenizer = None
    if pairs_kind(cfg.objective, data, lab) == "text":
        if cfg.encoder.projector_layers == 0:
            raise TrainingError("image-text pairs need encoder.projector_layers >= 1, so that the image and "
                                "the text tower both end in encoder.projector_out_dim dimensions")
        tokenizer = Tokenizer.build(data.train_captions.texts, level=cfg.objective.text.level)
        pairs = TextPairs(cfg.augmentation, mean, std, data.train_captions, n_train, tokenizer,
                          cfg.objective.text.context_length)
    else:
        pairs = ViewPairs(cfg.augmentation, mean, std)

    # Model, objective and optimizer.
    def make_encoder(tower: str = "x"):   # phi ("x"); a two-tower objective's nu ("y")
        if tower == "y" and tokenizer is not None:
            return text_encoder(cfg.objective.text, cfg.encoder, len(tokenizer))
        return build_encoder(cfg.encoder, data.in_channels, tower_input(lab, tower))

    torch.manual_seed(cfg.seed)   # the method builds its (first) encoder first: = seeded_encoder(...)
    method = build_method(cfg.objective, make_encoder, tr.batch_size).to(device)   # the global batch
    channels_last = uses_channels_last(method)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    if tr.compile:   # in place (nn.Module.compile): the state dict keeps its keys
        for tower in (method.encoder, getattr(method, "encoder_y", None)):
            if tower is not None:
                tower.compile()
    model = method   # what the step calls; DDP averages the gradients over the ranks
    if ranks.world > 1:
        if tr.sync_batchnorm:
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None)
    steps_per_epoch = n_train // tr.batch_size   # the last partial batch is dropped
    total_steps = tr.epochs * steps_per_epoch
    lr = applied_lr(cfg.optim, tr.batch_size)
    lrs = lr_schedule(lr, total_steps, round(cfg.optim.warmup_epochs * steps_per_epoch),
                      cfg.optim.min_lr_ratio)
    optimizer = build_optimizer(method, cfg.optim, lr)
    torch.manual_seed(cfg.seed + 1_000_003 * ranks.rank)   # augmentations: each rank its own draws

    metrics = MetricsLog(run_dir / "metrics.jsonl", ranks.main)
    ckpt_dir = run_dir / "checkpoints"
    sha = git_sha()
    log.info(f"specrep {__version__} (git {sha or 'n/a'}), torch {torch.__version__}")
    log.info(f"run dir: {run_dir}")
    log.info(f"device: {device}, precision: {'bf16 autocast' if bf16 else 'fp32'}, "
             f"channels_last: {channels_last}")
    log.info(f"data: {cfg.dataset.name}, {n_train} training / {data.train_images.shape[0]} probe-train / "
             f"{data.test_images.shape[0]} test images, {data.in_channels}x{data.image_size}x{data.image_size}, "
             f"{len(data.classes)} classes, {placement(images)}")
    log.info(f"objective: {cfg.objective.name}, encoder: {cfg.encoder.name} "
             f"({param_count(method.encoder) / 1e6:.2f} M params), "
             f"augmentation: {cfg.augmentation.name}")
    log.info(f"batch size {tr.batch_size}, {steps_per_epoch} steps/epoch x {tr.epochs} epochs, "
             f"lr {lr:.4g}" + (f" (= {cfg.optim.lr} x {tr.batch_size}/256)" if cfg.optim.scale_lr else ""))
    if ranks.world > 1:
        log.info(f"{ranks.world} processes ({torch.distributed.get_backend()}), {local_batch} images per process "
                 f"and step; sync_batchnorm: {tr.sync_batchnorm}")
    if tr.compile:
        log.info("torch.compile: on (the first step includes the compilation; its time is logged)")

    start_epoch, step, train_seconds, last_ckpt, bad_steps = 1, 0, 0.0, None, 0
    compile_seconds = None   # the first step's time under trainer.compile (it compiles)
    history: List[Dict[str, Any]] = []   # the monitoring figures, one entry per monitored epoch
    resume_at: tuple[torch.Tensor, int] | None = None   # (the epoch's permutation, steps done in it)
    resume = cfg.resume
    if resume is None and (run_dir / "checkpoints" / "last.pt").is_file():   # e.g. a requeued SLURM job
        resume = run_dir
        log.info(f"{run_dir} already holds checkpoints/last.pt: resuming it instead of overwriting it "
                 "(choose another hydra.run.dir to start afresh)")
    if resume:   # continue the run in its own directory, where its last checkpoint stopped
        last_ckpt = resolve_checkpoint_path(resume)
        ckpt = load_checkpoint(last_ckpt)
        check_resumable(ckpt, cfg, data, last_ckpt)
        if ckpt.get("tokenizer") != (tokenizer.state() if tokenizer is not None else None):
            raise CheckpointError(f"cannot resume {last_ckpt}: its tokenizer differs from the one built "
                                  "from this dataset's captions; pass the dataset the run was started with")
        method.load_state_dict({**{f"encoder.{k}": v for k, v in ckpt["encoder"].items()},
                                **ckpt["objective"]})
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt.get("rng_ranks", [])[ranks.rank] if len(ckpt.get("rng_ranks", [])) == ranks.world
                      else ckpt["rng"])
        step, train_seconds, history = ckpt["step"], ckpt["train_seconds"], ckpt["history"]
        if "perm" in ckpt:   # stopped inside an epoch
            start_epoch, resume_at = ckpt["epoch"], (ckpt["perm"].to(perm_device), ckpt["epoch_step"])
        else:
            start_epoch = ckpt["epoch"] + 1
        log.info(f"resuming {last_ckpt} at epoch {start_epoch}, step {step}; this invocation logs to "
                 f"{run_dir / 'train.log'}")
        run_dir = last_ckpt.parent.parent
        metrics, ckpt_dir = MetricsLog(run_dir / "metrics.jsonl", ranks.main), run_dir / "checkpoints"

    # The loop.
    stop = StopRequest()
    with stop.installed(), _left_at_exit():
        for epoch in range(start_epoch, tr.epochs + 1):
            method.train()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            perm, first = resume_at if resume_at is not None else (epoch_permutation(n_train, cfg.seed, epoch, perm_device), 0)
            resume_at = None
            epoch_sum: Dict[str, torch.Tensor] = {}
            log_sum: Dict[str, torch.Tensor] = {}
            log_count = epoch_count = 0
            with _progress(console, epoch, tr.epochs) as progress:
                task = progress.add_task("train", total=steps_per_epoch, completed=first, info="")
                mine = rank_shard(perm[first * tr.batch_size:], tr.batch_size, ranks)   # this rank's samples
                index = mine.to(device, non_blocking=True)   # their image ids, on the device
                epoch_batches = batches(images, mine, local_batch, device, drop_last=True)
                for i, batch in enumerate(epoch_batches, start=first):                # (b, C, H, W) uint8
                    for group in optimizer.param_groups:
                        group["lr"] = lrs[step]
                    x, y = pairs(batch, index[(i - first) * local_batch:(i - first + 1) * local_batch])
                    compiling = tr.compile and compile_seconds is None   # this invocation's first step
                    if compiling:
                        compile_t0 = time.perf_counter()
                    terms = forward_backward(model, optimizer, x, y, channels_last, bf16)
                    if compiling:
                        compile_seconds = time.perf_counter() - compile_t0
                        log.info(f"first step (torch.compile): {compile_seconds:.1f} s")
                    step += 1
                    if tr.max_bad_steps and not torch.isfinite(terms["loss"]).item():   # opt-in sync
                        bad_steps += 1   # skip the update; the batch is spent
                        _check_finite(_host(terms, 1), step, last_ckpt, bad_steps, tr.max_bad_steps)
                    else:
                        optimizer.step()
                        method.after_step(step / total_steps)
                        for k, v in terms.items():
                            v = v.detach().float()
                            epoch_sum[k] = epoch_sum[k] + v if k in epoch_sum else v
                            log_sum[k] = log_sum[k] + v if k in log_sum else v
                        log_count += 1
                        epoch_count += 1
                    at_log_step = step % tr.log_every_n_steps == 0 or i == steps_per_epoch - 1
                    if log_count and at_log_step:
                        shown = _host(log_sum, log_count)      # the only host sync, every N steps
                        _check_finite(shown, step, last_ckpt)
                        elapsed = time.perf_counter() - t0
                        metrics.write({"step": step, "epoch": epoch, "lr": lrs[step - 1], **shown})
                        progress.update(task, info="  ".join(f"{k} {v:.4f}" for k, v in shown.items())
                                        + f"  lr {lrs[step - 1]:.3g}  "
                                        f"{(i + 1 - first) * tr.batch_size / elapsed:.0f} img/s"
                                        + (f"  kNN {history[-1]['knn_top1']:.1f} %  rank "
                                           f"{history[-1]['effective_rank_representation']:.1f}" if history else ""))
                        log_sum, log_count = {}, 0
                    progress.advance(task)
                    stopping = stop.signum is not None   # several ranks: decided together at log steps
                    if ranks.world > 1:
                        stopping = at_log_step and agree(stopping, device)
                    if stopping and i + 1 < steps_per_epoch:   # a mid-epoch checkpoint
                        last_ckpt = ckpt_dir / "last.pt"
                        payload = _checkpoint_payload(
                            cfg, data, method, optimizer, epoch, step, train_seconds + time.perf_counter() - t0,
                            history, position=(perm, i + 1), tokenizer=tokenizer)
                        if ranks.main:
                            save_checkpoint(last_ckpt, payload)
                        raise _interrupted(stop.signum or signal.SIGTERM, step, last_ckpt, run_dir)
            if device.type == "cuda":
                torch.cuda.synchronize()
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            means = _host(epoch_sum, epoch_count)
            throughput = (steps_per_epoch - first) * tr.batch_size / epoch_seconds
            metrics.write({"epoch": epoch, "step": step, "epoch_seconds": epoch_seconds,
                           "images_per_second": throughput, **{f"epoch_{k}": v for k, v in means.items()}})
            log.info(f"epoch {epoch}/{tr.epochs}  " + "  ".join(f"{k} {v:.4f}" for k, v in means.items())
                     + f"  {epoch_seconds:.1f} s  {throughput:.0f} img/s")

            watched = {}
            if ranks.main and cfg.eval.every_n_epochs and (epoch % cfg.eval.every_n_epochs == 0 or epoch == tr.epochs):
                watched = monitor(method.encoder, data, cfg.eval, device, bf16)
                history.append({"epoch": epoch, **watched})
                metrics.write({"epoch": epoch, "step": step, "monitor": watched})
                log.info(f"epoch {epoch}/{tr.epochs}  monitor: kNN top-1 {watched['knn_top1']:.2f} %  "
                         f"effective rank {watched['effective_rank_representation']:.1f} (representation), "
                         f"{watched['effective_rank_projection']:.1f} / {watched['projection_dim']} (projection)")
                if watched["effective_rank_projection"] < cfg.eval.collapse_fraction * watched["projection_dim"]:
                    log.warning(f"the projection is collapsing: effective rank "
                                f"{watched['effective_rank_projection']:.1f} of {watched['projection_dim']}")

            payload = _checkpoint_payload(cfg, data, method, optimizer, epoch, step, train_seconds, history,
                                          tokenizer=tokenizer)   # every rank: the RNG states are gathered
            last_ckpt = ckpt_dir / "last.pt"
            if ranks.main:
                save_checkpoint(last_ckpt, payload)
                if epoch % tr.checkpoint_every_n_epochs == 0 or epoch == tr.epochs:
                    save_checkpoint(ckpt_dir / f"epoch_{epoch:04d}.pt", payload)
                if tr.keep_best and watched and watched["knn_top1"] >= max(h["knn_top1"] for h in history):
                    save_checkpoint(ckpt_dir / "best.pt", payload)
            if agree(stop.signum is not None, device) and epoch < tr.epochs:
                raise _interrupted(stop.signum or signal.SIGTERM, step, last_ckpt, run_dir)
    if not ranks.main:   # rank 0 evaluates and reports
        return None

    # Evaluation of the trained encoder and of its random initialisation; alignment and uniformity
    # compare two views drawn with the run's own augmentation.
    t0 = time.perf_counter()
    results = evaluate_with_baseline(
        method.encoder, lambda: seeded_encoder(cfg.encoder, data.in_channels, cfg.seed, tower_input(lab)).to(device),
        data, cfg.eval, device, bf16, cfg.seed, views=cfg.augmentation)
    if tokenizer is not None:   # image-text towers: zero-shot classification and retrieval
        results.update(evaluate_two_towers(method.encoder, method.encoder_y, tokenizer,
                                           cfg.objective.text.context_length, data, cfg.eval, device, bf16))
    report = {
        "run": {"objective": cfg.objective.name, "encoder": cfg.encoder.name,
                "augmentation": cfg.augmentation.name, "dataset": cfg.dataset.name,
                "epochs": tr.epochs, "batch_size": tr.batch_size, "seed": cfg.seed,
                "device": str(device), "precision": "bf16" if bf16 else "fp32", "lr": lr,
                "git_sha": sha, "specrep_version": __version__, "torch_version": torch.__version__},
        **results,
        "history": history,
        "timing": {"train_seconds": train_seconds,
                   "train_images_per_second": total_steps * tr.batch_size / max(train_seconds, 1e-9),
                   "eval_seconds": time.perf_counter() - t0,
                   **({"compile_seconds": compile_seconds} if compile_seconds is not None else {})},
    }
    write_report(run_dir, report)   # report.json, plots/ (from metrics.jsonl and the report), report.md
    print_report(report, console)
    log.info(f"report: {run_dir / 'report.md'}")
    return report


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The epoch's order of the n training images: the same on every rank (its own generator, seeded
    by the run's seed and the epoch), independent of the augmentations' random draws."""
    g = torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g, device=device)


def rank_shard(order: torch.Tensor, global_batch: int, ranks: Ranks) -> torch.Tensor:
    """This rank's samples of each full global batch of `order`, in step order: rank r takes
    [r * b, (r + 1) * b) of every batch (b = global_batch / world), as the objectives assume."""
    n = order.shape[0] // global_batch * global_batch
    b = global_batch // ranks.world
    return order[:n].view(-1, ranks.world, b)[:, ranks.rank].reshape(-1)


@contextlib.contextmanager
def _left_at_exit():
    """Leave the process group when training ends, however it ends (evaluation needs none)."""
    try:
        yield
    finally:
        leave()


def forward_backward(method: Method, optimizer, x: torch.Tensor, y: torch.Tensor, channels_last: bool,
                     bf16: bool) -> Dict[str, torch.Tensor]:
    """The step up to the optimizer: the method's loss terms on a pair (x, y) under autocast, then
    gradients. Image inputs (B, C, H, W) go channels_last when the model does. No host sync."""
    if channels_last:
        x, y = (t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t for t in (x, y))
    with autocast(x.device, bf16):
        terms = method(x, y)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    return terms


def tower_input(lab: bool, tower: str = "x") -> str:
    """What an image tower sees: RGB, or (augmentation=lab_split) phi the L and nu the ab channels."""
    return ("lab_l" if tower == "x" else "lab_ab") if lab else "rgb"


def pairs_kind(objective: Any, data, lab: bool = False) -> str:
    """'text' (image, caption) or 'views' (two augmented views) for objective.pairs (auto: text when
    the dataset has captions and the views are not a Lab split)."""
    setting = objective.get("pairs", "views")
    has_captions = data.train_captions is not None and data.unlabelled_images is None and not lab
    if setting == "text" and not has_captions:
        raise DatasetError("objective.pairs=text needs image captions, and this dataset has none "
                           "(dataset=shapes has them); use objective.pairs=views")
    return "text" if setting == "text" or (setting == "auto" and has_captions) else "views"


def _progress(console: Console, epoch: int, epochs: int) -> Progress:
    return Progress(TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                    transient=True)


def _checkpoint_payload(cfg: DictConfig, data, method: Method, optimizer, epoch: int, step: int,
                        train_seconds: float, history: List[Dict[str, Any]],
                        position: tuple[torch.Tensor, int] | None = None, tokenizer: Tokenizer | None = None):
    """Everything a run needs to go on; `position` (the epoch's permutation, steps done in it) when
    the run stops inside an epoch."""
    state = method.state_dict()
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    rng_ranks = gather_objects(rng)   # a collective when there are several ranks: each keeps its own draws
    return {
        "specrep_version": __version__, "torch_version": str(torch.__version__),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data": {"in_channels": data.in_channels, "image_size": data.image_size,
                 "classes": list(data.classes), "input": tower_input(cfg.augmentation.lab_split),
                 "mean": data.mean.tolist(), "std": data.std.tolist()},   # the normalisation trained with
        "encoder": {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")},
        "objective": {k: v for k, v in state.items() if not k.startswith("encoder.")},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch, "step": step, "train_seconds": train_seconds, "history": history, "rng": rng,
        **({"perm": position[0].cpu(), "epoch_step": position[1]} if position is not None else {}),
        **({"tokenizer": tokenizer.state()} if tokenizer is not None else {}),
        **({"rng_ranks": rng_ranks} if len(rng_ranks) > 1 else {}),
    }


def _interrupted(signum: int, step: int, checkpoint: Path, run_dir: Path) -> TrainingInterrupted:
    """The one line a stopped run prints: where it stopped and the command that resumes it."""
    overrides = [o for o in task_overrides() if not o.startswith("resume=")]
    command = " ".join(["specrep train", *overrides, f"resume={run_dir}"])
    return TrainingInterrupted(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint "
                               f"{checkpoint}; resume with: {command}", signum)


def set_rng_state(rng: Dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def check_resumable(ckpt: Dict[str, Any], cfg: DictConfig, data, path: Path) -> None:
    """Refuse a checkpoint whose architecture, objective or data shape differ from the composed config."""
    ours = OmegaConf.to_container(cfg, resolve=True)
    differ = []
    for section in ("encoder", "objective"):
        theirs_flat, ours_flat = flatten(ckpt["config"][section], f"{section}."), flatten(ours[section], f"{section}.")
        differ += [f"{k} (checkpoint {theirs_flat.get(k)!r}, config {ours_flat.get(k)!r})"
                   for k in sorted(set(theirs_flat) | set(ours_flat)) if theirs_flat.get(k) != ours_flat.get(k)]
    if ckpt["data"]["in_channels"] != data.in_channels:
        differ.append(f"image channels (checkpoint {ckpt['data']['in_channels']}, data {data.in_channels})")
    if ckpt["data"].get("input", "rgb") != tower_input(cfg.augmentation.lab_split):
        differ.append(f"what the towers see (checkpoint {ckpt['data'].get('input', 'rgb')}, config "
                      f"{tower_input(cfg.augmentation.lab_split)}: augmentation=lab_split or not)")
    if differ:
        raise CheckpointError(f"cannot resume {path}: it differs from the composed config in "
                              f"{'; '.join(differ)}; pass the overrides the run was started with")
