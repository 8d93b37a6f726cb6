"""The `specrep` command: a table of subcommands (COMMANDS), each a name, a line of help and a
function `run(args) -> exit status`, and one dispatcher (main) in front of them.

    specrep train [overrides...]       -> train_app   (Hydra app, conf/train.yaml)
    specrep eval checkpoint=PATH ...   -> eval_app    (Hydra app, conf/eval.yaml)
    specrep report PATH...             -> report      (argparse; report/summary.py)
    specrep export checkpoint=PATH ... -> export      (conf/export.yaml composed as the check below does)

Everything after train or eval goes to Hydra untouched: overrides, --multirun, --cfg job, --help,
--info. The command line is checked before Hydra starts a job, so that an override that does not
parse, a mistyped key or option, a wrong type or value, or an unwritable output directory is one line
and no run directory. Shell completion (`eval "$(specrep -sc install=bash)"`) is routed to the
subcommand's app. Every command ends the same way: a SpecrepError (bad config value, missing data,
unusable checkpoint, diverged run) is one line on stderr with exit status 1 (HYDRA_FULL_ERROR=1 shows
the traceback instead), a second Ctrl-C is status 130, and a reader that stops reading
(`specrep --help | head`) ends the output quietly with status 0. Overrides are read by overrides.py,
Hydra's and OmegaConf's error text by hydra_errors.py.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List

import hydra
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.types import Override
from hydra.types import RunMode
from omegaconf import DictConfig

from . import config, errors, hydra_errors, overrides
from .errors import ConfigError, ReportError, SpecrepError, as_specrep_error, error_status, exit_with
from .rundir import printed_into, run_job, unwritable_output_dir
from .sweeps import optuna_direction, representative_overrides, searches, selects_on_test

config.register()

# What the commands run, imported when they run: `specrep --help`, `specrep train --help`, `--cfg job`
# and a mistyped override answer without loading torch (half a second instead of six). The import graph
# of tests/unit/test_layout.py counts these as cli's imports.
WORK = {"train": ("specrep_cli.train.loop", "train"),
        "score": ("specrep_cli.report.report", "objective_value"),
        "eval": ("specrep_cli.eval.command", "evaluate_checkpoint"),
        "resumed_run": ("specrep_cli.train.setup", "resumed_run"),
        "eval_args": ("specrep_cli.eval.command", "eval_args"),
        "report": ("specrep_cli.report.summary", "summarize"),
        "tensorboard": ("specrep_cli.report.loggers", "tensorboard_from_metrics"),
        "export": ("specrep_cli.export", "export_checkpoint")}

CONF = "pkg://specrep_cli.conf"
log = logging.getLogger("specrep")


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
    except (SpecrepError, MemoryError, RuntimeError) as err:   # RuntimeError: torch's allocators' out of memory
        exit_with(as_specrep_error(err))


def train_and_score(cfg: config.TrainConfig, job_dir: Path) -> float:
    """Train; the figure eval.objective_metric names, for Hydra's sweepers (optuna searches on it)."""
    return work("score")(work("train")(cfg, job_dir), cfg.eval.objective_metric, job_dir)


@hydra.main(config_path=CONF, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> float:
    return _run(cfg, train_and_score)


def evaluate(cfg: config.EvalAppConfig, job_dir: Path) -> Any:
    """Score the checkpoint; the output dir named first, and what the evaluation prints kept in the
    job's eval.log beside its log records."""
    log.info(f"output dir: {job_dir}")
    with printed_into(job_dir / "eval.log"):
        report = work("eval")(cfg, job_dir)
    log.info(f"report: {job_dir / 'report.md'}")
    return report


@hydra.main(config_path=CONF, config_name="eval", version_base="1.3")
def eval_app(cfg: DictConfig) -> object:
    return _run(cfg, evaluate)


APPS = {"train": train_app, "eval": eval_app}


def hydra_command(name: str) -> Callable[[List[str]], int]:
    """`specrep NAME ARGS` for a Hydra app: ARGS checked (preflight), then the app runs with them."""
    def run(args: List[str]) -> int:
        if name == "eval" and any(word in a for a in args for word in ("dataset", "encoder", "optim")):
            args = work("eval_args")(args)   # checked; dataset keys alone change the checkpoint's dataset
        problem = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else preflight(name, args)
        if problem:
            raise ConfigError(problem)
        args = overrides.group_keys_swept(overrides.in_hydra_order(args))
        if name == "train":
            args = with_resumed_run_dir(with_optuna_direction(args))
        sys.argv = ["specrep", *args]   # Hydra reads the overrides from sys.argv
        APPS[name]()
        return 0
    return run


def with_resumed_run_dir(args: List[str]) -> List[str]:
    """args (in_hydra_order), with hydra.run.dir=RUN after them when resume= names RUN's latest
    checkpoint (or RUN) and no run dir is given: the run goes on in its own dir, its train.log whole,
    with no new outputs/<date>/<time> left behind."""
    line = overrides.command_line(args)
    if line is None or line.multirun:
        return args
    parsed = overrides.parse(line.overrides)
    resume = overrides.chosen(parsed, "resume")
    if not isinstance(resume, str) or overrides.last(parsed, "hydra.run.dir") is not None:
        return args
    run = work("resumed_run")(resume)
    return [*args, overrides.assignment("hydra.run.dir", str(run))] if run else args


def with_optuna_direction(args: List[str]) -> List[str]:
    """args (in_hydra_order: the overrides last), with hydra.sweeper.direction=maximize after them when
    they choose hydra/sweeper=optuna without a direction (a note on stderr says so)."""
    line = overrides.command_line(args)
    try:
        parsed = overrides.parse(line.overrides) if line is not None else []
    except ConfigError:   # not checked (HYDRA_FULL_ERROR=1): Hydra says what is wrong itself
        return args
    if overrides.chosen(parsed, "hydra/sweeper") == "optuna":
        logging.getLogger("alembic").setLevel(logging.WARNING)   # optuna imports it; it logs each plugin
    direction = optuna_direction(parsed)
    if not direction:
        return args
    print(f"note: hydra/sweeper=optuna maximises eval.objective_metric ({direction[0]}); pass "
          "hydra.sweeper.direction=minimize for a figure to minimise", file=sys.stderr)
    return [*args, *direction]


REPORT_HELP = """Reads every run below the given directories (a run: a directory with report.json and
.hydra/config.yaml, e.g. the jobs of a --multirun sweep), groups the runs whose configs differ only
in `seed` (and `resume`), and prints one row per group: the settings that differ, probe and kNN
top-1 as mean ± std over the group's seeds with n, effective rank, images/s and training time. A
seed run more than once is named and its runs averaged into one sample; --pool-repeats counts each
run as a sample instead.
Writes summary.md, summary.csv and summary.png into the common parent of the paths (for one path,
that path). A sweep that searched (hydra/sweeper=optuna) also gets its trials, best first, and the
best configuration's command (search.md)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose complaint is a ReportError (one line, status 1) instead of usage and exit 2."""

    def error(self, message: str) -> Any:
        raise ReportError(f"{self.prog}: {message}; see {self.prog} --help")


def report_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="specrep report", description=REPORT_HELP, add_help=False, allow_abbrev=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example: specrep report outputs/multirun/2026-12-01/10-00-00")
    parser.add_argument("-h", "--help", action="store_true", help="show this help")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="a run or sweep directory")
    parser.add_argument("--tensorboard", action="store_true",
                        help="write TensorBoard events into each run's tensorboard/ from its metrics.jsonl and "
                             "report.json (runs made without trainer.loggers=[tensorboard])")
    parser.add_argument("--pool-repeats", action="store_true",
                        help="count each run of a seed as a sample instead of averaging them into one")
    return parser


def report(args: List[str]) -> int:
    """`specrep report PATH... [--tensorboard] [--pool-repeats]`."""
    parser = report_parser()
    options = parser.parse_intermixed_args(args)
    if options.help:
        print(parser.format_help())
        return 0
    groups = work("report")(options.paths, pool_repeats=options.pool_repeats)
    for run in [r for g in groups for r in g.runs] if options.tensorboard else []:
        events = work("tensorboard")(run.path)
        print(f"wrote {events}" if events else f"note: {run.path / 'tensorboard'} already holds events")
    return 0


EXPORT_USAGE = """usage: specrep export checkpoint=RUN_OR_CKPT [format=torchvision|timm|safetensors] [out=PATH]

Writes phi's backbone alone (no projector, no objective state) as a state dict that loads strict=True
into torchvision's resnet18 or timm's model as the JSON sidecar (out with .json) says, or as a
.safetensors file (any backbone, the convnet too). The keys are conf/export.yaml's.

example: specrep export checkpoint=outputs/2026-12-01/10-00-00 format=torchvision"""


def composed(command: str, args: List[str]) -> "config.TrainConfig | config.EvalAppConfig | config.ExportAppConfig":
    """The typed config of `specrep COMMAND ARGS` (config.compose_config), an override that does not
    parse named and Hydra's and OmegaConf's errors as one line: ConfigError."""
    overrides.parse(args)
    try:
        return config.compose_config(command, args)
    except SpecrepError:
        raise
    except Exception as err:   # hydra's and omegaconf's exceptions, many types
        raise ConfigError(hydra_errors.one_line(err, config)) from None


def export(args: List[str]) -> int:
    """`specrep export key=value...`: conf/export.yaml with those overrides."""
    if any(a in ("-h", "--help") for a in args):
        print(EXPORT_USAGE)
        return 0
    cfg = composed("export", args)
    weights, sidecar = work("export")(cfg.checkpoint, cfg.format, cfg.out)
    print(f"wrote {weights} and {sidecar}")
    return 0


def chosen_tuned(parsed: List[Override]) -> str | None:
    """The refusal of `tuned=...`: conf/tuned/ is an optional default that Hydra would let a command
    line replace by any name, a typo included, silently (or by another pair's file)."""
    if any(o.key_or_group.split("/")[0] == "tuned" for o in parsed):   # tuned, tuned/graph
        return ("tuned is not an option to choose: conf/tuned/<objective>_<optim>.yaml (and "
                "conf/tuned/<dataset>/<objective>_<optim>.yaml over it) applies by itself when that objective "
                "trains with that optimizer; set its keys instead (e.g. optim.lr=0.3)")
    return None


def renamed(parsed: List[Override]) -> str | None:
    """The first override of a key that earlier versions had, as config.renamed words it."""
    return next(filter(None, (config.renamed(o.key_or_group, overrides.value_text(o)) for o in parsed)), None)


def writes_nothing(line: argparse.Namespace) -> bool:
    """--help and the like write no run, and -cn/-cp/-cd choose another config tree: Hydra checks those
    command lines itself (--cfg, --info and --resolve write none either: preflight checks all but the output dir)."""
    return any((line.help, line.hydra_help, line.shell_completion, line.config_name, line.config_path,
                line.config_dir, line.experimental_rerun))


def preflight(command: str, args: List[str]) -> str | None:
    """One line saying what is wrong with the command line, checked before Hydra starts any job:
    overrides that do not parse, composition (unknown keys and options, wrong types), value ranges,
    a search on a figure of the test split (selects_on_test), the output dir."""
    line = overrides.command_line(args)
    if line is None:
        return None   # Hydra's own parser refuses it, and says why
    try:
        overrides.parse(line.overrides)
        if writes_nothing(line):
            return None
        with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
            parsed = overrides.parse(line.overrides, GlobalHydra.instance().config_loader())
            if problem := chosen_tuned(parsed) or renamed(parsed) or overrides.expanded_braces(parsed):
                return problem
            combinations = representative_overrides(parsed)
        for combination in combinations:
            cfg = composed(command, combination)
            if command == "train" and line.multirun and searches(parsed) and (problem := selects_on_test(cfg)):
                return problem
    except SpecrepError as err:
        return str(err)
    return None if line.cfg or line.info is not None or line.resolve else unwritable_output_dir(
        parsed, line.multirun, config.specrep_folders())   # --cfg and the like write no output dir


@dataclass(frozen=True)
class Command:
    name: str
    help: str                              # one line, for `specrep --help`
    run: Callable[[List[str]], int]        # the arguments after the name -> the exit status; may raise SpecrepError


COMMANDS = {c.name: c for c in [
    Command("train", "train an encoder with an objective; writes checkpoints and a probe report "
                     "(Hydra: overrides, --multirun, --cfg job, --help)", hydra_command("train")),
    Command("eval", "score a checkpoint: linear probe, kNN, random-init baseline, spectra "
                    "(specrep eval checkpoint=PATH)", hydra_command("eval")),
    Command("report", "compare runs: one row per configuration, seeds pooled (mean ± std); writes summary.md, "
                      "summary.csv and summary.png (specrep report SWEEP_OR_RUN_DIR...)", report),
    Command("export", "write a checkpoint's backbone for torchvision, timm or safetensors, with a JSON sidecar "
                      "(specrep export checkpoint=PATH format=torchvision)", export),
]}


def run_command(name: str, args: List[str]) -> int:
    """`specrep NAME ARGS` in this process: the exit status. A SpecrepError is its line on stderr
    (error_status), a Ctrl-C that reaches here (a second one in training) "interrupted" and 130."""
    try:
        return COMMANDS[name].run(args)
    except SpecrepError as err:
        return error_status(err)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: specrep <command> [hydra overrides and flags]", "", "commands:"]
    lines += [f"  {c.name:<{width}}  {c.help}" for c in COMMANDS.values()]
    lines += ["", "`specrep <command> --help` lists the config groups and options of a command."]
    return "\n".join(lines)


def complete(args: List[str]) -> None:
    """Shell completion: `specrep -sc install=bash` prints a script whose queries come back here as
    `specrep -sc query=bash` with the line in COMP_LINE; route them to the subcommand's app."""
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    querying = any(a.startswith("query") for a in args)
    if querying and len(words) >= 2 and words[1] in COMMANDS and (len(words) > 2 or line.endswith(" ")):
        if words[1] not in APPS:   # not a Hydra app: the shell's own file completion (-o default)
            return
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


def dispatch(args: List[str]) -> int:
    """The exit status of `specrep ARGS`: usage, shell completion, or one command of the table."""
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if "-sc" in args or "--shell-completion" in args:
        complete([a for a in args if a not in APPS])
        return 0
    if args[0] not in COMMANDS:
        print(f"specrep: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_command(args[0], args[1:])


class DropWhenReaderLeaves:
    """stdout or stderr, whose reader may stop reading (`specrep --help | head`): from then on the
    stream's file descriptor points at /dev/null, so that the rest is dropped quietly, wherever it is
    written from (Hydra's help and --cfg, rich's tables), instead of a BrokenPipeError."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self.flush()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            self.stream.flush()   # what it held goes to /dev/null

    def __getattr__(self, name: str) -> Any:   # isatty, fileno, encoding...: the stream's
        return getattr(self.stream, name)


def main(argv: List[str] | None = None) -> None:
    args, logging.raiseExceptions = sys.argv[1:] if argv is None else argv, False   # a full disk: no traceback per line
    errors.remember_interrupts()      # a Ctrl-C during set-up that a library swallows still stops training
    sys.stdout, sys.stderr = DropWhenReaderLeaves(sys.stdout), DropWhenReaderLeaves(sys.stderr)
    try:
        sys.exit(dispatch(args))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    main()
