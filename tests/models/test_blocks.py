"""The generator's building blocks against their plain definitions."""
import pytest
import torch
import torch.nn.functional as F

from s2v.models.blocks import conditional_instance_norm, upsample_nearest_2x


@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (1, 2, 1, 4), (2, 4, 1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conditional_instance_norm_matches_its_definition(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    beta_gamma = torch.randn(shape[0], 2 * shape[1], dtype=dtype, requires_grad=True)
    C = shape[1]
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = x.var(dim=(-2, -1), unbiased=False, keepdim=True)
    ref = ((x - mean) / torch.sqrt(var + 1e-5) * beta_gamma[:, C:, None, None]
           + beta_gamma[:, :C, None, None])
    out = conditional_instance_norm(x, beta_gamma)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad((out * g).sum(), (x, beta_gamma)),
                    torch.autograd.grad((ref * g).sum(), (x, beta_gamma))):
        torch.testing.assert_close(a, b, atol=10 * tol, rtol=10 * tol)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 7, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_nearest_2x_equals_interpolate(shape, channels_last):
    x = torch.randn(shape, requires_grad=True)
    src = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    out = upsample_nearest_2x(src)
    ref = F.interpolate(x, scale_factor=2.0, mode="nearest")
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    # the gradient sums the four copies, in another order than ATen's kernel
    torch.testing.assert_close(torch.autograd.grad((out * g).sum(), x)[0],
                               torch.autograd.grad((ref * g).sum(), x)[0])
