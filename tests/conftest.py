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


@contextlib.contextmanager
def num_threads(threads: int):
    """Runs a block on `threads` intra-op threads (torch.set_num_threads), restoring the count after."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # so `code` can import tests.*
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, HOTKERNELS_CPU_ISA=isa),
                         capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == isa


# ---- comparing results that hold NaN ----------------------------------------------------------------

def assert_same_nans(got: torch.Tensor, want: torch.Tensor, msg: str = "", **tol) -> None:
    """`got` is NaN exactly where `want` is, and the other values agree: exactly by default, or
    within `tol` (torch.testing.assert_close's rtol/atol). Never maps NaN to a stand-in value, which
    could hide a NaN that landed where the data holds that value."""
    assert got.shape == want.shape and got.dtype == want.dtype, (msg, got.shape, want.shape, got.dtype, want.dtype)
    nan = want.isnan()
    wrong = (got.isnan() != nan).nonzero()
    assert not wrong.numel(), f"{msg}: NaN where torch has none or the reverse, at {wrong[:5].tolist()}"
    if tol:
        torch.testing.assert_close(got[~nan], want[~nan], msg=lambda m: f"{msg}: {m}", **tol)
    else:
        assert torch.equal(got[~nan], want[~nan]), f"{msg}: finite values differ"


# ---- float32 tolerances of reductions ---------------------------------------------------------------
#
# A float32 sum of R terms t_i, added in any order (blocked, vectorised, with or without FMA), differs
# from the exact sum by Σ_k δ_k·s_k over its R additions, where |δ_k| <= u = 2^-24 (the unit roundoff)
# and s_k is the partial sum that addition rounds. With rounding errors that behave as independent
# and zero-mean (Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019), that error's spread is
# u·sqrt(Σ s_k²) <= u·√R·max|s_k|, and for terms of random sign (the unit-normal data of these tests)
# the partial sums stay within a few times ‖t‖₂ = sqrt(Σ t_i²). Hence the bound
#     |ours − exact| <= λ·√R·u·‖t‖₂ + u·|exact|          (the last term: rounding the result once)
# with exact = the float64 computation from the same float32 inputs (its own error is 2^-29 times
# ours) and ‖t‖₂ from the same computation over the squared operands (float64). λ = 8: the largest
# ratio measured over tests/test_conv2d.py's grid is 2.3, for ours and torch's float32 alike. On
# unit-normal data this is ~8·u·R (R = 36: 1.7e-5; R = 450: 2e-4) where a fixed rtol = atol = 1e-4
# let through errors 40 (R = 36) to 10 (R = 450) times larger.
U32 = 2.0 ** -24
REDUCTION_LAMBDA = 8.0


def reduction_bound(sq_sum: torch.Tensor, r: int, ref: torch.Tensor) -> torch.Tensor:
    """The float32 error bound above for outputs that each sum (at most) `r` terms whose squares
    sum to `sq_sum` (float64), with float64 reference values `ref`."""
    return REDUCTION_LAMBDA * r ** 0.5 * U32 * sq_sum.sqrt() + U32 * ref.abs()


def assert_within_reduction_bound(got: torch.Tensor, ref: torch.Tensor, sq_sum: torch.Tensor, r: int,
                                  what: str = "") -> None:
    """`got` (float32) against the float64 `ref` of the same (float32) inputs, within
    reduction_bound; the message gives the worst ratio of error to bound."""
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    if not got.numel():
        return
    err = (got.double() - ref).abs()
    bound = reduction_bound(sq_sum, r, ref)
    ratio = (err / bound.clamp_min(1e-300)).max().item()  # an exact zero may be 0 apart from a zero bound
    assert bool((err <= bound).all()), f"{what}: max |err| {err.max().item():.3g}, {ratio:.3g} times the float32 bound (R = {r})"


def assert_float32_like_torch(ours: torch.Tensor, theirs: torch.Tensor, exact: torch.Tensor, r: int,
                              what: str = "") -> None:
    """float32 results of a computation whose reductions torch also runs in float32 (the same BLAS
    GEMMs, other association orders around them): our error from the float64 result `exact` of the
    same inputs is within the reduction bound above, with ‖terms‖₂ taken as max|exact| (terms of
    random sign sum to about their 2-norm) and `r` the longest reduction behind an output, or at
    most 4 times torch's own float32 error, where that is larger."""
    assert ours.shape == exact.shape, (what, ours.shape, exact.shape)
    if not ours.numel():
        return
    ours_err = (ours.double() - exact).abs().max().item()
    torch_err = (theirs.double() - exact).abs().max().item()
    floor = REDUCTION_LAMBDA * r ** 0.5 * U32 * exact.abs().max().item()
    assert ours_err <= max(4 * torch_err, floor), \
        f"{what}: max |err| {ours_err:.3g}, torch's {torch_err:.3g}, the float32 bound {floor:.3g} (R = {r})"


# ---- torch.compile with Inductor ----------------------------------------------------------------------

def check_inductor(ours, theirs, inputs: list[torch.Tensor], ops: list[str], **tol) -> None:
    """`ours` compiled by torch.compile's default backend (Inductor, fullgraph=True) against `theirs`
    run eagerly (torch's own ops): every output, then the gradients of every input that requires
    grad (one backward of all outputs with the same random cotangents), within `tol`. The code
    Inductor generated (forward and backward graphs) must call each of `ops` (names such as
    "hotkernels.mish.default"): our ops ran inside Inductor's code. Each family keeps to one small
    case: Inductor compiles C++ on the CPU (tens of seconds)."""
    from torch._inductor.utils import run_and_get_code

    ours_in = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    theirs_in = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    compiled = torch.compile(ours, fullgraph=True)

    def run() -> tuple:
        outs = compiled(*ours_in)
        outs = outs if isinstance(outs, tuple) else (outs,)
        gen = torch.Generator(device=outs[0].device).manual_seed(0)
        cots = [torch.randn(o.shape, dtype=o.dtype, device=o.device, generator=gen) for o in outs]
        torch.autograd.backward([o for o in outs if o.requires_grad], [c for o, c in zip(outs, cots) if o.requires_grad])
        return outs, cots

    torch._dynamo.reset()
    (got, cots), code = run_and_get_code(run)
    want = theirs(*theirs_in)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, msg=lambda m: f"output {i}: {m}", **tol)
    torch.autograd.backward([w for w in want if w.requires_grad], [c for w, c in zip(want, cots) if w.requires_grad])
    for i, (a, b) in enumerate(zip(ours_in, theirs_in)):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, msg=lambda m: f"gradient of input {i}: {m}", **tol)
    generated = "\n".join(code)
    missing = [op for op in ops if op not in generated]
    assert not missing, f"Inductor's code calls none of {missing}"
