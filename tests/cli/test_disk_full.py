"""A full disk costs what it must and nothing more: the decode cache only costs decoding time (no
temporary file left), a checkpoint or report that cannot be written is one line saying that the
previous checkpoint is intact and how to go on, never a partial or zero-byte file; so is the
summary of `specrep report`.

Each test fills a real small disk, a tmpfs, where this machine lets the test mount one (root);
elsewhere file writes are patched to fail as they do on a nearly full disk (4 KiB go through, then
ENOSPC; torch.save turns it into a RuntimeError, "unexpected pos ...").
"""
from __future__ import annotations

import builtins
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from support import config_of, fake_report, fake_run, folder_cfg, make_folder

from specrep_cli.checkpoint import load_checkpoint, save_checkpoint
from specrep_cli.data import load_dataset
from specrep_cli.errors import CheckpointError, ReportError
from specrep_cli.report.report import write_report
from specrep_cli.report.summary import summarize

sys.path.insert(0, str(REPO / "benchmarks"))
from disk_full import fill, mount  # noqa: E402  (the fault run's own tmpfs helpers)


class _NearlyFull:
    """A file on a disk with room[0] bytes left (shared by every file): a write beyond them fails with
    ENOSPC, as the kernel's does."""

    def __init__(self, f, room: list):
        self._f, self._room = f, room

    def write(self, data) -> int:
        if len(data) > self._room[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room[0] -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def _patch_full(where: Path, monkeypatch, leave: int) -> None:
    """Writes under `where` fail as on a nearly full disk (no tmpfs here): `leave` bytes go through,
    then ENOSPC (torch.save on a path turns it into a RuntimeError, as it does on a real disk)."""
    real_save, real_open, real_fdopen = torch.save, builtins.open, os.fdopen
    room = [leave]
    inside = lambda path: os.path.abspath(path).startswith(str(where))   # noqa: E731

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and inside(f):
            Path(f).write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        return real_save(obj, f, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        writing = isinstance(file, (str, os.PathLike)) and inside(file) and any(m in mode for m in "wax")
        return _NearlyFull(f, room) if writing else f

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return _NearlyFull(f, room) if "w" in mode and inside(os.readlink(f"/proc/self/fd/{fd}")) else f

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(Path, "write_text", lambda self, data, *a, **k: open_(self, "w").write(data))
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: open_(self, "wb").write(data))


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch):
    """(a directory on a small disk, fill): fill(leave) takes all but `leave` bytes of a 512 KiB tmpfs
    (a nearly full disk is what makes torch.save fail with a RuntimeError), or where no tmpfs can be
    mounted makes the writes under the directory fail as on such a disk."""
    where = tmp_path / "disk"
    mounted = mount(where, 512)
    yield where, (lambda leave=8192: fill(where, leave)) if mounted else (
        lambda leave=8192: _patch_full(where, monkeypatch, leave))
    monkeypatch.undo()
    if mounted and subprocess.run(["umount", str(where)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)   # busy: detach it now, free it later


def _leftovers(d: Path) -> list:
    return sorted(p.name for p in d.rglob("*") if ".tmp" in p.name)


def test_a_full_cache_disk_only_costs_decoding_time(tmp_path: Path, full_disk):
    where, fill = full_disk
    root = make_folder(tmp_path / "data")
    expected = load_dataset(folder_cfg(root, tmp_path / "elsewhere", image_size=64))   # 74 KiB a split
    fill()
    for _attempt in range(2):   # and the next run is not broken by what the first left behind
        data = load_dataset(folder_cfg(root, where / "cache", image_size=64))
        assert torch.equal(data.train_images, expected.train_images)
        assert _leftovers(where) == [] and list((where / "cache").rglob("*.pt")) == []


def test_a_full_run_dir_at_checkpoint_time_keeps_the_previous_checkpoint(full_disk):
    where, fill = full_disk
    path = where / "run" / "checkpoints" / "last.pt"
    save_checkpoint(path, {"config": {}, "data": {}, "encoder": {"w": torch.ones(4)}, "step": 4})
    fill()
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, {"config": {}, "data": {}, "encoder": {"w": torch.zeros(40_000)}, "step": 8})
    assert "No space left on device" in str(err.value) and "previous checkpoint there is intact" in str(err.value)
    assert load_checkpoint(path)["step"] == 4
    assert _leftovers(where) == []


def test_a_full_run_dir_at_report_time_is_one_line_and_no_empty_report(full_disk):
    where, fill = full_disk
    run_dir = where / "run"
    run_dir.mkdir()
    fill(0)
    with pytest.raises(ReportError) as err:
        write_report(run_dir, fake_report(90.0, 80.0))
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert not (run_dir / "report.json").exists()
    assert _leftovers(where) == []


def test_a_full_disk_at_summary_time_is_one_line_and_no_partial_summary(full_disk):
    where, fill = full_disk
    sweep = where / "sweep"
    for seed in (0, 1):
        fake_run(sweep / str(seed), config_of("spectral", seed), fake_report(90.0 + seed, 80.0, seed))
    fill(0)
    with pytest.raises(ReportError, match="cannot write the summary") as err:
        summarize([sweep])
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1"]   # no empty or partial summary.csv/.md
    assert _leftovers(where) == []
