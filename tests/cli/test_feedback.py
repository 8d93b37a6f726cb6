"""What `specrep train` and `specrep eval` print in a pipe (a log, not a terminal): the run's plan and
its pace, a line as each long phase begins and ends (decoding, encoding the splits, the probe, the
kNN, the evaluation's stages), the decode cache's file with hit or miss, and no escape codes."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, run_cli
from support import make_folder

FOLDER_RUN = ["dataset=imagefolder", "dataset.image_size=16", "trainer.batch_size=4", "trainer.epochs=1",
              "encoder.width=8", "encoder.projector_hidden_dim=32", "encoder.projector_out_dim=16",
              "eval.probe.fast.steps=5", "eval.random_init=false", "eval.every_n_epochs=0", "eval.alignment_images=0"]


def output(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_train(tmp_path_factory) -> tuple[Path, str]:
    """A tiny two-epoch `specrep train` run, its output captured: (run dir, what it printed)."""
    work = tmp_path_factory.mktemp("feedback")
    run_dir = work / "run"
    proc = run_cli("train", *TINY, "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=work)
    return run_dir, output(proc)


def test_a_training_run_prints_its_plan_and_pace(tiny_train):
    run_dir, printed = tiny_train
    assert f"plan: 2 epochs x 4 steps = 8 steps, batch size 64, run dir {run_dir}" in printed
    assert "pace: " in printed and "the other 1 epoch (4 steps) should take about " in printed
    log = (run_dir / "train.log").read_text()
    assert log.index("plan: ") < log.index("epoch 1/2") < log.index("pace: ") < log.index("epoch 2/2")


def test_the_final_evaluation_shows_its_phases_in_plain_lines(tiny_train):
    run_dir, printed = tiny_train
    for line in ("evaluation 1/3: encoding the splits", "encoding the train split: 256 images",
                 "encoding the train split: done, 256 images in ", "encoding the test split: 128 images",
                 "evaluation 2/3: probe, kNN and diagnostics", "fitting the linear probe: 6 fits",
                 "fitting the linear probe: done, 6 fits in ", "classifying by kNN: 128 images",
                 "evaluation 3/3: writing the report", "evaluation: done in "):
        assert line in printed, line
    assert "\x1b[" not in printed and "\x1b[" not in (run_dir / "train.log").read_text()


def test_decoding_a_folder_names_its_cache_file_and_a_second_run_hits_it(tmp_path: Path):
    folder = make_folder(tmp_path / "folder")   # 6 images per split
    printed = output(run_cli("train", *FOLDER_RUN, f"dataset.root={folder}", f"hydra.run.dir={tmp_path / 'run'}",
                             cwd=tmp_path))
    cached = sorted((tmp_path / ".specrep-cache" / "imagefolder").glob("*.pt"))   # run_cli's SPECREP_CACHE
    assert len(cached) == 2   # the train and the test split
    for path in cached:
        assert f"decode cache: {path} (miss: decoding " in printed
    assert printed.count("decoding: 6 images") == 2 and printed.count("decoding: done, 6 images in ") == 2
    assert "\x1b[" not in printed

    out = tmp_path / "eval"
    printed = output(run_cli("eval", f"checkpoint={tmp_path / 'run'}", f"hydra.run.dir={out}", cwd=tmp_path))
    for path in cached:
        assert f"decode cache: {path} (hit: " in printed
    assert "decoding: " not in printed
    log = (out / "eval.log").read_text()
    stages = ["specrep eval 1/3: loading the checkpoint", "specrep eval 2/3: loading the dataset (imagefolder)",
              "specrep eval 3/3: evaluating", "specrep eval: done in "]
    assert [log.index(s) for s in stages] == sorted(log.index(s) for s in stages)
    assert "\x1b[" not in printed + log
