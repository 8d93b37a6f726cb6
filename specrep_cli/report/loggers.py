"""Experiment tracking: what the training loop already pulls to the host, sent to the loggers that
`trainer.loggers` names. metrics.jsonl is always written; TensorBoard and W&B are imported only when
chosen (`pip install 'specrep[tensorboard]'`, `'specrep[wandb]'`). Rank 0 alone logs.

    loggers = open_loggers(cfg, run_dir, enabled=ranks.main)
    loggers.start(progress)          # the start is known: W&B takes up the run id a checkpoint kept,
                                     #   TensorBoard drops the events of steps a resumed run redoes
    loggers.write(record)            # a record of metrics.jsonl: a logging step, an epoch, a monitoring
    loggers.finish(report, run_dir)  # the report's figures, plots/*.png as images, the config as hparams
    with loggers: ...                # closed however the run ends

Every record becomes scalars at its optimizer step: a logging step's terms and lr as `train/<term>`,
an epoch's means, seconds and images/s as `epoch/<name>`, the monitoring as `monitor/<name>`, and the
report's figures (eval.objective_metric's choices) as `report/<key>`. Nothing here waits for the
device: records arrive as Python numbers.

`tensorboard_from_metrics(run_dir)` replays an existing run's metrics.jsonl and report.json into
TensorBoard events (`specrep report RUN_DIR --tensorboard`), through the same TensorBoard logger.
"""
from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from typing import Any, Dict, List, Protocol, Sequence, Tuple

import numpy as np
import yaml
from PIL import Image

from ..config import TrainConfig, flatten, to_dict
from ..errors import ConfigError, ReportError, TrainingError
from ..figures import REPORT_METRICS
from .metrics import MetricsLog, read_records
from .report import metric

EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}   # logger -> the pip extra that installs it
Scalars = Dict[str, float]


def record_kind(record: Dict[str, Any]) -> str:
    """monitor (the monitoring), train (a logging step: it has an lr) or epoch (an epoch's line)."""
    return "monitor" if "monitor" in record else "train" if "lr" in record else "epoch"


def record_scalars(record: Dict[str, Any]) -> Tuple[int, Scalars]:
    """(step, {tag: value}) of a metrics.jsonl record: `monitor/*` for the monitoring, `train/*` for a
    logging step, `epoch/*` for an epoch's line (epoch_<term> -> epoch/<term>, epoch -> epoch/number)."""
    step, kind = int(record.get("step", 0)), record_kind(record)
    if kind == "monitor":
        values = dict(record["monitor"])
    elif kind == "train":
        values = {k: v for k, v in record.items() if k not in ("step", "epoch")}
    else:
        values = {("number" if k == "epoch" else k.removeprefix("epoch_")): v
                  for k, v in record.items() if k != "step"}
    return step, {f"{kind}/{k}": float(v) for k, v in values.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}


def report_scalars(report: Dict[str, Any]) -> Scalars:
    """The report's figures (figures.REPORT_METRICS that it has) as `report/<dotted key>`."""
    found = {key: metric(report, key.split(".")) for key in REPORT_METRICS}
    return {f"report/{k}": v for k, v in found.items() if v is not None}


def _import(module: str, logger: str):
    """The optional package behind a logger, or one line naming the extra that installs it."""
    try:
        if module == "wandb":
            import wandb
            return wandb
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter
    except ImportError:
        raise ConfigError(f"trainer.loggers contains {logger}, which needs: "
                          f"pip install 'specrep[{EXTRAS[logger]}]'") from None


class Backend(Protocol):
    """What a tracker implements (TensorBoardLogger, WandbLogger); Loggers calls them in this order."""

    def start(self, step: int, ids: Dict[str, str]) -> Dict[str, str]:
        """Open at the run's step; `ids`: the run ids a checkpoint kept; returns this backend's."""

    def scalars(self, step: int, values: Scalars) -> None: ...

    def images(self, step: int, paths: Dict[str, Path]) -> None: ...

    def hparams(self, config: Dict[str, Any], figures: Scalars) -> None: ...

    def close(self, failed: bool) -> None: ...


class TensorBoardLogger:
    """Event files in <run_dir>/tensorboard (`tensorboard --logdir <run_dir>/tensorboard`)."""

    def __init__(self, log_dir: Path):
        self.log_dir, self.writer = Path(log_dir), None

    def start(self, step: int, ids: Dict[str, str]) -> Dict[str, str]:
        # purge_step: the events after the step a resumed run goes on from are dropped (it redoes them)
        writer = _import("tensorboard", "tensorboard")
        self.writer = writer(str(self.log_dir), purge_step=step + 1 if step else None)
        return {}

    def scalars(self, step: int, values: Scalars) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def images(self, step: int, paths: Dict[str, Path]) -> None:
        for tag, path in paths.items():
            with Image.open(path) as im:
                self.writer.add_image(tag, np.asarray(im.convert("RGB")), step, dataformats="HWC")

    def hparams(self, config: Dict[str, Any], figures: Scalars) -> None:
        """The config as text and, in the HParams tab, against the report's figures (the scalars
        logged under the same tags)."""
        from torch.utils.tensorboard import summary  # optional: it needs tensorboard
        flat = {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
                for k, v in flatten(config).items()}
        self.writer.add_text("config", "```\n" + yaml.safe_dump(config, sort_keys=False) + "```")
        for event in summary.hparams(flat, {k: v for k, v in figures.items() if math.isfinite(v)}):
            self.writer.file_writer.add_summary(event)

    def close(self, failed: bool) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbLogger:
    """A W&B run (trainer.wandb: project, entity, mode online|offline|disabled, tags) whose files go
    to <run_dir>/wandb; its id is kept in the checkpoint, so a resumed run logs into the same run."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, config: Dict[str, Any]):
        self.cfg, self.run_dir, self.config, self.run = cfg, Path(run_dir), config, None

    def start(self, step: int, ids: Dict[str, str]) -> Dict[str, str]:
        wandb = _import("wandb", "wandb")
        run_id = ids.get("wandb") or secrets.token_hex(4)
        try:
            self.run = wandb.init(project=self.cfg.project, entity=self.cfg.entity, mode=self.cfg.mode,
                                  tags=list(self.cfg.tags) or None, dir=str(self.run_dir), id=run_id,
                                  resume="allow", config=self.config,
                                  settings=wandb.Settings(console="off", silent=True))
        except Exception as err:   # no API key, no network, a bad entity: wandb raises many types
            why = str(err).strip().splitlines()[0] if str(err).strip() else "no message"
            raise TrainingError(f"W&B could not start ({type(err).__name__}: {why}): run `wandb login`, or set "
                                "trainer.wandb.mode=offline (`wandb sync` uploads it later)") from None
        return {"wandb": run_id}

    def scalars(self, step: int, values: Scalars) -> None:
        self.run.log(values, step=step)

    def images(self, step: int, paths: Dict[str, Path]) -> None:
        wandb = _import("wandb", "wandb")
        self.run.log({tag: wandb.Image(str(path)) for tag, path in paths.items()}, step=step)

    def hparams(self, config: Dict[str, Any], figures: Scalars) -> None:
        self.run.summary.update(figures)   # the config went in at wandb.init

    def close(self, failed: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)


class Loggers:
    """metrics.jsonl and the chosen backends (none on the ranks other than 0), fed the same records."""

    def __init__(self, metrics: MetricsLog, backends: Sequence[Backend], config: Dict[str, Any]):
        self.metrics, self.backends, self.config = metrics, list(backends), config
        self.started, self.step = False, 0

    def start(self, progress: Any) -> None:
        """Start the backends at the run's step; progress.logger_ids keeps (and gets) their run ids."""
        self.begin(progress.step, progress.logger_ids)

    def begin(self, step: int, ids: Dict[str, str]) -> None:
        """Start the backends at `step`; `ids` (a backend's run id, e.g. W&B's) is read and filled in."""
        for backend in self.backends:
            ids.update(backend.start(step, dict(ids)))
        self.started, self.step = True, step

    def write(self, record: Dict[str, Any]) -> None:
        self.metrics.write(record)
        if not self.backends:
            return
        if not self.started:   # benchmarks and tests that step without start_state
            self.begin(0, {})
        step, values = record_scalars(record)
        self.step = max(self.step, step)
        for backend in self.backends:
            backend.scalars(step, values)

    def finish(self, report: Dict[str, Any], run_dir: Path) -> None:
        """The report's figures, the plots as images and the config as hyper-parameters."""
        if not self.backends:
            return
        if not self.started:
            self.begin(0, {})
        figures = report_scalars(report)
        plots = {f"plots/{p.stem}": p for p in sorted((Path(run_dir) / "plots").glob("*.png"))}
        for backend in self.backends:
            backend.scalars(self.step, figures)
            backend.images(self.step, plots)
            backend.hparams(self.config, figures)

    def close(self, failed: bool = False) -> None:
        for backend in self.backends:
            backend.close(failed)

    def __enter__(self) -> "Loggers":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(failed=kind is not None)


def open_loggers(cfg: TrainConfig, run_dir: Path, enabled: bool = True) -> Loggers:
    """The loggers of `cfg` (a train config: cfg.trainer.loggers, cfg.trainer.wandb); none but a
    disabled metrics.jsonl on the ranks other than 0."""
    from_config = to_dict(cfg)
    backends: List[Backend] = []
    names = list(cfg.trainer.loggers) if enabled else []
    if "tensorboard" in names:
        backends.append(TensorBoardLogger(Path(run_dir) / "tensorboard"))
    if "wandb" in names:
        backends.append(WandbLogger(cfg.trainer.wandb, run_dir, from_config))
    return Loggers(MetricsLog(Path(run_dir) / "metrics.jsonl", enabled), backends, from_config)


# ------------------------------------------------------------------ specrep report --tensorboard
def _records(metrics_path: Path) -> List[Dict[str, Any]]:
    """Every record of metrics.jsonl; a step a resumed run logged twice keeps its last record."""
    kept: Dict[Tuple[str, int], Dict[str, Any]] = {}
    for record in read_records(metrics_path):   # a line cut short by a kill is skipped
        kept[(record_kind(record), int(record.get("step", 0)))] = record
    return sorted(kept.values(), key=lambda r: r.get("step", 0))


def tensorboard_from_metrics(run_dir: Path) -> Path | None:
    """<run_dir>/tensorboard from the run's metrics.jsonl (and report.json, .hydra/config.yaml when
    there), for a run made without trainer.loggers=[...,tensorboard]; the events' directory, or None
    when it already holds events (the run logged them itself: they are left as they are)."""
    run_dir = Path(run_dir)
    out = run_dir / "tensorboard"
    if not (run_dir / "metrics.jsonl").is_file():
        raise ReportError(f"{run_dir} has no metrics.jsonl: pass a run directory of specrep train")
    if out.is_dir() and any(out.glob("events.out.tfevents.*")):
        return None
    config_path, report_path = run_dir / ".hydra" / "config.yaml", run_dir / "report.json"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    loggers = Loggers(MetricsLog(run_dir / "metrics.jsonl", enabled=False), [TensorBoardLogger(out)],
                      config or {})
    with loggers:
        for record in _records(run_dir / "metrics.jsonl"):
            loggers.write(record)   # metrics.jsonl itself stays as it is
        if report_path.is_file():
            loggers.finish(json.loads(report_path.read_text()), run_dir)
    return out
