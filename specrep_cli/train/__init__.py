"""conf/trainer and conf/optim: the training loop (loop.py) over a run built once (setup.py), its
signals (stop.py), its processes (processes.py) and its optimizers and schedule (optimizers.py)."""
