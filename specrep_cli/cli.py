"""The `specrep` command: a small dispatcher in front of one Hydra app per subcommand.

    specrep train [overrides...]       -> train_app   (conf/train.yaml)
    specrep eval checkpoint=PATH ...   -> eval_app    (conf/eval.yaml)
    specrep report PATH...             -> report      (a plain command, not a Hydra app: report/summary.py)

Everything after train or eval goes to Hydra untouched: overrides, --multirun, --cfg job, --help,
--info. The command line is checked before Hydra starts a job, so that a mistyped key or option,
a wrong type or value, or an unwritable output directory is one line and no run directory. Shell completion (`eval "$(specrep -sc install=bash)"`) is routed to the subcommand's
app. A SpecrepError (bad config value, missing data, unusable checkpoint, diverged run) is
printed as one line on stderr with exit status 1; HYDRA_FULL_ERROR=1 shows the traceback instead.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import config
from .errors import ConfigError, ReportError, SpecrepError, error_status, exit_with
from .rundir import run_job
from .sweeps import optuna_direction, representative_overrides

config.register()

# What the commands run, imported when they run: `specrep --help`, `specrep train --help`, `--cfg job`
# and a mistyped override answer without loading torch (half a second instead of six). The import graph
# of tests/test_layout.py counts these as cli's imports.
WORK = {"train": ("specrep_cli.train.loop", "train"),
        "score": ("specrep_cli.report.report", "objective_value"),
        "eval": ("specrep_cli.eval.command", "evaluate_checkpoint"),
        "report": ("specrep_cli.report.summary", "summarize"),
        "tensorboard": ("specrep_cli.report.loggers", "tensorboard_from_metrics"),
        "export": ("specrep_cli.export", "export_checkpoint")}

COMMANDS = {
    "train": "train an encoder with an objective; writes checkpoints and a probe report "
             "(Hydra: overrides, --multirun, --cfg job, --help)",
    "eval": "score a checkpoint: linear probe, kNN, random-init baseline, spectra "
            "(specrep eval checkpoint=PATH)",
    "report": "compare runs: one row per configuration, seeds pooled (mean ± std); writes summary.md, "
              "summary.csv and summary.png (specrep report SWEEP_OR_RUN_DIR...)",
    "export": "write a checkpoint's backbone for torchvision, timm or safetensors, with a JSON sidecar "
              "(specrep export checkpoint=PATH format=torchvision)",
}
CONF = "pkg://specrep_cli.conf"


def work(command: str) -> Callable:
    """The function behind `command` (WORK), its module imported now."""
    module, name = WORK[command]
    return getattr(importlib.import_module(module), name)


def _run(cfg: DictConfig, fn: Callable[[Any, Path], Any]) -> Any:
    """Validate the composed config and run the command's work on the typed result (config.TrainConfig,
    config.EvalAppConfig) in the job's output dir (locked; a failure recorded there, and in a sweep the
    next job runs: rundir.run_job), turn SpecrepError into one line."""
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)

    def job() -> object:
        return fn(config.validate(cfg), job_dir)

    try:
        return run_job(job_dir, job, hydra_cfg.mode == RunMode.MULTIRUN, list(hydra_cfg.overrides.task),
                       hydra_cfg.job.get("num"))
    except SpecrepError as err:
        exit_with(err)


def train_and_score(cfg: config.TrainConfig, job_dir: Path) -> float:
    """Train; the figure eval.objective_metric names, for Hydra's sweepers (optuna searches on it)."""
    return work("score")(work("train")(cfg, job_dir), cfg.eval.objective_metric, job_dir)


@hydra.main(config_path=CONF, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float:
    return _run(cfg, train_and_score)


@hydra.main(config_path=CONF, config_name="eval", version_base="1.3")
def eval_app(cfg: DictConfig) -> object:
    return _run(cfg, work("eval"))


APPS = {"train": train_app, "eval": eval_app}
REPORT_USAGE = """usage: specrep report PATH [PATH...] [--tensorboard] [--pool-repeats]

Reads every run below the given directories (a run: a directory with report.json and
.hydra/config.yaml, e.g. the jobs of a --multirun sweep), groups the runs whose configs differ only
in `seed` (and `resume`), and prints one row per group: the settings that differ, probe and kNN
top-1 as mean ± std over the group's seeds with n, effective rank, images/s and training time. A
seed run more than once is named and its runs averaged into one sample; --pool-repeats counts each
run as a sample instead.
Writes summary.md, summary.csv and summary.png into the common parent of the paths (for one path,
that path). A sweep that searched (hydra/sweeper=optuna) also gets its trials, best first, and the
best configuration's command (search.md). --tensorboard writes TensorBoard events into each run's
tensorboard/ from its metrics.jsonl and report.json (runs made without trainer.loggers=[tensorboard]).

example: specrep report outputs/multirun/2026-12-01/10-00-00"""


def report_command(args: list[str]) -> int:
    """`specrep report PATH...`: the exit status; a problem is one line on stderr."""
    if any(a in ("-h", "--help") for a in args):
        print(REPORT_USAGE)
        return 0
    try:
        tensorboard, pool = "--tensorboard" in args, "--pool-repeats" in args
        paths = [a for a in args if a not in ("--tensorboard", "--pool-repeats")]
        flags = [a for a in paths if a.startswith("-")]
        if flags:
            raise ReportError(f"specrep report takes directories, --tensorboard and --pool-repeats, not {flags[0]}; "
                              "see specrep report --help")
        groups = work("report")(paths, pool_repeats=pool)
        for run in [r for g in groups for r in g.runs] if tensorboard else []:
            events = work("tensorboard")(run.path)
            print(f"wrote {events}" if events else f"note: {run.path / 'tensorboard'} already holds events")
    except SpecrepError as err:
        return error_status(err)
    return 0

EXPORT_USAGE = """usage: specrep export checkpoint=RUN_OR_CKPT [format=torchvision|timm|safetensors] [out=PATH]

Writes phi's backbone alone (no projector, no objective state) as a state dict that loads strict=True
into torchvision's resnet18 or timm's model as the JSON sidecar (out with .json) says, or as a
.safetensors file (any backbone, the convnet too). The keys are conf/export.yaml's.

example: specrep export checkpoint=outputs/2026-12-01/10-00-00 format=torchvision"""


def export_command(args: list[str]) -> int:
    """`specrep export key=value...`: the exit status; a problem is one line on stderr."""
    if any(a in ("-h", "--help") for a in args):
        print(EXPORT_USAGE)
        return 0
    try:
        with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
            try:
                composed = compose(config_name="export", overrides=args)
            except Exception as err:   # hydra's and omegaconf's exceptions, many types
                raise ConfigError(_one_line(err).replace("In 'export': ", "")) from None
        cfg = config.validate(composed)
        weights, sidecar = work("export")(cfg.checkpoint, cfg.format, cfg.out)
    except SpecrepError as err:
        return error_status(err)
    print(f"wrote {weights} and {sidecar}")
    return 0


NO_OUTPUT_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve")
OTHER_CONFIG_FLAGS = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")


def unwritable_output_dir(args: list[str]) -> str | None:
    """Why the run's output directory cannot be created, or None if it can.

    The directory given by hydra.run.dir (hydra.sweep.dir with --multirun), up to its first
    interpolation, else ./outputs.
    """
    multirun = {"--multirun", "-m"} & set(args) or any(a.lower() == "hydra.mode=multirun" for a in args)
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    target = next((a[len(key):] for a in args if a.startswith(key)), "outputs").split("${")[0] or "."
    existing = Path(target).absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".specrep-write-test-", dir=existing))
    except OSError as err:
        return (f"cannot create the output directory {target} ({err.strerror} in {existing}): run from a "
                f"writable directory or set {key}PATH")
    return None


def _one_line(err: Exception) -> str:
    """Hydra's and OmegaConf's multi-line composition errors, folded into one line."""
    text = str(err)
    line = text.splitlines()[0].removeprefix("In 'train': ").removeprefix("In 'eval': ")
    if "Available options in" in text:
        options = [o.strip() for o in text.split("Available options in")[1].split("Config search path")[0]
                   .splitlines()[1:] if o.strip()]
        return f"{line}; available: {', '.join(options)}"
    if err.__cause__ is not None and str(err.__cause__).strip():
        line = f"{line.rstrip('.')}: {str(err.__cause__).splitlines()[0]}"
    schema = re.search(r"Key '\w+' not in '(\w+)'", line)
    if schema and dataclasses.is_dataclass(getattr(config, schema.group(1), None)):   # a key of another option
        keys = [f.name for f in dataclasses.fields(getattr(config, schema.group(1))) if f.name != "name"]
        return f"{line} (the keys it has: {', '.join(keys)})"
    hint = next((h for h in text.splitlines()[1:] if h.startswith("To append")), None)
    return f"{line} ({hint[0].lower()}{hint[1:]})" if hint else line


def chosen_tuned(overrides: list[str]) -> str | None:
    """The refusal of `tuned=...`: conf/tuned/ is an optional default that Hydra would let a command
    line replace by any name, a typo included, silently (or by another pair's file)."""
    if any(o.lstrip("+~").split("=")[0].split("@")[0] == "tuned" for o in overrides):
        return ("tuned is not an option to choose: conf/tuned/<objective>_<optim>.yaml (and "
                "conf/tuned/<dataset>/<objective>_<optim>.yaml over it) applies by itself when that objective "
                "trains with that optimizer; set its keys instead (e.g. optim.lr=0.3)")
    return None


def preflight(command: str, args: list[str]) -> str | None:
    """One line saying what is wrong with the command line, checked before Hydra starts any job:
    composition (unknown keys and options, wrong types, parse errors), value ranges, output dir."""
    if any(a in NO_OUTPUT_FLAGS or a.split("=")[0] in OTHER_CONFIG_FLAGS for a in args):
        return None   # nothing is written, or another config tree: Hydra checks it itself
    overrides = [a for a in args if not a.startswith("-")]
    if problem := chosen_tuned(overrides) or next(filter(None, map(config.renamed, overrides)), None):
        return problem
    try:
        with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
            combinations = representative_overrides(overrides, GlobalHydra.instance().config_loader())
        for combination in combinations:
            with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
                config.validate(compose(config_name=command, overrides=combination))
    except SpecrepError as err:
        return str(err)
    except Exception as err:   # hydra's and omegaconf's exceptions, many types
        return _one_line(err)
    return unwritable_output_dir(args)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: specrep <command> [hydra overrides and flags]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "`specrep <command> --help` lists the config groups and options of a command."]
    return "\n".join(lines)


def complete(args: list[str]) -> None:
    """Shell completion: `specrep -sc install=bash` prints a script whose queries come back here as
    `specrep -sc query=bash` with the line in COMP_LINE; route them to the subcommand's app."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    querying = any(a.startswith("query") for a in args)
    plain = ("report", "export")   # not Hydra apps: the shell's own file completion (-o default)
    if querying and len(words) >= 2 and words[1] in plain and (len(words) > 2 or line.endswith(" ")):
        return
    if querying and len(words) >= 2 and words[1] in APPS and (len(words) > 2 or line.endswith(" ")):
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
        command = words[1]
    elif querying:   # still typing the subcommand
        prefix = words[1] if len(words) > 1 else ""
        print(" ".join(name for name in COMMANDS if name.startswith(prefix)))
        return
    else:
        command = "train"
    sys.argv = ["specrep", *args]
    APPS[command]()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    logging.raiseExceptions = False   # a full disk: train.log misses lines (the console has them), no traceback each
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0)
    command = args[0]
    if command == "report":
        sys.exit(report_command(args[1:]))
    if command == "export":
        sys.exit(export_command(args[1:]))
    if "-sc" in args or "--shell-completion" in args:
        complete([a for a in args if a not in APPS])
        return
    if command not in APPS:
        print(f"specrep: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    if command == "train" and "hydra/sweeper=optuna" in args:
        logging.getLogger("alembic").setLevel(logging.WARNING)   # optuna imports it; it logs each plugin
        direction = optuna_direction(args[1:])
        if direction:
            print(f"note: hydra/sweeper=optuna maximises eval.objective_metric ({direction[0]}); pass "
                  "hydra.sweeper.direction=minimize for a figure to minimise", file=sys.stderr)
            args = [*args, *direction]
    problem = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else preflight(command, args[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    sys.argv = ["specrep", *args[1:]]   # Hydra reads the overrides from sys.argv
    try:
        APPS[command]()
    except KeyboardInterrupt:   # a second Ctrl-C: stop at once, no traceback
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
