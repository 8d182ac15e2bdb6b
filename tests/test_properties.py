"""Property-based parity with torch (hypothesis): random valid shapes, strides, memory formats and
arguments, outputs and gradients compared in float64. Hypothesis profiles: tests/conftest.py (bounded
for CI; HOTKERNELS_HYPOTHESIS=long for a longer search)."""

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import hotkernels.functional as HF


@st.composite
def strided_tensors(draw, min_dims: int = 0, max_dims: int = 4, max_side: int = 7) -> torch.Tensor:
    """float64 tensors of random shape, then a random view of them: a permutation of the dims and
    a step along each (so contiguous, transposed, channels_last-like and gapped layouts all occur)."""
    shape = draw(st.lists(st.integers(0, max_side), min_size=min_dims, max_size=max_dims))
    steps = [draw(st.integers(1, 2)) for _ in shape]
    base = torch.randn([s * k for s, k in zip(shape, steps)], dtype=torch.float64) * draw(st.sampled_from([1.0, 5.0, 30.0]))
    view = base[tuple(slice(None, None, k) for k in steps)]
    perm = draw(st.permutations(range(len(shape))))
    return view.permute(*perm) if shape else view


def assert_same_function(ours, theirs, x: torch.Tensor) -> None:
    a = x.detach().clone().requires_grad_()
    b = x.detach().clone().requires_grad_()
    ya, yb = ours(a), theirs(b)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-14)
    if ya.numel():
        g = torch.randn_like(yb)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)


@given(strided_tensors())
def test_mish(x):
    assert_same_function(HF.mish, F.mish, x)


@st.composite
def pool_args(draw, with_dilation: bool):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if with_dilation else (1, 1)
    # an input large enough for at least one window: (k - 1) * d + 1 <= size + 2 * padding
    hw = [draw(st.integers(max(1, (k[i] - 1) * d[i] + 1 - 2 * p[i]), 13)) for i in range(2)]
    shape = [draw(st.integers(1, 3)), draw(st.integers(1, 4)), *hw]
    x = torch.randn(shape, dtype=torch.float64)
    if draw(st.booleans()):
        x = x.to(memory_format=torch.channels_last)
    if draw(st.booleans()):
        x = x[0]  # unbatched (C, H, W)
    return x, dict(kernel_size=k, stride=s, padding=p, ceil_mode=draw(st.booleans()), **({"dilation": d} if with_dilation else {}))


@given(pool_args(with_dilation=True))
def test_max_pool2d(args):
    x, kw = args
    got, got_idx = HF.max_pool2d(x, return_indices=True, **kw)
    want, want_idx = F.max_pool2d(x, return_indices=True, **kw)
    assert torch.equal(got, want) and torch.equal(got_idx, want_idx)
    if not got.isinf().any():
        assert_same_function(lambda t: HF.max_pool2d(t, **kw), lambda t: F.max_pool2d(t, **kw), x)
        return
    # Some window lies wholly in the padding (finite data, so -inf marks it). torch's own backward
    # corrupts memory there (its index for such a window may point past the plane), so compare with
    # the definition instead: each other window passes its gradient to the element it picked.
    xr = x.detach().clone().requires_grad_()
    g = torch.randn_like(got)
    HF.max_pool2d(xr, **kw).backward(g)
    planes = x.numel() // (x.shape[-2] * x.shape[-1])
    idx, grad, keep = got_idx.reshape(planes, -1), g.reshape(planes, -1), ~got.isinf().reshape(planes, -1)
    rows = torch.arange(planes).unsqueeze(1).expand_as(idx)
    expected = torch.zeros(planes, x.shape[-2] * x.shape[-1], dtype=x.dtype)
    expected.index_put_((rows[keep], idx[keep]), grad[keep], accumulate=True)
    torch.testing.assert_close(xr.grad, expected.reshape(x.shape), rtol=1e-12, atol=1e-14)


@given(pool_args(with_dilation=False), st.booleans(), st.sampled_from([None, 1, 3]))
def test_avg_pool2d(args, count_include_pad, divisor_override):
    x, kw = args
    kw.update(count_include_pad=count_include_pad, divisor_override=divisor_override)
    assert_same_function(lambda t: HF.avg_pool2d(t, **kw), lambda t: F.avg_pool2d(t, **kw), x)


@given(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9), st.booleans(), st.booleans())
def test_lstm_cell(batch, input_size, hidden, bias, unbatched):
    cell = torch.nn.LSTMCell(input_size, hidden, bias=bias).double()
    x = torch.randn(batch, input_size, dtype=torch.float64)
    hx = (torch.randn(batch, hidden, dtype=torch.float64), torch.randn(batch, hidden, dtype=torch.float64))
    if unbatched:
        x, hx = x[0], (hx[0][0], hx[1][0])
    params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]

    def ours(t):
        return torch.cat(HF.lstm_cell(t, hx, *params), -1)

    assert_same_function(ours, lambda t: torch.cat(cell(t, hx), -1), x)


@st.composite
def conv_args(draw):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.just("valid"), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.just("same") if s == (1, 1) else st.just("valid")))
    pad = (0, 0) if isinstance(padding, str) else padding
    extent = [(k[i] - 1) * d[i] + 1 for i in range(2)]
    hw = [draw(st.integers(max(1, extent[i] - (2 * pad[i] if padding != "same" else extent[i])), 11)) for i in range(2)]
    x = torch.randn(draw(st.integers(1, 3)), cin, *hw, dtype=torch.float64)
    if draw(st.booleans()):
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(cout, cin // groups, *k, dtype=torch.float64)
    b = torch.randn(cout, dtype=torch.float64) if draw(st.booleans()) else None
    return x, w, b, dict(stride=s, padding=padding, dilation=d, groups=groups)


@given(conv_args())
def test_conv2d(args):
    x, w, b, kw = args
    torch.testing.assert_close(HF.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    assert_same_function(lambda t: HF.conv2d(t, w, b, **kw), lambda t: F.conv2d(t, w, b, **kw), x)
    assert_same_function(lambda t: HF.conv2d(x, t, b, **kw), lambda t: F.conv2d(x, t, b, **kw), w)
