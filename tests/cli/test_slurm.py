"""Sweeps on SLURM through Hydra's submitit launcher (pip install -e '.[slurm]'): the launcher composes
with the train config, and the README's command passes specrep's check of the command line."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                    reason="hydra-submitit-launcher is not installed (pip install -e '.[slurm]' or '.[test]')")

from conftest import REPO, run_cli  # noqa: E402

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def readme_command() -> list[str]:
    """The README's `specrep train --multirun hydra/launcher=submitit_slurm ...` example, as argv
    after `specrep`, its `...` placeholders filled in."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"^specrep train --multirun hydra/launcher=submitit_slurm.*?(?<!\\)$", text,
                      re.MULTILINE | re.DOTALL)
    assert match, "the README's SLURM example is gone"
    words = match.group(0).replace("\\\n", " ").split("#")[0].split()
    return [w.replace("...", "gpu") for w in words[1:]]


def test_compose_with_the_slurm_launcher():
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from specrep_cli import config
    config.register()
    with initialize_config_module(config_module="specrep_cli.conf", version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                                 "hydra.launcher.gpus_per_node=1", "hydra.launcher.timeout_min=240"])
    launcher = cfg.hydra.launcher
    assert launcher._target_ == SLURM_LAUNCHER
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
    raw = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert raw["launcher"]["submitit_folder"].startswith("${hydra.sweep.dir}/")   # logs beside the sweep's runs
    assert raw["sweep"]["subdir"] == "${hydra.job.num}"                          # one run dir per job


def test_cli_prints_the_slurm_launcher_config(tmp_path):
    proc = run_cli("train", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra",
                   "-p", "hydra.launcher._target_", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == SLURM_LAUNCHER


def test_readme_command_passes_the_preflight(tmp_path, monkeypatch):
    from specrep_cli.cli import preflight
    args = readme_command()
    assert args[:3] == ["train", "--multirun", "hydra/launcher=submitit_slurm"]
    assert "hydra.launcher.partition=gpu" in args
    monkeypatch.chdir(tmp_path)   # the output-dir check looks at ./outputs
    assert preflight("train", args[1:]) is None


def test_a_mistyped_launcher_key_is_one_line_and_submits_nothing(tmp_path):
    proc = run_cli("train", "--multirun", "hydra/launcher=submitit_slurm", "hydra.launcher.partiton=gpu",
                   cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "hydra.launcher.partiton" in proc.stderr and "SlurmQueueConf" in proc.stderr
    assert not (tmp_path / "outputs").exists()
