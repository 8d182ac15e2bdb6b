"""Mish: hotkernels vs F.mish vs x·tanh(softplus(x)).

Targets (issue 2): CPU float32 16M, 2 threads: forward >= 5x F.mish, forward+backward >= 4x.
GPU: >= 1.0x F.mish and >= 85% of the measured HBM bandwidth.
"""

import pytest
from conftest import cases, time_case


@pytest.mark.parametrize("impl", ["torch", "hotkernels", "composed"])
@pytest.mark.parametrize("case", cases("mish"))
def test_mish(benchmark, case, impl):
    time_case(benchmark, case, impl)
