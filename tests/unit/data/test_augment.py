"""Batched per-sample augmentation: every op against torchvision on single images, the frequencies and
ranges of the drawn parameters, `none` == normalize, shapes, devices and determinism.

`python tests/unit/data/test_augment.py` prints the make_views timing (not a test).
"""
from __future__ import annotations

import math
import time

import pytest
import torch
import torchvision.transforms.functional as TF1
import torchvision.transforms.v2.functional as TF

from specrep_cli.config import AugmentationConfig, ViewConfig
from specrep_cli.data import augment as A

MEAN = torch.tensor([0.49, 0.48, 0.45])
STD = torch.tensor([0.25, 0.24, 0.26])
# every op off: the `none` augmentation
NONE = dict(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0], flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
            blur_p=0.0, solarize_p=0.0)


def _uint8(b: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)


def _float(b: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random images in [0, 1] (so resampling differences stay small), plus some exact greys."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h // 4, w // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = (x + 0.1 * torch.rand(b, c, h, w, generator=g)).clamp(0, 1)
    x[:, :, :2] = x[:, :1, :2]  # grey rows: chroma 0
    return x


def _reference(op, x: torch.Tensor, values) -> torch.Tensor:
    """torchvision's op applied image by image with that image's parameter."""
    return torch.stack([op(x[i], float(v)) for i, v in enumerate(values)])


# ------------------------------------------------------------------------ ops vs torchvision
def test_resized_crop_matches_torchvision_inside_the_crop():
    x = _float(6, h=24, w=20)
    boxes = torch.tensor([[0, 0, 24, 20], [3, 2, 10, 12], [10, 8, 14, 12], [0, 5, 7, 15],
                          [5, 0, 19, 9], [12, 11, 12, 9]], dtype=torch.float32)  # top, left, h, w
    flip = torch.tensor([False, True, False, True, True, False])
    out = A.resized_crop(x, boxes, flip, 24)
    assert out.shape == (6, 3, 24, 24)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[i], top, left, h, w, [24, 24], antialias=False)
        if flip[i]:
            ref = TF.horizontal_flip(ref)
        # torchvision clamps to the crop's edge, we read the pixel beyond it: compare away from the edges
        my, mx = math.ceil(24 / h / 2) + 1, math.ceil(24 / w / 2) + 1
        assert (out[i, :, my:-my, mx:-mx] - ref[:, my:-my, mx:-mx]).abs().max() < 2e-6
        assert (out[i] - ref).abs().mean() < 0.01  # the edge band: measured <= 0.0045
    # the full-image box without a flip is the identity
    square = _float(2)
    full = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).expand(2, 4)
    assert (A.resized_crop(square, full, None, 16) - square).abs().max() < 2e-6


def test_crop_grid_is_affine_grid():
    boxes = torch.tensor([[0.0, 0.0, 24.0, 20.0], [3.0, 2.0, 10.0, 12.0], [10.0, 8.0, 14.0, 3.0]])
    flip = torch.tensor([False, True, True])
    h, w = 24, 20
    top, left, bh, bw = boxes.unbind(1)
    sx = torch.where(flip, -bw / w, bw / w)
    zero = torch.zeros(3)
    theta = torch.stack([sx, zero, (2 * left + bw) / w - 1, zero, bh / h, (2 * top + bh) / h - 1], 1)
    ref = torch.nn.functional.affine_grid(theta.view(3, 2, 3), [3, 3, 16, 18], align_corners=False)
    assert (A.crop_grid(boxes, flip, (h, w), (16, 18)) - ref).abs().max() < 1e-6


def test_resized_crop_downsampling_is_antialiased():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float().expand(2, 3, 64, 64)
    full = torch.tensor([[0.0, 0.0, 64.0, 64.0]]).expand(2, 4)
    out = A.resized_crop(checker, full, None, 16)
    assert out.shape == (2, 3, 16, 16)
    assert (out - 0.5).abs().max() < 1e-6  # aliasing would give 0s and 1s
    x = _float(2, h=64, w=64)
    boxes = torch.tensor([[0.0, 0.0, 64.0, 64.0], [4.0, 8.0, 48.0, 40.0]])
    out = A.resized_crop(x, boxes, None, 16)
    # the whole image at an integer factor: exactly the area average
    area = torch.nn.functional.interpolate(x[:1], size=(16, 16), mode="area")
    assert (out[:1] - area).abs().max() < 1e-6
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[i], top, left, h, w, [16, 16], antialias=True)
        assert (out[i] - ref).abs().mean() < 0.05  # box vs torchvision's triangle filter: measured 0.035


def test_horizontal_flip():
    x = _float(4)
    flip = torch.tensor([True, False, True, False])
    out = A.horizontal_flip(x, flip)
    ref = torch.stack([TF.horizontal_flip(x[i]) if flip[i] else x[i] for i in range(4)])
    assert torch.equal(out, ref)


@pytest.mark.parametrize("name, ours, theirs, values, tol", [
    ("brightness", A.adjust_brightness, TF.adjust_brightness, [0.0, 0.6, 1.0, 1.4, 2.5, 0.9], 1e-7),
    ("contrast", A.adjust_contrast, TF.adjust_contrast, [0.0, 0.6, 1.0, 1.4, 2.5, 0.9], 1e-6),
    ("saturation", A.adjust_saturation, TF.adjust_saturation, [0.0, 0.6, 1.0, 1.4, 2.5, 0.9], 1e-6),
    ("hue", A.adjust_hue, TF.adjust_hue, [-0.5, -0.31, 0.0, 0.05, 0.26, 0.5], 2e-6),
    ("hue_v1", A.adjust_hue, TF1.adjust_hue, [-0.5, -0.31, 0.0, 0.05, 0.26, 0.5], 2e-6),
    ("solarize", A.solarize, TF.solarize, [0.0, 0.3, 0.5, 0.5, 0.9, 1.0], 0.0),
])
def test_colour_op_matches_torchvision(name, ours, theirs, values, tol):
    x = _float(6)
    x[0, :, 4, :4] = torch.tensor([1.0, 0.5, 0.25, 0.0])[None, :]  # exact ties between channels
    factors = torch.tensor(values)
    ref = _reference(theirs, x, values)
    out = ours(x, factors)
    assert (out - ref).abs().max() <= tol, name
    assert not torch.equal(out, x) or name == "solarize"  # sanity: the op did something
    assert torch.equal(ours(x, factors, inplace=True), out)  # the pipeline's in-place path agrees


@pytest.mark.parametrize("op, theirs", [(A.adjust_brightness, TF.adjust_brightness),
                                        (A.adjust_contrast, TF.adjust_contrast)])
def test_single_channel_ops_match_torchvision(op, theirs):
    x = _float(4, c=1)
    values = [0.5, 1.0, 1.3, 0.0]
    assert (op(x, torch.tensor(values)) - _reference(theirs, x, values)).abs().max() < 1e-6


def test_grayscale_matches_torchvision():
    x = _float(3)
    ref = torch.stack([TF.rgb_to_grayscale(x[i], num_output_channels=3) for i in range(3)])
    assert (A.to_grayscale(x) - ref).abs().max() < 1e-7


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_gaussian_blur_matches_torchvision(kernel_size):
    x = _float(4, h=12, w=10)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0])
    out = A.gaussian_blur(x, sigma, kernel_size)
    ref = torch.stack([TF.gaussian_blur(x[i], [kernel_size, kernel_size], [float(s), float(s)])
                       for i, s in enumerate(sigma)])
    assert (out - ref).abs().max() < 1e-6


def test_blur_kernel_size():
    assert [A.blur_kernel_size(s, s) for s in (8, 32, 64, 96, 224)] == [3, 3, 7, 9, 23]


# -------------------------------------------------------------------------------- the views
def test_none_is_exactly_normalize():
    x = _uint8(8)
    view = ViewConfig(**NONE)
    params = A.draw_params(8, 3, 16, 16, view)
    assert all(p is None for p in params)
    out = A.augment(x, view, MEAN, STD)
    assert torch.equal(out, A.normalize(x, MEAN, STD))
    assert torch.allclose(out, (x.float() / 255 - MEAN[:, None, None]) / STD[:, None, None], atol=1e-6)


def test_identical_images_get_different_views():
    x = _uint8(1).expand(2, 3, 16, 16).contiguous()
    a, b = A.make_views(x, AugmentationConfig(name="simclr"), MEAN, STD)
    assert not torch.equal(a[0], a[1]) and not torch.equal(b[0], b[1]) and not torch.equal(a, b)


@pytest.mark.parametrize("c, out_size", [(3, None), (3, 8), (1, None), (1, 12)])
def test_shape_dtype_device(c, out_size):
    x = _uint8(5, c=c, h=16, w=16)
    view = ViewConfig(blur_p=0.5, solarize_p=0.5)
    mean, std = MEAN[:c], STD[:c]
    out = A.augment(x, view, mean, std, out_size=out_size)
    side = 16 if out_size is None else out_size
    assert out.shape == (5, c, side, side) and out.dtype == torch.float32 and out.device == x.device
    assert torch.isfinite(out).all()
    unit = out * std[:, None, None] + mean[:, None, None]  # back to [0, 1]
    assert unit.min() > -1e-5 and unit.max() < 1 + 1e-5


def test_resize_only():
    x = _uint8(3, h=32, w=32)
    out = A.augment(x, ViewConfig(**NONE), MEAN, STD, out_size=16)
    area = torch.nn.functional.interpolate(x.float() / 255, size=(16, 16), mode="area")
    assert (out * STD[:, None, None] + MEAN[:, None, None] - area).abs().max() < 1e-5


def test_dictconfig_view_and_float_input():
    x = _uint8(4)
    view = ViewConfig(blur_p=0.5)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = A.augment(x, view, MEAN, STD, generator=g1)
    assert torch.equal(out, A.augment(x, ViewConfig(blur_p=0.5), MEAN, STD, generator=g2))
    xf = x.float() / 255
    assert torch.allclose(A.normalize(xf, MEAN, STD), A.normalize(x, MEAN, STD))
    assert torch.equal(xf, x.float() / 255)  # input untouched


def test_determinism():
    x = _uint8(16)
    cfg = AugmentationConfig(name="byol", view_b=ViewConfig(blur_p=0.2, solarize_p=0.2))
    def run(seed):
        return A.make_views(x, cfg, MEAN, STD, generator=torch.Generator().manual_seed(seed))
    a1, b1 = run(0)
    a2, b2 = run(0)
    a3, _ = run(1)
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and not torch.equal(a1, a3)
    torch.manual_seed(5)
    g1 = A.make_views(x, cfg, MEAN, STD)
    torch.manual_seed(5)
    assert torch.equal(g1[0], A.make_views(x, cfg, MEAN, STD)[0])


# ------------------------------------------------------------------- frequencies and ranges
N = 4096


def _within_binomial(count: int, n: int, p: float) -> bool:
    return abs(count / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_drawn_mask_frequencies():
    view = ViewConfig(flip_p=0.5, jitter_p=0.8, grayscale_p=0.2, blur_p=0.3, solarize_p=0.1)
    p = A.draw_params(N, 3, 8, 8, view, generator=torch.Generator().manual_seed(0))
    for mask, prob in ((p.flip, 0.5), (p.jitter, 0.8), (p.grayscale, 0.2), (p.blur, 0.3), (p.solarize, 0.1)):
        assert mask.dtype == torch.bool and _within_binomial(int(mask.sum()), N, prob)
    on = p.jitter
    assert torch.all(p.brightness[~on] == 1) and torch.all(p.hue[~on] == 0)
    assert p.brightness[on].min() >= 0.6 and p.brightness[on].max() <= 1.4
    assert p.contrast[on].min() >= 0.6 and p.saturation[on].max() <= 1.4
    assert p.hue[on].abs().max() <= 0.1 and p.hue[on].min() < -0.09 and p.hue[on].max() > 0.09
    assert p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0
    grey = A.draw_params(N, 1, 8, 8, view)
    assert grey.saturation is None and grey.hue is None and grey.grayscale is None


@pytest.mark.parametrize("size", [8, 32, 224])
def test_crop_boxes_in_range(size):
    scale, ratio = (0.2, 1.0), (3 / 4, 4 / 3)
    view = ViewConfig(crop_scale=list(scale), crop_ratio=list(ratio))
    boxes = A.draw_params(N, 3, size, size, view, generator=torch.Generator().manual_seed(1)).boxes
    top, left, h, w = boxes.unbind(1)
    assert torch.equal(boxes, boxes.round()) and boxes.min() >= 0
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= size).all() and (left + w <= size).all()
    # area within the scale range, up to rounding each side to whole pixels
    slack = (h + w) / 2 + 0.25
    area = h * w
    assert (area >= scale[0] * size * size - slack).all() and (area <= scale[1] * size * size + slack).all()
    if size == 224:  # fine enough to see the distributions
        frac = area / size**2
        assert frac.min() < 0.21 and frac.max() > 0.95 and abs(frac.mean() - 0.59) < 0.03
        assert (w / h).min() < 0.77 and (w / h).max() > 1.3
        assert abs(top.float().mean() - (size - h).float().mean() / 2) < 2  # position uniform


@pytest.mark.parametrize("field, p", [("flip_p", 0.5), ("jitter_p", 0.8), ("grayscale_p", 0.2),
                                      ("blur_p", 0.4), ("solarize_p", 0.3)])
def test_output_frequencies(field, p):
    """End to end: each op alone changes about a fraction p of the images."""
    images = _uint8(N, h=8, w=8, seed=4)
    if field == "solarize_p":
        images = images // 2 + 128  # every pixel >= 0.5: solarized iff changed
    knobs = {"brightness": 0.4, "contrast": 0.0, "saturation": 0.0, "hue": 0.0} if field == "jitter_p" else {}
    view = ViewConfig(**{**NONE, field: p, **knobs})
    out = A.augment(images, view, torch.zeros(3), torch.ones(3), generator=torch.Generator().manual_seed(2))
    x = images.float() / 255
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-5
    assert _within_binomial(int(changed.sum()), N, p)
    if field == "flip_p":  # each image is itself or its mirror image
        assert torch.equal(out[changed], x[changed].flip(-1))
    if field == "grayscale_p":  # the changed images have three equal channels
        assert torch.equal(out[changed], out[changed, :1].expand(-1, 3, -1, -1))


# ------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_never_syncs():
    x = _uint8(64, h=32, w=32)
    view = ViewConfig(blur_p=0.5, solarize_p=0.3)
    params = A.draw_params(64, 3, 32, 32, view, generator=torch.Generator().manual_seed(0))
    cpu = A.apply_params(x, params, MEAN, STD)
    moved = A.ViewParams(*(None if t is None else t.cuda() for t in params))
    xc, mean, std = x.cuda(), MEAN.cuda(), STD.cuda()
    gpu = A.apply_params(xc, moved, mean, std)
    # cuDNN may run the blur's conv in TF32 (torch.backends.cudnn.allow_tf32 defaults to True)
    assert gpu.device.type == "cuda" and (gpu.cpu() - cpu).abs().max() < 2e-3 / STD.min()
    cfg = AugmentationConfig(name="byol", view_b=view)
    g = torch.Generator(device="cuda").manual_seed(0)
    A.make_views(xc, cfg, mean, std, generator=g)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        a, b = A.make_views(xc, cfg, mean, std, generator=g)
        a, b = A.make_views(xc, cfg, mean, std)  # the global CUDA RNG
        A.augment(xc, view, mean, std, out_size=16, generator=g)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert a.device.type == "cuda" and a.shape == (64, 3, 32, 32)


# ------------------------------------------------------------------------------- the timing
def _benchmark(device: str = "cpu", repeats: int = 50) -> None:
    """Median make_views time on 256 x 3 x 32 x 32 uint8 with the SimCLR settings; ResNet-18 for scale."""
    import torchvision

    images = _uint8(256, h=32, w=32).to(device)
    mean, std = MEAN.to(device), STD.to(device)
    cfg = AugmentationConfig(name="simclr")  # ViewConfig's defaults are SimCLR's CIFAR settings
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for threads in ([1, torch.get_num_threads()] if device == "cpu" else [torch.get_num_threads()]):
        torch.set_num_threads(threads)
        for _ in range(5):
            A.make_views(images, cfg, mean, std)
        wall, cpu = [], []
        for _ in range(repeats):
            sync()
            t0, c0 = time.perf_counter(), time.thread_time()
            A.make_views(images, cfg, mean, std)
            sync()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
        wall.sort(), cpu.sort()
        print(f"make_views 256x3x32x32 SimCLR on {device}, {threads} thread(s): "
              f"median {1e3 * wall[repeats // 2]:.2f} ms wall (min {1e3 * wall[0]:.2f}), "
              f"{1e3 * cpu[repeats // 2]:.2f} ms thread CPU time")
    model = torchvision.models.resnet18(num_classes=128).to(device)
    batch = A.normalize(images, mean, std)
    times = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        model(batch).square().mean().backward()
        sync()
        times.append(time.perf_counter() - t0)
    print(f"ResNet-18 forward+backward, same batch on {device}: {1e3 * min(times):.1f} ms")


if __name__ == "__main__":
    _benchmark("cpu")
    if torch.cuda.is_available():
        _benchmark("cuda", repeats=200)
