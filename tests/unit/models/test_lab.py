"""rgb_to_lab and lab_split against a float64 reference written straight from the CIE formulas."""
import pytest
import torch

from specrep_cli.models.lab import lab_split, rgb_to_lab

F64 = torch.float64
# linear sRGB -> XYZ, and the D65 reference white, as printed in the sRGB standard / Lindbloom's tables
M = [[0.4124564, 0.3575761, 0.1804375],
     [0.2126729, 0.7151522, 0.0721750],
     [0.0193339, 0.1191920, 0.9503041]]
WHITE = (0.95047, 1.0, 1.08883)


def ref_lab_pixel(r, g, b):
    """One pixel, plain Python floats: sRGB gamma, XYZ, then L*a*b*."""
    def linear(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    def f(t):
        d = 6 / 29
        return t ** (1 / 3) if t > d ** 3 else t / (3 * d * d) + 4 / 29

    rgb = [linear(c) for c in (r, g, b)]
    X, Y, Z = (sum(M[i][j] * rgb[j] for j in range(3)) / WHITE[i] for i in range(3))
    return 116 * f(Y) - 16, 500 * (f(X) - f(Y)), 200 * (f(Y) - f(Z))


def ref_lab(x):
    """(B, 3, H, W) -> (B, 3, H, W), pixel by pixel."""
    out = torch.empty_like(x, dtype=F64)
    B, _, H, W = x.shape
    for n in range(B):
        for i in range(H):
            for j in range(W):
                out[n, :, i, j] = torch.tensor(ref_lab_pixel(*x[n, :, i, j].tolist()), dtype=F64)
    return out


def test_matches_reference_formula_in_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 5, 4, generator=g, dtype=F64)
    x[0, :, 0, :] = torch.tensor([0.0, 0.02, 0.04045, 0.0405])[None, :]  # both sides of the gamma knee
    x[1, :, 0, 0] = torch.tensor([0.001, 0.002, 0.0005])  # dark: Y below (6/29)^3, the linear branch of f
    got = rgb_to_lab(x)
    assert got.shape == x.shape and got.dtype == F64
    torch.testing.assert_close(got, ref_lab(x), rtol=0, atol=1e-10)


def test_float32_matches_reference():
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    got = rgb_to_lab(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref_lab(x.double()), rtol=0, atol=2e-3)


@pytest.mark.parametrize("rgb,lab", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),   # sRGB red
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),  # sRGB green
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),  # sRGB blue
    ((0.5, 0.5, 0.5), (53.3889, 0.0, 0.0)),           # mid grey: no chroma
])
def test_known_values(rgb, lab):
    x = torch.tensor(rgb, dtype=F64).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_lab(x).view(3), torch.tensor(lab, dtype=F64), rtol=0, atol=1e-3)


def test_batched_pixels_are_independent_and_any_leading_shape():
    x = torch.rand(4, 3, 3, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    whole = rgb_to_lab(x)
    for n in range(4):
        torch.testing.assert_close(rgb_to_lab(x[n:n + 1]), whole[n:n + 1])
    torch.testing.assert_close(rgb_to_lab(x[2]), whole[2])  # (3, H, W) works too


def test_gradient_is_finite_at_black_and_out_of_range():
    x = torch.tensor([0.0, -0.05, 1.02], dtype=F64).view(1, 3, 1, 1).expand(1, 3, 2, 2).clone()
    x.requires_grad_()
    rgb_to_lab(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_rejects_wrong_inputs():
    with pytest.raises(ValueError, match="3, H, W"):
        rgb_to_lab(torch.rand(2, 4, 3, 3))
    with pytest.raises(ValueError, match="float"):
        rgb_to_lab(torch.zeros(2, 3, 3, 3, dtype=torch.uint8))


def test_lab_split_shapes_and_scaling():
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    L, ab = lab_split(x)
    assert L.shape == (5, 1, 4, 4) and ab.shape == (5, 2, 4, 4)
    lab = ref_lab(x)
    # CMC's scaling, written out: [lo, hi] of each channel over the sRGB gamut -> [-1, 1]
    torch.testing.assert_close(L[:, 0], lab[:, 0] / 50 - 1, rtol=0, atol=1e-6)
    torch.testing.assert_close(ab[:, 0], (lab[:, 1] - (98.233 - 86.183) / 2) / ((98.233 + 86.183) / 2),
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(ab[:, 1], (lab[:, 2] - (94.478 - 107.857) / 2) / ((94.478 + 107.857) / 2),
                               rtol=0, atol=1e-6)


def test_lab_split_maps_the_gamut_onto_minus_one_one():
    corners = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)])
    L, ab = lab_split(corners.view(8, 3, 1, 1))
    lab = torch.cat([L, ab], 1).view(8, 3)
    # minima at black, green, blue; maxima at white, magenta, yellow
    torch.testing.assert_close(lab.amin(0), torch.full((3,), -1.0), rtol=0, atol=1e-4)
    torch.testing.assert_close(lab.amax(0), torch.full((3,), 1.0), rtol=0, atol=1e-4)
    inside = torch.cat(lab_split(torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(4))), 1)
    assert inside.abs().max() <= 1 + 1e-4


def test_runs_on_the_input_device_and_keeps_bf16_in_float32():
    x = torch.rand(2, 3, 4, 4).to(torch.bfloat16)
    out = rgb_to_lab(x)
    assert out.dtype == torch.float32 and out.device == x.device
    if torch.cuda.is_available():
        xc = torch.rand(2, 3, 4, 4, device="cuda")
        torch.testing.assert_close(rgb_to_lab(xc).cpu(), rgb_to_lab(xc.cpu()), rtol=1e-5, atol=1e-4)
