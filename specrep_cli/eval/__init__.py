"""conf/eval: a frozen encoder's features once (features.py), then probes and kNN (probes.py), the
spectral diagnostics (spectra.py), zero-shot and retrieval (zeroshot.py); evaluate_run (suite.py) is
the one evaluation of a run, at the end of training and in `specrep eval` (command.py)."""
