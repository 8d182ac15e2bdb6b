"""Shared pytest fixtures: every op test runs on the CPU and, when a GPU is present, on CUDA."""

import contextlib
import functools
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

import hotkernels

CUDA = torch.cuda.is_available() and hotkernels._library.with_cuda

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs a GPU and hotkernels built with CUDA")),
]


# Hypothesis (tests/test_properties.py, tests/test_optim_properties.py). CI: a fixed, bounded sample
# (derandomized: the same examples every run, so CI cannot flake); HOTKERNELS_HYPOTHESIS=long: a
# longer, random search.
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HOTKERNELS_HYPOTHESIS", "ci"))


@contextlib.contextmanager
def allow_tf32(enabled: bool):
    """Sets TF32 for cuDNN (convolutions and RNNs; hotkernels' conv2d reads the same flag) and for
    cuBLAS matmuls for a block, restoring both afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(params=DEVICES)
def device(request):
    """The device of a parity test. On CUDA TF32 is off for the test: cuDNN takes TF32 for float32
    convolutions and RNNs by default, ~5e-4·sqrt(R) off for a reduction of length R, which the
    float32 tolerances (a few float32 ulp) do not allow for torch's reference, nor for ours. The
    tests of the TF32 paths (tests/test_conv2d.py) set the flag themselves."""
    if request.param == "cuda":
        with allow_tf32(False):
            yield request.param
    else:
        yield request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


ISAS = ["base", "avx2", "avx512"]


@functools.cache
def _best_isa() -> str:
    """The best CPU instruction set hotkernels runs here, whatever cap our own environment sets."""
    env = {k: v for k, v in os.environ.items() if k != "HOTKERNELS_CPU_ISA"}
    code = "import hotkernels; print(hotkernels._library.cpu_isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(params=ISAS)
def cpu_isa(request) -> str:
    """Each CPU instruction set this machine can run (the others skip)."""
    if ISAS.index(request.param) > ISAS.index(_best_isa()):
        pytest.skip(f"this CPU lacks {request.param}")
    return request.param


def run_with_isa(isa: str, code: str) -> None:
    """Runs `code` (which asserts what it checks) in a fresh process capped at `isa` with
    HOTKERNELS_CPU_ISA, and checks that the kernels did run at that level."""
    code += "\nimport hotkernels; print(hotkernels._library.cpu_isa())\n"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, HOTKERNELS_CPU_ISA=isa),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == isa
