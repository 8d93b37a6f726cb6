"""Experiment tracking: TensorBoard event files read back, W&B offline runs read back from their files,
a resumed run logging into the same W&B run, `specrep report --tensorboard`, and the extras."""
from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli, train_into

from specrep_cli import cli, config
from specrep_cli.errors import ConfigError
from specrep_cli.report.loggers import open_loggers, record_scalars

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="TensorBoard is an extra: pip install 'specrep[tensorboard]'")
wandb_proto = pytest.importorskip("wandb.proto.wandb_internal_pb2",
                                  reason="W&B is an extra: pip install 'specrep[wandb]'")

LOGGED = [*TINY, "trainer.epochs=2", "trainer.checkpoint_every_n_epochs=1", "eval.every_n_epochs=1",
          "trainer.loggers=[jsonl,tensorboard,wandb]",
          "trainer.wandb.mode=offline", "trainer.wandb.tags=[tiny,test]"]


def tensorboard_scalars(log_dir: Path) -> dict:
    """{tag: [(step, value), ...]} of the event files in log_dir, read by TensorBoard itself."""
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


def wandb_records(run_file: Path) -> list:
    """The protobuf records of a W&B run file (run-<id>.wandb: a header, then LevelDB-log blocks of
    32 KiB holding records that may span blocks: FULL=1, FIRST=2, MIDDLE=3, LAST=4)."""
    data, pos, pending, out = run_file.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind in (2, 3):
            pending = (pending if kind == 3 else b"") + chunk
        elif kind == 4:
            out.append(pending + chunk)
    records = []
    for raw in out:
        record = wandb_proto.Record()
        record.ParseFromString(raw)
        records.append(record)
    return records


def wandb_history(run_file: Path) -> list:
    return [{"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            for r in wandb_records(run_file) if r.WhichOneof("record_type") == "history"]


def metrics_steps(run_dir: Path) -> list:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "lr" in r]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> Path:
    """A run with every logger, set back to its first epoch as a preempted SLURM job leaves it (epoch
    1's checkpoint as last.pt, no report) and resumed for its second (one pair of CLI runs serves every
    test below): its run dir, which the resumed run goes on writing."""
    work = tmp_path_factory.mktemp("logged")
    run = train_into(work, *LOGGED)
    shutil.copy(run / "checkpoints" / "epoch_0001.pt", run / "checkpoints" / "last.pt")
    (run / "report.json").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("".join(f"{line}\n" for line in lines if json.loads(line).get("epoch") == 1))
    proc = run_cli("train", *LOGGED, f"resume={run}", f"hydra.run.dir={work / 'again'}", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


def wandb_runs(run_dir: Path) -> tuple[str, list]:
    """The W&B run id the checkpoint keeps, and the run files of each invocation, oldest first."""
    run_id = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["logger_ids"]["wandb"]
    return run_id, [d / f"run-{run_id}.wandb" for d in sorted((run_dir / "wandb").glob("offline-run-*"))]


def test_tensorboard_events_hold_the_steps_epochs_monitoring_report_and_plots(logged_run: Path):
    scalars, acc = tensorboard_scalars(logged_run / "tensorboard")
    steps = metrics_steps(logged_run)
    assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in steps] == [2, 4, 6, 8]
    for term in ("loss", "attract", "repel", "lr"):
        assert [v for _, v in scalars[f"train/{term}"]] == pytest.approx([r[term] for r in steps], rel=1e-6)
    assert [s for s, _ in scalars["epoch/images_per_second"]] == [4, 8]
    assert [v for _, v in scalars["epoch/number"]] == [1, 2]
    assert len(scalars["monitor/knn_top1"]) == 2 and len(scalars["monitor/effective_rank_projection"]) == 2
    report = json.loads((logged_run / "report.json").read_text())
    # the first invocation's report, at step 8 too, was purged with the steps the resumed run redid
    assert scalars["report/linear_probe.top1"][-1] == (8, pytest.approx(report["linear_probe"]["top1"]))
    assert scalars["report/knn.top1"][-1][1] == pytest.approx(report["knn"]["top1"])
    assert set(acc.Tags()["images"]) == {"plots/loss", "plots/lr", "plots/monitor", "plots/spectrum", "plots/ritz"}
    assert "_hparams_/experiment" in acc.PluginTagToContent("hparams")   # the config as hyper-parameters


def test_wandb_offline_run_holds_the_same_figures_and_the_config(logged_run: Path):
    run_id, run_files = wandb_runs(logged_run)
    assert len(run_files) == 2 and all(f.is_file() and f.parent.name.endswith(run_id) for f in run_files)
    records = wandb_records(run_files[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "specrep" and list(run.tags) == ["tiny", "test"]
    hparams = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert hparams["objective"]["name"] == "spectral" and hparams["trainer"]["epochs"] == 2
    history = [h for f in run_files for h in wandb_history(f)]
    logged = {h["_step"]: h["train/loss"] for h in history if "train/loss" in h}   # redone steps: the resumed values
    assert logged == {r["step"]: pytest.approx(r["loss"]) for r in metrics_steps(logged_run)}
    final = history[-1]
    report = json.loads((logged_run / "report.json").read_text())
    assert final["report/linear_probe.top1"] == pytest.approx(report["linear_probe"]["top1"])
    assert final["plots/spectrum/_type"] == "image-file"   # an image's fields are nested keys
    assert (run_files[1].parent / "files" / final["plots/spectrum/path"]).is_file()


def test_a_resumed_run_logs_into_the_same_wandb_run_and_redoes_no_tensorboard_step(logged_run: Path):
    run_id, run_files = wandb_runs(logged_run)   # two invocations, one W&B run (`wandb sync` merges them)
    # the first invocation logged all 8 steps before it was set back to epoch 1; the resumed one redid 6 and 8
    assert [[h["_step"] for h in wandb_history(f) if "train/loss" in h] for f in run_files] == [[2, 4, 6, 8], [6, 8]]
    scalars, _ = tensorboard_scalars(logged_run / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [2, 4, 6, 8]


def test_report_tensorboard_writes_events_from_metrics_jsonl(trained_run: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("*.pt"))
    assert cli.run_command("report", [str(run), "--tensorboard"]) == 0   # `specrep report RUN --tensorboard`
    assert f"wrote {run / 'tensorboard'}" in capsys.readouterr().out
    scalars, acc = tensorboard_scalars(run / "tensorboard")
    steps = metrics_steps(run)
    assert scalars["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in steps]
    report = json.loads((run / "report.json").read_text())
    assert scalars["report/linear_probe.top1"][0][1] == pytest.approx(report["linear_probe"]["top1"])
    assert "plots/loss" in acc.Tags()["images"]
    assert cli.run_command("report", [str(run), "--tensorboard"]) == 0   # nothing is overwritten
    assert "already holds events" in capsys.readouterr().out
    assert cli.run_command("report", [str(run), "--tensorbord"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tensorbord" in err


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_a_chosen_logger_that_is_not_installed_is_one_line_naming_the_extra(tmp_path: Path, logger: str,
                                                                            monkeypatch):
    for module in (logger, "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)   # what `import` and find_spec see without it
    problem = cli.preflight("train", [f"trainer.loggers=[jsonl,{logger}]", f"hydra.run.dir={tmp_path / 'run'}"])
    assert problem == f"trainer.loggers contains {logger}, which needs: pip install 'specrep[{logger}]'"
    with pytest.raises(ConfigError, match=rf"pip install 'specrep\[{logger}\]'"):   # and where it is imported
        open_loggers(train_config(logger), tmp_path).write({"step": 1, "epoch": 1, "lr": 0.1, "loss": 1.0})


def train_config(*loggers: str) -> config.TrainConfig:
    """The default train config with these loggers (set after validation: one may be missing here)."""
    cfg = config.compose_config("train", ["trainer.wandb.mode=offline"])
    cfg.trainer.loggers = list(loggers)
    return cfg


def test_an_unknown_logger_is_one_line(tmp_path: Path):
    problem = cli.preflight("train", ["trainer.loggers=[jsonl,tensorbord]", f"hydra.run.dir={tmp_path}"])
    assert "unknown logger 'tensorbord'" in problem and "tensorboard, wandb" in problem


def test_ranks_other_than_0_log_nothing(tmp_path: Path):
    cfg = train_config("jsonl", "tensorboard", "wandb")
    quiet = open_loggers(cfg, tmp_path, enabled=False)
    quiet.write({"step": 1, "epoch": 1, "lr": 0.1, "loss": 1.0})
    assert quiet.backends == [] and list(tmp_path.iterdir()) == []


def test_records_become_scalars_by_kind():
    assert record_scalars({"step": 4, "epoch": 1, "lr": 0.1, "loss": -0.5}) == (4, {"train/lr": 0.1,
                                                                                    "train/loss": -0.5})
    assert record_scalars({"epoch": 2, "step": 8, "epoch_seconds": 3.0, "images_per_second": 80.0,
                           "epoch_loss": -0.7}) == (8, {"epoch/number": 2.0, "epoch/seconds": 3.0,
                                                        "epoch/images_per_second": 80.0, "epoch/loss": -0.7})
    assert record_scalars({"epoch": 2, "step": 8, "monitor": {"knn_top1": 40.0}}) == (8, {"monitor/knn_top1": 40.0})
