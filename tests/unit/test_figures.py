"""A search never reads a figure of the test split: every figure a run can be scored by has a split,
and the figure a search reads for it is a validation figure (or one without labels) unless
dataset.holdout made the test split held-out train images."""
from __future__ import annotations

from specrep_cli.figures import REPORT_METRICS, TEST_FIGURES, figure_split, selection_figure


def test_no_search_reads_a_test_figure_without_a_holdout():
    for key in REPORT_METRICS:
        source = selection_figure(key, held_out=False)
        assert source is None or figure_split(source) != "test", key
    assert selection_figure("linear_probe.top1", held_out=False) == "linear_probe.val_top1"
    assert selection_figure("knn.top1", held_out=False) == "knn.val_top1"
    assert selection_figure("zero_shot.top1", held_out=False) is None   # no validation counterpart


def test_with_a_holdout_the_named_figure_is_read_and_other_figures_as_they_are():
    assert all(selection_figure(key, held_out=True) == key for key in REPORT_METRICS)
    assert selection_figure("spectrum.representation.effective_rank", held_out=False) == \
        "spectrum.representation.effective_rank"
    assert {figure_split(k) for k in REPORT_METRICS} == {"test", "validation", "train", "nodes", "none"}
    assert "linear_probe.val_top1" not in TEST_FIGURES and "alignment.projection" in TEST_FIGURES
