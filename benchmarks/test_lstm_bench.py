"""LSTM: hotkernels.nn.LSTMCell / LSTM vs torch.nn.LSTMCell / LSTM (cases in hotkernels/bench/lstm.py).

Targets (issue 6), ratios in one run:
CPU forward+backward: LSTMCell (B64, I256, H512) >= 1.5x nn.LSTMCell, (B256, I1024, H1024) >= 1.15x;
LSTM (T=50, B=32, I=256, H=512, 2 layers) >= 1.2x nn.LSTM.
GPU: LSTMCell >= 1.3x nn.LSTMCell; LSTM >= 0.8x cuDNN's nn.LSTM.

Both sides run the same GEMMs through the same BLAS (MKL here), and on the CPU the GEMMs are most
of the time, so a speedup can only come out of torch's non-GEMM time (the separate elementwise
passes and autograd nodes of nn.LSTMCell). nn.LSTM on the CPU (float32) is oneDNN's fused RNN
primitive, whose own GEMMs set its pace.
"""

import pytest
from conftest import cases, time_case


@pytest.mark.parametrize("impl", ["torch", "hotkernels"])
@pytest.mark.parametrize("case", cases("lstm"))
def test_lstm(benchmark, case, impl):
    time_case(benchmark, case, impl)
