"""LSTM: the fused cell and the C++ layer loop against nn.LSTMCell / nn.LSTM (same state_dict),
gradients of everything, registration (opcheck, torch.compile), drop-in modules, bad input."""


import copy

import pytest
import torch

import hotkernels.functional as HF
from tests.conftest import CUDA, assert_float32_like_torch, check_inductor, num_threads, run_with_isa
from tests.test_properties import LSTM_SIDE_BY_SIDE_ROWS, LSTM_SLICE_ROWS
import hotkernels.nn as hnn

# Stated tolerances, for values and gradients of order one. The GEMMs are torch's, but we add the
# biases after the two products (torch adds each to its own product) and sum the gradients of
# all time steps in one GEMM (autograd sums per step), so sums round in another order; our
# exponential is within 2 ulp. float64: a few ulp of the largest term. float32: check_float32
# below (against float64, scaled by the reduction lengths, or as accurate as torch's float32).
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-13),
}
DTYPES = [torch.float64, torch.float32]


def check_float32(ref: torch.nn.Module, ours: torch.nn.Module, inputs: list[torch.Tensor], run, r_out: int, r_in: int,
                  r_w: int) -> None:
    """float32: our outputs and gradients (of `inputs` and of every weight) against a float64 copy
    of torch's `ref` on the same inputs, each as accurate as torch's float32 `ref` or within the
    reduction bound (tests/conftest.py, assert_float32_like_torch). `run(module, *inputs)` returns
    the outputs; r_out, r_in, r_w: the longest reductions behind an output, an input gradient and a
    weight gradient."""
    results = []
    for module, dtype in ((ours, torch.float32), (ref, torch.float32), (copy.deepcopy(ref).double(), torch.float64)):
        ins = [t.detach().to(dtype).requires_grad_() for t in inputs]
        outs = run(module, *ins)
        gen = torch.Generator().manual_seed(1)
        cots = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device=o.device, dtype=dtype) for o in outs]
        results.append([*outs, *torch.autograd.grad(outs, [*ins, *module.parameters()], cots)])
    n_out = len(results[0]) - len(inputs) - len(list(ref.parameters()))
    names = [f"output {k}" for k in range(n_out)] + [f"grad input {k}" for k in range(len(inputs))] + \
        [f"grad {n}" for n, _ in ref.named_parameters()]
    lengths = [r_out] * n_out + [r_in] * len(inputs) + [r_w] * len(list(ref.parameters()))
    for name, a, t, e, r in zip(names, *results, lengths, strict=True):
        assert_float32_like_torch(a, t, e, r, name)


def _state(*shape, dtype, device, requires_grad=True):
    return torch.randn(*shape, dtype=dtype, device=device).requires_grad_(requires_grad)


def _pair(ref: torch.nn.Module, ours_cls, dtype, device, *args, **kwargs):
    ours = ours_cls(*args, **kwargs).to(device=device, dtype=dtype)
    ref = ref.to(device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _assert_same_grads(loss_ref, loss_ours, ref_inputs, ours_inputs, ref, ours, tol):
    g_ref = torch.autograd.grad(loss_ref, [*ref_inputs, *ref.parameters()])
    g_ours = torch.autograd.grad(loss_ours, [*ours_inputs, *ours.parameters()])
    names = [f"input{k}" for k in range(len(ref_inputs))] + [n for n, _ in ref.named_parameters()]
    for name, a, b in zip(names, g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"gradient of {name}: {m}")


# ---- LSTMCell ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("size", [(5, 7, 13), (33, 40, 24)], ids=["B5-I7-H13", "B33-I40-H24"])
def test_cell_matches_torch(device, dtype, bias, size):
    B, I, H = size
    ref, ours = _pair(torch.nn.LSTMCell(I, H, bias=bias), hnn.LSTMCell, dtype, device, I, H, bias=bias)
    x, h, c = (_state(B, n, dtype=dtype, device=device) for n in (I, H, H))
    if dtype == torch.float32:  # gates: I + H products and two biases; input grads: 4·H; weights: B
        check_float32(ref, ours, [x, h, c], lambda m, x, h, c: m(x, (h, c)), I + H + 2, 4 * H, B)
        return
    hr, cr = ref(x, (h, c))
    ho, co = ours(x, (h, c))
    torch.testing.assert_close(ho, hr, **TOL[dtype])
    torch.testing.assert_close(co, cr, **TOL[dtype])
    gh, gc = torch.randn_like(hr), torch.randn_like(cr)
    loss_ref = (hr * gh).sum() + (cr * gc).sum()
    loss_ours = (ho * gh).sum() + (co * gc).sum()
    _assert_same_grads(loss_ref, loss_ours, (x, h, c), (x, h, c), ref, ours, TOL[dtype])


def test_cell_unbatched_and_default_state(device):
    ref, ours = _pair(torch.nn.LSTMCell(6, 9), hnn.LSTMCell, torch.float64, device, 6, 9)
    x = torch.randn(6, dtype=torch.float64, device=device)
    for hx in (None, (torch.randn(9, dtype=torch.float64, device=device), torch.randn(9, dtype=torch.float64, device=device))):
        for got, want in zip(ours(x, hx), ref(x, hx)):
            assert got.shape == want.shape == (9,)
            torch.testing.assert_close(got, want, **TOL[torch.float64])
    xb = torch.randn(4, 6, dtype=torch.float64, device=device)
    for got, want in zip(ours(xb), ref(xb)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_cell_only_some_gradients(device):
    """Gradients asked of only some arguments (the backward op's output_mask) are still right."""
    ref, ours = _pair(torch.nn.LSTMCell(5, 6), hnn.LSTMCell, torch.float64, device, 5, 6)
    for module in (ref, ours):
        module.weight_ih.requires_grad_(False)
        module.bias_hh.requires_grad_(False)
    x = torch.randn(3, 5, dtype=torch.float64, device=device)
    h = torch.randn(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.randn(3, 6, dtype=torch.float64, device=device)
    ours(x, (h, c))[0].sum().backward()
    h_grad = h.grad
    h.grad = None
    ref(x, (h, c))[0].sum().backward()
    torch.testing.assert_close(h_grad, h.grad, **TOL[torch.float64])
    assert ours.weight_ih.grad is None and ours.bias_hh.grad is None
    torch.testing.assert_close(ours.weight_hh.grad, ref.weight_hh.grad, **TOL[torch.float64])
    torch.testing.assert_close(ours.bias_ih.grad, ref.bias_ih.grad, **TOL[torch.float64])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [LSTM_SIDE_BY_SIDE_ROWS - 1, LSTM_SIDE_BY_SIDE_ROWS])
@pytest.mark.parametrize("needed", ["all", "hidden and w_hh", "input and w_ih", "weights", "hidden"])
def test_cell_backward_on_any_thread_count(threads, batch, needed):
    """On the CPU the backward's four products run one after the other, or from LSTM_SIDE_BY_SIDE_ROWS
    rows on two threads in two halves side by side where the gradients asked pair up ("all": every
    one; "hidden and w_hh", "input and w_ih": one product a half; the others one after the other).
    Each product is past the GEMM core's one-thread size, so inside a half it plans for one thread.
    Every gradient asked matches torch's in float64."""
    I, H = 48, 64
    ref, ours = _pair(torch.nn.LSTMCell(I, H), hnn.LSTMCell, torch.float64, "cpu", I, H)
    wants = {"all": ("x", "h", "c", "weight_ih", "weight_hh", "bias_ih", "bias_hh"),
             "hidden and w_hh": ("h", "weight_hh"), "input and w_ih": ("x", "weight_ih"),
             "weights": ("weight_ih", "weight_hh"), "hidden": ("h",)}[needed]
    for module in (ref, ours):
        for name, p in module.named_parameters():
            p.requires_grad_(name in wants)
    x, h, c = (_state(batch, n, dtype=torch.float64, device="cpu", requires_grad=name in wants)
               for name, n in (("x", I), ("h", H), ("c", H)))
    leaves = [t for t in (x, h, c) if t.requires_grad]
    gh, gc = torch.randn(batch, H, dtype=torch.float64), torch.randn(batch, H, dtype=torch.float64)
    with num_threads(threads):
        got = torch.autograd.grad(ours(x, (h, c)), leaves + [p for p in ours.parameters() if p.requires_grad], (gh, gc))
    want = torch.autograd.grad(ref(x, (h, c)), leaves + [p for p in ref.parameters() if p.requires_grad], (gh, gc))
    assert len(got) == len(want) == len(wants)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_cell_module_is_drop_in():
    torch.manual_seed(3)
    theirs = torch.nn.LSTMCell(10, 20)
    torch.manual_seed(3)
    ours = hnn.LSTMCell(10, 20)
    assert repr(ours) == repr(theirs) and isinstance(ours, torch.nn.LSTMCell)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), f"{k} initialised differently"
    theirs.load_state_dict(hnn.LSTMCell(10, 20).state_dict())  # and back
    assert list(hnn.LSTMCell(10, 20, bias=False).state_dict()) == ["weight_ih", "weight_hh"]


# ---- LSTM --------------------------------------------------------------------------------------

LSTM_CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, bias=False),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, batch_first=True, bidirectional=True),
    # proj_size (hidden 7): h = W_hr(o ⊙ tanh(c)) has proj_size features, c keeps hidden_size.
    dict(num_layers=1, proj_size=3),
    dict(num_layers=2, bias=False, proj_size=4),
    dict(num_layers=2, bidirectional=True, proj_size=3),
    dict(num_layers=2, batch_first=True, bidirectional=True, proj_size=5),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", LSTM_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("with_state", [True, False], ids=["hx", "no-hx"])
def test_lstm_matches_torch(device, dtype, config, with_state):
    check_lstm(device, dtype, config, with_state, 6, 3, 5, 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("proj_size", [0, 48])
def test_lstm_on_every_path_of_the_gemm_core(device, dtype, proj_size):
    """Sizes past the GEMM core's blocks (csrc/cpu/gemm/gemm.h): T·B = 333 rows of input projection
    (two row tiles of 256), 4·H = 320 (two reduction chunks of backward's steps), a batch of 37
    (partial row blocks of every micro-kernel), H = 80 (partial panels), steps big enough to be
    split over threads; with proj_size 48, the projection's GEMMs (P = 48 columns forward, H = 80
    columns with the pointwise backward as epilogue) too."""
    check_lstm(device, dtype, dict(num_layers=2, bidirectional=True, proj_size=proj_size), True, 9, 37, 70, 80)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [2 * LSTM_SLICE_ROWS - 1, 2 * LSTM_SLICE_ROWS, 2 * LSTM_SLICE_ROWS + 13])
@pytest.mark.parametrize("lengths", ["padded", "packed T-2..T", "packed T-3..T", "packed 1..T"])
@pytest.mark.parametrize("proj_size", [0, 48])
def test_lstm_batch_slices_on_any_thread_count(threads, batch, lengths, proj_size):
    """On the CPU a layer's steps run on exactly two threads from 2·LSTM_SLICE_ROWS rows as two
    slices of the batch, each through every step; otherwise each step's product is cut over the
    threads (H = 64 and P = 48 make every step's products large enough to be). A packed batch is
    cut where its slices' computed rows balance, and keeps the halves where even that cut leaves one
    slice much busier. The lengths (unsorted, with ties) take each path: with AVX-512's 8-row
    blocks, T-2..T runs as slices at batch 24 and 37, T-3..T keeps the halves at 24 and is cut
    off-centre (16 of 37 rows) at 37, 1..T keeps the halves. Both directions, a projection, every
    gradient: float64 against torch."""
    T, I, H = 7, 6, 64
    config = dict(num_layers=2, bidirectional=True, proj_size=proj_size)
    ref, ours = _pair(torch.nn.LSTM(I, H, **config), hnn.LSTM, torch.float64, "cpu", I, H, **config)
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(T, batch, I, dtype=torch.float64, generator=gen).requires_grad_()
    state = [torch.randn(4, batch, n, dtype=torch.float64, generator=gen).requires_grad_() for n in (proj_size or H, H)]
    spread = {"padded": 1, "packed T-2..T": 3, "packed T-3..T": 4, "packed 1..T": T}[lengths]
    steps = T - torch.randperm(batch, generator=torch.Generator().manual_seed(batch)) % spread

    def run(module):
        packed = lengths != "padded"
        inp = torch.nn.utils.rnn.pack_padded_sequence(x, steps, enforce_sorted=False) if packed else x
        y, (h, c) = module(inp, tuple(state))
        y = y.data if packed else y
        cot_gen = torch.Generator().manual_seed(1)
        cots = [torch.randn(t.shape, dtype=torch.float64, generator=cot_gen) for t in (y, h, c)]
        return [y, h, c, *torch.autograd.grad((y, h, c), [x, *state, *module.parameters()], cots)]

    with num_threads(threads):
        got = run(ours)
    for a, b in zip(got, run(ref), strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def check_lstm(device, dtype, config, with_state, T, B, I, H):
    ref, ours = _pair(torch.nn.LSTM(I, H, **config), hnn.LSTM, dtype, device, I, H, **config)
    x = _state(*((B, T, I) if config.get("batch_first") else (T, B, I)), dtype=dtype, device=device)
    L = config["num_layers"] * (2 if config.get("bidirectional") else 1)
    P = config.get("proj_size", 0) or H  # the features of h
    state = (_state(L, B, P, dtype=dtype, device=device), _state(L, B, H, dtype=dtype, device=device))
    inputs = (x, *state) if with_state else (x,)
    hx = state if with_state else None
    if dtype == torch.float32:
        # Compounded over the steps and layers: each gate sums a layer's input (I, or 2·P from a
        # bidirectional layer below), P and two biases, a projected h the H of r; input gradients
        # 4·H per direction (and P more through the projection); weight gradients the T·B steps.
        layers, dirs = config["num_layers"], 2 if config.get("bidirectional") else 1
        proj = H if P != H else 0
        r_out = T * layers * (max(I, dirs * P) + P + 2 + proj)

        def run(m, x, *state):
            y, (h, c) = m(x, tuple(state) if state else None)
            return y, h, c

        check_float32(ref, ours, list(inputs), run, r_out, T * layers * (4 * H + proj) * dirs, T * B)
        return
    yr, (hr, cr) = ref(x, hx)
    yo, (ho, co) = ours(x, hx)
    for got, want in ((yo, yr), (ho, hr), (co, cr)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, **TOL[dtype])
    gy, gh, gc = torch.randn_like(yr), torch.randn_like(hr), torch.randn_like(cr)
    loss_ref = (yr * gy).sum() + (hr * gh).sum() + (cr * gc).sum()
    loss_ours = (yo * gy).sum() + (ho * gh).sum() + (co * gc).sum()
    _assert_same_grads(loss_ref, loss_ours, inputs, inputs, ref, ours, TOL[dtype])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("proj_size", [0, 3])
def test_lstm_unbatched(device, batch_first, proj_size):
    ref, ours = _pair(torch.nn.LSTM(4, 5, 2, batch_first=batch_first, proj_size=proj_size), hnn.LSTM, torch.float64,
                      device, 4, 5, 2, batch_first=batch_first, proj_size=proj_size)
    x = torch.randn(7, 4, dtype=torch.float64, device=device)
    hx = (torch.randn(2, proj_size or 5, dtype=torch.float64, device=device),
          torch.randn(2, 5, dtype=torch.float64, device=device))
    for state in (None, hx):
        yr, (hr, cr) = ref(x, state)
        yo, (ho, co) = ours(x, state)
        for got, want in ((yo, yr), (ho, hr), (co, cr)):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_lstm_dropout_between_layers(device):
    ref, ours = _pair(torch.nn.LSTM(4, 6, 2, dropout=1.0), hnn.LSTM, torch.float64, device, 4, 6, 2, dropout=1.0)
    x = torch.randn(5, 2, 4, dtype=torch.float64, device=device)
    # p = 1 zeroes the first layer's output in training (deterministically), in both.
    torch.testing.assert_close(ours.train()(x)[0], ref.train()(x)[0], **TOL[torch.float64])
    torch.testing.assert_close(ours.eval()(x)[0], ref.eval()(x)[0], **TOL[torch.float64])
    assert not torch.allclose(ours.train()(x)[0], ours.eval()(x)[0])
    half = hnn.LSTM(4, 6, 2, dropout=0.5).double().to(device)
    torch.manual_seed(1)
    a = half(x)[0]
    torch.manual_seed(1)
    assert torch.equal(a, half(x)[0]) and not torch.allclose(a, half.eval()(x)[0])


def test_lstm_module_is_drop_in():
    config = dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    torch.manual_seed(5)
    theirs = torch.nn.LSTM(**config)
    torch.manual_seed(5)
    ours = hnn.LSTM(**config)
    assert repr(ours) == repr(theirs) and isinstance(ours, torch.nn.RNNBase) and ours.mode == "LSTM"
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "weight_hh_l1_reverse" in ours.state_dict()
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), f"{k} initialised differently"
    theirs.load_state_dict(hnn.LSTM(**config).state_dict())


def test_lstm_with_projections_is_drop_in():
    """proj_size: the same parameters as torch's (weight_hr_l{k}[_reverse] after the biases, in
    _flat_weights' order too), initialised alike, h_0 of zeros with proj_size features."""
    config = dict(input_size=3, hidden_size=6, num_layers=2, bidirectional=True, proj_size=4)
    torch.manual_seed(5)
    theirs = torch.nn.LSTM(**config)
    torch.manual_seed(5)
    ours = hnn.LSTM(**config)
    assert repr(ours) == repr(theirs) and hnn.LSTM.unsupported(theirs) is None
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert ours._flat_weights_names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert ours.weight_hr_l1_reverse.shape == (4, 6) and ours.weight_hh_l1.shape == (24, 4)
    assert ours.weight_ih_l1.shape == (24, 8)  # the layer below's two directions of proj_size
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), f"{k} initialised differently"
    y, (h, c) = ours(torch.randn(5, 2, 3))
    assert y.shape == (5, 2, 8) and h.shape == (4, 2, 4) and c.shape == (4, 2, 6)
    nobias = hnn.LSTM(3, 6, proj_size=2, bias=False)
    assert nobias._flat_weights_names == ["weight_ih_l0", "weight_hh_l0", "weight_hr_l0"]


# ---- gradcheck, opcheck, torch.compile ----------------------------------------------------------


def _params(device, I, H, requires_grad=True, P=None):
    """w_ih, w_hh, b_ih, b_hh of a cell or layer (w_hh [4H, P] with a projection to P features)."""
    return [torch.randn(*s, dtype=torch.float64, device=device, requires_grad=requires_grad)
            for s in ((4 * H, I), (4 * H, P or H), (4 * H,), (4 * H,))]


def test_gradcheck_and_gradgradcheck_cell(device):
    B, I, H = 2, 3, 3
    x, h, c = (torch.randn(B, n, dtype=torch.float64, device=device, requires_grad=True) for n in (I, H, H))
    args = (x, h, c, *_params(device, I, H))
    cell = lambda x, h, c, *w: HF.lstm_cell(x, (h, c), *w)  # noqa: E731
    assert torch.autograd.gradcheck(cell, args)
    assert torch.autograd.gradgradcheck(cell, args)


def _layer_args(device, T, B, I, H, P=None):
    """(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr) of the layer op, float64, all requiring grad;
    w_hr [P, H] with a projection, else None."""
    x = torch.randn(T, B, I, dtype=torch.float64, device=device, requires_grad=True)
    h = torch.randn(B, P or H, dtype=torch.float64, device=device, requires_grad=True)
    c = torch.randn(B, H, dtype=torch.float64, device=device, requires_grad=True)
    w_hr = torch.randn(P, H, dtype=torch.float64, device=device, requires_grad=True) if P else None
    return (x, h, c, *_params(device, I, H, P=P), w_hr)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("proj", [None, 2], ids=["no-proj", "proj"])
def test_gradcheck_and_gradgradcheck_layer(device, reverse, proj):
    T, B, I, H = 3, 2, 3, 3 if proj else 2
    args = _layer_args(device, T, B, I, H, proj)
    if proj is None:
        args = args[:-1]

    def layer(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=None):
        out, cs, _ = torch.ops.hotkernels.lstm_layer(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, reverse)
        return out, cs

    assert torch.autograd.gradcheck(layer, args)
    assert torch.autograd.gradgradcheck(layer, args)


# A packed batch's batch_sizes for T = 4, B = 3 (lengths 4, 2, 1): the rows past them are padding.
BATCH_SIZES = [3, 2, 1, 1]


@pytest.mark.parametrize("proj", [None, 2], ids=["no-proj", "proj"])
def test_gradcheck_layer_with_batch_sizes(device, proj):
    args = _layer_args(device, 4, 3, 3, 3, proj)

    def layer(*a):
        out, cs, _ = torch.ops.hotkernels.lstm_layer(*a, False, BATCH_SIZES)
        return out, cs

    assert torch.autograd.gradcheck(layer, args if proj else args[:-1] + (None,))


@pytest.mark.parametrize("proj", [None, 2], ids=["no-proj", "proj"])
def test_layer_batch_sizes_skip_only_the_padding(device, proj):
    """With batch_sizes the sequences' outputs and every gradient are those of the full computation
    when the padding's output gradients are 0; on the CPU, which skips the padding, its outputs
    are 0 and gradients given to them change nothing."""
    T, B = len(BATCH_SIZES), BATCH_SIZES[0]
    args = _layer_args(device, T, B, 5, 6, proj)
    pad = torch.arange(B, device=device) >= torch.tensor(BATCH_SIZES, device=device).unsqueeze(1)  # [T, B]
    full = torch.ops.hotkernels.lstm_layer(*args, False)[:2]
    skip = torch.ops.hotkernels.lstm_layer(*args, False, BATCH_SIZES)[:2]
    cot = [torch.randn_like(t).masked_fill(pad.unsqueeze(-1), 0) for t in full]
    wanted = [a for a in args if a is not None]
    for f, s in zip(full, skip):
        torch.testing.assert_close(s[~pad], f[~pad], rtol=1e-12, atol=1e-12)
    for f, s in zip(torch.autograd.grad(full, wanted, cot), torch.autograd.grad(skip, wanted, cot)):
        torch.testing.assert_close(s, f, rtol=1e-12, atol=1e-12)
    if device == "cpu":
        assert all(bool((s[pad] == 0).all()) for s in skip)
        noisy = [c + torch.randn_like(c).masked_fill(~pad.unsqueeze(-1), 0) for c in cot]
        full = torch.ops.hotkernels.lstm_layer(*args, False)[:2]
        skip = torch.ops.hotkernels.lstm_layer(*args, False, BATCH_SIZES)[:2]
        for f, s in zip(torch.autograd.grad(full, wanted, cot), torch.autograd.grad(skip, wanted, noisy)):
            torch.testing.assert_close(s, f, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("used", ["output", "cs", "both"])
def test_layer_backward_with_an_output_unused(device, used):
    """Autograd passes None for outputs without a gradient (the gates always, output or cs when the
    loss does not reach them): the gradients equal those with explicit zeros for them."""
    args = _layer_args(device, 4, 3, 5, 6)
    out, cs, _ = torch.ops.hotkernels.lstm_layer(*args, False)
    g_out, g_cs = torch.randn_like(out), torch.randn_like(cs)
    loss = {"output": (out * g_out).sum(), "cs": (cs * g_cs).sum(), "both": (out * g_out).sum() + (cs * g_cs).sum()}
    got = torch.autograd.grad(loss[used], [a for a in args if a is not None])
    out, cs, _ = torch.ops.hotkernels.lstm_layer(*args, False)
    zero_out, zero_cs = used == "cs", used == "output"
    want = torch.autograd.grad((out, cs), [a for a in args if a is not None],
                               (g_out * (not zero_out), g_cs * (not zero_cs)))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_layer_rejects_bad_batch_sizes(device):
    x, h, c, *w = _layer_args(device, 4, 3, 3, 2)
    op = torch.ops.hotkernels.lstm_layer
    for bad, match in (([3, 2, 1], "to have 4 entries"), ([3, 2, 3, 1], "to be non-increasing"),
                       ([4, 2, 1, 1], "to be non-increasing and within \\[0, batch\\] \\(3\\)"),
                       ([3, 2, -1, -1], "to be non-increasing")):
        with pytest.raises(RuntimeError, match=f"hotkernels.lstm_layer: expected 'batch_sizes' {match}"):
            op(x, h, c, *w, False, bad)
    with pytest.raises(RuntimeError, match="hotkernels.lstm_layer: 'batch_sizes' needs reverse=False"):
        op(x, h, c, *w, True, BATCH_SIZES)


@pytest.mark.parametrize("proj", [None, 4], ids=["no-proj", "proj"])
def test_double_backward_path_matches_the_fused_backward(device, proj):
    # gradgradcheck above checks the create_graph=True path against itself; here its first-order
    # gradients must equal the fused backward ops' (gate order, biases, direction, projection).
    T, B, I, H = 4, 3, 5, 6
    layer_args = _layer_args(device, T, B, I, H, proj)
    args = layer_args if proj else layer_args[:-1]
    for reverse in (False, True):
        out, cs, _ = torch.ops.hotkernels.lstm_layer(*layer_args, reverse)
        grads = (torch.randn_like(out), torch.randn_like(cs))
        fused = torch.autograd.grad((out, cs), args, grads, retain_graph=True)
        composite = torch.autograd.grad((out, cs), args, grads, create_graph=True)
        for a, b in zip(fused, composite):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if proj:
        return  # the cell has no projection
    x, h, c = args[:3]
    hy, cy = HF.lstm_cell(x[0], (h, c), *args[3:])
    grads = (torch.randn_like(hy), torch.randn_like(cy))
    fused = torch.autograd.grad((hy, cy), args, grads, retain_graph=True, allow_unused=True)
    composite = torch.autograd.grad((hy, cy), args, grads, create_graph=True, allow_unused=True)
    for a, b in zip(fused, composite):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wanted", [("w_hr",), ("hx",), ("input", "w_ih", "b_hh"), ("w_hh", "cx")])
def test_layer_only_some_gradients_with_projection(device, wanted):
    """The layer op with w_hr, gradients asked of only some arguments (the 6-entry output_mask):
    those equal the ones computed with every gradient asked, the others stay None."""
    names = ("input", "hx", "cx", "w_ih", "w_hh", "b_ih", "b_hh", "w_hr")
    args = _layer_args(device, 4, 3, 5, 6, 2)
    out, cs, _ = torch.ops.hotkernels.lstm_layer(*args, True)
    cot = (torch.randn_like(out), torch.randn_like(cs))
    full = dict(zip(names, torch.autograd.grad((out, cs), args, cot)))
    some = [t.detach().requires_grad_(n in wanted) for n, t in zip(names, args)]
    out, cs, _ = torch.ops.hotkernels.lstm_layer(*some, True)
    got = torch.autograd.grad((out, cs), [t for t in some if t.requires_grad], cot)
    assert len(got) == len(wanted)
    for n, g in zip([n for n in names if n in wanted], got):
        torch.testing.assert_close(g, full[n], **TOL[torch.float64], msg=lambda m: f"gradient of {n}: {m}")


def test_backward_ops_refuse_to_be_differentiated(device):
    # The backward ops have no derivative: a gradient through them must raise, not pass silently.
    B, I, H = 2, 3, 4
    x, h, c = (torch.randn(B, n, dtype=torch.float64, device=device) for n in (I, H, H))
    w = _params(device, I, H, requires_grad=False)
    hy, cy, gates = torch.ops.hotkernels.lstm_cell(x, h, c, *w)
    grad_hy = torch.randn_like(hy, requires_grad=True)
    grads = torch.ops.hotkernels.lstm_cell_backward(grad_hy, torch.zeros_like(cy), x, h, c, w[0], w[1], cy, gates,
                                                    [True] * 5)
    with pytest.raises(RuntimeError, match="derivative for hotkernels::lstm_cell_backward is not implemented"):
        grads[0].sum().backward()


def test_opcheck(device):
    B, I, H, T = 3, 4, 5, 4
    x, h, c = (torch.randn(B, n, device=device, requires_grad=True) for n in (I, H, H))
    w = [t.float().detach().requires_grad_() for t in _params(device, I, H)]
    xs = torch.randn(T, B, I, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.hotkernels.lstm_cell.default, (x, h, c, *w))
    torch.library.opcheck(torch.ops.hotkernels.lstm_cell.default, (x.detach(), h, c, w[0], w[1], None, None))
    torch.library.opcheck(torch.ops.hotkernels.lstm_layer.default, (xs, h, c, *w, None, True))
    torch.library.opcheck(torch.ops.hotkernels.lstm_layer.default,
                          (xs.detach(), h, c, w[0], w[1], None, w[3], None, False))
    # With a projection to P = 2 features: hx [B, P], w_hh [4H, P], w_hr [P, H].
    P = 2
    hp = torch.randn(B, P, device=device, requires_grad=True)
    w_hh_p = torch.randn(4 * H, P, device=device, requires_grad=True)
    w_hr = torch.randn(P, H, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.hotkernels.lstm_layer.default, (xs, hp, c, w[0], w_hh_p, w[2], w[3], w_hr, False))
    torch.library.opcheck(torch.ops.hotkernels.lstm_layer.default,
                          (xs.detach(), hp, c.detach(), w[0].detach(), w_hh_p, None, None, w_hr, True))
    x, h, c, xs, hp, w_hh_p, w_hr = (t.detach() for t in (x, h, c, xs, hp, w_hh_p, w_hr))
    w = [t.detach() for t in w]
    hy, cy, gates = torch.ops.hotkernels.lstm_cell(x, h, c, *w)
    mask = [False, True, False, True, False]
    torch.library.opcheck(torch.ops.hotkernels.lstm_cell_backward.default,
                          (torch.randn_like(hy), torch.randn_like(cy), x, h, c, w[0], w[1], cy, gates, mask))
    out, cs, gates = torch.ops.hotkernels.lstm_layer(xs, h, c, *w, None, True)
    torch.library.opcheck(torch.ops.hotkernels.lstm_layer_backward.default,
                          (torch.randn_like(out), torch.randn_like(cs), xs, h, c, w[0], w[1], out, cs, gates, None,
                           True, [True] * 6))
    out, cs, gates = torch.ops.hotkernels.lstm_layer(xs, h, c, *w, None, False, [3, 2, 2, 1])
    torch.library.opcheck(torch.ops.hotkernels.lstm_layer.default, (xs, h, c, *w, None, False, [3, 2, 2, 1]))
    torch.library.opcheck(torch.ops.hotkernels.lstm_layer_backward.default,
                          (torch.randn_like(out), torch.randn_like(cs), xs, h, c, w[0], w[1], out, cs, gates, None,
                           False, [True] * 6, [3, 2, 2, 1]))
    out, cs, gates = torch.ops.hotkernels.lstm_layer(xs, hp, c, w[0], w_hh_p, w[2], w[3], w_hr, False)
    for mask in ([True] * 6, [False, True, False, False, True, True], [True, False, True, True, False, False]):
        torch.library.opcheck(torch.ops.hotkernels.lstm_layer_backward.default,
                              (torch.randn_like(out), torch.randn_like(cs), xs, hp, c, w[0], w_hh_p, out, cs, gates,
                               w_hr, False, mask))


def test_torch_compile_inductor_matches_torch(device):
    """Inductor (torch.compile's default backend) around the cell and layer ops against torch's eager
    LSTMCell and LSTM (with and without proj_size) with the same weights (float64: a tight
    comparison): outputs and gradients of the input and every weight."""
    torch.manual_seed(0)
    ref_cell, cell = _pair(torch.nn.LSTMCell(4, 6), hnn.LSTMCell, torch.float64, device, 4, 6)
    ref_rnn, rnn = _pair(torch.nn.LSTM(4, 6, 2, bidirectional=True, batch_first=True), hnn.LSTM, torch.float64, device,
                         4, 6, 2, bidirectional=True, batch_first=True)
    ref_proj, proj = _pair(torch.nn.LSTM(4, 6, batch_first=True, proj_size=3), hnn.LSTM, torch.float64, device, 4, 6,
                           batch_first=True, proj_size=3)
    names = [[n for n, _ in m.named_parameters()] for m in (ref_cell, ref_rnn, ref_proj)]

    def f(modules, x, *weights):
        outs, k = [], 0
        for m, n in zip(modules, names):
            out = torch.func.functional_call(m, dict(zip(n, weights[k : k + len(n)])), (x[:, 0] if k == 0 else x,))
            outs += [out[0], *out[1]] if k else list(out)
            k += len(n)
        return tuple(outs)

    x = torch.randn(3, 5, 4, dtype=torch.float64, device=device, requires_grad=True)
    weights = [p.detach().requires_grad_() for m in (ref_cell, ref_rnn, ref_proj) for p in m.parameters()]
    check_inductor(lambda *a: f((cell, rnn, proj), *a), lambda *a: f((ref_cell, ref_rnn, ref_proj), *a), [x, *weights],
                   ["hotkernels.lstm_cell.default", "hotkernels.lstm_cell_backward.default",
                    "hotkernels.lstm_layer.default", "hotkernels.lstm_layer_backward.default"], **TOL[torch.float64])


def test_every_cpu_instruction_set(cpu_isa):
    """Each SIMD path this CPU can run (capped by HOTKERNELS_CPU_ISA) matches torch."""
    code = (
        "import torch, hotkernels\n"
        "from tests.test_lstm import check_float32\n"
        "ref = torch.nn.LSTM(9, 21, 2); ours = hotkernels.nn.LSTM(9, 21, 2); ours.load_state_dict(ref.state_dict())\n"
        "x = torch.randn(4, 5, 9)\n"
        "check_float32(ref, ours, [x], lambda m, x: (m(x)[0],), 4 * 2 * (21 + 21 + 2), 4 * 2 * 84, 4 * 5)\n"
        "ref = torch.nn.LSTM(9, 21, 2, proj_size=13); ours = hotkernels.nn.LSTM(9, 21, 2, proj_size=13)\n"
        "ours.load_state_dict(ref.state_dict())\n"
        "check_float32(ref, ours, [x], lambda m, x: (m(x)[0],), 4 * 2 * (13 + 13 + 2 + 21), 4 * 2 * (84 + 13), 4 * 5)\n"
    )
    run_with_isa(cpu_isa, code)


def test_half_types_on_cuda(device):
    if device == "cpu":
        pytest.skip("the CPU's float16/bfloat16: test_half_types_on_cpu_as_accurate_as_torch")
    B, I, H = 16, 24, 40
    ref = torch.nn.LSTMCell(I, H).to(device)
    x, h, c = (torch.randn(B, n, device=device) for n in (I, H, H))
    want = ref(x, (h, c))
    for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 2e-2)):
        w = [p.detach().to(dtype) for p in ref.parameters()]
        got = HF.lstm_cell(x.to(dtype), (h.to(dtype), c.to(dtype)), *w)
        for g, r in zip(got, want):
            torch.testing.assert_close(g.float(), r, rtol=tol, atol=tol)


@pytest.mark.skipif(not CUDA, reason="needs a GPU and hotkernels built with CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_lstm_layer_half_types_cuda(dtype):
    """float16/bfloat16 nn.LSTM on CUDA (the lstm_layer op and its backward op: GEMMs in the half
    type with float accumulation, gates and states stored in it, the pointwise math in float),
    two bidirectional layers, against torch's float64 nn.LSTM with the same (rounded) weights,
    inputs and output gradients. Every step rounds the gate pre-activations, c and h (relative u:
    2^-11 for float16, 2^-8 for bfloat16) and W_hh carries a step's errors into the next damped
    (weights within ±1/√H); emulating those roundings on the CPU (float64 otherwise, 20 seeds) gives
    at most 1u on outputs and states, allowed 8u. Gradients (sums over steps and batch of products of
    such values, dgates, dh and dc rounded to the half type at every step): at most 3u of each
    gradient's largest magnitude in the same emulation with the gradients rounded where the
    kernels store them (10 seeds), allowed 16u."""
    u = 2.0**-11 if dtype == torch.float16 else 2.0**-8
    T, B, I, H = 6, 4, 24, 32
    ours = hnn.LSTM(I, H, num_layers=2, bidirectional=True).to("cuda", dtype)
    ref = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True).to("cuda", torch.float64)
    ref.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    x = torch.randn(T, B, I, device="cuda").to(dtype).requires_grad_()
    h0, c0 = (torch.randn(4, B, H, device="cuda").to(dtype).requires_grad_() for _ in range(2))
    xr, h0r, c0r = (t.detach().double().requires_grad_() for t in (x, h0, c0))
    yo, (ho, co) = ours(x, (h0, c0))
    yr, (hr, cr) = ref(xr, (h0r, c0r))
    for got, want in ((yo, yr), (ho, hr), (co, cr)):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=8 * u, atol=8 * u)
    gy, gh, gc = (torch.randn_like(t) for t in (yo, ho, co))
    loss_ours = (yo * gy).float().sum() + (ho * gh).float().sum() + (co * gc).float().sum()
    loss_ref = (yr * gy.double()).sum() + (hr * gh.double()).sum() + (cr * gc.double()).sum()
    names = ["input", "h0", "c0"] + [n for n, _ in ref.named_parameters()]
    got = torch.autograd.grad(loss_ours, [x, h0, c0, *ours.parameters()])
    want = torch.autograd.grad(loss_ref, [xr, h0r, c0r, *ref.parameters()])
    for name, a, b in zip(names, got, want, strict=True):
        assert a.dtype == dtype, name
        torch.testing.assert_close(a.double(), b, rtol=0, atol=16 * u * b.abs().max().item(),
                                   msg=lambda m: f"gradient of {name}: {m}")


# ---- bad input -----------------------------------------------------------------------------------


def test_cell_rejects_bad_input(device):
    x, h, c = torch.randn(3, 4, device=device), torch.randn(3, 5, device=device), torch.randn(3, 5, device=device)
    w_ih, w_hh = torch.randn(20, 4, device=device), torch.randn(20, 5, device=device)
    op = torch.ops.hotkernels.lstm_cell
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_cell: expected 'w_ih' of shape \[20, 4\]"):
        op(x, h, c, torch.randn(20, 3, device=device), w_hh, None, None)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_cell: expected 'w_hh' of shape \[20, 5\]"):
        op(x, h, c, w_ih, torch.randn(16, 5, device=device), None, None)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_cell: expected 'cx' of shape \[3, 5\]"):
        op(x, h, c[:2], w_ih, w_hh, None, None)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_cell: expected 'b_hh' of shape \[20\]"):
        op(x, h, c, w_ih, w_hh, torch.randn(20, device=device), torch.randn(21, device=device))
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_cell: expected 'hx' to have dtype"):
        op(x, h.double(), c, w_ih, w_hh, None, None)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_cell: expected 'input' to be a float32"):
        op(x.int(), h, c, w_ih, w_hh, None, None)
    with pytest.raises(ValueError, match=r"hotkernels.lstm_cell: expected 'input' to be 1-D .* or 2-D"):
        HF.lstm_cell(x[None], (h, c), w_ih, w_hh)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_cell: expected 'w_ih' to have dtype Double like 'input'"):
        hnn.LSTMCell(4, 5).to(device)(x.double(), (h.double(), c.double()))


# name: (torch module, drop-in class, input shapes, run(module, *inputs) -> outputs)
HALF_MODULES = {
    "cell": (lambda: torch.nn.LSTMCell(6, 10), hnn.LSTMCell, [(4, 6), (4, 10), (4, 10)],
             lambda m, x, h, c: m(x, (h, c))),
    "lstm-bidirectional": (lambda: torch.nn.LSTM(6, 10, 2, bidirectional=True), hnn.LSTM,
                           [(5, 4, 6), (4, 4, 10), (4, 4, 10)], lambda m, x, h, c: (m(x, (h, c))[0],)),
    "lstm-proj": (lambda: torch.nn.LSTM(6, 10, proj_size=3), hnn.LSTM, [(5, 4, 6), (1, 4, 3), (1, 4, 10)],
                  lambda m, x, h, c: (m(x, (h, c))[0],)),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", list(HALF_MODULES))
def test_half_types_on_cpu_as_accurate_as_torch(dtype, name):
    """float16/bfloat16 on the CPU run in float32 and round, as torch's CPU LSTM does: outputs and
    gradients (of the input and every weight) of the same half-type module and input are within
    twice torch's own error from the float64 result, or within 4 ulp of the half type of the
    largest value (saved activations are rounded, and torch's and our sums run in other orders)."""
    make_ref, ours_cls, shapes, run = HALF_MODULES[name]
    torch.manual_seed(0)
    ref = make_ref().to(dtype)
    ours = copy.deepcopy(ref)
    ours.__class__ = ours_cls  # the drop-in: same parameters, our forward
    inputs = [torch.randn(shape).to(dtype) for shape in shapes]
    results = []
    for module in (ours, ref, copy.deepcopy(ref).double()):
        ins = [t.to(next(module.parameters()).dtype).requires_grad_() for t in inputs]
        outs = run(module, *ins)
        cots = [torch.ones_like(o) for o in outs]
        results.append([*outs, *torch.autograd.grad(outs, [*ins, *module.parameters()], cots)])
    eps = torch.finfo(dtype).eps
    for k, (a, t, e) in enumerate(zip(*results, strict=True)):
        assert a.dtype == dtype, (k, a.dtype)
        ours_err = (a.double() - e).abs().max().item()
        torch_err = (t.double() - e).abs().max().item()
        assert ours_err <= max(2 * torch_err, 4 * eps * e.abs().max().item()), (name, k, ours_err, torch_err)


def test_lstm_rejects_bad_input(device):
    with pytest.raises(ValueError, match=r"proj_size has to be smaller than hidden_size"):  # torch's own check
        hnn.LSTM(4, 6, proj_size=6)
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(1, 2, 3\), got \[1, 2, 6\]"):
        h = torch.zeros(1, 2, 6, device=device)  # torch's check of h_0 (proj_size features)
        hnn.LSTM(4, 6, proj_size=3).to(device)(torch.randn(5, 2, 4, device=device), (h, h))
    rnn = hnn.LSTM(4, 6, 2).to(device)
    x = torch.randn(5, 2, 4, device=device)
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size"):
        rnn(torch.randn(5, 2, 3, device=device))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 2, 6\)"):
        rnn(x, (torch.zeros(1, 2, 6, device=device), torch.zeros(2, 2, 6, device=device)))
    with pytest.raises(ValueError, match=r"hotkernels.nn.LSTM: expected 'input' to be 2-D or 3-D"):
        rnn(x[None])
    h = torch.zeros(2, 6, device=device)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer: expected 'input' to have at least one time step"):
        torch.ops.hotkernels.lstm_layer(x[:0], h, h, *rnn._flat_weights[:4], None, False)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer: expected 'input' to be 3-D"):
        torch.ops.hotkernels.lstm_layer(x[0], h, h, *rnn._flat_weights[:4], None, False)


def test_layer_with_projection_rejects_bad_input(device):
    w_ih, w_hh, b_ih, b_hh, w_hr = (p.detach() for p in torch.nn.LSTM(4, 6, proj_size=3).to(device)._flat_weights)
    x = torch.randn(5, 2, 4, device=device)
    hp, c = torch.zeros(2, 3, device=device), torch.zeros(2, 6, device=device)
    op = torch.ops.hotkernels.lstm_layer
    out, cs, gates = op(x, hp, c, w_ih, w_hh, b_ih, b_hh, w_hr, False)
    assert out.shape == (5, 2, 3) and cs.shape == (5, 2, 6)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer: expected 'w_hr' of shape \[3, 6\] "
                                           r"\(proj_size, hidden_size\), but got \[3, 5\]"):
        op(x, hp, c, w_ih, w_hh, b_ih, b_hh, w_hr[:, :5], False)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer: expected 'w_hr' of shape \[3, 6\]"):
        op(x, hp, c, w_ih, w_hh, b_ih, b_hh, w_hr.T.contiguous()[:3], False)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer: expected 'w_hr' to have dtype Double"):
        op(x.double(), hp.double(), c.double(), w_ih.double(), w_hh.double(), None, None, w_hr, False)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer: expected 'w_hh' of shape \[24, 3\] "
                                           r"\(4\*hidden_size, proj_size\)"):
        op(x, hp, c, w_ih, torch.randn(24, 6, device=device), b_ih, b_hh, w_hr, False)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer: expected 'w_hh' of shape \[24, 6\]"):
        op(x, c, c, w_ih, w_hh, b_ih, b_hh, None, False)  # w_hh [4H, P] without w_hr
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer_backward: expected 'w_hr' of shape \[3, 6\]"):
        torch.ops.hotkernels.lstm_layer_backward(out, cs, x, hp, c, w_ih, w_hh, out, cs, gates, w_hr[:2], False,
                                                 [True] * 6)
    with pytest.raises(RuntimeError, match=r"hotkernels.lstm_layer_backward: expected 'grad_output' of shape "
                                           r"\[5, 2, 3\] \(seq_len, batch, proj_size\)"):
        torch.ops.hotkernels.lstm_layer_backward(cs, cs, x, hp, c, w_ih, w_hh, out, cs, gates, w_hr, False,
                                                 [True] * 6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_path_calls_no_torch_gemm(dtype):
    """The CPU LSTM runs on our GEMM core: a profile of LSTMCell and nn.LSTM (with and without
    proj_size), forward and backward, holds our ops and no aten::mm, addmm or matmul (what the GEMMs
    went through before)."""
    cell = hnn.LSTMCell(6, 8).to(dtype)
    rnn = hnn.LSTM(6, 8, num_layers=2, bidirectional=True).to(dtype)
    projected = hnn.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=5).to(dtype)
    x = torch.randn(4, 6, dtype=dtype, requires_grad=True)
    xs = torch.randn(5, 4, 6, dtype=dtype, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        h, c = cell(x)
        (h.sum() + c.sum()).backward()
        y, _ = rnn(xs)
        y.sum().backward()
        y, (h, c) = projected(xs)
        (y.sum() + h.sum() + c.sum()).backward()
    assert all(p.grad is not None for p in projected.parameters())
    names = {e.key for e in prof.key_averages()}
    for op in ("lstm_cell", "lstm_cell_backward", "lstm_layer", "lstm_layer_backward"):
        assert f"hotkernels::{op}" in names, (op, sorted(names))
    assert not names & {"aten::mm", "aten::addmm", "aten::addmm_", "aten::matmul", "aten::bmm"}, sorted(names)
