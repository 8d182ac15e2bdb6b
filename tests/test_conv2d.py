"""conv2d: parity with F.conv2d over a parameter grid, gradients (incl. double backward),
torch.library registration, torch.compile, layouts, the nn.Conv2d drop-in, bad input."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import hotkernels
import hotkernels.functional as HF
from hotkernels.ops.conv2d import _pair, conv2d_padding

ops = torch.ops.hotkernels

# Stated tolerances, for unit-normal data and reductions of up to a few hundred terms: float64 sums
# in another order than torch's differ by a few ulp of the partial sums (|partial| ≲ 50); float32 by
# a few float32 ulp of them. Half types compute in float32 and round once.
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-4, atol=1e-4),
}

# (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
GRID = [
    (2, 4, 9, 11, 6, 3, 1, 1, 1, 1),
    (1, 3, 8, 8, 5, 3, 1, 0, 1, 1),
    (2, 4, 9, 11, 6, (3, 2), 2, (1, 0), (1, 2), 2),
    (2, 6, 10, 7, 9, (2, 3), (2, 1), 2, 1, 3),
    (1, 8, 10, 10, 8, 3, 1, 1, 1, 8),  # depthwise
    (2, 8, 11, 9, 8, 3, 2, 2, 2, 8),  # depthwise, strided and dilated
    (1, 4, 9, 9, 8, 5, 1, 2, 1, 4),  # depth multiplier 2 (general path)
    (2, 3, 15, 15, 13, 7, 2, 3, 1, 1),  # ResNet conv1 shape, small
    (2, 16, 7, 7, 20, 1, 2, 0, 1, 1),  # strided 1x1
    (3, 16, 6, 5, 7, 1, 1, 0, 1, 1),  # 1x1
    (1, 3, 5, 5, 4, 3, 1, 4, 1, 1),  # padding larger than the kernel
    (2, 5, 12, 13, 7, 3, 3, 1, 3, 1),  # stride 3, dilation 3
    (1, 2, 4, 30, 3, (1, 5), (1, 3), (0, 2), 1, 1),
    (2, 8, 6, 6, 16, 3, 1, "same", 1, 2),
    (1, 4, 7, 8, 4, (2, 4), 1, "same", (2, 1), 1),  # even extents: asymmetric 'same'
    (1, 4, 7, 8, 4, 3, 2, "valid", 1, 1),
    (2, 5, 5, 6, 67, 3, 1, 1, 1, 1),  # small map, many output channels: packed weight gradient
    (2, 10, 5, 4, 134, 3, 1, 1, 1, 2),  # the same per group
    (1, 4, 9, 8, 70, 3, 2, 1, 2, 1),  # >= 64 output channels: packed forward tiles, strided and dilated
    (2, 66, 6, 5, 8, 3, 2, 1, 1, 1),  # >= 64 input channels: packed input-gradient tiles, strided
]


def _ids(case):
    return "N{}C{}H{}W{}K{}k{}s{}p{}d{}g{}".format(*case).replace(" ", "")


def _run(case, dtype, device, bias, grad=True):
    n, c, h, w, k, ks, s, p, d, g = case
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = torch.randn(n, c, h, w, dtype=dtype, device=device, requires_grad=grad)
    wt = torch.randn(k, c // g, kh, kw, dtype=dtype, device=device, requires_grad=grad)
    b = torch.randn(k, dtype=dtype, device=device, requires_grad=grad) if bias else None
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", GRID, ids=_ids)
def test_matches_torch(device, dtype, case):
    for bias in (True, False):
        x, w, b, kw = _run(case, dtype, device, bias)
        y = HF.conv2d(x, w, b, **kw)
        ref = F.conv2d(x, w, b, **kw)
        torch.testing.assert_close(y, ref, **TOL[dtype])
        gy = torch.randn_like(ref)
        inputs = (x, w) + ((b,) if bias else ())
        got = torch.autograd.grad(y, inputs, gy)
        want = torch.autograd.grad(ref, inputs, gy)
        for name, a, e in zip(("input", "weight", "bias"), got, want):
            torch.testing.assert_close(a, e, **TOL[dtype], msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(device, dtype):
    x, w, b, kw = _run(GRID[2], dtype, device, True, grad=False)
    ref = F.conv2d(x.float(), w.float(), b.float(), **kw).to(dtype)
    y = HF.conv2d(x, w, b, **kw)
    assert y.dtype == dtype
    tol = dict(rtol=1e-2, atol=2e-2) if dtype == torch.float16 else dict(rtol=2e-2, atol=1e-1)
    torch.testing.assert_close(y, ref, **tol)


@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_every_cpu_instruction_set(isa):
    """Each SIMD path this CPU can run (capped by HOTKERNELS_CPU_ISA) matches F.conv2d."""
    code = (
        "import torch, hotkernels, torch.nn.functional as F\n"
        "for c, k, s, p, d, g in [(6, 7, 1, 1, 1, 1), (6, 6, 2, 1, 2, 6), (4, 9, 2, 0, 1, 1)]:\n"
        "    x = torch.randn(2, c, 23, 19, requires_grad=True); w = torch.randn(k, c // g, 3, 3, requires_grad=True)\n"
        "    y, r = hotkernels.functional.conv2d(x, w, None, s, p, d, g), F.conv2d(x, w, None, s, p, d, g)\n"
        "    torch.testing.assert_close(y, r, rtol=1e-4, atol=1e-4)\n"
        "    gy = torch.randn_like(r)\n"
        "    for a, e in zip(torch.autograd.grad(y, (x, w), gy), torch.autograd.grad(r, (x, w), gy)):\n"
        "        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)\n"
        "print(hotkernels._C.cpu_isa())\n"
    )
    env = dict(os.environ, HOTKERNELS_CPU_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    used = out.stdout.strip()
    if used != isa:
        pytest.skip(f"this CPU lacks {isa}; ran {used}")


def test_unbatched_and_channels_last(device):
    x = torch.randn(4, 9, 10, device=device)
    w = torch.randn(6, 4, 3, 3, device=device)
    torch.testing.assert_close(HF.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1), **TOL[torch.float32])
    xb = torch.randn(2, 4, 9, 10, device=device).to(memory_format=torch.channels_last)
    wb = w.to(memory_format=torch.channels_last)
    torch.testing.assert_close(HF.conv2d(xb, wb, stride=2), F.conv2d(xb, wb, stride=2), **TOL[torch.float32])
    xs = torch.randn(2, 8, 9, 20, device=device)[:, ::2, :, ::2]  # a strided view
    torch.testing.assert_close(HF.conv2d(xs, w), F.conv2d(xs, w), **TOL[torch.float32])


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("case", [GRID[0], GRID[2], GRID[4], GRID[9]], ids=_ids)
def test_output_layout_follows_input(device, case, fmt):
    """Outputs in torch's layout for a contiguous or channels_last input (and contiguous weight):
    the forward output and the input gradient in the input's memory format, the weight gradient
    contiguous; eager and fake (meta) kernels agree."""
    x, w, b, kw = _run(case, torch.float32, device, True)
    x = x.detach().to(memory_format=fmt).requires_grad_()
    y, ref = HF.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw)
    assert y.stride() == ref.stride()
    torch.testing.assert_close(y, ref, **TOL[torch.float32])
    gy = torch.randn_like(ref)  # in ref's layout, as autograd hands it over
    assert gy.stride() == ref.stride()
    gx, gw = torch.autograd.grad(y, (x, w), gy)
    ex, ew = torch.autograd.grad(ref, (x, w), gy)
    assert gx.stride() == ex.stride()
    assert gw.is_contiguous()
    torch.testing.assert_close(gx, ex, **TOL[torch.float32])
    torch.testing.assert_close(gw, ew, **TOL[torch.float32])
    stride, dilation = _pair(kw["stride"], "stride"), _pair(kw["dilation"], "dilation")
    conv_args = (stride, conv2d_padding(kw["padding"], w.shape, stride, dilation), dilation, kw["groups"])
    mx, mw, mb, mgy = (t.to("meta") for t in (x, w, b, gy))
    assert ops.conv2d(mx, mw, mb, *conv_args).stride() == y.stride()
    assert ops.conv2d_backward_input(mgy, mw, list(x.shape), *conv_args).stride() == gx.stride()
    assert ops.conv2d_backward_weight(mgy, mx, list(w.shape), *conv_args).stride() == gw.stride()


def test_gradcheck_and_gradgradcheck(device):
    for case in [(1, 4, 5, 6, 4, (3, 2), (2, 1), 1, (1, 2), 2), (2, 3, 5, 5, 3, 3, 1, 1, 1, 3)]:
        x, w, b, kw = _run(case, torch.float64, device, True)

        def f(x, w, b):
            return HF.conv2d(x, w, b, **kw)

        assert torch.autograd.gradcheck(f, (x, w, b))
        assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_backward_ops_gradcheck(device):
    x, w, _, _ = _run((1, 4, 6, 5, 4, 3, 2, 1, 1, 2), torch.float64, device, False)
    args = ([2, 2], [1, 1, 1, 1], [1, 1], 2)
    gy = torch.randn(1, 4, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, w: ops.conv2d_backward_input(g, w, list(x.shape), *args), (gy, w))
    assert torch.autograd.gradcheck(lambda g, x: ops.conv2d_backward_weight(g, x, list(w.shape), *args), (gy, x))
    assert torch.autograd.gradcheck(ops.conv2d_backward_bias, (gy,))


def test_opcheck(device):
    x = torch.randn(2, 4, 7, 6, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    args = ([2, 1], [1, 0, 2, 1], [1, 2], 2)
    torch.library.opcheck(ops.conv2d.default, (x, w, b, *args))
    torch.library.opcheck(ops.conv2d.default, (x.to(memory_format=torch.channels_last), w, None, *args))
    y = ops.conv2d(x, w, b, *args)
    gy = torch.randn_like(y, requires_grad=True)
    torch.library.opcheck(ops.conv2d_backward_input.default, (gy, w, list(x.shape), *args))
    torch.library.opcheck(ops.conv2d_backward_weight.default, (gy, x, list(w.shape), *args))
    torch.library.opcheck(ops.conv2d_backward_bias.default, (gy,))


def test_torch_compile_fullgraph(device):
    conv = hotkernels.nn.Conv2d(3, 5, 3, padding="same", device=device)

    def f(x):
        return conv(x).relu().sum()

    x = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.backward()
    grads = [x.grad.clone(), conv.weight.grad.clone()]
    x.grad = None
    conv.weight.grad = None
    expected = f(x)
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grads, [x.grad, conv.weight.grad])


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_module_is_drop_in(device, padding_mode):
    kwargs = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, bias=True, padding_mode=padding_mode)
    torch.manual_seed(1)
    ours = hotkernels.nn.Conv2d(4, 6, (3, 2), device=device, **kwargs)
    torch.manual_seed(1)
    theirs = torch.nn.Conv2d(4, 6, (3, 2), device=device, **kwargs)
    assert isinstance(ours, torch.nn.Conv2d)
    assert repr(ours) == repr(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(v, theirs.state_dict()[k], rtol=0, atol=0)  # same initialisation
    x = torch.randn(2, 4, 9, 10, device=device)
    torch.testing.assert_close(ours(x), theirs(x), **TOL[torch.float32])
    torch.testing.assert_close(ours(x[0]), theirs(x[0]), **TOL[torch.float32])
    theirs.load_state_dict(ours.state_dict())


def test_rejects_bad_input(device):
    x = torch.randn(2, 4, 8, 8, device=device)
    w = torch.randn(6, 4, 3, 3, device=device)
    with pytest.raises(RuntimeError, match=r"expected input\[2, 4, 8, 8\] to have 8 channels, but got 4 channels"):
        HF.conv2d(x, w, groups=2)
    with pytest.raises(RuntimeError, match=r"Given groups=4, expected weight to be divisible by 4 at dimension 0"):
        HF.conv2d(x, torch.randn(6, 1, 3, 3, device=device), groups=4)
    with pytest.raises(RuntimeError, match=r"Kernel size can't be greater than actual input size"):
        HF.conv2d(x, torch.randn(6, 4, 9, 3, device=device))
    with pytest.raises(RuntimeError, match=r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d"):
        HF.conv2d(x[0, 0], w)
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d: expected 'weight' to be 4-D"):
        HF.conv2d(x, w[0])
    with pytest.raises(RuntimeError, match=r"expected bias to be 1-dimensional with 6 elements"):
        HF.conv2d(x, w, torch.randn(5, device=device))
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d: expected 'weight' to have dtype"):
        HF.conv2d(x, w.double())
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d: expected 'input' to be a float32"):
        HF.conv2d(x.int(), w.int())
    with pytest.raises(RuntimeError, match=r"non-positive stride is not supported"):
        HF.conv2d(x, w, stride=0)
    with pytest.raises(RuntimeError, match=r"negative padding is not supported"):
        HF.conv2d(x, w, padding=-1)
    with pytest.raises(RuntimeError, match=r"dilation should be greater than zero"):
        HF.conv2d(x, w, dilation=0)
    with pytest.raises(ValueError, match=r"padding='same' is not supported for strided convolutions"):
        HF.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"Invalid padding string 'full'"):
        HF.conv2d(x, w, padding="full")
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d_backward_input: expected 'grad_output' of size"):
        ops.conv2d_backward_input(torch.randn(2, 6, 5, 5, device=device), w, [2, 4, 8, 8], [1, 1], [0] * 4, [1, 1], 1)


def test_empty_batch(device):
    x = torch.randn(0, 4, 8, 8, device=device)
    w = torch.randn(6, 4, 3, 3, device=device)
    assert HF.conv2d(x, w).shape == F.conv2d(x, w).shape
