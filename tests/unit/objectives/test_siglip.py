"""siglip_loss against a brute-force float64 reference written from its formula.

The reference loops over i, j and shares no code with the module; gradients with respect to the
learnable log-temperature and bias are checked against central finite differences of the reference.
"""
import math

import pytest
import torch

from specrep_cli.objectives import losses as obj

F64 = torch.float64


def randn(*shape, seed, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=F64, generator=g).requires_grad_(requires_grad)


def scalar(value, requires_grad=True):
    return torch.tensor(value, dtype=F64, requires_grad=requires_grad)


def ref_siglip(zx, zy, log_t, bias):
    """-(1/B) sum_ij log sigmoid(z_ij (exp(log_t) u_x_i . u_y_j + bias)), z_ij = +1 on i == j else -1."""
    B = zx.shape[0]
    ux = [v / torch.sqrt((v * v).sum()) for v in zx]
    uy = [v / torch.sqrt((v * v).sum()) for v in zy]
    t = torch.exp(log_t)
    positive = negative = 0
    for i in range(B):
        for j in range(B):
            logit = t * (ux[i] @ uy[j]) + bias
            if i == j:
                positive = positive - torch.log(1 / (1 + torch.exp(-logit))) / B
            else:
                negative = negative - torch.log(1 / (1 + torch.exp(logit))) / B
    return positive + negative, {"positive": positive, "negative": negative}


def assert_close(got, want, rtol=1e-9, atol=1e-10):
    torch.testing.assert_close(got, torch.as_tensor(want, dtype=got.dtype), rtol=rtol, atol=atol)


@pytest.mark.parametrize("B,d", [(1, 3), (2, 1), (3, 5), (8, 3), (17, 4), (5, 16)])
@pytest.mark.parametrize("log_t,bias", [(math.log(10), -10.0), (0.0, 0.0), (1.3, 2.0)])
def test_matches_reference(B, d, log_t, bias):
    zx, zy = randn(B, d, seed=1), randn(B, d, seed=2)
    lt, b = scalar(log_t), scalar(bias)
    loss, terms = obj.siglip_loss(zx, zy, lt, b, return_terms=True)
    want, want_terms = ref_siglip(zx, zy, lt, b)
    assert loss.dtype == F64 and loss.ndim == 0
    assert_close(loss, want)
    assert set(terms) == {"positive", "negative"}
    for key in terms:
        assert_close(terms[key], want_terms[key])
        assert not terms[key].requires_grad
    assert_close(sum(terms.values()), loss)
    got = torch.autograd.grad(loss, [zx, zy, lt, b])
    expected = torch.autograd.grad(want, [zx, zy, lt, b])
    for g, e in zip(got, expected):
        assert_close(g, e)


def test_plain_return_and_float_scalars():
    zx, zy = randn(6, 4, seed=3), randn(6, 4, seed=4)
    plain = obj.siglip_loss(zx, zy, math.log(10), -10.0)
    assert isinstance(plain, torch.Tensor) and plain.ndim == 0
    assert_close(plain, ref_siglip(zx, zy, scalar(math.log(10)), scalar(-10.0))[0])


@pytest.mark.parametrize("log_t,bias", [(math.log(10), -10.0), (0.4, 1.5)])
def test_gradients_of_temperature_and_bias_match_finite_differences(log_t, bias):
    zx, zy = randn(7, 3, seed=5, requires_grad=False), randn(7, 3, seed=6, requires_grad=False)
    lt, b = scalar(log_t), scalar(bias)
    g_lt, g_b = torch.autograd.grad(obj.siglip_loss(zx, zy, lt, b), [lt, b])
    h = 1e-6

    def ref(lt_value, b_value):
        return ref_siglip(zx, zy, scalar(lt_value, False), scalar(b_value, False))[0]

    fd_lt = (ref(log_t + h, bias) - ref(log_t - h, bias)) / (2 * h)
    fd_b = (ref(log_t, bias + h) - ref(log_t, bias - h)) / (2 * h)
    assert g_lt != 0 and g_b != 0
    assert_close(g_lt, fd_lt, rtol=1e-6, atol=1e-8)
    assert_close(g_b, fd_b, rtol=1e-6, atol=1e-8)


def test_symmetric_in_the_two_towers():
    zx, zy = randn(9, 5, seed=7), randn(9, 5, seed=8)
    lt, b = scalar(1.1), scalar(-3.0)
    assert_close(obj.siglip_loss(zx, zy, lt, b), obj.siglip_loss(zy, zx, lt, b))
    # and not invariant to pairing: shuffling one side changes the positives
    assert not torch.isclose(obj.siglip_loss(zx, zy.roll(1, 0), lt, b), obj.siglip_loss(zx, zy, lt, b))


def test_invariant_to_positive_row_scaling():
    zx, zy = randn(9, 4, seed=9, requires_grad=False), randn(9, 4, seed=10, requires_grad=False)
    scale = torch.rand(9, 1, dtype=F64) * 10 + 0.01
    assert_close(obj.siglip_loss(zx * scale, zy, 0.7, -1.0), obj.siglip_loss(zx, zy, 0.7, -1.0))


def test_perfect_alignment_drives_the_loss_to_zero():
    # orthonormal, matched rows with a large t and a bias between the positive and negative logits
    z = torch.eye(4, dtype=F64)
    assert obj.siglip_loss(z, z, math.log(100), -50.0) < 1e-18
    # rolled: every pair mislabelled, 8 logits of magnitude 50 on the wrong side, divided by B = 4
    assert obj.siglip_loss(z, z.roll(1, 0), math.log(100), -50.0) > 99


def test_is_binary_nce_with_all_negatives_and_temperature_one_over_t():
    zx, zy = randn(6, 3, seed=13, requires_grad=False), randn(6, 3, seed=14, requires_grad=False)
    assert_close(obj.siglip_loss(zx, zy, 0.9, -2.0), obj.binary_nce(zx, zy, math.exp(-0.9), -2.0))


def test_bf16_autocast_computes_in_fp32():
    zx, zy = randn(48, 16, seed=11, requires_grad=False), randn(48, 16, seed=12, requires_grad=False)
    bx, by = zx.to(torch.bfloat16), zy.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = obj.siglip_loss(bx, by, torch.tensor(2.3, dtype=torch.bfloat16), -10.0)
    want = obj.siglip_loss(bx.float(), by.float(), torch.tensor(2.3, dtype=torch.bfloat16).float(), -10.0)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)
