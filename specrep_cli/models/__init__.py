"""conf/encoder: image backbones and the projector (encoders.py, the registry), the text tower
(text.py) and the CIE Lab input of Lab-split towers (lab.py).

    from specrep_cli.models import build_encoder
"""
from .encoders import Encoder, build_encoder, seeded_encoder

__all__ = ["Encoder", "build_encoder", "seeded_encoder"]
