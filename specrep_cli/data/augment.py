"""Batched per-sample augmentation on the training device.

The dataset lives on the device as one uint8 tensor (N, C, H, W); a batch is augmented there in a few
tensor ops, every random parameter drawn per sample, with no Python loop over samples and no host sync
(no .item(), no data-dependent shapes: per-sample choices are blends with 0/1 masks). Peers
(solo-learn, lightly) run PIL per image in DataLoader workers; torchvision's v2 transforms on a batch
draw one set of parameters for the whole batch. Here the training step never waits for a worker.

Per view, in order: random resized crop + horizontal flip (one affine grid_sample), colour jitter
(brightness, contrast, saturation, hue), grayscale, Gaussian blur, solarize, normalisation. An op whose
config makes it the identity is skipped entirely, so `augmentation=none` costs the uint8 -> float
conversion and the normalisation only. Images are float32 in [0, 1] between ops. `draw_params` draws
every per-sample parameter of a view (one (B, 14) uniform draw); `apply_params` applies them; each op
is also a public function with explicit per-sample parameters. Per-sample on/off choices are exact
0/1 lerp blends, and the pipeline's ops work in place: on CPU a boolean torch.where over images, and
each fresh image-sized tensor, cost more than the arithmetic; on CUDA it makes no difference.

Differences from torchvision, on purpose:
- crop: torchvision's RandomResizedCrop retries up to 10 draws until the crop fits and then falls back
  to a centre crop; here each sample draws once and its width/height are clamped to the image, so
  crops with an extreme aspect ratio are a little smaller than drawn, never rejected.
- crop borders: the bilinear grid samples the whole image, so an output pixel near the crop's edge
  reads the real pixel just outside the crop; torchvision crops first and then clamps to the crop's
  edge. The two agree inside the crop and at the image's own borders (grid_sample padding 'border').
- antialiasing: with the default output size (= input size) the crop is always upsampled and needs
  none. When the output is smaller than the input, the grid is supersampled by the integer factor
  ceil(input / output) and average-pooled back (a box filter), instead of torchvision's
  antialias=True triangle filter.
- colour jitter: a fixed order (brightness, contrast, saturation, hue); torchvision's ColorJitter
  permutes the four per call. One Bernoulli(jitter_p) per sample turns on all four together.
- Gaussian blur: separable (two 1-D passes) rather than one 2-D kernel: equal up to float rounding.
- grayscale uses torchvision's luma weights 0.2989 R + 0.587 G + 0.114 B (ITU-R 601-2).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import AugmentationConfig, ViewConfig

LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights
SOLARIZE_THRESHOLD = 0.5

Number = Union[float, Tensor]


# ------------------------------------------------------------------------------ conversion
def to_unit(images: Tensor) -> Tensor:
    """uint8 (B, C, H, W) in [0, 255] -> a new float32 tensor in [0, 1]; a float input is taken as [0, 1]."""
    if images.is_floating_point():
        return images.to(torch.float32, copy=True)
    return images.to(torch.float32).div_(255.0)


def _standardize_(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """In place: float (B, C, H, W) in [0, 1] -> (x - mean) / std; mean, std: (C,) in [0, 1] units."""
    mean = mean.to(device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    std = std.to(device=x.device, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (B, C, H, W) -> float32 normalised (B, C, H, W): no augmentation (evaluation, `none`)."""
    return _standardize_(to_unit(images), mean, std)


def _per_sample(value: Number) -> Number:
    """A (B,) tensor -> (B, 1, 1, 1), to broadcast over images; a Python number is kept as it is."""
    return value.reshape(-1, 1, 1, 1) if isinstance(value, Tensor) else float(value)


def _weight(mask: Tensor) -> Tensor:
    """(B,) bool -> (B, 1, 1, 1) float 0/1: the weight of an exact per-sample select x.lerp_(other, w).

    lerp with a 0/1 weight returns one input bit for bit; on CPU it is several times faster than
    torch.where over images.
    """
    return mask.to(torch.float32).view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- geometric op
def resized_crop(x: Tensor, boxes: Tensor, flip: Optional[Tensor],
                 out_size: Union[int, Tuple[int, int]]) -> Tensor:
    """Crop each image to its box, resize it bilinearly to out_size and optionally flip it horizontally.

    x: (B, C, H, W) float; boxes: (B, 4) float (top, left, height, width) in pixels; flip: (B,) bool or
    None; out_size: int or (oh, ow). Returns (B, C, oh, ow). One grid_sample for the whole batch on
    the grid F.affine_grid would build (crop_grid; align_corners=False, so pixel centres map as in
    torchvision's resize); a flip negates the affine's x scale. When the output is smaller than the
    input, the grid is supersampled by f = ceil(input / output) and average-pooled (antialiasing);
    otherwise every crop is an upsample and needs none.
    """
    b, c, h, w = x.shape
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    factor = max(math.ceil(h / oh), math.ceil(w / ow))  # supersampling factor, 1 unless downsizing
    grid = crop_grid(boxes.to(x.device), flip, (h, w), (factor * oh, factor * ow))  # (B, f oh, f ow, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if factor > 1:
        out = F.avg_pool2d(out, factor)
    return out  # (B, C, oh, ow)


def crop_grid(boxes: Tensor, flip: Optional[Tensor], in_size: Tuple[int, int],
              out_size: Tuple[int, int]) -> Tensor:
    """The sampling grid (B, oh, ow, 2) of F.affine_grid(theta, align_corners=False) for crop boxes.

    theta maps the output's normalised coords to the input's: x_in = centre_x + scale_x * x_out with
    scale_x = width / W (negated to flip), centre_x = (2 left + width) / W - 1, and the same for y.
    Built by broadcasting, which for this axis-aligned affine costs a fraction of affine_grid's bmm.
    """
    (h, w), (oh, ow) = in_size, out_size
    top, left, bh, bw = boxes.to(torch.float32).unbind(1)         # (B,) each, in input pixels
    scale_x, scale_y = bw / w, bh / h
    if flip is not None:
        scale_x = torch.where(flip, -scale_x, scale_x)
    centre_x, centre_y = (2 * left + bw) / w - 1, (2 * top + bh) / h - 1
    gx = torch.addcmul(centre_x[:, None], scale_x[:, None], _pixel_centres(ow, boxes.device))  # (B, ow)
    gy = torch.addcmul(centre_y[:, None], scale_y[:, None], _pixel_centres(oh, boxes.device))  # (B, oh)
    b = boxes.shape[0]
    return torch.stack([gx[:, None, :].expand(b, oh, ow), gy[:, :, None].expand(b, oh, ow)], dim=-1)


def _pixel_centres(n: int, device: torch.device) -> Tensor:
    """(n,) centres of n pixels in normalised coordinates (align_corners=False): (2 j + 1) / n - 1."""
    return torch.arange(n, device=device, dtype=torch.float32).mul_(2.0 / n).add_(1.0 / n - 1.0)


def horizontal_flip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror the images whose flip (B,) is True; x: (B, C, H, W). For views without a crop to fold it into."""
    return x.flip(-1).lerp_(x, _weight(~flip))


# -------------------------------------------------------------------------------- colour ops
def rgb_to_gray(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma, torchvision's weights and order of operations."""
    r, g, b = x.unbind(1)
    return r.mul(LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)


def _own(x: Tensor, inplace: bool) -> Tensor:
    return x if inplace else x.clone()


def adjust_brightness(x: Tensor, factor: Number, inplace: bool = False) -> Tensor:
    """x * factor, clamped to [0, 1]; x: (B, C, H, W) in [0, 1], factor: (B,) or float (1: identity)."""
    return _own(x, inplace).mul_(_per_sample(factor)).clamp_(0.0, 1.0)


def _blend_(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """In place on x and other: factor * x + (1 - factor) * other, clamped (torchvision's _blend)."""
    return x.mul_(factor).add_(other.mul_(1.0 - factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Number, inplace: bool = False) -> Tensor:
    """Blend each image with the mean of its grayscale (C == 3) or of itself (other C); factor: (B,)."""
    gray = rgb_to_gray(x) if x.shape[1] == 3 else x
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)                  # (B, 1, 1, 1)
    return _blend_(_own(x, inplace), mean, _per_sample(factor))


def adjust_saturation(x: Tensor, factor: Number, inplace: bool = False) -> Tensor:
    """Blend each RGB image (B, 3, H, W) with its grayscale (B, 1, H, W); factor: (B,) (1: identity)."""
    gray = rgb_to_gray(x)
    return _blend_(_own(x, inplace), gray, _per_sample(factor))


def adjust_hue(x: Tensor, shift: Number, inplace: bool = False) -> Tensor:
    """Rotate the hue of each RGB image (B, 3, H, W) in [0, 1] by shift (B,) in [-0.5, 0.5] turns.

    The exact HSV rotation of torchvision's adjust_hue (value and saturation kept), written without
    building the HSV image: with v = max, c = max - min and the hue h in sextants [0, 6), channel
    n in (R, G, B) = (5, 3, 1) is v - c * clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6, the closed
    form of the piecewise HSV -> RGB map. Branches are 0/1 float masks with lerp and the image-sized
    steps run in place: on CPU a boolean torch.where over images, and each fresh image-sized tensor,
    cost more than the arithmetic. A shift of 0 returns x up to float rounding.
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]                     # (B, 1, H, W) each
    maxc = torch.maximum(r, g)
    torch.maximum(maxc, b, out=maxc)
    chroma = torch.minimum(r, g)
    torch.minimum(chroma, b, out=chroma)
    torch.sub(maxc, chroma, out=chroma)                            # max - min
    safe = torch.eq(chroma, 0.0, out=torch.empty_like(chroma)).add_(chroma)  # 1 where grey, else chroma
    # hue in sextants for each possible max channel, chosen in torchvision's tie order: r, then g, then b
    h = torch.sub(r, g).div_(safe).add_(4.0)                       # max == b: 4 + (r - g) / c
    alt = torch.sub(b, r).div_(safe).add_(2.0)                     # max == g: 2 + (b - r) / c
    is_max = torch.eq(maxc, g, out=torch.empty_like(h))            # 1.0 / 0.0
    h.lerp_(alt, is_max)
    torch.sub(g, b, out=alt).div_(safe)                            # max == r: (g - b) / c
    h.lerp_(alt, torch.eq(maxc, r, out=is_max))
    h.add_(_per_sample(shift) * 6.0)                               # rotate: h in [-4, 8)
    h.sub_(torch.div(h, 6.0, out=alt).floor_().mul_(6.0))          # wrap to [0, 6]
    # k - 5 = h + n - 5 in [-4, 6]; the distance from k to the nearer of 2 and 8 is ||k - 5| - 3|, and
    # -clamp(min(k, 4 - k), 0, 1) on k mod 6 = clamp(distance - 2, -1, 0)
    offsets = torch.arange(0.0, -5.0, -2.0, device=x.device).view(1, 3, 1, 1)
    out = x if inplace else torch.empty_like(x)                    # r, g, b are not read after this
    minus_ramp = torch.add(h, offsets, out=out).abs_().sub_(3.0).abs_().sub_(2.0).clamp_(-1.0, 0.0)
    return minus_ramp.mul_(chroma).add_(maxc)                      # (B, 3, H, W): v - c * ramp


def to_grayscale(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 3, H, W): the luma replicated to three channels."""
    return rgb_to_gray(x).expand_as(x)


def solarize(x: Tensor, threshold: Number = SOLARIZE_THRESHOLD, inplace: bool = False) -> Tensor:
    """x -> 1 - x where x >= threshold; x: (B, C, H, W) in [0, 1], threshold: float or (B,) (inf: off).

    An exact lerp with a 0/1 float mask rather than torch.where (same values, faster on CPU).
    """
    above = torch.ge(x, _per_sample(threshold), out=torch.empty_like(x))  # 1.0 / 0.0
    inverted = 1.0 - x
    return x.lerp_(inverted, above) if inplace else torch.lerp(x, inverted, above)


# ----------------------------------------------------------------------------------- blur
def blur_kernel_size(height: int, width: int) -> int:
    """About 10% of the image side, odd, at least 3 (SimCLR's choice); stays below the reflect limit."""
    k = int(0.1 * min(height, width))
    k = max(3, k + 1 - k % 2)
    return min(k, 2 * (min(height, width) - 1) + 1)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur each image with its own sigma (B,); x: (B, C, H, W); reflect padding like torchvision.

    Separable: the batch is folded into the channels, (1, B*C, H, W), and two depthwise conv2d passes
    (1 x k, then k x 1) apply per-sample kernels. On CUDA, cuDNN may run them in TF32
    (torch.backends.cudnn.allow_tf32), about 1e-3 off float32: harmless for an augmentation.
    """
    b, c, h, w = x.shape
    half = kernel_size // 2
    coords = torch.arange(kernel_size, device=x.device, dtype=torch.float32) - (kernel_size - 1) / 2
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1).expand(b, 1)
    pdf = torch.exp(-0.5 * (coords / sigma) ** 2)                   # (B, k)
    kernel = (pdf / pdf.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, k)
    padded = F.pad(x, [half, half, half, half], mode="reflect").reshape(1, b * c, h + 2 * half, w + 2 * half)
    out = F.conv2d(padded, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)   # (1, B*C, H+2p, W)
    out = F.conv2d(out, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)      # (1, B*C, H, W)
    return out.view(b, c, h, w)


# ------------------------------------------------------------------------------ parameters
class ViewParams(NamedTuple):
    """Per-sample parameters of one view; a field is None when its op is skipped (identity config)."""
    boxes: Optional[Tensor]        # (B, 4) float: top, left, height, width in input pixels
    flip: Optional[Tensor]         # (B,) bool
    jitter: Optional[Tensor]       # (B,) bool: colour jitter on; the factors below are identity where off
    brightness: Optional[Tensor]   # (B,) multiplicative factor
    contrast: Optional[Tensor]     # (B,) blend factor
    saturation: Optional[Tensor]   # (B,) blend factor
    hue: Optional[Tensor]          # (B,) shift in turns, 0 where off
    grayscale: Optional[Tensor]    # (B,) bool
    blur: Optional[Tensor]         # (B,) bool
    sigma: Optional[Tensor]        # (B,) blur sigma in output pixels
    solarize: Optional[Tensor]     # (B,) bool


_NUM_UNIFORMS = 14  # columns of the one uniform draw per view; fixed so that turning ops off keeps the rest


def crop_boxes(u: Tensor, height: int, width: int, scale: Tuple[float, float],
               ratio: Tuple[float, float]) -> Tensor:
    """Uniforms (B, 4) -> crop boxes (B, 4) (top, left, height, width), integer-valued, inside the image.

    Area fraction ~ U(scale), log aspect ratio (w / h) ~ U(log ratio), sizes rounded as torchvision
    does, then clamped to the image (instead of rejection sampling); position uniform over the
    placements that fit.
    """
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    bw = torch.sqrt(area * aspect).round_().clamp_(1, width)
    bh = torch.sqrt(area / aspect).round_().clamp_(1, height)
    top = torch.minimum(torch.floor(u[:, 2] * (height - bh + 1)), height - bh)
    left = torch.minimum(torch.floor(u[:, 3] * (width - bw + 1)), width - bw)
    return torch.stack([top, left, bh, bw], dim=1)


def _pair(values: Any) -> Tuple[float, float]:
    return float(values[0]), float(values[1])


def crop_is_identity(view: ViewConfig, height: int, width: int) -> bool:
    """True when the crop always returns the whole image (scale and ratio [1, 1] on a square image)."""
    return _pair(view.crop_scale) == (1.0, 1.0) and _pair(view.crop_ratio) == (1.0, 1.0) and height == width


def draw_params(batch: int, channels: int, height: int, width: int, view: ViewConfig,
                device: Union[str, torch.device] = "cpu",
                generator: Optional[torch.Generator] = None) -> ViewParams:
    """Draw every per-sample parameter of one view from one (B, 14) uniform draw, on `device`.

    `view`: one view's settings (augmentation.view_a or view_b). Draws come from `generator` (on its
    own device, then moved) or from the global RNG of `device`.
    """
    draw_device = generator.device if generator is not None else torch.device(device)
    u = torch.rand(batch, _NUM_UNIFORMS, generator=generator, device=draw_device).to(device)

    def coin(col: int, p: float) -> Tensor:
        return u[:, col] < p

    def factor(col: int, amount: float, on: Tensor) -> Tensor:  # U[max(0, 1 - a), 1 + a], 1 where off
        lo = max(0.0, 1.0 - amount)
        return torch.where(on, lo + (1.0 + amount - lo) * u[:, col], 1.0)

    rgb = channels == 3
    boxes = None
    if not crop_is_identity(view, height, width):
        boxes = crop_boxes(u[:, 0:4], height, width, _pair(view.crop_scale), _pair(view.crop_ratio))
    flip = coin(4, view.flip_p) if view.flip_p > 0 else None
    jitter = brightness = contrast = saturation = hue = None
    if view.jitter_p > 0 and (view.brightness > 0 or view.contrast > 0
                              or (rgb and (view.saturation > 0 or view.hue > 0))):
        jitter = coin(5, view.jitter_p)
        brightness = factor(6, view.brightness, jitter) if view.brightness > 0 else None
        contrast = factor(7, view.contrast, jitter) if view.contrast > 0 else None
        saturation = factor(8, view.saturation, jitter) if rgb and view.saturation > 0 else None
        if rgb and view.hue > 0:
            hue = torch.where(jitter, view.hue * (2.0 * u[:, 9] - 1.0), 0.0)
    grayscale = coin(10, view.grayscale_p) if rgb and view.grayscale_p > 0 else None
    blur = sigma = None
    if view.blur_p > 0:
        blur = coin(11, view.blur_p)
        lo, hi = _pair(view.blur_sigma)
        sigma = lo + (hi - lo) * u[:, 12]
    solar = coin(13, view.solarize_p) if view.solarize_p > 0 else None
    return ViewParams(boxes, flip, jitter, brightness, contrast, saturation, hue, grayscale, blur, sigma,
                      solar)


# ---------------------------------------------------------------------------------- views
def apply_params(images: Tensor, params: ViewParams, mean: Tensor, std: Tensor,
                 out_size: Optional[int] = None) -> Tensor:
    """uint8 (B, C, H, W) -> float32 normalised (B, C, oh, ow), applying the ops present in params."""
    b, c, h, w = images.shape
    oh, ow = (h, w) if out_size is None else (out_size, out_size)
    x = to_unit(images)                                           # (B, C, H, W) in [0, 1], ours
    boxes = params.boxes
    if boxes is None and (oh, ow) != (h, w):                      # no random crop, but a resize
        boxes = torch.zeros(b, 4, device=x.device)
        boxes[:, 2], boxes[:, 3] = h, w
    if boxes is not None:
        x = resized_crop(x, boxes, params.flip, (oh, ow))         # (B, C, oh, ow)
    elif params.flip is not None:
        x = horizontal_flip(x, params.flip)
    # from here on x is a tensor of ours: the ops work in place
    if params.brightness is not None:
        x = adjust_brightness(x, params.brightness, inplace=True)
    if params.contrast is not None:
        x = adjust_contrast(x, params.contrast, inplace=True)
    if params.saturation is not None:
        x = adjust_saturation(x, params.saturation, inplace=True)
    if params.hue is not None:
        x = adjust_hue(x, params.hue, inplace=True)
    if params.grayscale is not None:
        x = x.lerp_(rgb_to_gray(x), _weight(params.grayscale))
    if params.blur is not None:
        x = x.lerp_(gaussian_blur(x, params.sigma, blur_kernel_size(oh, ow)), _weight(params.blur))
    if params.solarize is not None:
        x = solarize(x, torch.where(params.solarize, SOLARIZE_THRESHOLD, math.inf), inplace=True)
    return _standardize_(x, mean, std)


@torch.no_grad()
def augment(images: Tensor, view: ViewConfig, mean: Tensor, std: Tensor, out_size: Optional[int] = None,
            generator: Optional[torch.Generator] = None) -> Tensor:
    """One augmented view: uint8 (B, C, H, W) -> float32 normalised (B, C, oh, ow), same device.

    out_size: side of the square output; None keeps (H, W). mean, std: (C,) in [0, 1] units, best
    already on the images' device.
    """
    b, c, h, w = images.shape
    params = draw_params(b, c, h, w, view, images.device, generator)
    return apply_params(images, params, mean, std, out_size)


def make_views(images: Tensor, cfg: AugmentationConfig, mean: Tensor, std: Tensor,
               generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """Two independently augmented views (cfg.view_a, cfg.view_b) of a uint8 batch (B, C, H, W)."""
    return (augment(images, cfg.view_a, mean, std, generator=generator),
            augment(images, cfg.view_b, mean, std, generator=generator))
