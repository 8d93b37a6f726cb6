"""The built-in `shapes` dataset: synthetic coloured shapes, generated from a seed.

Why it exists: `specrep train` must run offline on a fresh machine, with no download,
and still pose a real representation-learning problem. Each image shows one of ten
shapes whose identity survives the default SimCLR augmentations (crop, flip, colour
jitter, grayscale). Everything else is nuisance the encoder must learn to ignore:
position, size, rotation, foreground and background colour (from a named palette,
with brightness jitter), a lighting gradient and noise. Every class is invariant
under rotation as a class (no pair maps onto each other) and every shape has a mirror
axis, so a horizontal flip is a rotation and never changes the class. The class is not
readable off image statistics: colours are drawn independently of it, and the drawn area
varies with size (3.2x) as much as with class (~3x), so a linear probe on per-channel
mean/std and foreground fraction sits near chance.

Rendering is vectorised: per-sample factors are drawn at once, and coverage comes from
a signed distance per pixel (antialiased over one pixel), computed per class for all
samples of that class in a chunk. Same seed, same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CLASSES: tuple[str, ...] = (
    "circle", "ring", "triangle", "square", "star",
    "cross", "crescent", "heart", "arrow", "L-shape",
)

# name -> RGB in [0, 1]. Few colours, on purpose: colour is drawn independently of the class, and
# with a rich palette the (fg, bg) colour pair identifies an image so well that contrastive objectives
# learn colour instead of shape (measured: a 12-colour palette held the spectral default run's probe
# near 35%). With light-on-dark or dark-on-light pairs of these four, colour stays a nuisance the
# `shapes` augmentation (hue rotation, grayscale) can wash out, and shape is what the views share.
_PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "blue": (0.10, 0.25, 0.85),
    "white": (0.95, 0.95, 0.95),
    "black": (0.06, 0.06, 0.06),
}
COLORS: tuple[str, ...] = tuple(_PALETTE)
PALETTE_RGB = torch.tensor(list(_PALETTE.values()))  # (len(COLORS), 3), before brightness jitter

SIZE_RANGE = (0.5, 0.9)  # diameter of the shape's bounding circle, fraction of image side
# (large enough that most random crops of scale >= 0.2 keep part of the shape in both views)
MIN_PAIR_CONTRAST = 0.3  # luma difference of palette fg/bg pairs (visible in grayscale)
MIN_CONTRAST = 0.2  # luma difference still required after brightness jitter
BRIGHTNESS = (0.85, 1.15)  # per-colour multiplicative jitter
CHUNK = 4096  # samples rendered at once; bounds memory for large splits

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class ShapesSplit:
    images: torch.Tensor  # (N, 3, H, W) uint8, contiguous
    labels: torch.Tensor  # (N,) int64, index into CLASSES
    factors: dict[str, torch.Tensor]  # (N,) each: see `generate`


# --- signed distances -----------------------------------------------------------------
# Each takes local coordinates u, v (any shape, y pointing up, the shape's bounding
# circle is the unit disc) and returns the signed distance to the outline in the same
# units: negative inside.


def _sd_circle(u: torch.Tensor, v: torch.Tensor, r: float) -> torch.Tensor:
    return torch.sqrt(u * u + v * v) - r


def _sd_polygon(u: torch.Tensor, v: torch.Tensor, verts: list[tuple[float, float]]) -> torch.Tensor:
    """Exact signed distance to a simple polygon (after Inigo Quilez's sdPolygon)."""
    d2 = torch.full_like(u, float("inf"))
    inside = torch.zeros_like(u, dtype=torch.bool)
    n = len(verts)
    for i in range(n):
        (xi, yi), (xj, yj) = verts[i], verts[i - 1]
        ex, ey = xj - xi, yj - yi
        wx, wy = u - xi, v - yi
        t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp_(0.0, 1.0)
        bx, by = wx - ex * t, wy - ey * t
        d2 = torch.minimum(d2, bx * bx + by * by)
        # even-odd rule: does a ray towards +x cross edge (i, j)?
        crosses = (v >= yi) != (v >= yj)
        x_at = xi + (v - yi) * ex / (ey if ey != 0 else 1.0)
        inside ^= crosses & (u < x_at)
    d = torch.sqrt(d2)
    return torch.where(inside, -d, d)


def _fit_unit_disc(verts: list[tuple[float, float]], centre=None) -> list[tuple[float, float]]:
    """Move `centre` (default: the bounding-box centre) to the origin, scale into radius 0.95."""
    xs, ys = [x for x, _ in verts], [y for _, y in verts]
    cx, cy = centre or ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
    r = max(math.hypot(x - cx, y - cy) for x, y in verts)
    return [(0.95 * (x - cx) / r, 0.95 * (y - cy) / r) for x, y in verts]


def _star_verts(points: int = 5, inner: float = 0.5) -> list[tuple[float, float]]:
    angles = [math.pi / 2 + math.pi * k / points for k in range(2 * points)]
    radii = [1.0 if k % 2 == 0 else inner for k in range(2 * points)]
    return [(r * math.cos(a), r * math.sin(a)) for r, a in zip(radii, angles)]


_TRIANGLE = _fit_unit_disc([(0.0, 1.0), (-math.sqrt(3) / 2, -0.5), (math.sqrt(3) / 2, -0.5)], (0, 0))
_SQUARE = _fit_unit_disc([(-1, -1), (1, -1), (1, 1), (-1, 1)])
_STAR = _fit_unit_disc(_star_verts(5, 0.5), (0, 0))
_CROSS = _fit_unit_disc([
    (-0.34, -1), (0.34, -1), (0.34, -0.34), (1, -0.34), (1, 0.34), (0.34, 0.34),
    (0.34, 1), (-0.34, 1), (-0.34, 0.34), (-1, 0.34), (-1, -0.34), (-0.34, -0.34),
])
_ARROW = _fit_unit_disc([
    (-1, -0.22), (0.05, -0.22), (0.05, -0.62), (1, 0), (0.05, 0.62), (0.05, 0.22), (-1, 0.22),
])
_L = _fit_unit_disc([(0, 0), (1, 0), (1, 0.42), (0.42, 0.42), (0.42, 1), (0, 1)])


def _sd_ring(u, v):
    return (torch.sqrt(u * u + v * v) - 0.71).abs_() - 0.24  # outer 0.95, hole 0.47


def _sd_crescent(u, v):
    outer = _sd_circle(u, v, 0.95)
    bite = _sd_circle(u - 0.5, v, 0.72)  # disc cut out of the right side
    return torch.maximum(outer, -bite)


def _sd_heart(u, v):
    """Heart (after Inigo Quilez's sdHeart), lobes up, bounding circle of radius 0.95."""
    k = 0.631 / 0.95  # heart's own circumradius 0.631 about (0, 0.631)
    x, y = (u * k).abs_(), v * k + 0.631
    lobe = torch.sqrt((x - 0.25) ** 2 + (y - 0.75) ** 2) - math.sqrt(2) / 4
    s = (x + y).clamp(min=0.0) * 0.5
    body = torch.sqrt(torch.minimum(x * x + (y - 1) ** 2, (x - s) ** 2 + (y - s) ** 2))
    body = torch.where(x > y, body, -body)
    return torch.where(x + y > 1, lobe, body) / k


_SDF = {
    "circle": lambda u, v: _sd_circle(u, v, 0.95),
    "ring": _sd_ring,
    "triangle": lambda u, v: _sd_polygon(u, v, _TRIANGLE),
    "square": lambda u, v: _sd_polygon(u, v, _SQUARE),
    "star": lambda u, v: _sd_polygon(u, v, _STAR),
    "cross": lambda u, v: _sd_polygon(u, v, _CROSS),
    "crescent": _sd_crescent,
    "heart": _sd_heart,
    "arrow": lambda u, v: _sd_polygon(u, v, _ARROW),
    "L-shape": lambda u, v: _sd_polygon(u, v, _L),
}
assert tuple(_SDF) == CLASSES


# --- geometry and colour --------------------------------------------------------------


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in [0, 1]: x (1, 1, W) to the right, y (1, H, 1) downwards."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    return t.view(1, 1, size), t.view(1, size, 1)


def _coverage(cls: int, x, y, size, rot, image_size: int) -> torch.Tensor:
    """Antialiased coverage (n, H, W) in [0, 1] of class `cls` for n samples' factors (n,)."""
    gx, gy = _grid(image_size)
    r = (size / 2).view(-1, 1, 1)  # bounding radius, image units
    dx = gx - x.view(-1, 1, 1)  # (n, 1, W)
    dy = y.view(-1, 1, 1) - gy  # (n, H, 1), y up
    c, s = torch.cos(rot).view(-1, 1, 1), torch.sin(rot).view(-1, 1, 1)
    u = (c * dx + s * dy) / r  # (n, H, W): rotate by -rot into the shape's frame
    v = (c * dy - s * dx) / r
    d = _SDF[CLASSES[cls]](u, v) * (r * image_size)  # distance in pixels
    return (0.5 - d).clamp_(0.0, 1.0)


def _draw_colours(num: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Palette indices (num,) of fg and bg: uniform over the pairs whose luma differs enough."""
    luma = PALETTE_RGB @ _LUMA  # (C,)
    w = ((luma[:, None] - luma[None, :]).abs() >= MIN_PAIR_CONTRAST).float()  # (C, C), fg != bg
    pair = torch.multinomial(w.flatten(), num, replacement=True, generator=gen)
    return pair // len(COLORS), pair % len(COLORS)


def _colours(fg: torch.Tensor, bg: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Jittered RGB (N, 3) of fg and bg palette indices; jitter dropped where it kills contrast."""
    rgb = PALETTE_RGB  # (C, 3)
    lo, hi = BRIGHTNESS
    jit = lo + (hi - lo) * torch.rand(2, fg.numel(), 1, generator=gen)  # (2, N, 1)
    fg_rgb = (rgb[fg] * jit[0]).clamp(0, 1)
    bg_rgb = (rgb[bg] * jit[1]).clamp(0, 1)
    ok = ((fg_rgb - bg_rgb) @ _LUMA).abs() >= MIN_CONTRAST  # (N,)
    fg_rgb = torch.where(ok[:, None], fg_rgb, rgb[fg])
    bg_rgb = torch.where(ok[:, None], bg_rgb, rgb[bg])
    return fg_rgb, bg_rgb


def _texture(n: int, image_size: int, gen: torch.Generator) -> torch.Tensor:
    """Additive nuisance (n, 3, H, W): a lighting ramp, blotchy low-frequency noise, pixel noise."""
    gx, gy = _grid(image_size)
    angle = 2 * math.pi * torch.rand(n, 1, 1, generator=gen)
    amp = 0.08 * torch.rand(n, 1, 1, generator=gen)
    ramp = amp * ((gx - 0.5) * torch.cos(angle) + (gy - 0.5) * torch.sin(angle)) * 2  # (n, H, W)
    blotch = F.interpolate(torch.randn(n, 1, 6, 6, generator=gen), size=image_size,
                           mode="bilinear", align_corners=False)[:, 0] * 0.03  # (n, H, W)
    sigma = 0.01 + 0.03 * torch.rand(n, 1, 1, 1, generator=gen)
    pixel = sigma * torch.randn(n, 3, image_size, image_size, generator=gen)
    return (ramp + blotch).unsqueeze(1) + pixel


# --- the dataset ----------------------------------------------------------------------


def render(factors: dict[str, torch.Tensor], fg_rgb: torch.Tensor, bg_rgb: torch.Tensor, gen: torch.Generator,
           image_size: int) -> torch.Tensor:
    """uint8 images (N, 3, H, W) of the factors "shape", "x", "y", "size", "rotation" (each (N,), as in
    `generate`) and colours fg_rgb, bg_rgb (N, 3) RGB in [0, 1], with the texture (lighting ramp,
    blotches, pixel noise) drawn from `gen`."""
    labels, x, y, size, rotation = (factors[k] for k in ("shape", "x", "y", "size", "rotation"))
    num = labels.shape[0]
    images = torch.empty(num, 3, image_size, image_size, dtype=torch.uint8)
    for start in range(0, num, CHUNK):
        sl = slice(start, min(start + CHUNK, num))
        n = sl.stop - sl.start
        cov = torch.empty(n, image_size, image_size)
        lab = labels[sl]
        for cls in range(len(CLASSES)):
            idx = (lab == cls).nonzero().squeeze(1)
            if idx.numel():
                i = idx + start
                cov[idx] = _coverage(cls, x[i], y[i], size[i], rotation[i], image_size)
        cov = cov.unsqueeze(1)  # (n, 1, H, W)
        img = torch.lerp(bg_rgb[sl, :, None, None], fg_rgb[sl, :, None, None], cov)  # (n, 3, H, W)
        img += _texture(n, image_size, gen)
        images[sl] = img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return images


def generate(num: int, seed: int, image_size: int = 32) -> ShapesSplit:
    """Generate `num` labelled images, a pure function of (num, seed, image_size).

    factors (each (num,)): "shape" (= labels), "fg_color", "bg_color" (indices into COLORS),
    "size" (diameter of the shape's bounding circle as a fraction of the image side),
    "x", "y" (that circle's centre in [0, 1], x rightwards, y downwards from the top),
    "rotation" (radians in [0, 2pi), counter-clockwise on screen, from the canonical pose:
    triangle, star and heart point up, arrow points right, crescent opens to the right).
    """
    if num < 1 or image_size < 8:
        raise ValueError(f"shapes: need num >= 1 and image_size >= 8, got {num=}, {image_size=}")
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(num) % len(CLASSES))[torch.randperm(num, generator=gen)]
    size = SIZE_RANGE[0] + (SIZE_RANGE[1] - SIZE_RANGE[0]) * torch.rand(num, generator=gen)
    margin = 0.85 * size / 2  # at most a sliver of the bounding circle leaves the frame
    x = margin + (1 - 2 * margin) * torch.rand(num, generator=gen)
    y = margin + (1 - 2 * margin) * torch.rand(num, generator=gen)
    rotation = 2 * math.pi * torch.rand(num, generator=gen)
    fg, bg = _draw_colours(num, gen)
    fg_rgb, bg_rgb = _colours(fg, bg, gen)  # (N, 3) each
    factors = {
        "shape": labels.clone(), "fg_color": fg, "bg_color": bg,
        "size": size, "x": x, "y": y, "rotation": rotation,
    }
    images = render(factors, fg_rgb, bg_rgb, gen, image_size)
    return ShapesSplit(images=images, labels=labels, factors=factors)
