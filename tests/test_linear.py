"""hotkernels.nn.Linear and hotkernels::linear (y = x·Wᵀ + b on the CPU GEMM core) against the exact
product: float64 tight, float32 within the reduction bound, float16/bfloat16 rounded once from
float32; every leading shape, strides, tiles over threads, every instruction set; gradients,
double backward, opcheck, torch.compile; no torch GEMM on the path; the module as a drop-in;
bad input."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hotkernels
from hotkernels.functional import linear
from tests.conftest import (CUDA, assert_within_reduction_bound, check_inductor, num_threads, reduction_bound,
                            run_with_isa)

ops = torch.ops.hotkernels

# (input shape, out_features): a vector; a row; ragged rows and columns that leave partial row
# blocks and panels; leading dimensions (3-D, 4-D); no rows; an empty reduction (y = b); rows over
# several row tiles of a long reduction (the bias must be added once per output, by whichever tile
# holds it); a batch of one against a wide layer (the LM head's shape at batch 1); 2 to 4 rows (the
# unpacked product); leading dimensions of an empty reduction, few rows of one, and no output features.
SHAPES = [((7,), 5), ((1, 64), 200), ((37, 300), 97), ((2, 3, 13), 130), ((2, 2, 3, 40), 33), ((0, 4), 5),
          ((6, 0), 9), ((600, 1100), 70), ((1, 512), 1000), ((2, 2, 200), 19), ((3, 333), 64), ((2, 3, 0), 4),
          ((3, 0), 5), ((3, 5), 0)]


def check_linear(got: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, what: str = "") -> None:
    """`got` against the float64 x·wᵀ + b of the same inputs: float64 to 1e-12, float32 within the
    bound of a reduction of in_features + 1 terms (the bias is one more)."""
    exact = x.double() @ w.double().T
    sq_sum = x.double() ** 2 @ (w.double() ** 2).T
    if b is not None:
        exact, sq_sum = exact + b.double(), sq_sum + b.double() ** 2
    assert got.dtype == x.dtype and got.shape == exact.shape, (what, got.dtype, got.shape)
    if x.dtype == torch.float64:
        torch.testing.assert_close(got, exact, rtol=1e-12, atol=1e-12 * max(1.0, w.shape[1] ** 0.5),
                                   msg=lambda m: f"{what}: {m}")
    else:
        assert_within_reduction_bound(got, exact, sq_sum, w.shape[1] + 1, what)


def _operands(shape, out, dtype, bias=True):
    x, w = torch.randn(shape, dtype=dtype), torch.randn(out, shape[-1], dtype=dtype)
    return x, w, torch.randn(out, dtype=dtype) if bias else None


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", SHAPES, ids=[f"{s}->{n}" for s, n in SHAPES])
def test_matches_exact_product(case, dtype, bias):
    x, w, b = _operands(*case, dtype, bias)
    check_linear(linear(x, w, b), x, w, b, f"{case}")


def test_reads_any_strides():
    """A transposed 2-D input read in place, a 3-D input that does not fold into rows (a copy), a
    transposed weight (its rows not contiguous) and a strided bias."""
    w, b = torch.randn(30, 50), torch.randn(60)[::2]
    for x in (torch.randn(50, 40).T, torch.randn(4, 50, 6).transpose(1, 2), torch.randn(40, 100)[:, ::2]):
        check_linear(linear(x, w, b), x, w, b, f"input {tuple(x.shape)} {x.stride()}")
    wt = torch.randn(50, 30).T
    x = torch.randn(20, 50)
    check_linear(linear(x, wt, b), x, wt, b, "transposed weight")


@pytest.mark.parametrize("threads", [1, 3])
def test_bias_once_per_output_on_any_thread_count(threads):
    """The epilogue adds the bias on every tile's thread: each output once, whatever the split (3
    rows: the unpacked product's columns split over the threads)."""
    with num_threads(threads):
        for rows, out in [(3, 1000), (8, 257), (20, 1000), (333, 70)]:
            x, w, b = _operands((rows, 700), out, torch.float64)
            check_linear(linear(x, w, b), x, w, b, f"{rows} rows, {out} out, {threads} threads")


def test_every_cpu_instruction_set(cpu_isa):
    code = (
        "import torch\n"
        "from tests.test_linear import SHAPES, _operands, check_linear\n"
        "from hotkernels.functional import linear\n"
        "for dtype in (torch.float32, torch.float64):\n"
        "    for shape, out in SHAPES:\n"
        "        x, w, b = _operands(shape, out, dtype)\n"
        "        check_linear(linear(x, w, b), x, w, b, f'{shape} {out} {dtype}')\n"
    )
    run_with_isa(cpu_isa, code)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_types_round_once_from_float32(dtype):
    """float16/bfloat16 compute in float32 and round the result once, as torch's CPU linear: within
    one rounding of the half type of the float64 result (plus the float32 sum's bound)."""
    x, w, b = (t.to(dtype) for t in _operands((3, 5, 64), 48, torch.float32))
    got = linear(x, w, b)
    assert got.dtype == dtype
    exact = x.double() @ w.double().T + b.double()
    float32 = reduction_bound(x.double() ** 2 @ (w.double() ** 2).T + b.double() ** 2, 65, exact)
    # the float32 sum's error, then one rounding to nearest (half an ulp, or of the least subnormal)
    info = torch.finfo(dtype)
    bound = float32 + info.eps / 2 * (exact.abs() + float32) + info.smallest_normal * info.eps / 2
    assert ((got.double() - exact).abs() <= bound).all()


@pytest.mark.parametrize("shape", [(6, 7), (2, 3, 7), (7,), (0, 7), (2, 0, 7), (3, 0), (2, 2, 0)],
                         ids=["2d", "3d", "1d", "no-rows", "no-rows-3d", "no-features", "no-features-3d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_gradients(shape, bias):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, shape[-1], dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True) if bias else None
    args = (x, w, b)
    assert torch.autograd.gradcheck(linear, args)
    assert torch.autograd.gradgradcheck(linear, args)
    want = torch.autograd.grad(F.linear(*args).square().sum(), [t for t in args if t is not None])
    got = torch.autograd.grad(linear(*args).square().sum(), [t for t in args if t is not None])
    for g, h in zip(got, want, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)


def test_float32_gradients_within_the_reduction_bound():
    """dx = dy·W (a reduction over out_features) and dW = dyᵀ·x (over every row of every leading
    dimension), the language model's head in small."""
    x = torch.randn(4, 50, 64, requires_grad=True)
    w = torch.randn(100, 64, requires_grad=True)
    b = torch.randn(100, requires_grad=True)
    gy = torch.randn(4, 50, 100)
    gx, gw, gb = torch.autograd.grad(linear(x, w, b), (x, w, b), gy)
    g2, x2 = gy.reshape(-1, 100).double(), x.detach().reshape(-1, 64).double()
    assert_within_reduction_bound(gx, gy.double() @ w.detach().double(), gy.double() ** 2 @ w.detach().double() ** 2,
                                  100, "grad_input")
    assert_within_reduction_bound(gw, g2.T @ x2, g2.T ** 2 @ x2 ** 2, 200, "grad_weight")
    torch.testing.assert_close(gb, gy.sum((0, 1)))


def test_opcheck_and_compile():
    x, w, b = _operands((5, 7), 3, torch.float64)
    for args in [(x, w, b), (x, w, None), (x.float(), w.float(), b.float()), (x[None], w, b)]:
        torch.library.opcheck(ops.linear.default, [a.requires_grad_() if a is not None else a for a in args])
    check_inductor(linear, F.linear, [x.requires_grad_(), w.requires_grad_(), b.requires_grad_()],
                   ["hotkernels.linear.default"], rtol=1e-12, atol=1e-12)
    module = hotkernels.convert(nn.Sequential(nn.Linear(7, 3), nn.Mish(), nn.Linear(3, 2)).double())
    assert all(type(m).__module__.startswith("hotkernels") for m in module)
    xs = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    got = torch.compile(module, fullgraph=True)(xs)
    torch.testing.assert_close(got, module(xs), rtol=1e-12, atol=1e-12)
    got.sum().backward()
    assert xs.grad is not None


def test_cpu_path_calls_no_torch_gemm():
    """Forward and backward of the module hold our op and no aten::mm, addmm, matmul or linear."""
    layer = hotkernels.nn.Linear(16, 8)
    x = torch.randn(3, 5, 16, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None and layer.bias.grad is not None
    names = {e.key for e in prof.key_averages()}
    assert "hotkernels::linear" in names, sorted(names)
    assert not names & {"aten::mm", "aten::addmm", "aten::matmul", "aten::bmm", "aten::linear"}, sorted(names)


def test_module_is_a_drop_in():
    """Same constructor, initialisation, parameters and state_dict as torch.nn.Linear; convert swaps
    it and back; outputs and gradients are torch's."""
    torch.manual_seed(1)
    theirs = nn.Linear(6, 4, dtype=torch.float64)
    torch.manual_seed(1)
    ours = hotkernels.nn.Linear(6, 4, dtype=torch.float64)
    assert isinstance(ours, nn.Linear) and ours.extra_repr() == theirs.extra_repr()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    assert hotkernels.nn.Linear(6, 4, bias=False).bias is None
    swapped = hotkernels.convert(copy.deepcopy(theirs))
    assert type(swapped) is hotkernels.nn.Linear
    assert type(hotkernels.convert(swapped, reverse=True)) is nn.Linear
    x = torch.randn(3, 2, 6, dtype=torch.float64, requires_grad=True)
    y, y_want = ours(x), theirs(x)
    torch.testing.assert_close(y, y_want, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(y.sum(), (x, ours.weight, ours.bias))
    want = torch.autograd.grad(y_want.sum(), (x, theirs.weight, theirs.bias))
    for g, h in zip(grads, want, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-12)
    meta = hotkernels.nn.Linear(6, 4, device="meta")
    assert meta(torch.empty(3, 6, device="meta")).shape == (3, 4)


@pytest.mark.skipif(not CUDA, reason="needs a GPU and hotkernels built with CUDA")
def test_cuda_linear_stays_torchs():
    """On CUDA convert keeps torch's Linear (with the reason), a converted module moved there runs
    torch's F.linear, and the functional form refuses CUDA tensors, naming the argument."""
    model = nn.Sequential(nn.Linear(6, 4).cuda())
    conversion = hotkernels.convert(model).hotkernels_conversion
    assert type(model[0]) is nn.Linear and "where hotkernels' Linear is torch's" in conversion.kept["0"]
    ours = hotkernels.convert(nn.Linear(6, 4).double()).cuda()
    x = torch.randn(3, 6, dtype=torch.float64, device="cuda")
    torch.testing.assert_close(ours(x), F.linear(x, ours.weight, ours.bias), rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="hotkernels.linear: expected 'weight' on the CPU, but got cuda"):
        linear(x.cpu(), ours.weight, None)


@pytest.mark.parametrize("args, error, message", [
    ((torch.randn(2, 3), torch.randn(4, 3).double(), None), RuntimeError, r"linear: expected 'weight' to have dtype"),
    ((torch.randn(2, 3), torch.randn(4, 3), torch.randn(4).double()), RuntimeError,
     r"linear: expected 'bias' to have dtype"),
    ((torch.randn(2, 3), torch.randn(4, 5), None), RuntimeError,
     r"linear: expected the last dimension of 'input' \[2, 3\] to be weight's in_features, 5"),
    ((torch.randn(2, 3), torch.randn(12), None), RuntimeError, r"linear: expected 'weight' to be 2-D"),
    ((torch.randn(2, 3), torch.randn(4, 3), torch.randn(5)), RuntimeError,
     r"linear: expected 'bias' to have shape \(4,\)"),
    ((torch.randn(2, 3), torch.randn(4, 3), torch.randn(1, 4)), RuntimeError,
     r"linear: expected 'bias' to have shape \(4,\)"),
    ((torch.ones(2, 3, dtype=torch.int64), torch.ones(4, 3, dtype=torch.int64), None), RuntimeError,
     r"linear: expected 'input' to be a float32"),
    ((torch.tensor(1.0), torch.randn(4, 1), None), RuntimeError, r"linear: expected 'input' to have at least 1"),
])
def test_bad_input_names_the_argument(args, error, message):
    with pytest.raises(error, match=message):
        linear(*args)
