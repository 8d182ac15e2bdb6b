"""Mish: parity with F.mish, gradients, torch.library registration, torch.compile, layouts, bad input."""


import pytest
import torch
import torch.nn.functional as F

import hotkernels
import hotkernels.functional as HF
from tests.conftest import assert_same_nans, check_inductor, run_with_isa

# Stated tolerances. float64: a few ulp apart from torch's x·tanh(log1p(eˣ)) (our n/(n+2) form).
# float32: our vector exp is within 2 ulp, so a few float32 ulp. Half types compute in float and round
# once, so the reference is F.mish in float32 rounded to the same type: at most one unit apart.
TOL = {
    torch.float64: dict(rtol=1e-13, atol=1e-300),
    torch.float32: dict(rtol=4e-6, atol=1e-37),
    torch.float16: dict(rtol=1e-3, atol=1e-7),
    torch.bfloat16: dict(rtol=8e-3, atol=1e-37),
}
# Gradients cross zero (mish' vanishes near x = -1.19), where any two roundings differ relatively:
# an absolute floor of about one ulp of the gradient's scale (|g · mish'| ~ 1) there.
TOL_GRAD = {
    torch.float64: dict(rtol=1e-13, atol=1e-15),
    torch.float32: dict(rtol=4e-6, atol=2e-7),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=8e-3, atol=8e-3),
}


def reference(x: torch.Tensor) -> torch.Tensor:
    if x.dtype in (torch.float16, torch.bfloat16):
        return F.mish(x.float()).to(x.dtype)
    return F.mish(x)


def wide_range(dtype: torch.dtype, device: str) -> torch.Tensor:
    """Values over the whole float range that matters: deep negative (underflow), around 0, the
    x > 20 linear branch, and non-finite ones."""
    lo = -110.0 if dtype != torch.float16 else -17.0
    x = torch.linspace(lo, 100.0, 100_003, dtype=torch.float64)
    special = torch.tensor([0.0, -0.0, 20.0, 19.999, 20.001, float("inf"), float("-inf"), float("nan")], dtype=torch.float64)
    return torch.cat([x, torch.randn(10_000, dtype=torch.float64) * 5, special]).to(dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", list(TOL))
def test_forward_matches_torch(device, dtype):
    x = wide_range(dtype, device)
    assert_same_nans(HF.mish(x), reference(x), str(dtype), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_matches_torch(device, dtype):
    x = wide_range(dtype, device)
    x = x[x.isfinite()]
    g = torch.randn_like(x)
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    HF.mish(x1).backward(g)
    F.mish(x2).backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, **TOL_GRAD[dtype])


def test_backward_half_types(device):
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.randn(4097, dtype=dtype, device=device)
        g = torch.randn_like(x)
        got = torch.ops.hotkernels.mish_backward(g, x)
        xf = x.float().requires_grad_()
        F.mish(xf).backward(g.float())
        torch.testing.assert_close(got, xf.grad.to(dtype), **TOL_GRAD[dtype])


def test_every_cpu_instruction_set(cpu_isa):
    """Each SIMD path this CPU can run (capped by HOTKERNELS_CPU_ISA) gives the same numbers."""
    code = (
        "import torch, hotkernels, torch.nn.functional as F\n"
        "x = torch.cat([torch.linspace(-110, 100, 40_009), torch.randn(9_999) * 5])\n"
        "g = torch.randn_like(x)\n"
        "torch.testing.assert_close(hotkernels.functional.mish(x), F.mish(x), rtol=4e-6, atol=1e-37)\n"
        "xr = x.clone().requires_grad_(); F.mish(xr).backward(g)\n"
        "torch.testing.assert_close(torch.ops.hotkernels.mish_backward(g, x), xr.grad, rtol=4e-6, atol=2e-7)\n"
    )
    run_with_isa(cpu_isa, code)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: torch.randn(5, 7, 9, device=d).transpose(0, 2), id="transposed"),
        pytest.param(lambda d: torch.randn(6, 40, device=d)[:, ::3], id="strided"),
        pytest.param(lambda d: torch.randn(2, 3, 5, 4, device=d).to(memory_format=torch.channels_last), id="channels_last"),
        pytest.param(lambda d: torch.randn(3, 1, device=d).expand(3, 8), id="expanded"),
        pytest.param(lambda d: torch.randn((), device=d), id="0-dim"),
        pytest.param(lambda d: torch.randn(0, 3, device=d), id="empty"),
        pytest.param(lambda d: torch.randn(1 << 17 | 5, device=d)[3:], id="unaligned"),
    ],
)
def test_layouts(device, make):
    x = make(device)
    y = HF.mish(x)
    torch.testing.assert_close(y, F.mish(x), **TOL[torch.float32])
    assert y.stride() == F.mish(x).stride()
    g = torch.randn_like(y)
    xr = x.clone().requires_grad_()  # torch's autograd of F.mish on the same layout
    F.mish(xr).backward(g)
    got = torch.ops.hotkernels.mish_backward(g, x)
    torch.testing.assert_close(got, xr.grad, **TOL_GRAD[torch.float32])
    assert got.stride() == xr.grad.stride()


@pytest.mark.parametrize("make", [lambda d: torch.randn(64, 33, device=d), lambda d: torch.randn(64, 33, device=d)[:, 1::2]],
                         ids=["contiguous", "strided"])
def test_inplace(device, make):
    x = make(device)
    expected = F.mish(x)
    ptr = x.data_ptr()
    out = HF.mish(x, inplace=True)
    assert out is x and x.data_ptr() == ptr
    torch.testing.assert_close(x, expected, **TOL[torch.float32])


def test_inplace_autograd_like_torch(device):
    a = torch.randn(300, device=device, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    y1 = HF.mish(a * 2, inplace=True)
    y2 = F.mish(b * 2, inplace=True)
    torch.testing.assert_close(y1, y2)
    y1.sum().backward()
    y2.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    leaf = torch.randn(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        HF.mish(leaf, inplace=True)


def test_gradcheck_and_gradgradcheck(device):
    x = (torch.randn(2, 3, 17, dtype=torch.float64, device=device) * 4).requires_grad_()
    assert torch.autograd.gradcheck(HF.mish, (x,))
    assert torch.autograd.gradgradcheck(HF.mish, (x,))
    g = torch.randn_like(x).requires_grad_()
    assert torch.autograd.gradcheck(torch.ops.hotkernels.mish_backward, (g, x))


def test_inplace_op_refuses_grad_and_bumps_versions(device):
    # hotkernels.mish(inplace=True) only calls mish_ without autograd; called directly on a tensor
    # that needs a gradient, the op must refuse rather than let backward pass a wrong gradient.
    x = torch.randn(5, dtype=torch.float64, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="hotkernels::mish_: 'input' requires grad"):
        torch.ops.hotkernels.mish_(x * 1)
    # Overwriting a tensor that another backward saved must be caught there, as with torch's ops.
    y = x * 1
    z = y.sin()
    with torch.no_grad():
        torch.ops.hotkernels.mish_(y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()
    y = x * 1
    z = y.sin()
    with torch.inference_mode():  # skips the Autograd key, not the version bump
        torch.ops.hotkernels.mish_(y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_opcheck(device):
    samples = [
        torch.randn(3, 5, device=device, requires_grad=True),
        torch.randn(2, 3, 4, 5, device=device).to(memory_format=torch.channels_last),
        torch.randn(4, 6, device=device, dtype=torch.float64)[:, ::2],
    ]
    for x in samples:
        torch.library.opcheck(torch.ops.hotkernels.mish.default, (x,))
        torch.library.opcheck(torch.ops.hotkernels.mish_backward.default, (torch.randn_like(x), x))
        torch.library.opcheck(torch.ops.hotkernels.mish_.default, (x.detach().clone(),))


def test_torch_compile_inductor_matches_torch(device):
    """Inductor (torch.compile's default backend) around our ops, the in-place one functionalized,
    against torch's eager F.mish."""
    def f(x, functional):
        y = functional.mish(x * 2)
        return y, functional.mish(x.detach() - 1, inplace=True).sum()

    x = torch.randn(8, 16, device=device, requires_grad=True)
    check_inductor(lambda x: f(x, HF), lambda x: f(x, F), [x],
                   ["hotkernels.mish.default", "hotkernels.mish_backward.default", "hotkernels.mish_.default"],
                   **TOL_GRAD[torch.float32])


def test_module_is_drop_in(device):
    ours, theirs = hotkernels.nn.Mish(), torch.nn.Mish()
    assert repr(ours) == repr(theirs) and repr(hotkernels.nn.Mish(inplace=True)) == repr(torch.nn.Mish(inplace=True))
    assert ours.state_dict() == theirs.state_dict() == {}
    x = torch.randn(4, 10, device=device)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8, torch.complex64])
def test_rejects_non_float(device, dtype):
    x = torch.ones(4, device=device).to(dtype)
    with pytest.raises(RuntimeError, match=r"hotkernels.mish: expected 'input' to be a float32, float64, float16 or bfloat16"):
        HF.mish(x)
    with pytest.raises(RuntimeError, match=r"hotkernels.mish_: expected 'input'"):
        HF.mish(x, inplace=True)


def test_backward_rejects_mismatch(device):
    x = torch.randn(4, 5, device=device)
    with pytest.raises(RuntimeError, match=r"hotkernels.mish_backward: expected 'grad_output' to have the shape"):
        torch.ops.hotkernels.mish_backward(torch.randn(5, 4, device=device), x)
    with pytest.raises(RuntimeError, match=r"hotkernels.mish_backward: expected 'grad_output' to have dtype"):
        torch.ops.hotkernels.mish_backward(torch.randn(4, 5, device=device, dtype=torch.float64), x)
