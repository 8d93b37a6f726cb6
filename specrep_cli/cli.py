"""The `specrep` command: a small dispatcher in front of one Hydra app per subcommand.

    specrep train [overrides...]       -> train_app   (conf/train.yaml)
    specrep eval checkpoint=PATH ...   -> eval_app    (conf/eval.yaml)

Everything after the subcommand goes to Hydra untouched: overrides, --multirun, --cfg job, --help,
--info. Shell completion (`eval "$(specrep -sc install=bash)"`) is routed to the subcommand's
app. A SpecrepError (bad config value, missing data, unusable checkpoint, diverged run) is
printed as one line on stderr with exit status 1; HYDRA_FULL_ERROR=1 shows the traceback instead.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import config
from .errors import SpecrepError

config.register()

COMMANDS = {
    "train": "train an encoder with an objective; writes checkpoints and a probe report "
             "(Hydra: overrides, --multirun, --cfg job, --help)",
    "eval": "score a checkpoint: linear probe, kNN and the random-init baseline "
            "(specrep eval checkpoint=PATH)",
}
CONF = "pkg://specrep_cli.conf"


def _run(cfg: DictConfig, work: Callable[[DictConfig, Path], object]) -> None:
    """Validate the composed config, run `work` in the job's output dir, turn SpecrepError into one line."""
    try:
        config.validate(cfg)
        work(cfg, Path(HydraConfig.get().runtime.output_dir))
    except SpecrepError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 1))


@hydra.main(config_path=CONF, config_name="train", version_base="1.3")
def train_app(cfg: DictConfig) -> None:
    from .train import train
    _run(cfg, train)


@hydra.main(config_path=CONF, config_name="eval", version_base="1.3")
def eval_app(cfg: DictConfig) -> None:
    from .evaluate import evaluate_checkpoint
    _run(cfg, evaluate_checkpoint)


APPS = {"train": train_app, "eval": eval_app}
NO_OUTPUT_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve")


def unwritable_output_dir(args: list[str]) -> str | None:
    """One line saying why the run's output directory cannot be created, or None if it can.

    Checked before Hydra starts, which would otherwise fail with a traceback: the directory given by
    hydra.run.dir (hydra.sweep.dir with --multirun), up to its first interpolation, else ./outputs.
    """
    if any(a in NO_OUTPUT_FLAGS for a in args):
        return None
    key = "hydra.sweep.dir=" if {"--multirun", "-m"} & set(args) else "hydra.run.dir="
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
    if querying and len(words) >= 2 and words[1] in APPS and (len(words) > 2 or line.endswith(" ")):
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
        command = words[1]
    elif querying:   # still typing the subcommand
        prefix = words[1] if len(words) > 1 else ""
        print(" ".join(name for name in APPS if name.startswith(prefix)))
        return
    else:
        command = "train"
    sys.argv = ["specrep", *args]
    APPS[command]()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0)
    command = args[0]
    if "-sc" in args or "--shell-completion" in args:
        complete([a for a in args if a not in APPS])
        return
    if command not in APPS:
        print(f"specrep: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    problem = unwritable_output_dir(args[1:])
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
