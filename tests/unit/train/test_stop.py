"""train/stop.py: a stop request from a signal, including one that arrived before the loop listened."""
from __future__ import annotations


def test_a_ctrl_c_that_set_up_swallowed_stops_the_loop_when_it_starts_listening(monkeypatch):
    """errors.remember_interrupts records a SIGINT even where a library's bare except swallows its
    KeyboardInterrupt; the loop's StopRequest then stops after its first step, as for a Ctrl-C in training."""
    import signal as signals

    from specrep_cli import errors
    from specrep_cli.train.stop import StopRequest
    monkeypatch.setattr(errors, "_INTERRUPTED", [signals.SIGINT])
    stop = StopRequest()
    with stop.installed():
        assert stop.signum == signals.SIGINT
    monkeypatch.setattr(errors, "_INTERRUPTED", [])
    with StopRequest().installed() as fresh:
        assert fresh.signum is None
