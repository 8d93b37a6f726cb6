"""Fault runs: real `specrep train` runs whose disk fills up, at the three moments it matters.

    sudo python benchmarks/disk_full.py                  # every case (needs root: mount -t tmpfs)
    sudo python benchmarks/disk_full.py --cases cache --quick   # one run of the cache case (the tests' smoke run)

  cache       $SPECREP_CACHE on a full tmpfs: the image folder is decoded, the run succeeds, twice,
              and no temporary file is left on the cache disk
  checkpoint  the run dir's tmpfs is filled once the first checkpoint is written: the next one fails
              with one line (the previous checkpoint is intact, and the command that resumes); once
              there is room again that command finishes the run
  report      the tmpfs is filled when the final evaluation starts: one line (training is complete,
              the command that finishes it), no report.json; once there is room that command writes it

Each case prints what happened and PASS or FAIL; the exit status is 1 if any case failed. Without
root (no tmpfs) it says so and exits 0: tests/cli/test_disk_full.py then patches the writes instead.
"""
from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SMALL = ["trainer.batch_size=64", "encoder.width=8", "encoder.projector_hidden_dim=64",
         "encoder.projector_out_dim=32", "eval.probe.fast.steps=20", "eval.random_init=false",
         "eval.alignment_images=0"]


def mount(where: Path, kib: int) -> bool:
    """A tmpfs of `kib` KiB at `where` (False where it cannot be mounted: not root)."""
    where.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
                                                capture_output=True).returncode == 0


def fill(where: Path, leave: int = 0) -> None:
    """Take every free byte of the disk under `where` but `leave` (a nearly full disk is what turns
    torch.save's ENOSPC into a RuntimeError: its data fits, its end-of-file record does not)."""
    with open(where / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    os.truncate(where / "filler", max(0, (where / "filler").stat().st_size - leave))


def env(cache: Path) -> dict:
    return {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "SPECREP_CACHE": str(cache),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def specrep(args, cwd: Path, cache: Path, **kw):
    return subprocess.run([sys.executable, "-m", "specrep_cli", *args], cwd=cwd, env=env(cache),
                          capture_output=True, text=True, timeout=900, **kw)


def start(args, cwd: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "specrep_cli", *args], cwd=cwd, env=env(cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def leftovers(d: Path) -> list:
    return [p.name for p in d.rglob("*") if ".tmp" in p.name]


def case_cache(tmp: Path, runs: int = 2) -> list:
    root = tmp / "folder"
    for split, n in (("train", 160), ("test", 40)):
        for c in range(2):
            (root / split / str(c)).mkdir(parents=True)
            for i in range(n // 2):
                Image.new("RGB", (32, 32), (40 + 150 * c, i, 255 - i)).save(root / split / str(c) / f"{i}.png")
    disk = tmp / "cache-disk"
    assert mount(disk, 256)
    fill(disk, leave=8192)
    results = []
    for attempt in range(1, runs + 1):
        proc = specrep(["train", "dataset=imagefolder", f"dataset.root={root}", "trainer.epochs=1", *SMALL,
                        f"hydra.run.dir={tmp / f'run{attempt}'}"], tmp, disk / "cache")
        ok = proc.returncode == 0 and (tmp / f"run{attempt}" / "report.json").is_file() and not leftovers(disk)
        warned = "could not cache" in proc.stdout + proc.stderr
        results.append((f"cache, run {attempt}", ok, f"exit {proc.returncode}; temporary files left: "
                        f"{len(leftovers(disk))}; {'cache warning logged' if warned else 'no warning'}"))
    return results


def _fill_when(proc: subprocess.Popen, ready, disk: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    fill(disk, leave=8192)


def _finish(args: list, disk: Path, run_dir: Path, tmp: Path, name: str, needle: str) -> tuple:
    """Fill the disk when `name`'s moment comes, check the one line, free the disk, run its command."""
    proc = start(args, tmp, tmp / "cache")
    if name == "checkpoint":
        _fill_when(proc, lambda: (run_dir / "checkpoints" / "last.pt").is_file(), disk)
        out, err = proc.communicate(timeout=900)
    else:   # the report: wait for the final evaluation's first line
        for line in proc.stdout:
            if "final evaluation" in line:
                break
        fill(disk, leave=8192)
        out, err = proc.communicate(timeout=900)
    line = last_line(err)
    first_ok = proc.returncode == 1 and "Traceback" not in err and needle in line and " with: " in line
    (disk / "filler").unlink()
    command = line.split(" with: ")[-1].split()
    rerun = specrep([*command[1:], f"hydra.run.dir={tmp / (name + '-rerun')}"], tmp, tmp / "cache")
    ok = first_ok and rerun.returncode == 0 and (run_dir / "report.json").is_file() and not leftovers(disk)
    return (name, ok, f"exit {proc.returncode}: {line[:160]}{'...' if len(line) > 160 else ''}; "
                      f"its command then: exit {rerun.returncode}, report.json "
                      f"{'written' if (run_dir / 'report.json').is_file() else 'missing'}")


def _fault(tmp: Path, name: str, overrides: list, needle: str) -> list:
    disk = tmp / f"{name}-disk"
    assert mount(disk, 2048)
    run_dir = disk / "run"
    args = ["train", *overrides, "dataset.num_test=128", *SMALL, f"hydra.run.dir={run_dir}"]
    return [_finish(args, disk, run_dir, tmp, name, needle)]


def case_checkpoint(tmp: Path) -> list:
    return _fault(tmp, "checkpoint", ["dataset.num_train=2048", "trainer.epochs=3"],
                  "previous checkpoint there is intact")


def case_report(tmp: Path) -> list:
    return _fault(tmp, "report", ["dataset.num_train=256", "trainer.epochs=1"], "cannot write the report")


CASES = {"cache": case_cache, "checkpoint": case_checkpoint, "report": case_report}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--quick", action="store_true", help="one run of the cache case, not two")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if not mount(tmp / "probe", 64):
            print("cannot mount a tmpfs here (needs root): tests/cli/test_disk_full.py patches the writes instead")
            return 0
        subprocess.run(["umount", str(tmp / "probe")])
        results = []
        try:
            for name in args.cases:
                results += case_cache(tmp, 1) if name == "cache" and args.quick else CASES[name](tmp)
        finally:
            for disk in tmp.glob("*-disk"):
                subprocess.run(["umount", str(disk)], capture_output=True)
    for name, ok, what in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {what}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
