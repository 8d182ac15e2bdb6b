"""hotkernels.nn.LSTM over packed sequences against torch.nn.LSTM (same state_dict): the packed
output, h_n and c_n at each sequence's own last step, gradients of the input, h_0, c_0 and every
weight; sorted and unsorted batches, both directions, several layers, projections (proj_size),
dropout between layers."""

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import hotkernels.nn as hnn
from tests.test_lstm import DTYPES, TOL, _assert_same_grads, _pair, _state, check_float32

I, H = 5, 7

# Lengths in the caller's order; sorted batches take them in decreasing order. "mixed" has a
# sequence of one step and two of the same length, so sequences end at different steps and the
# reverse direction starts at different steps. "many": 19 sequences, several of the GEMM core's
# row blocks, whose steps' row counts (19 down to 4) each start a block of the gathered rows at a
# different offset (the CPU's GEMMs over all steps take only the sequences' rows).
LENGTHS = {"mixed": [3, 5, 1, 3], "equal": [4, 4, 4], "batch1": [6],
           "many": [6, 1, 5, 2, 6, 3, 4, 4, 5, 1, 2, 3, 6, 5, 4, 3, 2, 1, 6]}

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2),
    dict(num_layers=1, bidirectional=True),
    dict(num_layers=2, bidirectional=True),
    # h = W_hr(o ⊙ tanh(c)) of proj_size features (h_0, h_n), c of H.
    dict(num_layers=2, proj_size=4),
    dict(num_layers=2, bidirectional=True, proj_size=3),
]


def _config_id(config: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in config.items())


def _packing(lengths: list[int], enforce_sorted: bool):
    """`run(module, x, *state)` for check_float32 and the float64 comparison: packs the padded
    `x` [T, B, I] by `lengths` and returns the packed output, h_n and c_n."""

    def run(module, x, *state):
        packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=enforce_sorted)
        y, (h, c) = module(packed, tuple(state) if state else None)
        return y, h, c

    return run


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("config", CONFIGS, ids=_config_id)
@pytest.mark.parametrize("with_state", [True, False], ids=["hx", "no-hx"])
def test_packed_matches_torch(device, dtype, lengths, enforce_sorted, config, with_state):
    lengths = sorted(lengths, reverse=True) if enforce_sorted else lengths
    T, B = max(lengths), len(lengths)
    ref, ours = _pair(torch.nn.LSTM(I, H, **config), hnn.LSTM, dtype, device, I, H, **config)
    layers, dirs = config["num_layers"], 2 if config.get("bidirectional") else 1
    P = config.get("proj_size", 0) or H  # the features of h
    x = _state(T, B, I, dtype=dtype, device=device)
    state = (_state(layers * dirs, B, P, dtype=dtype, device=device),
             _state(layers * dirs, B, H, dtype=dtype, device=device))
    inputs = [x, *state] if with_state else [x]
    run = _packing(lengths, enforce_sorted)
    if dtype == torch.float32:
        # As tests/test_lstm.py's test_lstm_matches_torch: outputs compound every layer's gate sums
        # (and projections) over the steps; input gradients 4·H (+ P) per direction; weight
        # gradients the T·B steps.
        proj = H if P != H else 0
        r_out = T * layers * (max(I, dirs * P) + P + 2 + proj)

        def run_data(module, *ins):
            y, h, c = run(module, *ins)
            return y.data, h, c

        check_float32(ref, ours, inputs, run_data, r_out, T * layers * (4 * H + proj) * dirs, T * B)
        return
    (yr, hr, cr), (yo, ho, co) = run(ref, *inputs), run(ours, *inputs)
    assert isinstance(yo, PackedSequence)
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        a, b = getattr(yo, field), getattr(yr, field)
        assert (a is None and b is None) or torch.equal(a, b), field
    for got, want in ((yo.data, yr.data), (ho, hr), (co, cr)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, **TOL[dtype])
    gy, gh, gc = torch.randn_like(yr.data), torch.randn_like(hr), torch.randn_like(cr)
    loss_ref = (yr.data * gy).sum() + (hr * gh).sum() + (cr * gc).sum()
    loss_ours = (yo.data * gy).sum() + (ho * gh).sum() + (co * gc).sum()
    _assert_same_grads(loss_ref, loss_ours, inputs, inputs, ref, ours, TOL[dtype])


def test_packed_ignores_batch_first(device):
    """batch_first describes padded tensors only: a packed batch gives the same results either way."""
    ref, ours = _pair(torch.nn.LSTM(I, H, 2, bidirectional=True), hnn.LSTM, torch.float64, device, I, H, 2,
                      bidirectional=True, batch_first=True)
    run = _packing(LENGTHS["mixed"], enforce_sorted=False)
    x = torch.randn(5, 4, I, dtype=torch.float64, device=device)
    (yr, hr, cr), (yo, ho, co) = run(ref, x), run(ours, x)
    for got, want in ((yo.data, yr.data), (ho, hr), (co, cr)):
        torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_packed_dropout_between_layers(device):
    ref, ours = _pair(torch.nn.LSTM(I, H, 2, bidirectional=True, dropout=1.0), hnn.LSTM, torch.float64, device, I, H,
                      2, bidirectional=True, dropout=1.0)
    run = _packing(LENGTHS["mixed"], enforce_sorted=False)
    x = torch.randn(5, 4, I, dtype=torch.float64, device=device)
    # p = 1 zeroes the first layer's output in training (deterministically), in both.
    for training in (True, False):
        yo, ho, co = run(ours.train(training), x)
        yr, hr, cr = run(ref.train(training), x)
        for got, want in ((yo.data, yr.data), (ho, hr), (co, cr)):
            torch.testing.assert_close(got, want, **TOL[torch.float64])
    half = hnn.LSTM(I, H, 2, dropout=0.5).double().to(device)
    torch.manual_seed(1)
    a = run(half, x)
    torch.manual_seed(1)
    b = run(half, x)
    c = run(half.eval(), x)
    assert a[0].data.shape == c[0].data.shape == (sum(LENGTHS["mixed"]), H)
    assert torch.equal(a[0].data, b[0].data) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0].data, c[0].data)
    # The first layer sees no dropout: its h_n is the same in training and evaluation.
    torch.testing.assert_close(a[1][0], c[1][0], **TOL[torch.float64])
    assert not torch.allclose(a[1][1], c[1][1])


def test_packed_with_projections_and_dropout(device):
    """proj_size with dropout between layers (p = 1: deterministic) over an unsorted packed batch."""
    config = dict(num_layers=2, bidirectional=True, proj_size=4, dropout=1.0)
    ref, ours = _pair(torch.nn.LSTM(I, H, **config), hnn.LSTM, torch.float64, device, I, H, **config)
    run = _packing(LENGTHS["mixed"], enforce_sorted=False)
    x = torch.randn(5, 4, I, dtype=torch.float64, device=device)
    for training in (True, False):
        (yr, hr, cr), (yo, ho, co) = run(ref.train(training), x), run(ours.train(training), x)
        assert yo.data.shape == (sum(LENGTHS["mixed"]), 8) and ho.shape == (4, 4, 4) and co.shape == (4, 4, H)
        for got, want in ((yo.data, yr.data), (ho, hr), (co, cr)):
            torch.testing.assert_close(got, want, **TOL[torch.float64])


def test_packed_rejects_bad_state(device):
    rnn = hnn.LSTM(I, H, 2).to(device)
    packed = pack_padded_sequence(torch.randn(5, 4, I, device=device), torch.tensor(LENGTHS["mixed"]),
                                  enforce_sorted=False)
    h = torch.zeros(2, 3, H, device=device)
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(2, 4, 7\), got \[2, 3, 7\]"):
        rnn(packed, (h, torch.zeros(2, 4, H, device=device)))
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size"):
        rnn(pack_padded_sequence(torch.randn(5, 4, I + 1, device=device), torch.tensor(LENGTHS["mixed"]),
                                 enforce_sorted=False))


def test_sorted_lengths_skip_the_padding():
    """A packed batch (sorted lengths) runs its layers with batch_sizes, so the CPU computes no padding
    step: the padding's outputs come back 0 (computed, they would not be), in both directions."""
    from hotkernels.ops.lstm import lstm

    rnn = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True).double()
    lengths = torch.tensor([5, 3, 3, 1])
    x = torch.randn(5, 4, I, dtype=torch.float64)
    state = (torch.randn(4, 4, H, dtype=torch.float64), torch.randn(4, 4, H, dtype=torch.float64))
    out, _, _ = lstm(x, state, rnn._flat_weights, True, 2, 0.0, False, True, lengths=lengths)
    pad = torch.arange(5).unsqueeze(1) >= lengths
    assert bool((out[pad] == 0).all()) and bool((out[~pad] != 0).all())
