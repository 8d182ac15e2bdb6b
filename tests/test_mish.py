"""Mish: parity with F.mish, gradients, torch.library registration, torch.compile, layouts, bad input."""


import pytest
import torch
import torch.nn.functional as F

import hotkernels
import hotkernels.functional as HF
from tests.conftest import U32, assert_same_nans, check_inductor, run_with_isa

# Stated tolerances. float64: a few ulp apart from torch's x·tanh(log1p(eˣ)) (our n/(n+2) form).
# float32: against the float64 result of the same float32 inputs, within the bounds derived below
# (assert_float32_mish, assert_float32_mish_backward). Half types compute in float and round once,
# so the reference is F.mish in float32 rounded to the same type: at most one unit apart.
TOL = {
    torch.float64: dict(rtol=1e-13, atol=1e-300),
    torch.float16: dict(rtol=1e-3, atol=1e-7),
    torch.bfloat16: dict(rtol=8e-3, atol=1e-37),
}
# Gradients cross zero (mish' vanishes near x = -1.19), where any two roundings differ relatively:
# an absolute floor of about one ulp of the gradient's scale (|g · mish'| ~ 1) there.
TOL_GRAD = {
    torch.float64: dict(rtol=1e-13, atol=1e-15),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=8e-3, atol=8e-3),
}

# ---- float32 error bounds, derived from the kernel's formula (csrc/math/mish.h) ----------------------
#
# With u = 2^-24 (float32's unit roundoff; one ulp is at most 2u relative), e = exp(x) by simd::exp
# (csrc/cpu/simd/simd.h: "about 1 ulp"; taken as 2 ulp = 4u) and r = 1/(n + 2) by simd::reciprocal
# (an estimate and one Newton step: "about 2 ulp" = 4u), every other operation rounding once (u):
#
# forward, mish = x·n·r with n = e(e + 2): a relative error δ of e moves n/(n+2) by at most δ
#   (relative sensitivity (2e+2)/(e+2) · 2/(n+2) <= 1; numerically max 1.0), so
#   |ours − exact| <= (4 [exp] + 1 [e+2] + 1 [e·(e+2)] + 1 [n+2] + 4 [reciprocal] + 1 [x·n] + 1 [·r])·u·|mish|
#                   = 13·u·|mish|.
# backward, grad·mish' with mish' = (n + x·4e(e+1)·r)·r = A + B, A = n·r, B = x·4e(e+1)·r²: the terms
#   can cancel (mish' = 0 near x = −1.19), so the bound is on |A| and |B|, not on their sum: r enters
#   A once and B twice (reciprocal 4u and n+2's rounding u, each once for A and twice for B), n's two
#   roundings move A by <= 2u and B by <= 4u, B's own chain rounds 4 times (e+1, ·(e+1), x·, ·r), and
#   the sum, the last ·r and grad· round once each, on both; exp's error moves A + B by <= 0.94·δ·(|A|+|B|)
#   (numerically, over x in [−30, 30]), so
#   |ours − exact| <= u·|grad|·((4 + 10)·|A| + (4 + 21)·|B|).
# Where e is subnormal (x < −87.3; and exp clamps x at −104, so e = e^−104 below) it is off by up
# to 2^−150 absolutely plus e itself: mish ≈ x·e and mish' ≈ (1 + 2x)·e there, hence the absolute
# terms (|x| + 1)·2^−149 and (|grad|·(2|x| + 2) + 1)·2^−149 (the + 1: the result's own rounding to a
# subnormal; measured: 52·2^−149 at x = −110, forward).
# Measured on wide_range (AVX-512): forward <= 4.7u·|mish|; torch's own float32 F.mish reaches 4u.
# A result multiplied by (1 + 2^−20) (16u) fails both.
TINY32 = 2.0**-149  # the smallest float32 subnormal
MISH_FWD_U = 13.0
MISH_BWD_A_U, MISH_BWD_B_U = 14.0, 25.0


def _check_special(got: torch.Tensor, exact: torch.Tensor, what: str) -> torch.Tensor:
    """NaN exactly where the float64 result is NaN, infinities equal; returns the mask of the rest."""
    assert got.shape == exact.shape and got.dtype == torch.float32, (what, got.shape, exact.shape, got.dtype)
    nan = exact.isnan()
    assert torch.equal(got.isnan(), nan), f"{what}: NaN where the float64 result has none or the reverse"
    inf = exact.isinf()
    assert torch.equal(got.double()[inf], exact[inf]), f"{what}: infinities differ"
    return ~(nan | inf)


def _assert_within(got: torch.Tensor, exact: torch.Tensor, bound: torch.Tensor, x: torch.Tensor, what: str) -> None:
    err = (got.double() - exact).abs()
    if not err.numel():
        return
    ratio = err / bound
    worst = ratio.argmax()
    assert bool((err <= bound).all()), (f"{what}: |err| {err[worst].item():.3g} at x = {x[worst].item()!r} is "
                                        f"{ratio[worst].item():.3g} times the float32 bound")


def assert_float32_mish(got: torch.Tensor, x: torch.Tensor, what: str = "mish") -> None:
    """Our float32 mish(x) against F.mish of the same inputs in float64, within the bound above."""
    exact = F.mish(x.double())
    keep = _check_special(got, exact, what)
    xs, exact = x.double()[keep], exact[keep]
    bound = MISH_FWD_U * U32 * exact.abs() + (xs.abs() + 1) * TINY32
    _assert_within(got[keep], exact, bound, xs, what)


def assert_float32_mish_backward(got: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, what: str = "mish'") -> None:
    """Our float32 grad·mish'(x) against the float64 result of the same inputs, within the bound
    above (computed from the terms A and B in float64)."""
    xd, gd = x.double(), grad.double()
    e = xd.exp()
    n = e * (e + 2)
    r = 1 / (n + 2)
    a, b = n * r, xd * (4 * e * (e + 1)) * r * r
    linear = xd > 20  # the kernel's x > 20 branch: mish' = 1 (e² would overflow float64 near 355 anyway)
    exact = torch.where(linear, gd, gd * (a + b))
    keep = _check_special(got, exact, what) & x.isfinite()
    a, b = torch.where(linear, 1.0, a.abs()), torch.where(linear, 0.0, b.abs())
    bound = U32 * gd.abs() * (MISH_BWD_A_U * a + MISH_BWD_B_U * b) + (gd.abs() * (2 * xd.abs() + 2) + 1) * TINY32
    _assert_within(got[keep], exact[keep], bound[keep], xd[keep], what)


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


def test_forward_float32_within_derived_bound(device):
    x = wide_range(torch.float32, device)
    assert_float32_mish(HF.mish(x), x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_matches_torch(device, dtype):
    """float64: against torch's autograd; float32: against the float64 result of the same inputs."""
    x = wide_range(dtype, device)
    x = x[x.isfinite()]
    g = torch.randn_like(x)
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    HF.mish(x1).backward(g)
    if dtype == torch.float32:
        assert_float32_mish_backward(x1.grad, g, x)
        return
    F.mish(x2).backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, **TOL_GRAD[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_backward_at_infinities(device, dtype):
    # +inf: the derivative's limit, 1 (torch's formula gives inf · 0 = nan there); -inf and nan: nan,
    # as torch's (mish(-inf) = -inf · 0 is nan already).
    x = torch.tensor([float("inf"), float("-inf"), float("nan")], dtype=dtype, device=device)
    g = torch.tensor([3.0, 3.0, 3.0], dtype=dtype, device=device)
    got = torch.ops.hotkernels.mish_backward(g, x)
    assert got[0].item() == 3.0 and got[1:].isnan().all()


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
        "from tests.test_mish import assert_float32_mish, assert_float32_mish_backward\n"
        "x = torch.cat([torch.linspace(-110, 100, 40_009), torch.randn(9_999) * 5])\n"
        "g = torch.randn_like(x)\n"
        "assert_float32_mish(hotkernels.functional.mish(x), x)\n"
        "assert_float32_mish_backward(torch.ops.hotkernels.mish_backward(g, x), g, x)\n"
        # simd::exp's two paths below AVX-512 (every lane within |x| <= 86, or not) give the same
        # bits: each value once among in-range values and once in a vector with a lane at -100 (3
        # values and -100 in every 4, so in every vector of 4, 8 or 16 lanes; 32,000 elements, under
        # the elementwise map's grain of 32,768, so one task from element 0 groups them so). Mish
        # uses exp for x <= 20 only.
        "v = torch.linspace(-86, 86, 3 * 8_000)\n"
        "mixed = torch.cat([v.view(-1, 3), torch.full((8_000, 1), -100.0)], 1).flatten()\n"
        "keep = torch.arange(mixed.numel()) % 4 != 3\n"
        "gv = torch.randn_like(v)\n"
        "gm = torch.cat([gv.view(-1, 3), torch.ones(8_000, 1)], 1).flatten()\n"
        "assert torch.equal(torch.ops.hotkernels.mish(mixed)[keep], torch.ops.hotkernels.mish(v))\n"
        "assert torch.equal(torch.ops.hotkernels.mish_backward(gm, mixed)[keep],\n"
        "                   torch.ops.hotkernels.mish_backward(gv, v))\n"
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
    assert_float32_mish(y, x)
    assert y.stride() == F.mish(x).stride()
    g = torch.randn_like(y)
    xr = x.clone().requires_grad_()  # torch's autograd of F.mish on the same layout
    F.mish(xr).backward(g)
    got = torch.ops.hotkernels.mish_backward(g, x)
    assert_float32_mish_backward(got, g, x)
    assert got.stride() == xr.grad.stride()


@pytest.mark.parametrize("make", [lambda d: torch.randn(64, 33, device=d), lambda d: torch.randn(64, 33, device=d)[:, 1::2]],
                         ids=["contiguous", "strided"])
def test_inplace(device, make):
    x = make(device)
    before = x.clone()
    ptr = x.data_ptr()
    out = HF.mish(x, inplace=True)
    assert out is x and x.data_ptr() == ptr
    assert_float32_mish(x, before)


def test_inplace_autograd_like_torch(device):
    a = torch.randn(300, device=device, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    y1 = HF.mish(a * 2, inplace=True)
    y2 = F.mish(b * 2, inplace=True)
    assert_float32_mish(y1.detach(), (a * 2).detach())
    y1.sum().backward()
    y2.sum().backward()
    assert_float32_mish_backward(a.grad, torch.full_like(a, 2.0), (a * 2).detach())  # 2·mish'(2a): the ·2 is exact
    assert b.grad is not None
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

    # float64, so that the comparison with torch's eager result has a stated tolerance (float32's
    # bounds are against the float64 result: tests above)
    x = torch.randn(8, 16, dtype=torch.float64, device=device, requires_grad=True)
    check_inductor(lambda x: f(x, HF), lambda x: f(x, F), [x],
                   ["hotkernels.mish.default", "hotkernels.mish_backward.default", "hotkernels.mish_.default"],
                   **TOL_GRAD[torch.float64])


def test_module_is_drop_in(device):
    ours, theirs = hotkernels.nn.Mish(), torch.nn.Mish()
    assert repr(ours) == repr(theirs) and repr(hotkernels.nn.Mish(inplace=True)) == repr(torch.nn.Mish(inplace=True))
    assert ours.state_dict() == theirs.state_dict() == {}
    x = torch.randn(4, 10, device=device)
    assert_float32_mish(ours(x), x)
    assert ours(x).shape == theirs(x).shape


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
