"""Property-based parity with torch (hypothesis): random valid shapes, strides, memory formats and
arguments, outputs and gradients compared in float64 (small sizes); then float32 over sizes on either
side of each CPU kernel threshold (threads, packed conv2d paths, spans) with tolerances scaled by the
reduction lengths, each threshold also as a fixed example. Hypothesis profiles: tests/conftest.py
(bounded for CI; HOTKERNELS_HYPOTHESIS=long for a longer search)."""

import torch
import torch.nn.functional as F
from hypothesis import event, example, given
from hypothesis import strategies as st

import hotkernels.functional as HF
import hotkernels.nn as hnn
from tests.conftest import assert_float32_like_torch, num_threads


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


@given(strided_tensors(min_dims=1), st.integers(1, 9), st.booleans(), st.booleans())
def test_linear(x, out_features, bias, transposed_weight):
    """Any leading shape and layout of the input, a weight stored transposed or not, with a bias or
    without: values and the gradients of input, weight and bias."""
    w = torch.randn(out_features, x.shape[-1], dtype=torch.float64)
    if transposed_weight:
        w = w.T.contiguous().T
    b = torch.randn(out_features, dtype=torch.float64) if bias else None
    args = [t.detach().clone().requires_grad_() for t in (x, w, b) if t is not None]
    theirs = [t.detach().clone().requires_grad_() for t in args]
    ya, yb = HF.linear(*args), F.linear(*theirs)
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    if ya.numel():
        g = torch.randn_like(yb)
        for got, want in zip(torch.autograd.grad(ya, args, g), torch.autograd.grad(yb, theirs, g), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


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


# ---- float32: every CPU kernel path ----------------------------------------------------------------
#
# The float64 strategies above stay small, so they never leave the kernels' serial, unpacked paths.
# The float32 ones below draw sizes on either side of each threshold that picks a path. The
# thresholds live in the C++ only; they are mirrored here, each with the name it has there:
MAP_GRAIN = 32768  # csrc/cpu/elementwise.h kMapGrain: elementwise maps (mish) split across threads above it
POOL_GRAIN = 16384  # csrc/cpu/pool.cpp for_each_unit: elements of work per thread (planes or rows)
CONV_PACKED_ROWS = 256  # csrc/cpu/conv2d_gemm.cpp packed_rows: packed tiles from 256 rows (AVX-512 float; 64 for AVX2)
CONV_PACKED_GRADIENT_ROWS = 64  # an earlier weight-gradient kernel's switch (packed from 64 rows), still drawn as a boundary
CONV_SHORT_REDUCTION = 2.5  # csrc/cpu/conv2d_gemm.cpp kShortReduction: packed tiles where kd ≤ 2.5 × the rows
CONV_TILE_COLUMNS = 128  # csrc/cpu/conv2d_gemm.cpp kTileColumns: pixels per task tile
CONV_CHUNK = 256  # csrc/cpu/conv2d_gemm.cpp kReductionChunk: reduction steps per GEMM call (longer ones are split)
LSTM_GRAIN = 8192  # csrc/cpu/lstm.cpp row_grain: batch·hidden elements per task of the pointwise kernels
LSTM_SIDE_BY_SIDE_ROWS = 32  # csrc/cpu/lstm.cpp kSideBySideRows: on 2 threads, a cell backward's products side by side
LSTM_SLICE_ROWS = 12  # csrc/cpu/lstm.cpp kSliceRows: on 2 threads, a layer's steps in two batch slices from twice this
LINEAR_DOT_ROWS = 4  # csrc/cpu/simd/gemm.h kDotRows: the unpacked product serves 1 to 4 rows
LINEAR_DOT_STEPS = 64  # csrc/cpu/gemm/gemm.h kDotStepsPerRow: ... where the reduction has 64 steps a row
LINEAR_DOT_GRAIN = 32768  # csrc/cpu/gemm/gemm.h kDotGrainFmas: its columns split over threads above it
OPTIM_SPAN = 16384  # csrc/cpu/multi_tensor.h kSpan: tensors are cut into spans of this many elements
OPTIM_SERIAL_BELOW = 65536  # csrc/cpu/multi_tensor.h kSerialBelow: groups this small run on one thread


@st.composite
def float32_tensors(draw) -> torch.Tensor:
    """float32 views (as strided_tensors) of either a few elements or more than MAP_GRAIN (so the
    map runs on several threads, with a vector tail)."""
    if draw(st.booleans()):
        return draw(strided_tensors()).float()
    rows = draw(st.integers(1, 3))
    cols = draw(st.integers(MAP_GRAIN // rows + 1, MAP_GRAIN // rows + 40))
    step = draw(st.integers(1, 2))
    x = torch.randn(rows, cols * step) * draw(st.sampled_from([1.0, 5.0, 30.0]))
    x = x[:, ::step]
    return x.t() if draw(st.booleans()) else x


@given(float32_tensors())
@example(torch.randn(2, MAP_GRAIN).t()[1:])  # above the grain, transposed, odd count
def test_mish_float32(x):
    from tests.test_mish import assert_float32_mish, assert_float32_mish_backward

    event(f"mish: {'above' if x.numel() > MAP_GRAIN else 'below'} MAP_GRAIN")  # --hypothesis-show-statistics
    a = x.clone().requires_grad_()
    ya = HF.mish(a)
    assert_float32_mish(ya, x)  # within the bounds derived from the kernel's formula (tests/test_mish.py)
    if ya.numel():
        g = torch.randn_like(ya)
        ya.backward(g)
        assert_float32_mish_backward(a.grad, g, x)


@st.composite
def pool32_args(draw, with_dilation: bool):
    """pool_args in float32, with planes of either a few or more than POOL_GRAIN elements in all
    (several threads, over planes for NCHW and over rows for channels_last)."""
    x, kw = draw(pool_args(with_dilation))
    if draw(st.booleans()):
        image = x.shape[-3] * x.shape[-2] * x.shape[-1]
        n = draw(st.integers(POOL_GRAIN // image + 1, POOL_GRAIN // image + 8))  # n·C·H·W > POOL_GRAIN
        shape = (n, *x.shape[-3:])
        cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
        x = torch.randn(shape, dtype=torch.float64).to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    return x.float(), kw


@given(pool32_args(with_dilation=True))
def test_max_pool2d_float32(args):
    x, kw = args
    event(f"max pool: {'above' if x.numel() > POOL_GRAIN else 'below'} POOL_GRAIN")
    got, got_idx = HF.max_pool2d(x, return_indices=True, **kw)
    want, want_idx = F.max_pool2d(x, return_indices=True, **kw)
    assert torch.equal(got, want) and torch.equal(got_idx, want_idx)
    if not got.isinf().any():  # (windows wholly in the padding: see test_max_pool2d)
        g = torch.randn_like(got)
        xr = x.clone().requires_grad_()
        F.max_pool2d(xr, **kw).backward(g)
        got_grad = torch.ops.hotkernels.max_pool2d_backward(g, x, got_idx, *_max_pool_args(x, kw))
        torch.testing.assert_close(got_grad, xr.grad, rtol=0, atol=0)  # the same sums in the same order


def _max_pool_args(x, kw):
    from tests.test_pool import _max_args

    return _max_args(x, kw)


@given(pool32_args(with_dilation=False), st.booleans(), st.sampled_from([None, 1, 3]))
def test_avg_pool2d_float32(args, count_include_pad, divisor_override):
    from tests.test_pool import assert_avg_pool_float32

    x, kw = args
    kw.update(count_include_pad=count_include_pad, divisor_override=divisor_override)
    event(f"avg pool: {'above' if x.numel() > POOL_GRAIN else 'below'} POOL_GRAIN")
    a = x.clone().requires_grad_()
    ya = HF.avg_pool2d(a, **kw)
    g = torch.randn_like(ya)
    ya.backward(g)
    # within the reduction bound of the window sums (forward) and covering-window sums (backward)
    assert_avg_pool_float32(x, kw, ya.detach(), g, a.grad)


@st.composite
def conv32_args(draw):
    """float32 convolutions on every path of csrc/cpu/conv2d.cpp: output channels a group below
    CONV_PACKED_GRADIENT_ROWS, at or above it (packed weight gradient on a wasteful grid) or at or
    above CONV_PACKED_ROWS (packed forward tiles); input channels a group whose reduction
    (channels·taps) is below or above CONV_CHUNK, and (as these ranges fall) at most
    CONV_SHORT_REDUCTION times the output channels or more; more virtual pixels than
    CONV_TILE_COLUMNS or fewer; depthwise too."""
    groups = draw(st.sampled_from([1, 1, 2]))
    cout_g = draw(st.sampled_from([st.integers(1, 9), st.integers(CONV_PACKED_GRADIENT_ROWS, CONV_PACKED_GRADIENT_ROWS + 6),
                                   st.integers(CONV_PACKED_ROWS, CONV_PACKED_ROWS + 6)]).flatmap(lambda s: s))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    taps = k[0] * k[1]
    cin_g = draw(st.sampled_from([st.integers(1, 6), st.integers(CONV_CHUNK // taps + 1, CONV_CHUNK // taps + 4)]).flatmap(lambda s: s))
    if draw(st.integers(0, 5)) == 0:  # depthwise: one input and one output channel a group
        groups, cin_g, cout_g = draw(st.integers(2, 9)), 1, 1
    s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    extent = [(k[i] - 1) * d[i] + 1 for i in range(2)]
    if draw(st.booleans()):  # more pixels than one tile of CONV_TILE_COLUMNS: H, W > √128
        side = int(CONV_TILE_COLUMNS ** 0.5) + 1
        hw = [draw(st.integers(side, 2 * side)) for _ in range(2)]
    else:  # a few
        hw = [draw(st.integers(max(1, extent[i] - 2 * p[i]), 6)) for i in range(2)]
    x = torch.randn(draw(st.integers(1, 2)), groups * cin_g, *hw)
    if draw(st.booleans()):
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(groups * cout_g, cin_g, *k)
    b = torch.randn(groups * cout_g) if draw(st.booleans()) else None
    return x, w, b, dict(stride=s, padding=p, dilation=d, groups=groups)


@given(conv32_args())
@example((torch.randn(1, 3, 16, 16), torch.randn(CONV_PACKED_ROWS + 2, 3, 3, 3), None, dict(padding=1)))  # packed forward
@example((torch.randn(2, 30, 5, 6), torch.randn(CONV_PACKED_GRADIENT_ROWS + 3, 30, 3, 3), torch.randn(67),
          dict(padding=1)))  # packed weight gradient, a reduction of 270 > CONV_CHUNK steps
def test_conv2d_float32(args):
    from tests.test_conv2d import check_float32

    x, w, b, kw = args
    groups = kw.get("groups", 1)
    rows = w.shape[0] // groups
    event("conv2d: depthwise" if w.shape[1] == 1 and rows == 1 and groups > 1 else
          f"conv2d: rows {'>= CONV_PACKED_ROWS' if rows >= CONV_PACKED_ROWS else '>= CONV_PACKED_GRADIENT_ROWS' if rows >= CONV_PACKED_GRADIENT_ROWS else 'few'}")
    event(f"conv2d: reduction {'above' if w[0].numel() > CONV_CHUNK else 'within'} CONV_CHUNK")
    event(f"conv2d: reduction {'above' if w[0].numel() > CONV_SHORT_REDUCTION * rows else 'within'} "
          "CONV_SHORT_REDUCTION × rows")
    event(f"conv2d: pixels {'above' if x.shape[-2] * x.shape[-1] > CONV_TILE_COLUMNS else 'within'} CONV_TILE_COLUMNS")
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    inputs = (x, w) + (() if b is None else (b,))
    y = HF.conv2d(x, w, b, **kw)
    gy = torch.randn_like(y)
    check_float32(x, w, b, kw, y, gy, torch.autograd.grad(y, inputs, gy))


@st.composite
def linear32_args(draw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """1 to LINEAR_DOT_ROWS + 1 rows, a reduction on either side of LINEAR_DOT_STEPS a row, columns
    on either side of one thread's grain of the unpacked product."""
    rows = draw(st.integers(1, LINEAR_DOT_ROWS + 1))
    k = LINEAR_DOT_STEPS * rows + draw(st.integers(-3, 3))
    grain = LINEAR_DOT_GRAIN // (rows * k)
    n = draw(st.sampled_from([st.integers(1, 9), st.integers(grain - 2, 2 * grain + 5)]).flatmap(lambda s: s))
    w = torch.randn(n, k)
    return torch.randn(rows, k), w.T.contiguous().T if draw(st.booleans()) else w, (
        torch.randn(n) if draw(st.booleans()) else None)


@given(linear32_args())
@example((torch.randn(4, 256), torch.randn(70, 256), torch.randn(70)))  # unpacked, 2 threads' worth of columns
def test_linear_float32(args):
    """Values and gradients against float64, within the reduction bound or 4 times torch's float32
    error (its BLAS; the gradients reduce over the output features and over the rows)."""
    x, w, b = args
    unpacked = x.shape[0] <= LINEAR_DOT_ROWS and x.shape[1] >= LINEAR_DOT_STEPS * x.shape[0] and w.stride(1) == 1
    event(f"linear: {'unpacked' if unpacked else 'packed'}")
    results = []
    for f, dtype in ((HF.linear, torch.float32), (F.linear, torch.float32), (F.linear, torch.float64)):
        inputs = [t.to(dtype).requires_grad_() for t in (x, w, b) if t is not None]
        y = f(*inputs)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
        results.append([y.detach(), *torch.autograd.grad(y, inputs, gy)])
    lengths = [x.shape[1] + 1, w.shape[0], x.shape[0], x.shape[0]]  # output, input, weight and bias gradients
    for ours, theirs, exact, r in zip(*results, lengths):
        assert_float32_like_torch(ours, theirs, exact, r)


@given(st.integers(1, 4), st.sampled_from([st.integers(1, 9), st.integers(LSTM_GRAIN // 96 + 1, LSTM_GRAIN // 96 + 8)]).flatmap(lambda s: s),
       st.integers(1, 9), st.booleans(), st.booleans())
@example(3, LSTM_GRAIN // 96 + 2, 7, True, True)  # batch·hidden above the grain
def test_lstm_layer_float32(steps, batch, input_size, bias, reverse):
    """The layer op in float32 with batch·hidden = 96·batch on either side of LSTM_GRAIN, against
    torch.lstm_cell stepped in Python: our float32 error from the float64 result is within the
    reduction bound of each output, or at most 4 times torch's own float32 error (the same GEMMs
    through torch's BLAS; our gates, biases and time-summed weight gradients round in another order)."""
    hidden = 96
    event(f"lstm: batch·hidden {'above' if batch * hidden > LSTM_GRAIN else 'below'} LSTM_GRAIN")
    ref = torch.nn.LSTM(input_size, hidden, bias=bias)
    x = torch.randn(steps, batch, input_size)
    h0, c0 = torch.randn(batch, hidden), torch.randn(batch, hidden)
    weights = [p.detach() for p in ref.parameters()] + ([] if bias else [None, None])

    def ours(x, h, c, *w):
        out, cs, _ = torch.ops.hotkernels.lstm_layer(x, h, c, *w, None, reverse)
        return out, cs

    def theirs(x, h, c, *w):
        xs = x.flip(0) if reverse else x
        outs, cs = [], []
        for t in range(xs.shape[0]):
            h, c = torch.lstm_cell(xs[t], (h, c), *w)
            outs.append(h)
            cs.append(c)
        out, cs = torch.stack(outs), torch.stack(cs)
        return (out.flip(0), cs.flip(0)) if reverse else (out, cs)

    def grads(fn, dtype):
        args = [t if t is None else t.to(dtype).requires_grad_() for t in (x, h0, c0, *weights)]
        outs = fn(*args)
        gen = torch.Generator().manual_seed(1)
        cots = [torch.randn(o.shape, generator=gen).to(dtype) for o in outs]
        live = [a for a in args if a is not None]
        return [*outs, *torch.autograd.grad(outs, live, cots)]

    exact = grads(theirs, torch.float64)
    # Reduction lengths (compounded over the steps): outputs sum input, hidden and the two biases per
    # gate; the input, hx and cx gradients sum the 4·hidden gates; the weight gradients sum the steps
    # and the batch.
    r_out, r_in, r_w = steps * (input_size + hidden + 2), steps * 4 * hidden, steps * batch
    lengths = [r_out, r_out, r_in, r_in, r_in, r_w, r_w, r_w, r_w]
    for name, a, t, e, r in zip(["output", "cs", "input", "hx", "cx", "w_ih", "w_hh", "b_ih", "b_hh"],
                                grads(ours, torch.float32), grads(theirs, torch.float32), exact, lengths):
        assert_float32_like_torch(a, t, e, r, name)


@given(st.sampled_from([st.integers(LSTM_SIDE_BY_SIDE_ROWS - 4, LSTM_SIDE_BY_SIDE_ROWS - 1),
                        st.integers(LSTM_SIDE_BY_SIDE_ROWS, LSTM_SIDE_BY_SIDE_ROWS + 4)]).flatmap(lambda s: s),
       st.integers(33, 64), st.integers(33, 64))
@example(LSTM_SIDE_BY_SIDE_ROWS, 48, 64)  # side by side
def test_lstm_cell_float32_on_two_threads(batch, input_size, hidden):
    """An LSTMCell's forward and every gradient in float32 on two threads, the batch on either side of
    LSTM_SIDE_BY_SIDE_ROWS (its backward's products one after the other, or side by side): our
    float32 error from the float64 result is within the reduction bound of each output, or at most 4
    times torch's own float32 error."""
    event(f"lstm cell: batch {'at or above' if batch >= LSTM_SIDE_BY_SIDE_ROWS else 'below'} LSTM_SIDE_BY_SIDE_ROWS")
    cell = torch.nn.LSTMCell(input_size, hidden)
    x, h0, c0 = torch.randn(batch, input_size), torch.randn(batch, hidden), torch.randn(batch, hidden)
    weights = [p.detach() for p in cell.parameters()]

    def grads(fn, dtype):
        args = [t.detach().to(dtype).requires_grad_() for t in (x, h0, c0, *weights)]
        outs = fn(*args)
        gen = torch.Generator().manual_seed(1)
        cots = [torch.randn(o.shape, generator=gen).to(dtype) for o in outs]
        return [*outs, *torch.autograd.grad(outs, args, cots)]

    with num_threads(2):
        got = grads(lambda x, h, c, *w: HF.lstm_cell(x, (h, c), *w), torch.float32)
    theirs = lambda x, h, c, *w: torch.lstm_cell(x, (h, c), *w)  # noqa: E731
    # Reduction lengths: outputs sum input, hidden and the two biases per gate; the input and hx
    # gradients sum the 4·hidden gates; cx's is pointwise on the forward's gates (the outputs'
    # length); the weight gradients sum the batch.
    r_out, r_in, r_w = input_size + hidden + 2, 4 * hidden, batch
    lengths = [r_out, r_out, r_in, r_in, r_out, r_w, r_w, r_w, r_w]
    for name, a, t, e, r in zip(["h", "c", "input", "hx", "cx", "w_ih", "w_hh", "b_ih", "b_hh"], got,
                                grads(theirs, torch.float32), grads(theirs, torch.float64), lengths, strict=True):
        assert_float32_like_torch(a, t, e, r, name)


@given(st.sampled_from([st.integers(2 * LSTM_SLICE_ROWS - 4, 2 * LSTM_SLICE_ROWS - 1),
                        st.integers(2 * LSTM_SLICE_ROWS, 2 * LSTM_SLICE_ROWS + 4)]).flatmap(lambda s: s),
       st.integers(2, 6), st.integers(58, 80), st.booleans(), st.integers(0, 2**31))
@example(2 * LSTM_SLICE_ROWS, 5, 64, False, 0)  # two slices of a padded batch
@example(2 * LSTM_SLICE_ROWS + 4, 6, 64, True, 0)  # a packed batch: slices or halves, as its lengths fall
def test_lstm_float32_on_two_threads(batch, steps, hidden, packed, seed):
    """nn.LSTM's outputs and every gradient in float32 on two threads, the batch on either side of
    2·LSTM_SLICE_ROWS (each step's product cut over the threads, hidden ≥ 58 making it large enough
    to be, or two slices of the batch through every step), padded or packed (lengths 1 to `steps`,
    unsorted): within the reduction bound of each output, or at most 4 times torch's own float32
    error (tests/test_lstm.py check_float32)."""
    from tests.test_lstm import check_float32

    event(f"lstm: batch {'at or above' if batch >= 2 * LSTM_SLICE_ROWS else 'below'} 2·LSTM_SLICE_ROWS, "
          f"{'packed' if packed else 'padded'}")
    gen = torch.Generator().manual_seed(seed)
    input_size = 24
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ref = torch.nn.LSTM(input_size, hidden, 2)
    ours = hnn.LSTM(input_size, hidden, 2)
    ours.load_state_dict(ref.state_dict())
    lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
    lengths[0] = steps
    inputs = [torch.randn(steps, batch, input_size, generator=gen)]

    def run(module, x):
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        y, (h, c) = module(inp)
        return (y.data if packed else y), h, c

    with num_threads(2):
        # As test_lstm_matches_torch: outputs compound the layers' gate sums over the steps, input
        # gradients 4·H per layer, weight gradients the steps' rows.
        check_float32(ref, ours, inputs, run, steps * 2 * (max(input_size, hidden) + hidden + 2),
                      steps * 2 * 4 * hidden, steps * batch)


@st.composite
def optim32_setup(draw):
    """float32 params on either side of OPTIM_SPAN (cut into spans, a partial last one) with the
    group on either side of OPTIM_SERIAL_BELOW (several threads), plus small ones."""
    sizes = draw(st.lists(st.sampled_from([st.integers(1, 40), st.integers(OPTIM_SPAN - 3, OPTIM_SPAN + 3),
                                           st.integers(OPTIM_SERIAL_BELOW - 3, OPTIM_SERIAL_BELOW + 3)]).flatmap(lambda s: s),
                          min_size=1, max_size=3))
    seed = draw(st.integers(0, 2**31))
    return sizes, seed, draw(st.integers(1, 3))


@given(optim32_setup(), st.sampled_from(["Adam", "AdamW", "RAdam"]), st.booleans(), st.floats(0.0, 0.2))
@example(([OPTIM_SPAN + 1, OPTIM_SERIAL_BELOW + 5, 7], 0, 3), "Adam", True, 0.1)  # spans on several threads
def test_optimizers_float32(setup, cls, amsgrad, weight_decay):
    """float32 steps against torch.optim's float32 ones, both against torch.optim's float64 run from
    the same float32 params and gradients: ours within tests/test_optim.py's
    assert_float32_trajectory (a couple of ulp per step, or 4 times torch's own float32 error)."""
    import hotkernels.optim as HO

    sizes, seed, steps = setup
    event(f"optim: {'several spans' if max(sizes) > OPTIM_SPAN else 'one span each'}, "
          f"{'threads' if sum(sizes) >= OPTIM_SERIAL_BELOW else 'serial'}")
    kw = dict(lr=0.01, weight_decay=weight_decay, **({"amsgrad": amsgrad} if cls != "RAdam" else {}))
    check_optimizer_float32(sizes, seed, steps, lambda ps: getattr(torch.optim, cls)(ps, **kw),
                            lambda ps: getattr(HO, cls)(ps, **kw))


def span_sq_norm_ulps(grads: list[torch.Tensor]) -> float:
    """The relative error, in u = 2^-24, of our float32 sum of squares over `grads` (multi_tensor.h:
    float sums over spans of at most OPTIM_SPAN elements, added in double): tests/conftest.py's
    reduction bound with r = min(elements, OPTIM_SPAN) and ‖t‖₂² = Σg⁴ (span errors add in
    quadrature), relative to Σg², plus the result's own rounding."""
    from tests.conftest import REDUCTION_LAMBDA

    g = torch.cat([x.detach().double().flatten() for x in grads])
    total = (g**2).sum().item()
    if total == 0:
        return 0.0
    return REDUCTION_LAMBDA * min(g.numel(), OPTIM_SPAN) ** 0.5 * (g**4).sum().sqrt().item() / total + 1


def check_optimizer_float32(sizes, seed, steps, make_ref, make_ours, state_keys=None, norm_ulps=None):
    """`steps` steps of float32 params of `sizes` (random from `seed`) by the reference (`make_ref`, in
    float32 and in float64 from the same float32 values) and ours, with the same random gradients;
    params and state (`state_keys`: ours -> the reference's key; default: the reference's tensors)
    within assert_float32_trajectory. `norm_ulps(grads)`: the relative error (in u) that our float32
    gradient norms add to the state at a step, where the reference takes them in float64 (LAMB's
    clipping, NovoGrad's layer moments): added to the state's per-step budget (its largest over
    the steps)."""
    from tests.test_optim import F32_STATE_STEP_ULPS, assert_float32_trajectory

    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen) for n in sizes]
    r, o = [p.clone().requires_grad_() for p in params], [p.clone().requires_grad_() for p in params]
    e = [p.double().requires_grad_() for p in params]
    ref, ours, exact = make_ref(r), make_ours(o), make_ref(e)
    state_ulps = F32_STATE_STEP_ULPS
    for _ in range(steps):
        for a, b, c in zip(r, o, e):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
            c.grad = a.grad.double()
        if norm_ulps is not None:
            state_ulps = max(state_ulps, F32_STATE_STEP_ULPS + norm_ulps([a.grad for a in r]))
        ref.step()
        ours.step()
        exact.step()
    for i, (a, b, c) in enumerate(zip(r, o, e)):
        assert_float32_trajectory(b, a, c, steps, f"param {i} ({b.numel()} elements)")
        keys = state_keys or {k: k for k, v in ref.state[a].items() if k != "step" and isinstance(v, torch.Tensor)}
        for ours_key, ref_key in keys.items():
            assert_float32_trajectory(ours.state[b][ours_key], ref.state[a][ref_key], exact.state[c][ref_key], steps,
                                      f"param {i} ({b.numel()} elements) {ours_key}", state_ulps)


@given(optim32_setup(), st.one_of(st.none(), st.just(1.0)), st.sampled_from([0.0, 0.01]), st.booleans(), st.booleans())
@example(([OPTIM_SPAN + 1, OPTIM_SERIAL_BELOW + 5, 7], 0, 3), 1.0, 0.01, False, False)  # spans on several threads
def test_lamb_float32(setup, max_grad_norm, weight_decay, always_adapt, trust_clip):
    """LAMB in float32 (its per-tensor norms reduced over spans of OPTIM_SPAN, on several threads
    from OPTIM_SERIAL_BELOW; clipped by the global gradient norm or not; trust ratio on or off)
    against tests/test_optim.py's RefLamb in float32 and float64: params and moments within
    assert_float32_trajectory."""
    import hotkernels.optim as HO
    from tests.test_optim import RefLamb

    sizes, seed, steps = setup
    event(f"lamb: {'several spans' if max(sizes) > OPTIM_SPAN else 'one span each'}, "
          f"{'threads' if sum(sizes) >= OPTIM_SERIAL_BELOW else 'serial'}")
    kw = dict(lr=0.01, max_grad_norm=max_grad_norm, weight_decay=weight_decay, always_adapt=always_adapt,
              trust_clip=trust_clip)
    # clipping divides every gradient by c = ‖g‖ (our float32 span sums): c is off by half the sum's
    # relative error plus the division's rounding, v by twice that (m by once)
    check_optimizer_float32(sizes, seed, steps, lambda ps: RefLamb(ps, **kw), lambda ps: HO.Lamb(ps, **kw),
                            {"exp_avg": "m", "exp_avg_sq": "v"},
                            None if max_grad_norm is None else lambda grads: span_sq_norm_ulps(grads) + 2)


@given(optim32_setup(), st.sampled_from([0.0, 0.01]), st.booleans(), st.booleans())
@example(([OPTIM_SPAN + 1, OPTIM_SERIAL_BELOW + 5, 7], 0, 3), 0.01, True, True)  # spans on several threads
def test_novograd_float32(setup, weight_decay, grad_averaging, amsgrad):
    """NovoGrad in float32 (its per-layer gradient norms reduced over spans of OPTIM_SPAN, on several
    threads from OPTIM_SERIAL_BELOW) against tests/test_optim.py's RefNovoGrad in float32 and
    float64: params, first moments and layer second moments within assert_float32_trajectory."""
    import hotkernels.optim as HO
    from tests.test_optim import RefNovoGrad

    sizes, seed, steps = setup
    event(f"novograd: {'several spans' if max(sizes) > OPTIM_SPAN else 'one span each'}, "
          f"{'threads' if sum(sizes) >= OPTIM_SERIAL_BELOW else 'serial'}")
    kw = dict(lr=0.01, betas=(0.9, 0.5), weight_decay=weight_decay, grad_averaging=grad_averaging, amsgrad=amsgrad)
    # each layer's v is its gradient's float32 sum of squares (that sum's relative error; m divides by
    # √v: half of it, plus a rounding)
    check_optimizer_float32(sizes, seed, steps, lambda ps: RefNovoGrad(ps, **kw), lambda ps: HO.NovoGrad(ps, **kw),
                            {"exp_avg": "m", "exp_avg_sq": "v", **({"max_exp_avg_sq": "vmax"} if amsgrad else {})},
                            lambda grads: max(span_sq_norm_ulps([g]) for g in grads) + 1)
