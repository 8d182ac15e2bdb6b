"""Optimizer steps: hotkernels.optim vs torch.optim (Adam fused/foreach, RAdam foreach/for-loop) and
plain-PyTorch loops for LAMB, NovoGrad and Ranger (torch_optimizer is not installed here; the loops
follow timm's Lamb and torch_optimizer's code). Parameter sets: ResNet-18 (11.7M params in 62
tensors) and many-small (1000 tensors of 4096).

Targets (issue 3), ratios measured in one run:
- CPU: Adam >= 0.95x torch fused Adam; RAdam >= 2.5x the faster torch RAdam (foreach or for-loop);
  LAMB >= 2x torch_optimizer.Lamb; Ranger >= 2x torch_optimizer.Ranger; each at >= 80% of its memory
  floor (bytes per param: Adam/RAdam 28, LAMB 44, NovoGrad 24; see hotkernels/bench/optim.py).
- GPU: Adam >= 1.0x torch fused; RAdam >= 4x torch foreach; LAMB >= 8x torch_optimizer.Lamb;
  >= 80% of the measured HBM bandwidth.
"""

import pytest
from conftest import cases, time_case


@pytest.mark.parametrize("impl", ["torch", "hotkernels", "torch foreach", "torch for-loop"])
@pytest.mark.parametrize("case", cases("optim"))
def test_optim(benchmark, case, impl):
    time_case(benchmark, case, impl)
