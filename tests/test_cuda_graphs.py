"""CUDA graphs: forward and backward of the conv2d, pooling, Mish and LSTM ops captured in one
torch.cuda.graph and replayed on new input values give what eager calls give on those values (so the
ops launch on the current stream, never sync with the host, and keep no host-side state between
calls). The optimizers' capture is tested in tests/test_optim.py (capturable=True)."""

import pytest
import torch

import hotkernels
import hotkernels.functional as HF
import hotkernels.nn as hnn
from tests.conftest import allow_tf32

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or not hotkernels._library.with_cuda,
                                reason="needs a GPU and hotkernels built with CUDA")

# Replay and eager run the same kernels on the same values; they differ only where blocks add
# partial sums atomically in no fixed order (conv2d's split reductions, bias and depthwise weight
# sums, max-pool backward scatters): a few float32 ulp of sums of a few hundred terms of order one.
# A replay that ran stale arguments or missed a kernel is off by O(1).
TOL = dict(rtol=1e-4, atol=1e-4)


def _check_replay(forward, inputs):
    """Captures outputs = forward(*inputs) and the gradients of Σ outputs·grads with respect to the
    inputs that require them, replays on fresh inputs and grads twice, and compares with eager."""
    wrt = [t for t in inputs if t.requires_grad]
    grads = [torch.randn_like(o) if o.requires_grad else None for o in forward(*inputs)]

    def run():
        outs = forward(*inputs)
        diff = [(o, g) for o, g in zip(outs, grads) if g is not None]
        return list(outs) + list(torch.autograd.grad([o for o, _ in diff], wrt, [g for _, g in diff]))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: lazy initialisation (cuBLAS, autograd) outside the capture
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    for _ in range(2):
        with torch.no_grad():
            for t in list(inputs) + [g for g in grads if g is not None]:
                t.copy_(torch.randn_like(t))
        graph.replay()
        eager = run()
        for k, (got, want) in enumerate(zip(captured, eager, strict=True)):
            torch.testing.assert_close(got, want, **TOL, msg=lambda m: f"result {k}: {m}")


# (N, C_in, H, W, C_out, kernel, stride, padding, groups, TF32, channels_last)
CONV_CASES = {
    "tensor_cores_split_k": ((2, 256, 7, 7, 256, 3, 1, 1, 1), True, False),
    "tensor_cores_nhwc": ((2, 16, 14, 14, 32, 3, 2, 1, 1), True, True),
    "exact": ((2, 12, 15, 14, 10, 3, 2, 1, 2), False, False),
    "depthwise_nhwc": ((2, 40, 13, 12, 40, 3, 2, 1, 40), True, True),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_cuda_graph_replay(case):
    (n, c, h, w, k, ks, s, p, g), tf32, channels_last = CONV_CASES[case]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(n, c, h, w, device="cuda").to(memory_format=fmt).requires_grad_()
    wt = torch.randn(k, c // g, ks, ks, device="cuda").requires_grad_()
    b = torch.randn(k, device="cuda").requires_grad_()
    with allow_tf32(tf32):
        _check_replay(lambda x, wt, b: (HF.conv2d(x, wt, b, s, p, 1, g),), [x, wt, b])


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_pool_cuda_graph_replay(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 8, 17, 15, device="cuda").to(memory_format=fmt).requires_grad_()

    def forward(x):
        y, idx = HF.max_pool2d(x, 3, 2, 1, return_indices=True)
        return HF.max_pool2d(x, (2, 3), 1, 0, (2, 1)), y, idx.double(), HF.avg_pool2d(x, 3, 2, 1, ceil_mode=True)

    _check_replay(forward, [x])


def test_mish_cuda_graph_replay():
    x = torch.randn(3, 1000, device="cuda").requires_grad_()
    y = torch.randn(3, 1000, device="cuda")

    def forward(x, y):
        z = y.clone()
        HF.mish(z, inplace=True)  # the in-place op, on a buffer of the graph's pool
        return HF.mish(x), z

    _check_replay(forward, [x, y])


def test_lstm_cuda_graph_replay():
    rnn = hnn.LSTM(16, 32, num_layers=2, bidirectional=True).cuda()
    cell = hnn.LSTMCell(16, 32).cuda()
    x = torch.randn(5, 3, 16, device="cuda").requires_grad_()
    h0, c0 = (torch.randn(4, 3, 32, device="cuda").requires_grad_() for _ in range(2))
    params = list(rnn.parameters()) + list(cell.parameters())

    def forward(x, h0, c0, *params):
        y, (hn, cn) = rnn(x, (h0, c0))
        hc, cc = cell(x[0], (h0[0], c0[0]))
        return y, hn, cn, hc, cc

    # The parameters are inputs too: replays read their new values (the model's weights may change
    # between replays, as after an optimizer step).
    _check_replay(forward, [x, h0, c0, *params])
