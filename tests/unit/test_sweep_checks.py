"""sweeps.selects_on_test on composed configs: a search's figure must have a validation counterpart,
for image datasets (where dataset.holdout gives one) and graphs (which have no holdout)."""
from __future__ import annotations

from specrep_cli import config
from specrep_cli.sweeps import selects_on_test


def refusal(*overrides: str) -> str | None:
    return selects_on_test(config.compose_config("train", list(overrides)))


def test_a_test_only_figure_is_refused_and_the_holdout_named_for_images():
    line = refusal("eval.objective_metric=linear_probe.top5")
    assert line is not None and "add dataset.holdout=0.1" in line
    assert refusal("eval.objective_metric=linear_probe.top5", "dataset.holdout=0.1") is None
    assert "standard probe has no validation figure" in refusal("eval.probe.protocol=standard")


def test_graphs_have_no_holdout_to_suggest():
    line = refusal("dataset=graph", "eval.objective_metric=linear_probe.top5")
    assert line is not None and "holdout" not in line and "knn.top1" in line
    assert refusal("dataset=graph", "eval.objective_metric=knn.top1") is None
