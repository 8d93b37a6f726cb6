"""The names of report.json's sections and figures, which eval.objective_metric may name.

A leaf module with no imports: config.py validates eval.objective_metric against REPORT_METRICS, and
report/ reads and logs what these name. Which split each figure is scored on (figure_split), and the
figure a search reads for eval.objective_metric (selection_figure), which is never one of the test split.
"""

# The top-level keys of report.json, and the figures among them a run can be scored by
# (eval.objective_metric); zero_shot and retrieval come with image-text runs only, graph with dataset=graph,
# ritz with eval.ritz.
REPORT_SECTIONS = ("linear_probe", "knn", "random_init", "spectrum", "alignment", "uniformity", "zero_shot",
                   "retrieval", "graph", "ritz", "objective", "timing")
_SIDES = ("representation", "projection")
REPORT_METRICS = (
    "linear_probe.top1", "linear_probe.top5", "linear_probe.val_top1", "knn.top1", "knn.val_top1",
    "random_init.linear_probe_top1", "random_init.knn_top1",
    *(f"spectrum.{side}.{key}" for side in _SIDES for key in (
        "effective_rank", "orthonormality_error", "top_variance_share.1", "top_variance_share.10",
        "top_variance_share.100")),
    *(f"{key}.{side}" for key in ("alignment", "uniformity") for side in _SIDES),
    "zero_shot.top1", "zero_shot.top5", "graph.subspace_alignment", "graph.eigenvalue_error",
    "graph.eckart_young.relative_error", "ritz.effective_dim",
    *(f"retrieval.{way}.r{k}" for way in ("image_to_text", "text_to_image") for k in (1, 5, 10)),
    "timing.train_seconds", "timing.train_images_per_second", "timing.eval_seconds")

# The figures scored on the test split (on held-out train images under dataset.holdout), and the
# validation figure (the fast probe's held-out part of the train split) that stands in for each in a search.
TEST_FIGURES = tuple(key for key in REPORT_METRICS if key.startswith(
    ("linear_probe.top", "knn.top", "random_init.", "alignment.", "uniformity.", "zero_shot.", "retrieval.")))
VALIDATION_FIGURES = {"linear_probe.top1": "linear_probe.val_top1", "knn.top1": "knn.val_top1"}


def figure_split(key: str) -> str:
    """The images the figure `key` of report.json is scored on: test, validation (a held-out part of
    the train split), train (the spectra; the Ritz values, from pairs of the train split), nodes (a
    graph's every node, without labels) or none (timings)."""
    if key in TEST_FIGURES:
        return "test"
    if key.endswith(".val_top1"):
        return "validation"
    return "train" if key.startswith(("spectrum.", "ritz.")) else "nodes" if key.startswith("graph.") else "none"


def selection_figure(key: str, held_out: bool) -> str | None:
    """The figure a search reads for eval.objective_metric=`key`: never one of the test split. A test
    figure is read as it is when dataset.holdout made that split held-out train images (`held_out`),
    else as its validation counterpart (None: it has none); any other figure as it is."""
    if figure_split(key) != "test" or held_out:
        return key
    return VALIDATION_FIGURES.get(key)
