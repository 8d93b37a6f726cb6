"""specrep: self-supervised representation learning through spectral decomposition.

    from specrep_cli import load_backbone, load_encoder   # trained encoders in Python (load.py)

The names below load their module on first use, so that `import specrep_cli` (and `specrep --help`)
stays free of torch.
"""
import importlib

__version__ = "0.1.0"
__all__ = ["load_backbone", "load_encoder", "checkpoint_path", "__version__"]
_LAZY = {"load_backbone": "specrep_cli.load", "load_encoder": "specrep_cli.load",
         "checkpoint_path": "specrep_cli.load"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'specrep_cli' has no attribute {name!r}")
