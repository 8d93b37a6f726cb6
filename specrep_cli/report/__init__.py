"""What a run leaves for people and machines: report.json / report.md with plots (report.py,
plots.py), metrics.jsonl (metrics.py), and the sweep tables of `specrep report` (summary.py).
Plain data in, files out: nothing here imports the training loop or the models."""
