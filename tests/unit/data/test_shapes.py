"""The built-in `shapes` dataset: exact, deterministic, drawn as described, and not trivial."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from specrep_cli.data import shapes

FACTOR_KEYS = {"shape", "fg_color", "bg_color", "size", "x", "y", "rotation"}


@pytest.fixture(scope="module")
def train_split():
    return shapes.generate(4000, seed=0)


@pytest.fixture(scope="module")
def test_split():
    return shapes.generate(2000, seed=1)


def fg_map(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) in [0, 1]: largest channel difference from the border median, max 1."""
    x = images.float() / 255
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)  # (N, 3, 4W)
    bg = border.median(dim=2).values[:, :, None, None]
    d = (x - bg).abs().amax(1, keepdim=True)
    return d / d.amax((2, 3), keepdim=True).clamp(min=1e-3)


def fg_mask(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: the drawn shape, as pixels far from the background colour."""
    return fg_map(images)[:, 0] > 0.5


def gray(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) luma in [0, 1]."""
    return torch.einsum("nchw,c->nhw", images.float() / 255, torch.tensor([0.299, 0.587, 0.114]))


def test_same_seed_same_bytes_other_seed_other_images():
    a, b, c = shapes.generate(300, seed=3), shapes.generate(300, seed=3), shapes.generate(300, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.factors.keys() == b.factors.keys()
    assert all(torch.equal(a.factors[k], b.factors[k]) for k in a.factors)
    assert not torch.equal(a.images, c.images)
    assert (a.images != c.images).float().mean() > 0.5


def test_shapes_dtypes_ranges(train_split):
    n = len(train_split.labels)
    assert train_split.images.shape == (n, 3, 32, 32) and train_split.images.dtype == torch.uint8
    assert train_split.images.is_contiguous()
    assert train_split.labels.dtype == torch.int64 and train_split.labels.shape == (n,)
    assert set(train_split.factors) == FACTOR_KEYS
    f = train_split.factors
    assert all(v.shape == (n,) for v in f.values())
    assert torch.equal(f["shape"], train_split.labels)
    assert len(shapes.CLASSES) == 10 and len(set(shapes.CLASSES)) == 10
    for k in ("fg_color", "bg_color"):
        assert f[k].dtype == torch.int64 and 0 <= f[k].min() and f[k].max() < len(shapes.COLORS)
    assert (f["fg_color"] != f["bg_color"]).all()
    assert len(f["fg_color"].unique()) == len(shapes.COLORS) == len(f["bg_color"].unique())
    lo, hi = shapes.SIZE_RANGE
    assert lo <= f["size"].min() and f["size"].max() <= hi
    for k in ("x", "y"):
        assert f[k].min() >= 0 and f[k].max() <= 1
    assert f["rotation"].min() >= 0 and f["rotation"].max() < 2 * math.pi
    assert train_split.images.min() < 30 and train_split.images.max() > 225  # full range used


@pytest.mark.parametrize("num", [1003, 7])
def test_labels_balanced(num):
    counts = torch.bincount(shapes.generate(num, seed=0).labels, minlength=10)
    assert counts.min() == num // 10 and counts.max() == -(-num // 10)


def test_image_size_respected():
    s = shapes.generate(20, seed=0, image_size=48)
    assert s.images.shape == (20, 3, 48, 48)


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="num"):
        shapes.generate(0, seed=0)


def test_every_class_drawn_with_visible_contrast(train_split):
    mask = fg_mask(train_split.images)  # (N, H, W)
    frac = mask.float().mean((1, 2))
    assert frac.min() > 0.015  # something drawn in every image (measured min ~0.024)
    for c, name in enumerate(shapes.CLASSES):
        mean = frac[train_split.labels == c].mean()  # measured 0.07 (arrow) .. 0.22 (circle)
        assert 0.04 < mean < 0.6, (name, mean)
    # fg and bg differ in grayscale, per image
    luma = gray(train_split.images)
    fg_mean = (luma * mask).sum((1, 2)) / mask.sum((1, 2))
    bg_mean = (luma * ~mask).sum((1, 2)) / (~mask).sum((1, 2))
    assert (fg_mean - bg_mean).abs().min() > 0.1  # by design >= 0.2 before noise; measured ~0.14


def test_factors_describe_the_image(train_split):
    """Size, centre and rotation as documented, read back from circles and crescents."""
    mask = fg_mask(train_split.images).float()  # (N, H, W)
    n, h, w = mask.shape
    px = (torch.arange(w) + 0.5) / w
    area = mask.sum((1, 2))
    cx = (mask.sum(1) * px).sum(1) / area  # (N,) centroid, image units
    cy = (mask.sum(2) * px).sum(1) / area
    f = train_split.factors
    r = f["size"] / 2
    inside = (f["x"] - r > 0) & (f["x"] + r < 1) & (f["y"] - r > 0) & (f["y"] + r < 1)

    circle = (train_split.labels == shapes.CLASSES.index("circle")) & inside
    assert circle.sum() > 50
    assert (cx[circle] - f["x"][circle]).abs().max() < 0.5 / w  # measured max ~0.2 px
    assert (cy[circle] - f["y"][circle]).abs().max() < 0.5 / w
    expected = math.pi * (0.95 * r[circle] * w) ** 2  # drawn radius 0.95 of the bounding circle
    assert ((area[circle] - expected).abs() / expected).max() < 0.12  # measured max ~0.07

    # a crescent's mass lies opposite its opening, which faces +x (right) at rotation 0 and
    # turns counter-clockwise on screen (y grows downwards)
    cres = (train_split.labels == shapes.CLASSES.index("crescent")) & inside
    rot = f["rotation"][cres]
    away = torch.stack([-torch.cos(rot), torch.sin(rot)], 1)  # (n, 2) screen direction of the mass
    offset = torch.stack([cx[cres] - f["x"][cres], cy[cres] - f["y"][cres]], 1)
    cos = F.cosine_similarity(offset, away, dim=1)
    assert cos.median() > 0.95 and cos.min() > 0.5


def fit_probe(ftr, ytr, fte, yte) -> tuple[float, float]:
    """Multinomial logistic regression (standardised features, full-batch LBFGS): train/test acc."""
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
    torch.manual_seed(0)
    probe = nn.Linear(ftr.shape[1], 10)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(probe(ftr), ytr) + 1e-4 * probe.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return [(probe(f).argmax(1) == y).float().mean().item() for f, y in ((ftr, ytr), (fte, yte))]


def trivial_stats(images: torch.Tensor) -> torch.Tensor:
    """(N, 7): per-channel mean and std, and the fraction of pixels unlike the corner pixel."""
    x = images.float() / 255
    corner = x[:, :, :1, :1]
    unlike = ((x - corner).abs().amax(1) > 0.15).float().mean((1, 2))
    return torch.cat([x.mean((2, 3)), x.std((2, 3)), unlike[:, None]], 1)


def test_class_not_readable_off_trivial_statistics(train_split, test_split):
    train_acc, acc = fit_probe(trivial_stats(train_split.images), train_split.labels,
                               trivial_stats(test_split.images), test_split.labels)
    assert train_acc < 0.25 and acc < 0.25  # measured 0.19 / 0.17; chance 0.10


def orientation_features(images: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """(N, 8 + bins) rotation-invariant gradient-orientation histograms of the fg map.

    |DFT| of the gradient-magnitude-weighted orientation histogram (harmonics 1..8), and the
    histogram of each gradient's angle relative to the direction from the fg centroid.
    """
    m = fg_map(images)  # (N, 1, H, W)
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx = F.conv2d(m, sobel, padding=1).flatten(1)  # (N, P)
    gy = F.conv2d(m, sobel.transpose(2, 3), padding=1).flatten(1)
    mag, theta = torch.hypot(gx, gy), torch.atan2(gy, gx)
    m = m.flatten(1)
    h, w = images.shape[2:]
    ys = torch.arange(h, dtype=torch.float32).repeat_interleave(w)  # (P,) row-major, as flatten
    xs = torch.arange(w, dtype=torch.float32).repeat(h)
    mass = m.sum(1, keepdim=True)
    cx, cy = (m * xs).sum(1, keepdim=True) / mass, (m * ys).sum(1, keepdim=True) / mass  # (N, 1)
    phi = torch.atan2(ys - cy, xs - cx)  # (N, P) direction from the centroid

    def hist(angle):  # (N, P) radians -> (N, bins), weighted by gradient magnitude
        idx = (torch.remainder(angle, 2 * math.pi) / (2 * math.pi) * bins).long().clamp(max=bins - 1)
        h = torch.zeros(len(idx), bins).scatter_add_(1, idx, mag)
        return h / h.sum(1, keepdim=True).clamp(min=1e-6)

    spectrum = torch.fft.rfft(hist(theta), dim=1).abs()[:, 1:9]
    return torch.cat([spectrum, hist(theta - phi)], 1)


def test_class_is_in_the_image(train_split, test_split):
    """The class is there: rotation-invariant orientation histograms separate it linearly."""
    _, acc = fit_probe(orientation_features(train_split.images), train_split.labels,
                       orientation_features(test_split.images), test_split.labels)
    assert acc > 0.6  # measured 0.92; trivial statistics 0.17
