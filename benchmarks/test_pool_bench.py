"""Pooling: hotkernels vs F.max_pool2d / F.avg_pool2d on (32, 64, 112, 112) float32.

Targets (issue 4): CPU float32, NCHW: max 3x3/s2/p1 forward >= 8x torch, forward+backward >= 5x;
avg 2x2 forward >= 3x; channels_last cases >= 1.0x. GPU: >= 1.0x torch and >= 80% of HBM bandwidth.
"""

import pytest
from conftest import cases, time_case


@pytest.mark.parametrize("impl", ["torch", "hotkernels"])
@pytest.mark.parametrize("case", cases("pool"))
def test_pool(benchmark, case, impl):
    time_case(benchmark, case, impl)
