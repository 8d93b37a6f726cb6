"""report.json's "objective" names the split of the figure a search reads, and `specrep train` returns
that figure to Hydra: the validation figure, not the test split's, unless dataset.holdout is set."""
from __future__ import annotations

import json
import math
from pathlib import Path

from specrep_cli.report.report import objective_line, objective_section, objective_value

REPORT = {"linear_probe": {"top1": 60.0, "top5": 90.0, "val_top1": 55.0}, "knn": {"top1": 50.0, "val_top1": 45.0},
          "spectrum": {"representation": {"effective_rank": 7.5}}}


def test_a_search_reads_the_validation_figure_not_the_test_one(tmp_path: Path):
    section = objective_section(REPORT, "linear_probe.top1", held_out=False)
    assert section == {"metric": "linear_probe.top1", "from": "linear_probe.val_top1", "split": "validation",
                       "value": 55.0}
    assert objective_value({**REPORT, "objective": section}, "linear_probe.top1", tmp_path) == 55.0
    assert objective_value(REPORT, "knn.top1", tmp_path) == 45.0   # a report without the section
    (tmp_path / "report.json").write_text(json.dumps({**REPORT, "objective": section}))   # a spawned rank wrote it
    assert objective_value(None, "linear_probe.top1", tmp_path) == 55.0
    assert "reads linear_probe.val_top1 = 55, scored on the validation split" in objective_line(section)


def test_with_a_holdout_the_named_figure_is_a_validation_figure(tmp_path: Path):
    section = objective_section(REPORT, "linear_probe.top1", held_out=True)
    assert section == {"metric": "linear_probe.top1", "from": "linear_probe.top1", "split": "validation",
                       "value": 60.0}
    assert objective_value({**REPORT, "objective": section}, "linear_probe.top1", tmp_path) == 60.0
    assert "dataset.holdout's held-out train images" in objective_line(section)


def test_a_test_figure_without_a_validation_figure_is_nan(tmp_path: Path, caplog):
    section = objective_section(REPORT, "linear_probe.top5", held_out=False)
    assert section["value"] is None and section["split"] == "test" and "dataset.holdout" in section["why"]
    assert math.isnan(objective_value({**REPORT, "objective": section}, "linear_probe.top5", tmp_path))
    assert "eval.objective_metric=linear_probe.top5" in caplog.text and "returning NaN" in caplog.text
    standard = {"linear_probe": {"top1": 60.0, "protocol": "standard"}}   # the standard probe has no val_top1
    assert math.isnan(objective_value(standard, "linear_probe.top1", tmp_path))
    train_figure = objective_section(REPORT, "spectrum.representation.effective_rank", held_out=False)
    assert (train_figure["split"], train_figure["value"]) == ("train", 7.5)
