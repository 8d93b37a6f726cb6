"""Checkpoints: atomic writes, safe and strict loads, one clear line for every unusable file."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, run_cli

from specrep_cli.checkpoint import FORMAT_VERSION, load_checkpoint, load_optimizer_state, save_checkpoint, set_rng_state
from specrep_cli.errors import CheckpointError


class _RunsCode:
    """Unpickling this writes a marker file: what a crafted checkpoint could do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


def test_atomic_write_leaves_the_old_file_intact_when_writing_fails(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": {}, "data": {}, "encoder": {"w": torch.ones(2)}})
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError, match="No space left on device.*intact"):
        save_checkpoint(path, {"config": {}, "data": {}, "encoder": {"w": torch.zeros(2)}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]   # no temporary file left behind


def test_load_refuses_a_crafted_pickle_and_runs_nothing(tmp_path: Path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"format": "specrep-checkpoint", "format_version": 1, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, needle", [
    (None, "does not exist"),
    (b"", "not a readable checkpoint"),
    (b"not a zip file at all", "not a readable checkpoint"),
])
def test_unreadable_files_are_named_in_one_line(tmp_path: Path, content, needle):
    path = tmp_path / "ckpt.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(path)


def test_truncated_foreign_and_newer_checkpoints_are_refused(tmp_path: Path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"config": {}, "data": {}, "encoder": {"w": torch.ones(1000)}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a specrep checkpoint"):
        load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "specrep-checkpoint", "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(CheckpointError, match="upgrade specrep"):
        load_checkpoint(newer)


@pytest.mark.integration   # a whole run
def test_eval_cli_refuses_a_crafted_checkpoint_in_one_line(tmp_path: Path):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "specrep-checkpoint", "format_version": 1, "x": _RunsCode(str(marker))}, evil)
    proc = run_cli("eval", f"checkpoint={evil}", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert_one_line_error(proc, "refused")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_resumed_optimizer_keeps_the_kernels_it_was_built_with():
    """A CUDA run's checkpoint says fused=True; resumed where the optimizer is built without fused
    kernels (the CPU), torch's load_state_dict would take fused=True from the saved groups."""
    w = torch.nn.Parameter(torch.ones(3))
    saved_opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.full((3,), 2.0)
    saved_opt.step()
    saved = saved_opt.state_dict()
    saved["param_groups"][0].update(fused=True, foreach=False)   # as a CUDA run writes it
    resumed = torch.optim.SGD([w], lr=0.5, momentum=0.9)
    load_optimizer_state(resumed, saved)
    group = resumed.param_groups[0]
    assert group["fused"] is None and group["foreach"] is None
    assert group["lr"] == 0.1                                      # the rest comes from the checkpoint
    assert torch.equal(resumed.state[w]["momentum_buffer"], torch.full((3,), 2.0))


def test_rng_states_from_a_machine_with_more_gpus_set_the_first_ones(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: seen.append(list(states)))
    set_rng_state({"torch": torch.get_rng_state(), "cuda": ["gpu0", "gpu1", "gpu2"]})
    assert seen == [["gpu0"]]
