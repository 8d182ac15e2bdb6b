"""torch.autocast (mixed precision) with the hotkernels ops, against torch's own ops under autocast:
the same output dtypes, values within the autocast dtype's tolerance, gradients in the parameters'
dtype, and a converted model trained a few steps under autocast as torch's. The rules are in
csrc/autocast.cpp: conv2d and the LSTM layer compute in the autocast dtype, the
LSTM cell too on CUDA (on the CPU in promote(autocast dtype, cx.dtype), as torch's), Mish and
pooling in their input's dtype."""

import collections
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils._python_dispatch import TorchDispatchMode

import hotkernels
import hotkernels.functional as HF

from .conftest import DEVICES, check_inductor, reduction_bound

HALF = [torch.bfloat16, torch.float16]
HALF_IDS = ["bf16", "f16"]


def _cotangents(outs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Unit-normal cotangents for `outs`, drawn in float64 from seed 0 and rounded to each output's
    dtype, so that every run gets the same ones."""
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device, o.dtype) for o in outs]


def _grads(outs: list[torch.Tensor], wrt: list[torch.Tensor]) -> list[torch.Tensor]:
    """The gradients of `wrt` for `_cotangents(outs)`."""
    return list(torch.autograd.grad(outs, wrt, _cotangents(outs)))


def _flat(outs) -> list[torch.Tensor]:
    """A module's outputs as a flat list of tensors ((output, (h, c)) and the like)."""
    if isinstance(outs, torch.Tensor):
        return [outs]
    return [t for o in outs for t in _flat(o)]


# ---- conv2d: in autocast's lower-precision list on the CPU and CUDA ------------------------------------
#
# Under autocast torch and we cast x, w and b to the half type h; we sum the products in float32 and
# round the result to h once (gradients alike: the backward ops take the half-type grad_output and saved
# operands, and their half-type results are cast back to float32 exactly). So each of our results is
# within
#     u_h·|exact| + 2·(float32 reduction bound, tests/conftest.py) + u_h·tiny_h
# of `exact`, the float64 computation from the same half-type operands: one rounding to h (u_h = eps/2,
# and half a subnormal step near zero) of a float32 sum within the reduction bound (twice it: the
# rounding of that error, and of the float32 result itself). Without the casts (a float32 computation
# rounded at the end) the error is ~u_h·‖terms‖ and fails it. torch's results have its dtypes, but not
# always this accuracy: its CPU float16 input gradient rounds more than once (~40 times the bound).

CONV_CASES = {
    "plain": (dict(), (2, 4, 9, 10), (6, 4, 3, 3), True),
    "stride-padding-dilation": (dict(stride=2, padding=(1, 2), dilation=(2, 1)), (2, 4, 11, 10), (6, 4, 3, 3), True),
    "groups-no-bias": (dict(padding=1, groups=2), (2, 4, 9, 10), (6, 2, 3, 3), False),
    "depthwise": (dict(padding=1, groups=4), (2, 4, 9, 10), (8, 1, 3, 3), True),
    "deep-1x1": (dict(), (2, 64, 6, 5), (16, 64, 1, 1), True),
}


def _conv_bound(dtype: torch.dtype, exact: torch.Tensor, sq_sum: torch.Tensor, r: int) -> torch.Tensor:
    fi = torch.finfo(dtype)
    return fi.eps / 2 * exact.abs() + 2 * reduction_bound(sq_sum, r, exact) + fi.eps / 2 * fi.tiny


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_under_autocast_as_torch(device, dtype, channels_last, case):
    """Outputs and gradients in torch's dtypes, ours within the bound above."""
    kwargs, x_shape, w_shape, bias = case
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(x_shape, device=device).to(memory_format=fmt)
    w = torch.randn(w_shape, device=device)
    b = torch.randn(w_shape[0], device=device) if bias else None
    leaves = [t for t in (x, w, b) if t is not None]

    def run(conv, args: list[torch.Tensor]) -> torch.Tensor:
        return conv(args[0], args[1], args[2] if bias else None, **kwargs)

    results = {}
    for name, conv in (("ours", HF.conv2d), ("torch", F.conv2d)):
        ins = [t.detach().clone().requires_grad_() for t in leaves]
        with torch.autocast(device, dtype=dtype):
            y = run(conv, ins)
        results[name] = [y, *_grads([y], ins)]
    # float64 from the half-type operands, and the same over their squares (and the squared
    # cotangent) for the sums of the squared terms
    cast = [t.to(dtype).double().requires_grad_() for t in leaves]
    y = run(F.conv2d, cast)
    exact = [y, *_grads([y.to(dtype)], cast)]
    cot = _cotangents([y.to(dtype)])[0].double()
    squares = [(t.detach() ** 2).requires_grad_() for t in cast]
    y = run(F.conv2d, squares)
    sq_sums = [y, *torch.autograd.grad([y], squares, [cot ** 2])]
    # The longest sum behind each result: y (a window of a group's channels, and the bias), grad x
    # (a window of a group's output channels), grad w and grad b (every image and pixel).
    taps = w_shape[2] * w_shape[3]
    pixels = x_shape[0] * y.shape[2] * y.shape[3]
    lengths = [w_shape[1] * taps + 1, w_shape[0] // kwargs.get("groups", 1) * taps, pixels, pixels]
    want_dtypes = [dtype] + [t.dtype for t in leaves]
    for k, (ours, theirs, e, sq) in enumerate(zip(results["ours"], results["torch"], exact, sq_sums, strict=True)):
        assert ours.dtype == theirs.dtype == want_dtypes[k], (k, ours.dtype, theirs.dtype)
        bound = _conv_bound(dtype, e, sq, lengths[k])
        err = (ours.double() - e).abs()
        assert bool((err <= bound).all()), f"result {k}: {(err / bound).max().item():.3g} times the bound"


# ---- the LSTM: the layer in the lower-precision list on the CPU and CUDA, the cell on CUDA --------------
#
# These run the recurrence in the half type: h (and c) are rounded at each step and feed the next, so
# the error from the float64 result of the same half-type operands grows over the steps. As in
# tests/test_lstm.py (test_half_types_on_cpu_as_accurate_as_torch), ours must be within twice torch's
# own error under autocast, or 4 ulp of the half type at the largest value.

def _cell_run(m, x, *state):
    """An LSTMCell's (h', c'), from (h, c) when given, else from zeros (torch's default)."""
    return list(m(x, tuple(state) or None))


def _lstm_run(m, x, *state):
    """An LSTM's output, h_n and c_n, from (h_0, c_0) when given, else from zeros."""
    out, (h_n, c_n) = m(x, tuple(state) or None)
    return [out, h_n, c_n]


def _packed_run(m, x, *state):
    out, (h_n, c_n) = m(pack_padded_sequence(x, [5, 4, 2, 1]), tuple(state) or None)
    return [out.data, h_n, c_n]


LSTM_CASES = {
    "cell": (lambda: nn.LSTMCell(6, 8), [(4, 6), (4, 8), (4, 8)], _cell_run),
    "cell-no-state": (lambda: nn.LSTMCell(6, 8), [(4, 6)], _cell_run),
    "lstm-2-layers-bidirectional": (lambda: nn.LSTM(6, 8, 2, bidirectional=True),
                                    [(5, 4, 6), (4, 4, 8), (4, 4, 8)], _lstm_run),
    "lstm-no-state": (lambda: nn.LSTM(6, 8), [(5, 4, 6)], _lstm_run),
    "lstm-proj": (lambda: nn.LSTM(6, 8, proj_size=3), [(5, 4, 6), (1, 4, 3), (1, 4, 8)], _lstm_run),
    "lstm-packed": (lambda: nn.LSTM(6, 8), [(5, 4, 6), (1, 4, 8), (1, 4, 8)], _packed_run),
}


def _torch_under_autocast(module, run, ins, device, dtype) -> tuple[list[torch.Tensor], nn.Module]:
    """torch's module's outputs under autocast, and the module that computed them. torch's CPU LSTM
    under float16 autocast runs oneDNN's RNN, which needs float16 support in the CPU (AVX512-FP16)
    and fails without it; it casts everything to float16 (mkldnn_rnn_layer is in the lower-precision
    list), so torch's module in float16 computes the same."""
    try:
        with torch.autocast(device, dtype=dtype):
            return run(module, *ins), module
    except RuntimeError as e:
        if "could not create a primitive" not in str(e):
            raise
    half = copy.deepcopy(module).to(dtype)
    return run(half, *[t.to(dtype) for t in ins]), half


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("name", LSTM_CASES)
def test_lstm_under_autocast_as_torch(device, dtype, name):
    make, shapes, run = LSTM_CASES[name]
    theirs = make().to(device)
    ours = hotkernels.convert(copy.deepcopy(theirs))
    inputs = [torch.randn(s, device=device) for s in shapes]
    # The dtype each op computes in: the autocast dtype, but torch's CPU cell (in no list) returns
    # promote(autocast dtype, cx.dtype): float32 for the float32 state given, the autocast dtype for the
    # zeros nn.LSTMCell makes in the input's dtype (below: the input in the half type).
    if name == "cell-no-state":
        inputs[0] = inputs[0].to(dtype)
    float_cell = device == "cpu" and name == "cell"
    want = torch.float32 if float_cell else dtype

    ours_ins = [t.clone().requires_grad_() for t in inputs]
    with torch.autocast(device, dtype=dtype):
        ours_outs = run(ours, *ours_ins)
    theirs_ins = [t.clone().requires_grad_() for t in inputs]
    theirs_outs, theirs_module = _torch_under_autocast(theirs, run, theirs_ins, device, dtype)

    # The outputs' dtypes: torch's, except where torch's CPU LSTM falls back from oneDNN (projections,
    # packed batches: its cell runs only the GEMMs in the half type and returns h or c in float32);
    # ours compute in the half type throughout, as torch's oneDNN path and CUDA do (csrc/autocast.cpp).
    torch_fallback = device == "cpu" and name in ("lstm-proj", "lstm-packed")
    for k, (o, t) in enumerate(zip(ours_outs, theirs_outs, strict=True)):
        assert o.dtype == want, (k, o.dtype)
        assert torch_fallback or t.dtype == o.dtype, (k, o.dtype, t.dtype)

    ours_res = ours_outs + _grads(ours_outs, [*ours_ins, *ours.parameters()])
    theirs_res = theirs_outs + _grads(theirs_outs, [*theirs_ins, *theirs_module.parameters()])
    # float64 from the operands as our ops receive them: cast to the half type, but for the CPU cell
    # with a float32 state, which computes in float32.
    exact_module = copy.deepcopy(theirs) if float_cell else copy.deepcopy(theirs).to(dtype)
    exact_ins = [(t if float_cell else t.to(dtype)).double().requires_grad_() for t in inputs]
    exact_module.double()
    exact_outs = run(exact_module, *exact_ins)
    exact_res = exact_outs + _grads([o.to(r.dtype) for o, r in zip(exact_outs, ours_outs)],
                                    [*exact_ins, *exact_module.parameters()])

    eps = torch.finfo(dtype).eps
    for k, (a, t, e) in enumerate(zip(ours_res, theirs_res, exact_res, strict=True)):
        ours_err = (a.double() - e).abs().max().item()
        torch_err = (t.double() - e).abs().max().item()
        assert ours_err <= max(2 * torch_err, 4 * eps * e.abs().max().item()), (name, k, ours_err, torch_err)


# ---- what the kernels receive ---------------------------------------------------------------------

class _RecordDtypes(TorchDispatchMode):
    """Records, for each hotkernels op run below autograd (the kernels' arguments), the dtypes of its
    floating tensor arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, set[torch.dtype]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "hotkernels":
            floats = [a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            self.seen.setdefault(func.__name__.split(".")[0], set()).update(floats)
        return func(*args, **(kwargs or {}))


RECEIVED = {  # module, input shape, the ops its forward and backward run
    "conv2d": (lambda: nn.Conv2d(4, 6, 3), (2, 4, 7, 7),
               ["conv2d", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias"]),
    "lstm": (lambda: nn.LSTM(4, 6, proj_size=3), (5, 2, 4), ["lstm_layer", "lstm_layer_backward"]),
    "lstm-cell": (lambda: nn.LSTMCell(4, 6), (2, 4), ["lstm_cell", "lstm_cell_backward"]),
    "linear": (lambda: nn.Linear(4, 6), (3, 2, 4), ["linear"]),  # CPU only; its backward is linear too
}


def _skip_where_torchs(name: str, device: str) -> None:
    """Linear runs on the CPU only: on CUDA convert keeps torch's module, and nothing of ours runs."""
    if name == "linear" and device != "cpu":
        pytest.skip("hotkernels' Linear runs on the CPU only (on CUDA convert keeps torch's)")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("backward_in_region", [False, True], ids=["backward-after", "backward-in-region"])
@pytest.mark.parametrize("name", RECEIVED)
def test_kernels_receive_the_autocast_dtype(device, dtype, backward_in_region, name):
    """Forward and backward of a converted module under autocast, from float32 weights and input:
    every floating argument of the forward op's kernel is in the autocast dtype (the casts happen
    before it: a kernel run in float32 and rounded at the end would not show here), and so are the
    backward op's (the forward's saved tensors and its output's gradients), whether backward runs
    after the region (as torch recommends) or inside it (the backward ops have no autocast kernel);
    on the CPU the cell gets float32 (torch's CPU cell returns promote(autocast dtype, cx.dtype),
    float32 for the float32 zeros it starts from)."""
    _skip_where_torchs(name, device)
    make, shape, ops = RECEIVED[name]
    module = hotkernels.convert(make().to(device))
    x = torch.randn(shape, device=device, requires_grad=True)
    with _RecordDtypes() as record:
        with torch.autocast(device, dtype=dtype):
            outs = _flat(module(x))
            if backward_in_region:
                _grads(outs, [x, *module.parameters()])
        if not backward_in_region:
            _grads(outs, [x, *module.parameters()])
    want = torch.float32 if name == "lstm-cell" and device == "cpu" else dtype
    assert record.seen == {op: {want} for op in ops}, record.seen


class _RecordCasts(TorchDispatchMode):
    """Records the shape of every tensor cast (aten::_to_copy) to a half type."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default and (kwargs or {}).get("dtype") in HALF:
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cache_enabled", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("name", ["conv2d", "lstm", "lstm-cell", "linear"])
def test_weight_casts_are_cached_in_a_region(device, cache_enabled, name):
    """Casts are torch's cached ones: within one region a float32 weight (a leaf that requires grad)
    is cast once however many calls use it, the input at every call, and every cast is made again
    when the region was entered with cache_enabled=False; for conv2d and the CUDA cell the same casts
    as torch's module makes, called alike. (The CPU cell casts nothing: it computes in
    promote(autocast dtype, cx.dtype), float32 here.)"""
    _skip_where_torchs(name, device)
    make, shape, _ = RECEIVED[name]
    theirs = make().to(device)
    ours = hotkernels.convert(copy.deepcopy(theirs))
    x = torch.randn(shape, device=device)
    casts = []
    for module in (ours, theirs):
        with _RecordCasts() as record, torch.autocast(device, dtype=torch.bfloat16, cache_enabled=cache_enabled):
            for _ in range(3):
                module(x)
        casts.append(sorted(record.shapes))
    ours_casts = collections.Counter(casts[0])
    if name == "lstm-cell" and device == "cpu":
        assert not ours_casts
        return
    assert ours_casts[shape] == 3
    for weight, n in collections.Counter(tuple(p.shape) for p in ours.parameters()).items():
        assert ours_casts[weight] == n * (1 if cache_enabled else 3), weight
    if name != "lstm":  # torch's LSTMs cast flattened weights of their own
        assert casts[0] == casts[1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", RECEIVED)
def test_float64_is_left_alone(device, name):
    """Autocast casts no float64 tensor (torch's rule): a float64 module computes as outside the
    region, bit for bit."""
    _skip_where_torchs(name, device)
    make, shape, _ = RECEIVED[name]
    module = hotkernels.convert(make().to(device, torch.float64))
    x = torch.randn(shape, device=device, dtype=torch.float64)
    with torch.autocast(device, dtype=torch.bfloat16):
        inside = _flat(module(x))
    outside = _flat(module(x))
    assert all(a.dtype == torch.float64 and torch.equal(a, b) for a, b in zip(inside, outside, strict=True))


# ---- Mish and pooling: in no list, they compute in their input's dtype ---------------------------------

FOLLOWING = {
    "mish": (HF.mish, F.mish),
    "max_pool2d": (lambda x: HF.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1)),
    "max_pool2d-indices": (lambda x: HF.max_pool2d(x, 2, return_indices=True),
                           lambda x: F.max_pool2d(x, 2, return_indices=True)),
    "avg_pool2d": (lambda x: HF.avg_pool2d(x, 3, 2, 1), lambda x: F.avg_pool2d(x, 3, 2, 1)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
@pytest.mark.parametrize("input_dtype", [torch.float32, "half"], ids=["f32-input", "half-input"])
@pytest.mark.parametrize("name", FOLLOWING)
def test_ops_in_no_list_follow_their_input(device, dtype, input_dtype, name):
    """Autocast leaves them alone (it falls through for ops without an autocast kernel): under
    autocast they return exactly what they return outside it, in torch's dtype, and so do their
    gradients."""
    ours, theirs = FOLLOWING[name]
    x = torch.randn(2, 3, 9, 8, device=device).to(dtype if input_dtype == "half" else input_dtype)
    results = []
    for fn, autocast in ((ours, True), (ours, False), (theirs, True)):
        xi = x.clone().requires_grad_()
        with torch.autocast(device, dtype=dtype, enabled=autocast):
            outs = fn(xi)
            outs = list(outs) if isinstance(outs, tuple) else [outs]
            floats = [o for o in outs if o.is_floating_point()]
            results.append(outs + _grads(floats, [xi]))
    for k, (a, b, t) in enumerate(zip(*results, strict=True)):
        assert a.dtype == t.dtype == x.dtype or (a.dtype == t.dtype == torch.int64), (k, a.dtype, t.dtype)
        assert torch.equal(a, b), k


# ---- torch.compile under autocast -----------------------------------------------------------------

def test_compiled_conv2d_under_autocast_is_eager():
    """Inductor traces the autocast rule (the casts before our op) and calls our ops: outputs and
    gradients equal the eager ones bit for bit (the same casts, the same kernels)."""

    def conv_mish(x, w, b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return HF.mish(HF.conv2d(x, w, b, padding=1))

    inputs = [torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3).requires_grad_(), torch.randn(4).requires_grad_()]
    check_inductor(conv_mish, conv_mish, inputs, ["hotkernels.conv2d.default", "hotkernels.mish.default",
                                                  "hotkernels.conv2d_backward_weight.default"], rtol=0, atol=0)


# ---- a converted model trained under autocast --------------------------------------------------------

class SmallNet(nn.Module):
    """conv -> Mish -> max pool -> conv -> avg pool, the feature map's rows read by an LSTM as a
    sequence, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Mish(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.Mish(), nn.AvgPool2d(2))
        self.rnn = nn.LSTM(8 * 4, 16, batch_first=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        f = self.features(x)  # [B, 8, 4, 4]
        seq = f.permute(0, 2, 1, 3).flatten(2)  # [B, rows, channels * columns]
        out, _ = self.rnn(seq)
        return self.head(out[:, -1])


@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_converted_model_trains_under_autocast_as_torch(dtype):
    """The same model, torch's and converted, trained 8 steps of SGD under CPU autocast: the losses
    of the converted one stay as close to those of the float32 training as twice torch's under
    autocast (its own autocast error, the largest over the steps; the steps differ by roundings of
    the logits in the half type, of random sign), or a few float32 roundings of the loss. For float16
    torch's LSTM runs without oneDNN (torch.backends.mkldnn off for it: oneDNN's float16 RNN needs
    AVX512-FP16), on its cell path, whose GEMMs run in float16."""
    torch.manual_seed(0)
    base = SmallNet()
    x = torch.randn(16, 1, 16, 16)
    target = torch.randint(10, (16,))

    def train(model: nn.Module, autocast: bool, mkldnn: bool = True) -> torch.Tensor:
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        losses = []
        for _ in range(8):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=dtype, enabled=autocast), torch.backends.mkldnn.flags(enabled=mkldnn):
                loss = F.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return torch.tensor(losses, dtype=torch.float64)

    converted = hotkernels.convert(copy.deepcopy(base))
    assert sum(type(m).__module__.startswith("hotkernels") for m in converted.modules()) == 8
    ours = train(converted, True)
    theirs = train(copy.deepcopy(base), True, mkldnn=dtype != torch.float16)
    exact = train(copy.deepcopy(base), False)
    assert ours[-1] < ours[0] - 0.1, ours  # it learns
    ours_err, torch_err = (ours - exact).abs().max().item(), (theirs - exact).abs().max().item()
    floor = 8 * 2.0 ** -24 * exact.abs().max().item()
    assert ours_err <= max(2 * torch_err, floor), (ours_err, torch_err, ours.tolist(), theirs.tolist(), exact.tolist())
