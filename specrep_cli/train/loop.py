"""The training loop, as its stages: build the run, restore it if resuming, run each epoch, end each
epoch (monitor, checkpoint), finish (evaluate_run: the probe report).

It knows no particular objective: a method (objectives/methods.py) turns a step's two inputs into
named loss terms, and this loop only steps the optimizer, logs the terms, saves checkpoints and
evaluates. The step has no host sync: loss terms are summed on the device and pulled to the host
every `trainer.log_every_n_steps` steps (and, opt-in, once a step under trainer.max_bad_steps).

    train(cfg, job_dir)                      # the Hydra job: one process, or trainer.devices ranks
    terms = take_step(run, state, batch, index)   # one optimizer step (benchmarks call it too)
"""
from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from .. import __version__
from ..checkpoint import Position, payload, rng_state, save_checkpoint
from ..config import TrainConfig
from ..data.batches import batches
from ..data.shards import Bad
from ..data.stream import ShardStream
from ..errors import ReportError, TrainingError
from ..eval.suite import Evaluation, evaluate_run, monitor
from ..eval.towers import Towers
from ..report.metrics import read_epoch_losses, read_resume_records
from ..rundir import held
from ..runtime import Compute, Ranks
from .collapse import collapse_warning
from .pace import StepLines, log_pace, log_plan
from .processes import agree, gather_objects, left_at_exit, run_ranks
from .runlog import log_run
from .setup import LoopState, Run, RunDirs, build_run, start_state
from .stop import StopRequest, evaluation_stops, interrupted, resume_command

log = logging.getLogger("specrep")
Terms = Dict[str, Tensor]


def train(cfg: TrainConfig, job_dir: Path) -> Dict[str, Any] | None:
    """The Hydra job: train `cfg` in one process, or in trainer.devices (or torchrun's) ranks; the run
    dir (a resumed run's own) and the checkpoint to resume decided once, and the run dir locked."""
    dirs = RunDirs.of(cfg, Path(job_dir))
    with held(dirs.run_dir):
        return run_ranks(partial(train_rank, dirs=dirs), cfg, dirs.job_dir)


def train_rank(cfg: TrainConfig, job_dir: Path, ranks: Ranks, dirs: RunDirs) -> Dict[str, Any] | None:
    """Train `cfg` as one rank of the run in `dirs` (job_dir is dirs.job_dir, as run_ranks hands it
    on); rank 0 writes checkpoints, metrics.jsonl and the report into the run dir and returns the
    report (the other ranks return None)."""
    if not ranks.main:
        log.setLevel(logging.WARNING)   # one log: rank 0's
    run = build_run(cfg, dirs, ranks)
    log_run(run)
    state = start_state(run)
    log_plan(run, state)
    run.metrics.start(state.progress)   # the trackers (W&B: the checkpoint's run id, when resuming)
    stop = StopRequest()
    with run.metrics:   # closed however the run ends
        with stop.installed(), left_at_exit():
            for epoch in range(state.start_epoch, cfg.trainer.epochs + 1):
                end_epoch(run, state, run_epoch(run, state, epoch, stop), stop)
        if not ranks.main:
            return None
        with evaluation_stops(state.last_checkpoint, run.run_dir):
            return finish(run, state)


# ------------------------------------------------------------------------------------- the step
def forward_backward(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
                     channels_last: bool, compute: Compute) -> Terms:
    """The step up to the optimizer: the method's loss terms on a pair (x, y) under autocast, then
    gradients. Image inputs (B, C, H, W) go channels_last when the model does. No host sync."""
    if channels_last:
        x, y = (t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t for t in (x, y))
    with compute.autocast():
        terms = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    return terms


def take_step(run: Run, state: LoopState, batch: Tensor, index: Tensor) -> Terms | None:
    """One optimizer step on a uint8 batch (b, C, H, W) whose image ids are `index` (b,), both on the
    device: the schedule's lr, the pair (x, y), forward, backward, the optimizer step, after_step.
    Returns the loss terms, or None for a step skipped as non-finite under trainer.max_bad_steps."""
    tr, progress = run.cfg.trainer, state.progress
    for group in run.optimizer.param_groups:
        group["lr"] = run.lrs[progress.step]
    x, y = run.pairs(batch, index)
    compiling = tr.compile and state.compile_seconds is None   # this invocation's first step compiles
    t0 = time.perf_counter()
    terms = forward_backward(run.model, run.optimizer, x, y, run.channels_last, run.compute)
    if compiling:
        state.compile_seconds = time.perf_counter() - t0
        log.info(f"first step (torch.compile): {state.compile_seconds:.1f} s")
    progress.step += 1
    if tr.max_bad_steps and not torch.isfinite(terms["loss"]).item():   # opt-in sync
        state.bad_steps += 1   # skip the update; the batch is spent
        check_finite(Meter(terms).mean(), progress.step, state, tr.max_bad_steps)
        return None
    run.optimizer.step()
    run.method.after_step(progress.step / run.total_steps)
    return terms


class Meter:
    """Loss terms summed on the device over steps; mean() pulls them to the host in one transfer."""

    def __init__(self, terms: Terms | None = None):
        self.sums: Terms = {}
        self.count = 0
        if terms is not None:
            self.add(terms)

    def add(self, terms: Terms) -> None:
        for k, v in terms.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.count += 1

    def mean(self) -> Dict[str, float]:
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = (torch.stack([self.sums[k] for k in keys]) / max(self.count, 1)).tolist()
        return dict(zip(keys, values))


def check_finite(values: Dict[str, float], step: int, state: LoopState, max_bad_steps: int = 0) -> None:
    """Stop on a non-finite loss; with max_bad_steps, only once more than that many were skipped."""
    if all(math.isfinite(v) for v in values.values()):
        return
    shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
    if state.bad_steps and state.bad_steps <= max_bad_steps:
        log.warning(f"skipped step {step}: non-finite loss ({shown}); {state.bad_steps}/{max_bad_steps} bad steps")
        return
    last = state.last_checkpoint
    where = f"last good checkpoint: {last}" if last else "no checkpoint yet"
    skipped = f" after skipping {max_bad_steps} bad steps" if max_bad_steps else ""
    raise TrainingError(f"non-finite loss at step {step}{skipped} ({shown}); {where}; lower optim.lr or "
                        "check the objective's settings (trainer.max_bad_steps skips bad steps)")


# ------------------------------------------------------------------------------------ an epoch
def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> Tensor:
    """The epoch's order of the n training images: the same on every rank (its own generator, seeded
    by the run's seed and the epoch), independent of the augmentations' random draws."""
    g = torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g, device=device)


def rank_shard(order: Tensor, global_batch: int, ranks: Ranks) -> Tensor:
    """This rank's samples of each full global batch of `order`, in step order: rank r takes
    [r * b, (r + 1) * b) of every batch (b = global_batch / world), as the objectives assume."""
    n = order.shape[0] // global_batch * global_batch
    b = global_batch // ranks.world
    return order[:n].view(-1, ranks.world, b)[:, ranks.rank].reshape(-1)


def epoch_batches(run: Run, perm: Tensor, first: int, epoch: int = 1) -> Iterator[Tuple[int, Tensor, Tensor | None]]:
    """(step in the epoch, uint8 batch, its image ids) of this rank, from step `first` of the epoch
    whose order is `perm`; everything on the device. Streamed shards: the stream's batches of `epoch`
    (perm unused) with their caption ids (None for two views)."""
    b, global_batch = run.local_batch, run.cfg.trainer.batch_size
    if isinstance(run.data.ssl_images, ShardStream):   # streamed shards: the caption ids ride with the images
        stream = run.data.ssl_images
        yield from ((first + i, batch, ids) for i, (batch, ids) in
                    enumerate(stream.epoch_batches(epoch, first, run.compute.device)))
        return
    mine = rank_shard(perm[first * global_batch:], global_batch, run.ranks)   # this rank's samples
    index = mine.to(run.compute.device, non_blocking=True)                  # their image ids, on the device
    for i, batch in enumerate(batches(run.data.ssl_images, mine, b, run.compute.device, drop_last=True)):
        yield first + i, batch, index[i * b:(i + 1) * b]


@dataclass
class Epoch:
    """What an epoch did."""
    number: int
    means: Dict[str, float]   # each loss term's mean over the epoch's steps
    seconds: float
    images: int               # images trained on (global batches x batch size)
    bad: Bad | None = None    # streamed shards: this rank's bad samples skipped


def run_epoch(run: Run, state: LoopState, epoch: int, stop: StopRequest) -> Epoch:
    """The epoch's steps, from its saved position when resuming inside it."""
    run.method.train()
    run.compute.synchronize()
    t0 = time.perf_counter()
    images = run.data.ssl_images
    streamed = isinstance(images, ShardStream)   # its own order: no permutation
    perm, first = state.position or (torch.empty(0, dtype=torch.long) if streamed else
                                     epoch_permutation(images.shape[0], run.cfg.seed, epoch, run.perm_device), 0)
    state.position, state.progress.epoch = None, epoch
    epoch_meter, log_meter = Meter(), Meter()
    tr, last = run.cfg.trainer, run.steps_per_epoch - 1
    with _progress_bar(run.console, epoch, tr.epochs) as bar:
        task = bar.add_task("train", total=run.steps_per_epoch, completed=first, info="")
        lines = StepLines(epoch, tr.epochs, run.steps_per_epoch, first)   # no bar drawn: a line now and then
        for i, batch, index in epoch_batches(run, perm, first, epoch):
            terms = take_step(run, state, batch, index)
            if terms is not None:
                epoch_meter.add(terms)
                log_meter.add(terms)
            at_log_step = state.progress.step % tr.log_every_n_steps == 0 or i == last
            if log_meter.count and at_log_step:
                info = log_step(run, state, log_meter, (i + 1 - first) / (time.perf_counter() - t0))
                bar.update(task, info=info)
                lines.at_log_step(i + 1, info)
                log_meter = Meter()
            bar.advance(task)
            if _stopping(run, stop, at_log_step) and i < last:   # a checkpoint inside the epoch
                save_position(run, state, (perm, i + 1), time.perf_counter() - t0)
                raise interrupted(stop.signum or signal.SIGTERM, state.progress.step, state.last_checkpoint,
                                  run.run_dir)
    run.compute.synchronize()
    seconds = time.perf_counter() - t0
    state.progress.train_seconds += seconds
    return Epoch(epoch, epoch_meter.mean(), seconds, (run.steps_per_epoch - first) * tr.batch_size,
                 images.bad if streamed else None)


def log_step(run: Run, state: LoopState, meter: Meter, steps_per_second: float) -> str:
    """A logging step: the terms' means since the last one (the loop's only host sync) to
    metrics.jsonl; the progress line's text."""
    step, lr = state.progress.step, run.lrs[state.progress.step - 1]
    shown = meter.mean()
    check_finite(shown, step, state)
    run.metrics.write({"step": step, "epoch": state.progress.epoch, "lr": lr, **shown})
    history = state.progress.history
    watched = (f"  val kNN {history[-1]['knn_top1']:.1f} %  rank {history[-1]['effective_rank_representation']:.1f}"
               if history else "")
    return ("  ".join(f"{k} {v:.4f}" for k, v in shown.items())
            + f"  lr {lr:.3g}  {steps_per_second * run.cfg.trainer.batch_size:.0f} img/s" + watched)


def _stopping(run: Run, stop: StopRequest, at_log_step: bool) -> bool:
    """Whether to stop now; several ranks decide together, at logging steps (a collective)."""
    stopping = stop.signum is not None
    if run.ranks.world > 1:
        stopping = at_log_step and agree(stopping, run.compute.device)
    return stopping


def checkpoint_now(run: Run, state: LoopState, position: Position | None = None,
                   elapsed: float = 0.0) -> Dict[str, Any]:
    """The checkpoint of the run as it stands (`elapsed`: this epoch's seconds so far, when inside
    it). A collective with several ranks: every rank's RNG state goes in."""
    progress = replace(state.progress, train_seconds=state.progress.train_seconds + elapsed)
    return payload(run.cfg, run.trained_on, run.method, run.optimizer, progress, gather_objects(rng_state()),
                   position)


def save_position(run: Run, state: LoopState, position: Position, elapsed: float) -> None:
    """last.pt inside an epoch: where it stopped, so that a resume goes on from the next step."""
    ckpt = checkpoint_now(run, state, position, elapsed)
    state.last_checkpoint = run.ckpt_dir / "last.pt"
    if run.ranks.main:
        save_checkpoint(state.last_checkpoint, ckpt, resume_command(run.run_dir))


# ------------------------------------------------------------------------------- end of an epoch
def end_epoch(run: Run, state: LoopState, epoch: Epoch, stop: StopRequest) -> None:
    """The epoch's line in metrics.jsonl and train.log, the monitoring, the checkpoints; then stop
    here if a signal asked for it."""
    tr = run.cfg.trainer
    throughput = epoch.images / epoch.seconds
    run.metrics.write({"epoch": epoch.number, "step": state.progress.step, "epoch_seconds": epoch.seconds,
                       "images_per_second": throughput, **{f"epoch_{k}": v for k, v in epoch.means.items()}})
    log.info(f"epoch {epoch.number}/{tr.epochs}  " + "  ".join(f"{k} {v:.4f}" for k, v in epoch.means.items())
             + f"  {epoch.seconds:.1f} s  {throughput:.0f} img/s")
    log_pace(run, state, epoch.images, epoch.seconds)
    if epoch.bad is not None:
        log_bad_samples(run, state, epoch)
    watched = monitor_epoch(run, state, epoch.number)
    save_epoch(run, state, epoch.number, watched)
    if agree(stop.signum is not None, run.compute.device):   # the last epoch too: stop, say how to finish
        raise interrupted(stop.signum or signal.SIGTERM, state.progress.step, state.last_checkpoint, run.run_dir,
                          finished=epoch.number >= tr.epochs)


def log_bad_samples(run: Run, state: LoopState, epoch: Epoch) -> None:
    """Streamed shards: the bad samples every rank skipped this epoch, counted in metrics.jsonl and,
    when there were any, a warning naming the first (a collective with several ranks)."""
    count, named = 0, []
    for c, n in gather_objects((epoch.bad.count, epoch.bad.named)):
        count, named = count + c, named + n
    if not run.ranks.main:
        return
    run.metrics.write({"epoch": epoch.number, "step": state.progress.step, "bad_samples": count})
    if count:
        log.warning(f"epoch {epoch.number}: skipped {count} bad sample(s) of the shards (dataset.bad_samples=skip), "
                    f"e.g. {named[0]}" + (f"; {named[1]}" if len(named) > 1 else ""))


def monitor_epoch(run: Run, state: LoopState, epoch: int) -> Dict[str, float]:
    """Rank 0, every eval.every_n_epochs epochs and at the last: the validation kNN top-1 (a fixed part
    of the train split, never the test split: it picks best.pt) and effective ranks on the monitoring
    subset, into the history, metrics.jsonl and train.log (with a warning on collapse)."""
    cfg = run.cfg.eval
    if not (run.ranks.main and cfg.every_n_epochs
            and (epoch % cfg.every_n_epochs == 0 or epoch == run.cfg.trainer.epochs)):
        return {}
    watched = monitor(run.method.encoder, run.data, cfg, run.reader)
    state.progress.history.append({"epoch": epoch, **watched})
    run.metrics.write({"epoch": epoch, "step": state.progress.step, "monitor": watched})
    log.info(f"epoch {epoch}/{run.cfg.trainer.epochs}  monitor: validation kNN top-1 {watched['knn_top1']:.2f} % "
             f"({watched['validation_images']} validation images)  "
             f"effective rank {watched['effective_rank_representation']:.1f} (representation), "
             f"{watched['effective_rank_projection']:.1f} / {watched['projection_dim']} (projection)")
    if warning := collapse_warning(watched, state.progress.step, cfg, watched["memory_bank_images"]):
        log.warning(warning)   # not before collapse.MIN_STEPS steps, and judged against the subset's size
    return watched


def save_epoch(run: Run, state: LoopState, epoch: int, watched: Dict[str, float]) -> None:
    """last.pt every epoch; epoch_NNNN.pt every trainer.checkpoint_every_n_epochs and at the last;
    best.pt at the best validation kNN top-1 of the monitor so far (trainer.keep_best)."""
    tr = run.cfg.trainer
    ckpt = checkpoint_now(run, state)   # every rank: the RNG states are gathered
    state.last_checkpoint = run.ckpt_dir / "last.pt"
    if not run.ranks.main:
        return
    resume = resume_command(run.run_dir)   # named if a write fails
    save_checkpoint(state.last_checkpoint, ckpt, resume)
    if epoch % tr.checkpoint_every_n_epochs == 0 or epoch == tr.epochs:
        save_checkpoint(run.ckpt_dir / f"epoch_{epoch:04d}.pt", ckpt, resume, checked=True)
    history = state.progress.history
    if tr.keep_best and watched and watched["knn_top1"] >= max(h["knn_top1"] for h in history):
        save_checkpoint(run.ckpt_dir / "best.pt", ckpt, resume, checked=True)   # the same ckpt as last.pt


# ------------------------------------------------------------------------------------- the end
def finish(run: Run, state: LoopState) -> Dict[str, Any]:
    """Rank 0: evaluate_run on the trained towers and their random initialisation (alignment and
    uniformity compare two views drawn with the run's own augmentation); the report."""
    cfg = run.cfg
    towers = Towers.from_run(cfg, run.method, run.data.in_channels, run.input, run.tokenizer, run.compute.device)
    evaluation = Evaluation(towers=towers, data=run.data, cfg=cfg.eval, reader=run.reader, seed=cfg.seed,
                            run_dir=run.run_dir, views=cfg.augmentation, console=run.console)
    log.info(f"final evaluation: {cfg.eval.probe.protocol} probe, kNN, spectra (training is complete)")
    try:
        report = evaluate_run(evaluation, report_header(run, state))
    except ReportError as err:   # a full disk: the checkpoints are complete, rerunning writes the report
        raise ReportError(f"{err}; training is complete (checkpoint {state.last_checkpoint}): finish it "
                          f"with: {resume_command(run.run_dir)}") from None
    run.metrics.finish(report, run.run_dir)   # the trackers get the figures, the plots and the config
    log.info(f"report: {run.run_dir / 'report.md'}")
    return report


def report_header(run: Run, state: LoopState) -> Dict[str, Any]:
    """The report's "run" (the settings, and what every resume changed), "history", "timing", and the
    epochs' mean losses (read from metrics.jsonl: a graph's report judges convergence by them)."""
    cfg, tr, progress = run.cfg, run.cfg.trainer, state.progress
    resumes = read_resume_records(run.run_dir / "metrics.jsonl")
    return {
        "run": {"objective": cfg.objective.name, "encoder": cfg.encoder.name,
                "augmentation": cfg.augmentation.name, "dataset": cfg.dataset.name,
                "epochs": tr.epochs, "batch_size": tr.batch_size, "seed": cfg.seed,
                "device": str(run.compute.device), "precision": run.compute.precision, "lr": run.lr,
                "git_sha": run.sha, "specrep_version": __version__, "torch_version": torch.__version__,
                **({"parent_checkpoint": str(run.dirs.parent.absolute())} if run.dirs.parent else {}),
                **({"changed_on_resume": resumes} if resumes else {})},
        "history": progress.history,
        "losses": read_epoch_losses(run.run_dir / "metrics.jsonl"),   # each epoch's mean: a graph's convergence
        "moving_target": run.method.moving_target,                     # their trend then means nothing
        "timing": {"train_seconds": progress.train_seconds,
                   "train_images_per_second": run.total_steps * tr.batch_size / max(progress.train_seconds, 1e-9),
                   **({"compile_seconds": state.compile_seconds} if state.compile_seconds is not None else {})},
    }


def _progress_bar(console: Console, epoch: int, epochs: int) -> Progress:
    return Progress(TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                    transient=True)
