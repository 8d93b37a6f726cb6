"""The `specrep` command run for real: every subcommand's output cut short by its reader, what
`specrep eval` prints (and keeps in eval.log), and an override that does not parse."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

HELP = [["--help"], ["train", "--hydra-help"], ["train", "--help"], ["eval", "--help"], ["report", "--help"],
        ["export", "--help"], ["train", "--cfg", "job"]]


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


@pytest.mark.parametrize("args", HELP, ids=" ".join)
def test_a_reader_that_has_gone_ends_the_output_quietly_with_status_0(args, tmp_path: Path):
    read, write = os.pipe()
    os.close(read)   # the reader has gone before the first byte: every write meets a closed pipe
    try:
        proc = subprocess.run([sys.executable, "-m", "specrep_cli", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path, env=_env(), timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""   # no BrokenPipeError, no "Exception ignored"


@pytest.mark.parametrize("args", HELP[:4], ids=" ".join)
def test_piping_into_head_with_pipefail(args, tmp_path: Path):
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "specrep_cli", *args])
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1"], capture_output=True, text=True,
                          cwd=tmp_path, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


@pytest.mark.parametrize("command", [["train"], ["eval", "checkpoint=x.pt"], ["export", "checkpoint=x.pt"]])
def test_an_override_that_does_not_parse_is_named_and_runs_nothing(command, tmp_path: Path):
    hostile = f"hydra.run.dir={tmp_path}/out$(touch {tmp_path}/X)"
    if command[0] == "export":
        hostile = f"out={tmp_path}/out$(touch {tmp_path}/X)"
    proc = run_cli(*command, hostile, cwd=tmp_path)
    assert_one_line_error(proc, f"cannot read the override '{hostile}': mismatched input '(' expecting <EOF>")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".specrep-cache") == []   # no X, no outputs/


def test_report_reads_its_arguments_with_argparse(tmp_path: Path):
    proc = run_cli("report", str(tmp_path), "--pool-repeats", "--tensorbord", cwd=tmp_path)
    assert_one_line_error(proc, "error: specrep report: unrecognized arguments: --tensorbord")
    assert proc.returncode == 1
    proc = run_cli("report", "--pool-repeats", str(tmp_path), cwd=tmp_path)   # flags before or after the paths
    assert_one_line_error(proc, "no finished runs below")


def test_eval_prints_its_output_dir_and_keeps_what_it_printed_in_eval_log(trained_run: Path, tmp_path: Path):
    out = tmp_path / "eval"
    proc = run_cli("eval", f"checkpoint={trained_run}", "eval.probe.fast.steps=10", "eval.random_init=false",
                   f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"output dir: {out}" in proc.stdout and f"report: {out / 'report.md'}" in proc.stdout
    log = (out / "eval.log").read_text()
    assert "linear probe top-1" in log and f"output dir: {out}" in log and "\x1b[" not in log
    printed = [line for line in proc.stdout.splitlines() if line.strip()]
    assert printed and all(line in log for line in printed)   # eval.log holds every line it printed, in order
    assert log.index("output dir:") < log.index("linear probe top-1") < log.index("report: ")
