"""max_pool2d / avg_pool2d: grid parity with torch (max: exact values and indices; avg: tight
tolerance), gradients, double backward, torch.library registration, torch.compile, layouts, modules,
bad input."""

import itertools
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hotkernels
import hotkernels.functional as HF
from tests.conftest import assert_same_nans, assert_within_reduction_bound, check_inductor, run_with_isa

ops = torch.ops.hotkernels

# Average pooling sums its window in another order than torch (rows first, then columns): a few ulp
# of the window sum apart. Half types sum in float32 like torch and round once: one unit apart at most.
# float32: against the float64 result of the same inputs, within the reduction bound
# (assert_avg_pool_float32).
AVG_TOL = {
    torch.float64: dict(rtol=1e-13, atol=1e-14),
    torch.float16: dict(rtol=1e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=8e-3, atol=8e-3),
}


def assert_avg_pool_float32(x: torch.Tensor, kw: dict, got: torch.Tensor, g: torch.Tensor | None = None,
                            got_grad: torch.Tensor | None = None, what: str = "") -> None:
    """Our float32 avg_pool2d of `x` (and, given the cotangent `g`, its input gradient) against
    F.avg_pool2d of the same inputs in float64, within tests/conftest.py's reduction bound. Forward:
    each output sums the r = kh·kw terms x/divisor of its window (the kernel sums, then divides once:
    the division's rounding is the bound's u·|exact|; padding adds zeros, exactly). Backward: each
    input gradient sums g/divisor over the windows that cover it, r = at most ceil(kh/sh)·ceil(kw/sw)
    (the largest count here, by the float64 backward of ones); each term rounds once more when
    divided, u·Σ|t| <= u·√r·‖t‖₂, within the bound's λ. ‖t‖₂² from the same float64 pooling of the
    squares."""
    xd = x.detach().double().requires_grad_()
    exact = F.avg_pool2d(xd, **kw)
    ones = torch.ones_like(xd)
    window = {**kw, "divisor_override": 1}
    count = F.avg_pool2d(ones, **window)  # terms of each window inside the input
    divisor = count / F.avg_pool2d(ones, **kw)  # count / (count / divisor); every window holds an input element
    sq = F.avg_pool2d(xd.detach() ** 2, **window) / divisor**2
    kh, kw_ = (kw["kernel_size"],) * 2 if isinstance(kw["kernel_size"], int) else kw["kernel_size"]
    assert_within_reduction_bound(got, exact.detach(), sq, kh * kw_, f"avg_pool2d {kw} {what}")
    if g is None:
        return
    (grad,) = torch.autograd.grad(exact, xd, g.double())
    (sq_grad,) = torch.autograd.grad(F.avg_pool2d(xd, **kw), xd, g.double() ** 2 / divisor)  # Σ (g/divisor)²
    covering = torch.autograd.grad(F.avg_pool2d(xd, **window), xd, torch.ones_like(exact))[0]
    r = max(int(covering.max().item()), 1)
    assert_within_reduction_bound(got_grad, grad, sq_grad, r, f"avg_pool2d backward {kw} {what}")

KERNELS = [1, 2, 3, (2, 3), (3, 1)]
STRIDES = [None, 1, 2, (1, 3), (3, 1)]  # (3, 1): rows no window covers, columns that overlap
# One odd plane size per dtype (the grid is what matters; sizes cover borders, tails and ceil_mode).
SIZES = {torch.float32: (12, 13), torch.float64: (7, 9)}


def layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def with_ties_and_nans(shape, dtype, device) -> torch.Tensor:
    """Values on a coarse grid (many ties), with a few NaNs and infinities."""
    x = (torch.randn(shape, dtype=torch.float64) * 4).round() / 4
    flat = x.view(-1)
    flat[torch.randperm(flat.numel())[:3]] = float("nan")
    flat[torch.randperm(flat.numel())[:3]] = float("-inf")
    flat[torch.randperm(flat.numel())[:2]] = float("inf")
    return x.to(dtype=dtype, device=device)


def torch_raises(fn, *args, **kwargs) -> bool:
    try:
        fn(*args, **kwargs)
    except RuntimeError:
        return True
    return False


def max_grid():
    for k, s, p, d, ceil in itertools.product(KERNELS, STRIDES, [0, 1], [1, 2], [False, True]):
        yield dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)


def avg_grid():
    modes = [(True, None), (False, None), (False, -3)]
    for k, s, p, ceil, (cip, div) in itertools.product(KERNELS, STRIDES, [0, 1], [False, True], modes):
        yield dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip, divisor_override=div)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool_grid_matches_torch_exactly(device, dtype, channels_last):
    checked = 0
    for kw in max_grid():
        x = layout(with_ties_and_nans((2, 3, *SIZES[dtype]), dtype, device), channels_last)
        if torch_raises(F.max_pool2d, x, **kw):
            assert torch_raises(HF.max_pool2d, x, **kw), kw
            continue
        want, want_idx = F.max_pool2d(x, **kw, return_indices=True)
        got, got_idx = HF.max_pool2d(x, **kw, return_indices=True)
        assert_same_nans(got, want, str(kw))
        assert torch.equal(got_idx, want_idx), kw
        assert got.stride() == want.stride() and got_idx.stride() == want_idx.stride(), kw
        assert_same_nans(HF.max_pool2d(x, **kw), want, f"values only {kw}")
        # backward: the scatter of grad_output by the indices, summing where windows overlap
        g = torch.randn_like(want)
        got_grad = ops.max_pool2d_backward(g, x, got_idx, *_max_args(x, kw))

        def scatter(values):  # float64 sums over the windows that picked each element
            out = torch.zeros(x.shape, dtype=torch.float64, device=device).flatten(-2)
            return out.scatter_add_(-1, want_idx.flatten(-2), values.double().flatten(-2)).view(x.shape)

        if dtype == torch.float32:  # a sum of at most r = (windows covering an element) terms: the reduction bound
            r = max(int(scatter(torch.ones_like(g)).max().item()), 1)
            assert_within_reduction_bound(got_grad, scatter(g), scatter(g * g), r, f"max_pool2d backward {kw}")
        else:
            torch.testing.assert_close(got_grad, scatter(g), rtol=1e-14, atol=1e-6)
        assert got_grad.stride() == x.stride()
        checked += 1
    assert checked > 100


def decode_offsets(offsets: torch.Tensor, x: torch.Tensor, kw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat h * W + w input index each window offset kh * kW + kw names, and whether it lies in the
    input (not for a window wholly in the padding)."""
    (kH, kW), (sH, sW), (pH, pW), (dH, dW), _ = _max_args(x, kw)
    H, W = x.shape[-2:]
    taps = offsets.long()
    ih = torch.arange(offsets.shape[-2], device=x.device).view(-1, 1) * sH - pH + taps.div(kW, rounding_mode="floor") * dH
    iw = torch.arange(offsets.shape[-1], device=x.device) * sW - pW + taps.remainder(kW) * dW
    return ih * W + iw, (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool_offsets_grid(device, dtype, channels_last):
    """The autograd path: max_pool2d_with_offsets gives torch's values, and offsets naming torch's
    indices; max_pool2d_offsets_backward is the sum, per input element, of the output gradients whose
    maximum it is (float64 sums of torch's indices: exact for float64, the reduction bound for
    float32); and F.max_pool2d's gradient through the functional API equals torch's."""
    checked = 0
    for kw in max_grid():
        x = layout(with_ties_and_nans((2, 3, *SIZES[dtype]), dtype, device), channels_last)
        if torch_raises(F.max_pool2d, x, **kw):
            continue
        want, want_idx = F.max_pool2d(x, **kw, return_indices=True)
        got, offsets = ops.max_pool2d_with_offsets(x, *_max_args(x, kw))
        assert_same_nans(got, want, str(kw))
        assert offsets.dtype == torch.uint8 and offsets.stride() == want_idx.stride(), kw
        named, inside = decode_offsets(offsets, x, kw)
        assert inside.all(), kw  # the grid's windows each hold an input element
        assert torch.equal(named, want_idx), kw
        g = torch.randn_like(want)
        got_grad = ops.max_pool2d_offsets_backward(g, x, offsets, *_max_args(x, kw))

        def scatter(values):  # float64 sums over the windows that picked each element
            out = torch.zeros(x.shape, dtype=torch.float64, device=device).flatten(-2)
            return out.scatter_add_(-1, want_idx.flatten(-2), values.double().flatten(-2)).view(x.shape)

        if dtype == torch.float32:
            r = max(int(scatter(torch.ones_like(g)).max().item()), 1)
            assert_within_reduction_bound(got_grad, scatter(g), scatter(g * g), r, f"offsets backward {kw}")
        else:
            torch.testing.assert_close(got_grad, scatter(g), rtol=1e-14, atol=1e-6)
        assert got_grad.stride() == x.stride()
        # Through the functional API, with small integer gradients (sums exact in any order).
        g = torch.randint(-8, 8, want.shape, device=device).to(dtype)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        F.max_pool2d(xa, **kw).backward(g)
        HF.max_pool2d(xb, **kw).backward(g)
        assert torch.equal(xb.grad, xa.grad), kw
        checked += 1
    assert checked > 100


class _OpLog(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the names of the ops that run under it."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kernel_size, saved", [(3, "offsets"), ((16, 16), "offsets"), ((17, 16), "indices")])
def test_autograd_saves_offsets_up_to_256_taps(device, kernel_size, saved):
    """The functional API saves uint8 offsets for windows of at most MAX_OFFSET_TAPS = 256 taps (the
    largest offset, 255, must work), torch's int64 indices above; both give torch's gradient."""
    assert hotkernels.ops.pool.MAX_OFFSET_TAPS == 256
    x = with_ties_and_nans((2, 3, 21, 20), torch.float64, device)
    x = torch.where(x.isnan(), 0, x)  # NaN gradients aside: positions are what is checked
    x[0, 0].view(-1)[torch.arange(21 * 20, device=device)] = torch.arange(21 * 20, device=device, dtype=x.dtype)
    kw = dict(kernel_size=kernel_size, stride=2, padding=0)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    with _OpLog() as log:
        y = HF.max_pool2d(xb, **kw)
        g = torch.randint(-8, 8, y.shape, device=device).double()
        y.backward(g)
    F.max_pool2d(xa, **kw).backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=0, atol=0)
    if saved == "offsets":
        assert {"hotkernels.max_pool2d_with_offsets", "hotkernels.max_pool2d_offsets_backward"} <= log.names
        assert "hotkernels.max_pool2d_with_indices" not in log.names
        # plane [0, 0] holds 0, 1, 2, ... row by row: the last window (rows and columns 4 to 19) peaks
        # at its last tap, (19, 19), offset 15 * 16 + 15 = 255
        if kernel_size == (16, 16):
            _, offsets = ops.max_pool2d_with_offsets(x, [16, 16], [2, 2], [0, 0], [1, 1], False)
            assert offsets[0, 0, 2, 2].item() == 255
    else:
        assert {"hotkernels.max_pool2d_with_indices", "hotkernels.max_pool2d_backward"} <= log.names
        assert "hotkernels.max_pool2d_with_offsets" not in log.names
        with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_with_offsets: expected 'kernel_size' to have at "
                                               r"most 256 taps"):
            ops.max_pool2d_with_offsets(x, [17, 16], [2, 2], [0, 0], [1, 1], False)
        with torch._subclasses.FakeTensorMode() as fake:  # the fake kernel refuses it too
            with pytest.raises(RuntimeError, match=r"max_pool2d_with_offsets: expected 'kernel_size' to have at most"):
                ops.max_pool2d_with_offsets(fake.from_tensor(x), [17, 16], [2, 2], [0, 0], [1, 1], False)
        with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_offsets_backward: expected 'kernel_size' to "
                                               r"have at most 256"):
            ops.max_pool2d_offsets_backward(g, x, torch.zeros_like(g, dtype=torch.uint8), [17, 16], [2, 2], [0, 0],
                                            [1, 1], False)


@pytest.mark.parametrize("return_indices", [False, True], ids=["offsets", "return_indices"])
def test_backward_gets_no_zeros_for_the_argmax(device, return_indices):
    """The argmax output (autograd's uint8 offsets, or torch's int64 indices with return_indices)
    takes no gradient, and autograd hands the backward None for it (ops._args.non_differentiable),
    not a tensor of zeros of its size, allocated and filled on every backward for nothing."""
    x = torch.randn(2, 3, 9, 9, device=device, requires_grad=True)
    with _OpLog() as log:
        out = HF.max_pool2d(x, 3, 2, 1, return_indices=return_indices)
        y = out[0] if return_indices else out
        y.backward(torch.ones_like(y))
    forward, backward = (("hotkernels.max_pool2d_with_indices", "hotkernels.max_pool2d_backward") if return_indices
                         else ("hotkernels.max_pool2d_with_offsets", "hotkernels.max_pool2d_offsets_backward"))
    assert {forward, backward} <= log.names  # the backward ran under the log
    assert not {"aten.zeros_like", "aten.zeros", "aten.zero_", "aten.fill_"} & log.names, sorted(log.names)
    torch.testing.assert_close(x.grad, torch.autograd.grad(F.max_pool2d(x, 3, 2, 1), x, torch.ones_like(y))[0])


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_offsets_backward_passes_nothing_from_windows_in_the_padding(device, channels_last):
    """A dilated window can lie wholly in the padding (rows −1 and 2 of a 2-row input): it holds no
    input element, so its gradient goes nowhere, in backward and in double backward."""
    x = layout(distinct((1, 2, 2, 5), device), channels_last)
    args = ([2, 1], [1, 1], [1, 0], [3, 1], False)
    out, offsets = ops.max_pool2d_with_offsets(x, *args)
    assert out.shape[-2:] == (1, 5) and torch.isinf(out).all()
    g = torch.randn_like(out).requires_grad_()
    grad = ops.max_pool2d_offsets_backward(g, x, offsets, *args)
    assert torch.equal(grad, torch.zeros_like(x))
    assert torch.autograd.gradcheck(lambda t: ops.max_pool2d_offsets_backward(t, x, offsets, *args), (g,))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_avg_pool_grid_matches_torch(device, dtype, channels_last):
    checked = 0
    for kw in avg_grid():
        x = layout(torch.randn(2, 3, *SIZES[dtype], dtype=dtype, device=device), channels_last)
        if torch_raises(F.avg_pool2d, x, **kw):
            assert torch_raises(HF.avg_pool2d, x, **kw), kw
            continue
        xr = x.clone().requires_grad_()
        want = F.avg_pool2d(xr, **kw)
        got = HF.avg_pool2d(x, **kw)
        assert got.stride() == want.stride()
        g = torch.randn_like(want)
        got_grad = ops.avg_pool2d_backward(g, x, *_avg_args(x, kw))
        assert got_grad.stride() == x.stride()
        if dtype == torch.float32:
            assert_avg_pool_float32(x, kw, got, g, got_grad)
        else:
            torch.testing.assert_close(got, want, **AVG_TOL[dtype], msg=lambda m: f"{kw}: {m}")
            want.backward(g)
            torch.testing.assert_close(got_grad, xr.grad, **AVG_TOL[dtype], msg=lambda m: f"{kw}: {m}")
        checked += 1
    assert checked > 100


def _max_args(x, kw):
    g = hotkernels.ops.pool.pool2d_geometry("max_pool2d", x.shape, kw["kernel_size"], kw["stride"], kw["padding"],
                                            kw["dilation"], kw["ceil_mode"])
    return g.kernel_size, g.stride, g.padding, g.dilation, kw["ceil_mode"]


def _avg_args(x, kw):
    g = hotkernels.ops.pool.pool2d_geometry("avg_pool2d", x.shape, kw["kernel_size"], kw["stride"], kw["padding"], 1,
                                            kw["ceil_mode"])
    return g.kernel_size, g.stride, g.padding, kw["ceil_mode"], kw["count_include_pad"], kw["divisor_override"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(device, dtype):
    for channels_last in (False, True):
        x = layout(with_ties_and_nans((2, 5, 11, 10), dtype, device), channels_last)
        want, want_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        got, got_idx = HF.max_pool2d(x, 3, 2, 1, return_indices=True)
        assert_same_nans(got, want, f"{dtype} channels_last={channels_last}")
        assert torch.equal(got_idx, want_idx)
        # the autograd path (offsets), with gradients small integers: exact in the half type too
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randint(-8, 8, want.shape, device=device).to(dtype)
        F.max_pool2d(xa, 3, 2, 1).backward(g)
        HF.max_pool2d(xb, 3, 2, 1).backward(g)
        assert xb.grad.dtype == dtype and xb.grad.stride() == xa.grad.stride()
        assert torch.equal(xb.grad, xa.grad)
        x = x.nan_to_num(0, 0, 0)
        want = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        got = HF.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        assert got.dtype == dtype and got.stride() == want.stride()
        torch.testing.assert_close(got, want, **AVG_TOL[dtype])
        xr = x.clone().requires_grad_()
        F.avg_pool2d(xr, 3, 2, 1).backward(torch.ones_like(want))
        torch.testing.assert_close(ops.avg_pool2d_backward(torch.ones_like(want), x, [3, 3], [2, 2], [1, 1], False,
                                                           True, None), xr.grad, **AVG_TOL[dtype])


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_max_backward_scatters_any_index_in_the_plane(device, channels_last):
    """max_pool2d_backward is a scatter by indices: indices that no forward pass would produce (outside
    their window, repeated) still land where they point, as with torch's CPU kernel."""
    if device != "cpu":
        pytest.skip("the CUDA backward gathers over each input's covering windows: it expects forward-pass indices")
    x = layout(torch.randn(2, 5, 8, 9, device=device), channels_last)
    args = ([3, 3], [2, 2], [1, 1], [1, 1], False)
    out, _ = ops.max_pool2d_with_indices(x, *args)
    indices = layout(torch.randint(0, 8 * 9, out.shape, device=device), channels_last)
    g = torch.randn_like(out)

    def scatter(values):  # float64 sums of the gradients sent to each element
        zeros = torch.zeros(2, 5, 8 * 9, dtype=torch.float64, device=device)
        return zeros.scatter_add_(-1, indices.flatten(-2), values.double().flatten(-2)).view(x.shape)

    r = max(int(scatter(torch.ones_like(g)).max().item()), 1)
    assert_within_reduction_bound(ops.max_pool2d_backward(g, x, indices, *args), scatter(g), scatter(g * g), r,
                                  "max_pool2d backward, any indices")


def test_nan_and_infinity_semantics(device):
    x = torch.tensor([[[[1.0, float("nan"), 3.0, float("nan")],
                        [float("-inf"), float("-inf"), 2.0, 2.0],
                        [5.0, 5.0, float("nan"), 0.0],
                        [float("-inf"), float("-inf"), float("-inf"), float("-inf")]]]], device=device)
    for channels_last in (False, True):
        xx = layout(x, channels_last)
        for kw in [dict(kernel_size=2), dict(kernel_size=2, stride=1), dict(kernel_size=3, stride=1, padding=1)]:
            want, want_idx = F.max_pool2d(xx, **kw, return_indices=True)
            got, got_idx = HF.max_pool2d(xx, **kw, return_indices=True)
            assert_same_nans(got, want, str(kw))
            assert torch.equal(got_idx, want_idx), (kw, got_idx, want_idx)


def test_three_dimensional_input(device):
    x = torch.randn(4, 9, 8, device=device)
    torch.testing.assert_close(HF.max_pool2d(x, 3, 2, 1, return_indices=True), F.max_pool2d(x, 3, 2, 1, return_indices=True))
    kw = dict(kernel_size=(2, 3), stride=1, padding=(1, 1))
    assert_avg_pool_float32(x, kw, HF.avg_pool2d(x, **kw))


def test_non_contiguous_and_empty_batch(device):
    x = torch.randn(3, 2, 20, 18, device=device)[:, :, ::2, 1::2]
    torch.testing.assert_close(HF.max_pool2d(x, 2, return_indices=True), F.max_pool2d(x, 2, return_indices=True))
    kw = dict(kernel_size=3, stride=2, padding=1)
    assert_avg_pool_float32(x, kw, HF.avg_pool2d(x, **kw))
    e = torch.randn(0, 3, 8, 8, device=device)
    assert HF.max_pool2d(e, 2).shape == F.max_pool2d(e, 2).shape
    assert HF.avg_pool2d(e, 2).shape == F.avg_pool2d(e, 2).shape


def test_indices_work_with_max_unpool2d(device):
    x = torch.randn(2, 3, 10, 11, device=device)
    out, idx = HF.max_pool2d(x, 2, return_indices=True)
    torch.testing.assert_close(F.max_unpool2d(out, idx, 2, output_size=x.shape[-2:]),
                               F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2, output_size=x.shape[-2:]))


@pytest.mark.parametrize("size", [40, 300], ids=["plane in cache", "larger plane"])
@pytest.mark.parametrize("kernel_size, stride", [(3, 2), (2, 2)], ids=["overlapping", "disjoint"])
def test_max_pool_offsets_backward_paths(device, size, kernel_size, stride):
    """NCHW planes of overlapping windows whose padded plane fits kPoolScatterBytes (256 KiB of float64)
    scatter into it on the CPU, larger planes and disjoint windows gather: each gives torch's gradient,
    and an offset no forward pass writes (>= kH·kW) passes nothing."""
    x = torch.randn(2, 3, size, size, dtype=torch.float64, device=device)
    args = ([kernel_size] * 2, [stride] * 2, [1, 1] if kernel_size == 3 else [0, 0], [1, 1], False)
    _, offsets = ops.max_pool2d_with_offsets(x, *args)
    g = torch.randn(offsets.shape, dtype=x.dtype, device=device)
    offsets[:, :, 1, 1] = kernel_size * kernel_size  # names no tap
    got = ops.max_pool2d_offsets_backward(g, x, offsets, *args)
    passed = g.clone()
    passed[:, :, 1, 1] = 0
    xa = x.clone().requires_grad_()
    F.max_pool2d(xa, kernel_size, stride, args[2][0]).backward(passed)
    torch.testing.assert_close(got, xa.grad, rtol=1e-14, atol=1e-14)


def _last_level_cache_bytes() -> int | None:
    """The CPU's L3 size from Linux's sysfs, or None where it says nothing."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text[:-1]) << {"K": 10, "M": 20}[text[-1]] if text[-1] in "KM" else int(text)


def test_channels_last_input_from_memory_matches_torch():
    """A channels_last input larger than half the last-level cache takes the row kernels' path that
    fetches each next output row's input ahead (csrc/cpu/pool.cpp, streams_from_memory): max pooling
    (values, indices and offsets) and average pooling there give torch's results."""
    cache = _last_level_cache_bytes()
    if cache is None or cache > 64 << 20:
        pytest.skip("needs a CPU that reports a last-level cache of at most 64 MiB")
    n = 2 * cache // (64 * 60 * 60 * 4) + 1  # float32 (n, 64, 60, 60) above twice the cache: a margin
    x = with_ties_and_nans((n, 64, 60, 60), torch.float32, "cpu").contiguous(memory_format=torch.channels_last)
    want, want_idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
    got, got_idx = HF.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert_same_nans(got, want, "values and indices")
    assert torch.equal(got_idx, want_idx)
    assert_same_nans(HF.max_pool2d(x, 3, 2, 1), want, "values only")
    values, offsets = ops.max_pool2d_with_offsets(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
    assert_same_nans(values, want, "with offsets")
    flat, inside = decode_offsets(offsets, x, dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False))
    assert inside.all() and torch.equal(flat, want_idx)
    finite = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    torch.testing.assert_close(HF.avg_pool2d(finite, 2), F.avg_pool2d(finite, 2), rtol=1e-6, atol=1e-6)


def test_every_cpu_instruction_set(cpu_isa):
    """Each SIMD path this CPU can run (vector widths differ, so do the tails) matches torch."""
    code = (
        "import torch, hotkernels, itertools, torch.nn.functional as F\n"
        "from hotkernels.functional import max_pool2d, avg_pool2d\n"
        "from tests.test_pool import assert_avg_pool_float32, layout, with_ties_and_nans\n"
        "from tests.conftest import assert_same_nans\n"
        "torch.manual_seed(0)\n"
        "for W, s, cl in itertools.product([37], [1, 2, 3], [False, True]):\n"
        "    x = torch.randn(2, 19, 9, W)\n"
        "    x = x.contiguous(memory_format=torch.channels_last) if cl else x\n"
        "    for dt in (torch.float32, torch.float64):\n"
        "        xd = x.to(dt)\n"
        "        assert all(torch.equal(a, b) for a, b in zip(max_pool2d(xd, 3, s, 1, return_indices=True),\n"
        "                                                     F.max_pool2d(xd, 3, s, 1, return_indices=True)))\n"
        "        xa, xb = xd.clone().requires_grad_(), xd.clone().requires_grad_()\n"
        "        g = torch.randint(-8, 8, F.max_pool2d(xd, 3, s, 1).shape).to(dt)  # exact sums in any order\n"
        "        F.max_pool2d(xa, 3, s, 1).backward(g)\n"
        "        max_pool2d(xb, 3, s, 1).backward(g)  # offsets and their backward (scatter or gather)\n"
        "        assert torch.equal(xa.grad, xb.grad)\n"
        "        xn = layout(with_ties_and_nans((2, 19, 9, W), dt, 'cpu'), cl)  # values only: their own kernel\n"
        "        assert_same_nans(max_pool2d(xn, 3, s, 1), F.max_pool2d(xn, 3, s, 1), f'values only W={W} s={s}')\n"
        "        kw = dict(kernel_size=3, stride=s, padding=1)\n"
        "        gy = torch.randn_like(F.avg_pool2d(xd, **kw))\n"
        "        gx = torch.ops.hotkernels.avg_pool2d_backward(gy, xd, [3, 3], [s, s], [1, 1], False, True, None)\n"
        "        if dt == torch.float32:\n"
        "            assert_avg_pool_float32(xd, kw, avg_pool2d(xd, **kw), gy, gx)\n"
        "        else:\n"
        "            torch.testing.assert_close(avg_pool2d(xd, **kw), F.avg_pool2d(xd, **kw), rtol=1e-13, atol=1e-14)\n"
        "            xa = xd.clone().requires_grad_()\n"
        "            F.avg_pool2d(xa, **kw).backward(gy)\n"
        "            torch.testing.assert_close(gx, xa.grad, rtol=1e-13, atol=1e-14)\n"
        "# windows reaching past both ends of a row (into the row buffer's padding): dilated, ceil\n"
        "# mode, widths around whole vectors\n"
        "for W, s, dt in itertools.product([15, 32, 33], [1, 2, 3], (torch.float32, torch.float64)):\n"
        "    x = torch.randn(2, 3, 7, W, dtype=dt)\n"
        "    kw = dict(kernel_size=(3, 5), stride=s, padding=(1, 2), dilation=(1, 2), ceil_mode=True,\n"
        "              return_indices=True)\n"
        "    assert all(torch.equal(a, b) for a, b in zip(max_pool2d(x, **kw), F.max_pool2d(x, **kw)))\n"
        "    kw.pop('return_indices')\n"
        "    assert torch.equal(max_pool2d(x, **kw), F.max_pool2d(x, **kw))\n"
        "    kw = dict(kernel_size=5, stride=s, padding=2, ceil_mode=True, count_include_pad=False)\n"
        "    torch.testing.assert_close(avg_pool2d(x, **kw), F.avg_pool2d(x, **kw))\n"
    )
    run_with_isa(cpu_isa, code)


def distinct(shape, device) -> torch.Tensor:
    """float64 values with gaps (no ties), so max pooling is differentiable for gradcheck."""
    n = torch.Size(shape).numel()
    return (torch.randperm(n, dtype=torch.float64) / n + 0.01 * torch.rand(n, dtype=torch.float64)).view(shape).to(device)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_gradcheck_and_gradgradcheck(device, channels_last):
    x = layout(distinct((1, 2, 6, 7), device), channels_last).requires_grad_()
    x3 = distinct((2, 6, 7), device).requires_grad_()
    for inp in (x, x3):
        for fn in (lambda t: HF.max_pool2d(t, 3, 2, 1), lambda t: HF.max_pool2d(t, (2, 3), 1, (1, 0), (2, 1), True),
                   lambda t: HF.max_pool2d(t, 3, 2, 1, return_indices=True)[0],
                   lambda t: HF.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                   lambda t: HF.avg_pool2d(t, 2, 1, divisor_override=3)):
            assert torch.autograd.gradcheck(fn, (inp,))
            assert torch.autograd.gradgradcheck(fn, (inp,))


def test_backward_ops_gradcheck(device):
    x = distinct((2, 3, 7, 8), device)
    max_args = ([3, 3], [2, 2], [1, 1], [1, 1], False)
    out, idx = ops.max_pool2d_with_indices(x, *max_args)
    g = torch.randn_like(out).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ops.max_pool2d_backward(t, x, idx, *max_args), (g,))
    args = ([3, 3], [2, 2], [1, 1], True, False, None)
    g = torch.randn_like(ops.avg_pool2d(x, *args)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: ops.avg_pool2d_backward(t, x, *args), (g,))
    # the values-only op recomputes its indices in backward
    xr = x.clone().requires_grad_()
    ops.max_pool2d(xr, [3, 3], [2, 2], [1, 1], [1, 1], False).sum().backward()
    xt = x.clone().requires_grad_()
    F.max_pool2d(xt, 3, 2, 1).sum().backward()
    torch.testing.assert_close(xr.grad, xt.grad)


def test_opcheck(device):
    samples = [
        torch.randn(2, 5, 9, 8, device=device).to(memory_format=torch.channels_last).requires_grad_(),
        torch.randn(3, 9, 8, device=device, dtype=torch.float64),
    ]
    max_args = ([3, 3], [2, 2], [1, 1], [1, 1], True)
    avg_args = ([3, 2], [2, 1], [1, 0], True, False, None)
    for x in samples:
        torch.library.opcheck(ops.max_pool2d.default, (x,) + max_args)
        torch.library.opcheck(ops.max_pool2d_with_indices.default, (x,) + max_args)
        out, idx = ops.max_pool2d_with_indices(x.detach(), *max_args)
        torch.library.opcheck(ops.max_pool2d_backward.default, (torch.randn_like(out), x.detach(), idx) + max_args)
        torch.library.opcheck(ops.max_pool2d_with_offsets.default, (x,) + max_args)
        out, offsets = ops.max_pool2d_with_offsets(x.detach(), *max_args)
        torch.library.opcheck(ops.max_pool2d_offsets_backward.default,
                              (torch.randn_like(out).requires_grad_(), x.detach(), offsets) + max_args)
        torch.library.opcheck(ops.avg_pool2d.default, (x,) + avg_args)
        out = ops.avg_pool2d(x.detach(), *avg_args)
        torch.library.opcheck(ops.avg_pool2d_backward.default, (torch.randn_like(out), x.detach()) + avg_args)


def test_torch_compile_inductor_matches_torch(device):
    """Inductor (torch.compile's default backend) around our pooling ops against torch's eager ones:
    values, indices (as a float output, so a wrong index shows) and gradients, through the indices
    (return_indices=True) and the offsets (autograd's) paths."""
    def f(x, functional):
        y, idx = functional.max_pool2d(x, 3, 2, 1, return_indices=True)
        z = functional.max_pool2d(x, (2, 3), 1, (1, 0), (2, 1))
        return y, functional.avg_pool2d(x, 2, ceil_mode=True).square(), idx.to(x.dtype), z

    x = torch.randn(2, 4, 11, 12, dtype=torch.float64, device=device, requires_grad=True)
    check_inductor(lambda x: f(x, HF), lambda x: f(x, F), [x],
                   ["hotkernels.max_pool2d_with_indices.default", "hotkernels.max_pool2d_backward.default",
                    "hotkernels.max_pool2d_with_offsets.default", "hotkernels.max_pool2d_offsets_backward.default",
                    "hotkernels.avg_pool2d.default", "hotkernels.avg_pool2d_backward.default"], **AVG_TOL[torch.float64])


def test_modules_are_drop_in(device):
    pairs = [
        (hotkernels.nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
        (hotkernels.nn.MaxPool2d((2, 3), dilation=2, ceil_mode=True, return_indices=True),
         torch.nn.MaxPool2d((2, 3), dilation=2, ceil_mode=True, return_indices=True)),
        (hotkernels.nn.AvgPool2d(3, 2, 1, count_include_pad=False), torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
        (hotkernels.nn.AvgPool2d(2, divisor_override=3, ceil_mode=True),
         torch.nn.AvgPool2d(2, divisor_override=3, ceil_mode=True)),
    ]
    x = torch.randn(2, 3, 11, 10, device=device).to(memory_format=torch.channels_last)
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs) and ours.state_dict() == theirs.state_dict() == {}
        if isinstance(theirs, torch.nn.AvgPool2d):
            kw = {k: getattr(theirs, k) for k in ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                                  "divisor_override")}
            assert_avg_pool_float32(x, kw, ours(x))
        else:  # max pooling: the same values and indices
            torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


# Bad arguments, each with the word that names what is wrong: torch's message for it (in torch
# 2.14's wording, which ours follows behind the op's name) names it, and so must ours, whatever torch
# version runs. Older torch words some differently (2.11: avg_pool2d's kernel_size=0 and stride=-1
# give "integer out of range"), so only the exception type is compared with the running torch.
BAD_ARGS = [
    (dict(kernel_size=2, padding=2), "pad"),
    (dict(kernel_size=3, stride=0), "stride"),
    (dict(kernel_size=7), "output size"),
    (dict(kernel_size=0), "stride"),  # stride defaults to kernel_size
    (dict(kernel_size=3, stride=-1), "stride"),
    (dict(kernel_size=(1, 2, 3)), "kernel_size"),
    (dict(kernel_size=2, stride=(1, 2, 3)), "stride"),
    (dict(kernel_size=2, padding=(1, 1, 1)), "padding"),
    (dict(kernel_size=3, padding=-1), "pad"),
    (dict(kernel_size=3, dilation=2, padding=2), "pad"),
    (dict(kernel_size=3, dilation=0), "dilation"),
    (dict(kernel_size=3, dilation=(1, 1, 1)), "dilation"),
]


@pytest.mark.parametrize("kw, what", BAD_ARGS, ids=[str(kw) for kw, _ in BAD_ARGS])
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_bad_arguments_raise_torch_errors(device, name, kw, what):
    if name == "avg_pool2d" and "dilation" in kw:
        pytest.skip("avg_pool2d has no dilation")
    x = torch.randn(1, 2, 5, 5, device=device)
    with pytest.raises(RuntimeError):
        getattr(F, name)(x, **kw)
    with pytest.raises(RuntimeError, match=rf"{name}: .*(?i:{re.escape(what)})"):
        getattr(HF, name)(x, **kw)


def test_bad_input_raises(device):
    for shape in [(5, 5), (2, 3, 4, 5, 6)]:
        with pytest.raises(RuntimeError, match="3D or 4D"):
            HF.max_pool2d(torch.randn(shape, device=device), 2)
        with pytest.raises(RuntimeError, match="3D or 4D"):
            ops.avg_pool2d(torch.randn(shape, device=device), [2, 2], [2, 2], [0, 0], False, True, None)
    with pytest.raises(RuntimeError, match=re.escape("Expected 3D or 4D (batch mode) tensor with optional 0 dim")):
        HF.avg_pool2d(torch.randn(2, 0, 4, 4, device=device), 2)
    with pytest.raises(RuntimeError, match="divisor must be not zero"):
        HF.avg_pool2d(torch.randn(1, 1, 4, 4, device=device), 2, divisor_override=0)
    with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d: expected 'input' to be a float32"):
        HF.max_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.int64, device=device), 2)


def test_size_arguments_are_integers(device):
    # Any integer (numpy's, a 0-d tensor) as torch takes it; a float or a bool raises naming the op
    # and the argument (a float was cut to an int, a bool taken as 0 or 1).
    x = torch.randn(1, 2, 9, 9, device=device)
    for k in [np.int64(2), torch.tensor(3), (np.int32(2), 3)]:
        torch.testing.assert_close(HF.max_pool2d(x, k), F.max_pool2d(x, k))
        torch.testing.assert_close(HF.avg_pool2d(x, k, stride=np.int64(1)), F.avg_pool2d(x, k, stride=1))
    torch.testing.assert_close(HF.max_pool2d(x, np.array([2, 3])), F.max_pool2d(x, [2, 3]))
    for bad in [2.0, (2.9, 2.9), True, (2, False), torch.tensor(True)]:
        with pytest.raises(TypeError, match=r"hotkernels.max_pool2d: kernel_size must be ints, but got"):
            HF.max_pool2d(x, bad)
        with pytest.raises(TypeError, match=r"hotkernels.conv2d: stride must be ints, but got"):
            hotkernels.ops.conv2d.conv2d(x, torch.randn(3, 2, 3, 3, device=device), stride=bad)


def test_ops_check_their_arguments(device):
    """Direct calls of the ops (no Python wrapper in between) fail with the same messages."""
    x = torch.randn(1, 2, 5, 5, device=device)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        ops.max_pool2d(x, [2, 2], [2, 2], [2, 2], [1, 1], False)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        ops.avg_pool2d(x, [7, 7], [7, 7], [0, 0], False, True, None)
    with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_with_indices: expected 'kernel_size' to have 2"):
        ops.max_pool2d_with_indices(x, [2], [2, 2], [0, 0], [1, 1], False)
    max_args = ([2, 2], [2, 2], [0, 0], [1, 1], False)
    out, idx = ops.max_pool2d_with_indices(x, *max_args)
    with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_backward: expected 'indices' to be int64"):
        ops.max_pool2d_backward(out, x, idx.int(), *max_args)
    with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_backward: expected 'grad_output' to have the output"):
        ops.max_pool2d_backward(out, x, idx, [1, 1], [1, 1], [0, 0], [1, 1], False)
    if device == "cpu":  # CUDA gathers over the covering windows, where an index out of the window never matches
        with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_backward: 'indices' holds an index outside"):
            ops.max_pool2d_backward(out, x, torch.full_like(idx, 99), *max_args)
    out, offsets = ops.max_pool2d_with_offsets(x, *max_args)
    with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_offsets_backward: expected 'offsets' to be uint8"):
        ops.max_pool2d_offsets_backward(out, x, idx, *max_args)
    with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_offsets_backward: expected 'offsets' to have"):
        ops.max_pool2d_offsets_backward(out, x, offsets[..., :1], *max_args)
    with pytest.raises(RuntimeError, match=r"hotkernels.max_pool2d_offsets_backward: expected 'grad_output' to have "
                                           r"the output"):
        ops.max_pool2d_offsets_backward(out, x, offsets, [1, 1], [1, 1], [0, 0], [1, 1], False)
    with pytest.raises(RuntimeError, match=r"hotkernels.avg_pool2d_backward: expected 'grad_output' to have the output size"):
        ops.avg_pool2d_backward(out[..., :1], x, [2, 2], [2, 2], [0, 0], False, True, None)
    with pytest.raises(RuntimeError, match=r"hotkernels.avg_pool2d_backward: expected 'grad_output' to have dtype"):
        ops.avg_pool2d_backward(out.double(), x, [2, 2], [2, 2], [0, 0], False, True, None)
