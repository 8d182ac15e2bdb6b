"""conv2d: hotkernels vs F.conv2d (oneDNN on CPU, cuDNN on GPU), float32, ResNet-18/MobileNet layers.

Targets (issue 5), ratios taken in one run, GFLOP/s reported next to them:
- CPU (2 threads, AVX2): geometric mean of forward+backward >= 1.0x torch, no case below 0.7x.
- GPU: geometric mean >= 0.8x cuDNN with the same TF32 setting, no case below 0.5x.
"""

import pytest
from conftest import cases, time_case


@pytest.mark.parametrize("impl", ["torch", "hotkernels"])
@pytest.mark.parametrize("case", cases("conv2d"))
def test_conv2d(benchmark, case, impl):
    time_case(benchmark, case, impl)
