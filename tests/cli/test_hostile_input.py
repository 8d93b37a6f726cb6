"""A hostile or careless user at the real `specrep` command: one line on stderr, a non-zero exit, no
traceback, and nothing lost or overwritten (earlier runs, evaluations and a user's own files keep
every byte). Each case is a row of docs/guarantees.md; none trains (the refusals come first), so the
file runs in seconds."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, TINY, assert_one_line_error, run_cli
from support import config_of, fake_report, fake_run, snapshot

from specrep_cli.cli import run_command

OWN_CONF = REPO / "conf"


def earlier_run(tmp: Path) -> Path:
    """A finished run (its record and report) that no command below may change."""
    return fake_run(tmp / "earlier", config_of("spectral", 0), fake_report(50.0, 40.0))


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "model.pt")
    return tmp / "model.pt"


# (the command line, given tmp; what its one line says). Each stops before any run dir is made.
COMMANDS = {
    "lr inf (it trained until the loss was nan)": (lambda t: ["train", "optim.lr=inf"], "optim.lr=inf is not a finite"),
    "threads 100000 (a segfault)": (lambda t: ["train", "trainer.threads=100000"], "int in 1..1024, got 100000"),
    "seed 1e20 (a traceback)": (lambda t: ["train", "seed=99999999999999999999"], "seed must be in 0..4,294,967,295"),
    "momentum -5 (a traceback)": (lambda t: ["train", "optim.momentum=-5"], "optim.momentum must be in [0, 1)"),
    "adamw betas [0.9] (a traceback)": (lambda t: ["train", "optim=adamw", "optim.betas=[0.9]"], "optim.betas must"),
    "empty resume (a new run from scratch)": (lambda t: ["train", "resume="], "resume is empty"),
    "empty unlabelled_root (a traceback)": (lambda t: ["train", "dataset=imagefolder", f"dataset.root={t}",
                                                       "dataset.unlabelled_root="], "dataset.unlabelled_root is empty"),
    "newline in the run dir (two lines)": (lambda t: ["train", f"hydra.run.dir={t}/a\nb"], "/a\\nb'"),
    "non-ASCII run dir unquoted": (lambda t: ["train", f"hydra.run.dir={t}/café"], "goes in quotes"),
    "--cfg job with a float epoch (seven lines)": (lambda t: ["train", "--cfg", "job", "trainer.epochs=1.5"],
                                                   "trainer.epochs=1.5: Value '1.5'"),
    "run dir in specrep's conf/": (lambda t: ["train", f"hydra.run.dir={OWN_CONF}/run"], "inside specrep's own"),
    "held: run dir a file": (lambda t: ["train", f"hydra.run.dir={t / 'earlier' / 'report.json'}"],
                             "cannot create the output directory"),
    "held: run dir /dev/null": (lambda t: ["train", "hydra.run.dir=/dev/null"], "cannot create the output directory"),
    "held: eval k of 0": (lambda t: ["eval", f"checkpoint={t / 'earlier'}", "eval.knn.k=0"], "eval.knn.k must be > 0"),
    "export out=/dev/null (wrote /dev/null.safetensors)": (
        lambda t: ["export", f"checkpoint={t / 'earlier' / 'report.json'}", "format=safetensors", "out=/dev/null"],
        "out=/dev/null is a device"),
    "export out=''": (lambda t: ["export", f"checkpoint={t / 'earlier'}", "out="], "out is empty"),
    "eval checkpoint a FIFO (read forever)": (lambda t: ["eval", f"checkpoint={_fifo(t)}", f"hydra.run.dir={t}/e"],
                                              "is not a regular file"),
    "resume a FIFO (read forever)": (lambda t: ["train", *TINY, f"resume={_fifo(t)}", f"hydra.run.dir={t}/r"],
                                     "is not a regular file"),
}
JOB_DIR = {"eval checkpoint a FIFO (read forever)": "e", "resume a FIFO (read forever)": "r"}   # found by the job


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_a_hostile_command_line_is_one_line_and_changes_nothing(case, tmp_path):
    before = snapshot(earlier_run(tmp_path))
    args = COMMANDS[case][0](tmp_path)
    proc = run_cli(*args, cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, COMMANDS[case][1])
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(tmp_path / "earlier") == before
    made = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("earlier", "model.pt", ".specrep-cache"))
    assert made == ([JOB_DIR[case]] if case in JOB_DIR else []), made
    assert not (OWN_CONF / "run").exists() and not Path("/dev/null.safetensors").exists()


# ------------------------------------------------------------------ a dir that is not a new run's
def users_folder(d: Path) -> Path:
    """A folder of the user's own that happens to hold files a run writes (report.md, plots/)."""
    (d / "plots").mkdir(parents=True)
    (d / "report.md").write_text("my notes\n")
    (d / "plots" / "loss.png").write_text("my plot\n")
    return d


def earlier_eval(d: Path) -> Path:
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text("checkpoint: x\n")
    (d / "report.json").write_text(json.dumps(fake_report(50.0, 40.0)))
    (d / "report.md").write_text("# an earlier evaluation\n")
    return d


# (what the dir holds, given tmp; the command into it; the refusal). Before: exit 0, and the earlier
# files rewritten (a report, plots, .hydra/), or jobs put inside a finished run.
INTO = {
    "eval into an earlier evaluation": (lambda t: earlier_eval(t / "ev"),
                                        lambda t: ["eval", f"checkpoint={t}/x.pt", f"hydra.run.dir={t / 'ev'}"],
                                        "already holds report.json: a new run there would overwrite it"),
    "train into a folder with your report.md": (lambda t: users_folder(t / "mine"),
                                                lambda t: ["train", *TINY, f"hydra.run.dir={t / 'mine'}"],
                                                "already holds report.md: a new run there would overwrite it"),
    "eval into a folder with your report.md": (lambda t: users_folder(t / "mine"),
                                               lambda t: ["eval", "checkpoint=x.pt", f"hydra.run.dir={t / 'mine'}"],
                                               "already holds report.md"),
    "a sweep into a finished run": (lambda t: earlier_run(t),
                                    lambda t: ["train", "--multirun", "seed=0,1", *TINY,
                                               f"hydra.sweep.dir={t / 'earlier'}"],
                                    "earlier already holds .hydra/config.yaml: a new sweep there would overwrite it"),
    "a sweep into an earlier sweep": (lambda t: fake_run(t / "sweep" / "0", config_of("spectral", 0),
                                                         fake_report(50.0, 40.0)).parent,
                                      lambda t: ["train", "--multirun", "seed=0,1", "optim.lr=0.05", *TINY,
                                                 f"hydra.sweep.dir={t / 'sweep'}"],
                                      "sweep/0 already holds .hydra/config.yaml"),
    "an eval sweep into an earlier one": (lambda t: earlier_eval(t / "sweep" / "0").parent,
                                          lambda t: ["eval", "--multirun", f"checkpoint={t}/x.pt", "seed=0,1",
                                                     f"hydra.sweep.dir={t / 'sweep'}"],
                                          "sweep/0 already holds .hydra/config.yaml"),
}


@pytest.mark.parametrize("case", sorted(INTO))
def test_a_new_run_never_writes_over_files_already_there(case, tmp_path):
    make, command, needle = INTO[case]
    target = make(tmp_path)
    before = snapshot(target)
    proc = run_cli(*command(tmp_path), cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, needle)
    after = snapshot(target)
    assert {k: v for k, v in after.items() if k.name != ".specrep.lock"} == before, (before, after)


# ------------------------------------------------------------------------------- the machine
def test_running_out_of_memory_is_one_line_not_a_traceback(tmp_path):
    """1,000,000-pixel shapes: 768 TB the allocator refuses at once (more than any address space)."""
    proc = run_cli("train", *TINY, "dataset.image_size=1000000", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "error: out of memory (", "lower trainer.batch_size")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert json.loads((tmp_path / "run" / "failed.json").read_text())["exit_code"] == 1


def test_ctrl_c_once_the_job_has_started_is_one_line_and_status_130(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["SPECREP_CACHE"] = str(tmp_path / "cache")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "specrep_cli", "train", *TINY, f"hydra.run.dir={run}"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / ".hydra" / "config.yaml").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(("interrupted", "error: stopped by SIGINT")), err


# ------------------------------------------------------------------------------------ report
REPORTS = {
    "unrelated files": (lambda d: (d / "notes.txt").write_text("hi") and (d / "blob.bin").write_bytes(os.urandom(99)),
                        "no finished runs below"),
    "report.json a list": (lambda d: (fake_run(d / "0", config_of("spectral", 0), fake_report(1.0, 1.0))
                                      / "report.json").write_text("[1, 2, 3]"), "lacks run, linear_probe.top1"),
    "top-1 a string": (lambda d: fake_run(d / "0", config_of("spectral", 0),
                                          {**fake_report(1.0, 1.0), "linear_probe": {"top1": "abc"}}),
                       "lacks run, linear_probe.top1 or knn.top1"),
    "config.yaml binary": (lambda d: (fake_run(d / "0", config_of("spectral", 0), fake_report(1.0, 1.0))
                                      / ".hydra" / "config.yaml").write_bytes(b"\x00\x01garbage: [\n - :"),
                           "config.yaml is not readable YAML"),
    "config.yaml a list": (lambda d: (fake_run(d / "0", config_of("spectral", 0), fake_report(1.0, 1.0))
                                      / ".hydra" / "config.yaml").write_text(yaml.safe_dump([1, 2])),
                           "does not hold a config (a mapping of keys)"),
}


@pytest.mark.parametrize("case", sorted(REPORTS))
def test_report_on_what_is_no_run_is_one_line(case, tmp_path, capsys):
    REPORTS[case][0](tmp_path)
    assert run_command("report", [str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and REPORTS[case][1] in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "summary.md").exists()


def test_report_on_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "report.json").write_text("{}")
    assert run_command("report", [str(tmp_path / "report.json")]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_a_checkpoint_of_another_program_is_one_line(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "lightning.ckpt")
    proc = run_cli("export", f"checkpoint={tmp_path / 'lightning.ckpt'}", "format=torchvision", cwd=tmp_path)
    assert_one_line_error(proc, "is not a specrep checkpoint")
    assert not (tmp_path / "export").exists()
