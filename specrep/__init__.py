"""`python -m specrep ...`: the same command as `specrep ...` and `python -m specrep_cli ...`.

The code lives in specrep_cli; this package only forwards to its dispatcher, so that the module name
matches the command's.
"""
from specrep_cli import __version__

__all__ = ["__version__"]
