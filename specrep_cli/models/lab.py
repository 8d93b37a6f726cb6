"""sRGB -> CIE L*a*b*, batched on any device, and the L / ab split of Contrastive Multiview Coding.

CMC (Tian et al. 2019) treats the lightness L and the colour channels ab of one image as two views
("modalities"): phi sees L (1 channel), nu sees ab (2 channels). Both functions take float images
(..., 3, H, W) in [0, 1], channel order R, G, B, and work on the whole batch at once. `LabInput`
puts the split in front of a backbone, so that a tower takes RGB and sees its part.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

# linear sRGB -> XYZ (IEC 61966-2-1, D65); rows X, Y, Z
SRGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
# XYZ of the D65 reference white (2 degree observer); SRGB_TO_XYZ's row sums to 7 digits
D65_WHITE = (0.95047, 1.0, 1.08883)
DELTA = 6 / 29
# Ranges of L, a, b over the sRGB gamut (the cube's corners black/white, green/magenta, blue/yellow),
# as CMC's code uses them: lab_split maps each range onto [-1, 1].
LAB_RANGE = ((0.0, 100.0), (-86.183, 98.233), (-107.857, 94.478))


def rgb_to_lab(x: Tensor) -> Tensor:
    """sRGB (..., 3, H, W) in [0, 1] -> CIE L*a*b* (..., 3, H, W), D65 white.

    linear c = c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055)^2.4        (per channel)
    (X, Y, Z) = SRGB_TO_XYZ @ (r, g, b) linear, divided by D65_WHITE (Xn, Yn, Zn)
    f(t) = t^(1/3) if t > DELTA^3 else t / (3 DELTA^2) + 4/29                   (DELTA = 6/29)
    L = 116 f(Y) - 16;  a = 500 (f(X) - f(Y));  b = 200 (f(Y) - f(Z))
    White is (100, 0, 0) (to 2e-5: D65_WHITE and SRGB_TO_XYZ are each rounded to 7 digits), black
    (0, 0, 0). Computed in x's dtype, float32 at least (bf16/fp16 inputs
    give float32). Inputs below 0 follow the linear branches (no NaN, no infinite gradient).
    """
    if not x.is_floating_point() or x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"rgb_to_lab takes float (..., 3, H, W) images, got {x.dtype} {tuple(x.shape)}")
    with torch.autocast(x.device.type, enabled=False):   # float32 even inside a bf16 training step
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        linear = torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)
        r, g, b = linear.unbind(-3)
        # rows of SRGB_TO_XYZ divided by Xn, Yn, Zn, as Python numbers: no host-to-device copy per call
        xyz = [(m[0] * r + m[1] * g + m[2] * b) / white for m, white in zip(SRGB_TO_XYZ, D65_WHITE)]
        fx, fy, fz = (torch.where(t > DELTA ** 3, t.clamp_min(DELTA ** 3) ** (1 / 3), t / (3 * DELTA ** 2) + 4 / 29)
                      for t in xyz)
        return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_split(x: Tensor) -> tuple[Tensor, Tensor]:
    """sRGB (..., 3, H, W) in [0, 1] -> (L (..., 1, H, W), ab (..., 2, H, W)), each in [-1, 1].

    Each Lab channel c is scaled as CMC does, mapping its range [lo, hi] over the sRGB gamut
    (LAB_RANGE) onto [-1, 1]: c' = (c - (lo + hi) / 2) / ((hi - lo) / 2). So L' = L / 50 - 1,
    a' = (a - 6.025) / 92.208, b' = (b + 6.6895) / 101.1675.
    """
    lab = rgb_to_lab(x)
    scaled = [(c - (lo + hi) / 2) / ((hi - lo) / 2) for c, (lo, hi) in zip(lab.unbind(-3), LAB_RANGE)]
    return scaled[0].unsqueeze(-3), torch.stack(scaled[1:], dim=-3)


INPUTS = ("rgb", "lab_l", "lab_ab")   # what a tower sees of an RGB image: all of it, or a part of CIE Lab


class LabInput(nn.Module):
    """RGB in [0, 1] (B, 3, H, W) -> the L (B, 1, H, W) or ab (B, 2, H, W) part of CIE Lab (lab.lab_split,
    each scaled to [-1, 1]) -> the backbone: the two towers of Contrastive Multiview Coding."""

    def __init__(self, part: str, backbone: nn.Module):
        super().__init__()
        self.part = part
        self.inner = backbone
        self.out_dim = backbone.out_dim

    def forward(self, x: Tensor) -> Tensor:
        lightness, colour = lab_split(x)
        return self.inner(lightness if self.part == "lab_l" else colour)
