"""Property-based parity with torch (hypothesis): random valid shapes, strides, memory formats and
arguments, outputs and gradients compared in float64. The default profile is bounded for CI; set
HOTKERNELS_HYPOTHESIS=long for a longer search."""

import os

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hotkernels.functional as HF

settings.register_profile("ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HOTKERNELS_HYPOTHESIS", "ci"))


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
