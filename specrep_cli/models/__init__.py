"""conf/encoder: image backbones and the projector (encoders.py, the registry), the text tower
(text.py), the CIE Lab input of Lab-split towers (lab.py), graph nodes' encoders (graph_encoders.py:
embedding, mlp) and timm's models (timm_backbones.py, registered as encoder=timm; timm itself is
imported only when one is built).

    from specrep_cli.models import build_encoder
"""
from . import graph_encoders, timm_backbones  # noqa: F401  (register encoder=embedding, mlp and timm)
from .encoders import Encoder, build_encoder, seeded_encoder

__all__ = ["Encoder", "build_encoder", "seeded_encoder"]
