"""conf/objective: the losses (pure functions of embeddings), the methods that own what else each
objective needs (targets, Lambda_t, learnable scales) with the objective registry, and the
collectives that make every loss a global-batch loss.

    from specrep_cli.objectives import spectral_contrastive      # the loss functions, re-exported
    from specrep_cli.objectives.methods import build_method      # objective=<name> -> a Method
"""
from .losses import (
    barlow_twins_loss,
    binary_nce,
    byol_loss,
    clip_loss,
    info_nce,
    pca_penalty,
    pca_penalty_surrogate,
    siglip_loss,
    spectral_byol,
    spectral_clip_loss,
    spectral_contrastive,
    vicreg_loss,
)

__all__ = ["barlow_twins_loss", "binary_nce", "byol_loss", "clip_loss", "info_nce", "pca_penalty",
           "pca_penalty_surrogate", "siglip_loss", "spectral_byol", "spectral_clip_loss", "spectral_contrastive",
           "vicreg_loss"]
