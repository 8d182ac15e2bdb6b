"""The CPU GEMM core (hotkernels::mm, the product conv2d and the LSTM run on) against torch.mm: every
micro-kernel shape, partial panels and row blocks, several reduction chunks and tiles over threads,
any strides; float64 tight, float32 within the reduction bound; registration; the FMA floor probe."""

import pytest
import torch

from hotkernels.ops.gemm import fma_peak_gflops, mm
from tests.conftest import assert_within_reduction_bound, num_threads, run_with_isa

ops = torch.ops.hotkernels

# (m, k, n): one element; a batch of one against an LSTM's W_hhᵀ; ragged sizes that leave partial
# row blocks and panels for every shape (1–4, 6, 8, 12 rows; 16–128 columns), split over threads
# by (panel, row block) runs; more than one reduction chunk (<= 1024 steps); several row tiles (600
# rows of a 1100-step reduction: tiles hold at most half of L2 of A, 238 rows with a 1 MiB L2) on
# the tile grid; an empty reduction (C = 0) and empty outputs; the most rows of A for which B's
# whole panels are read in place (8 blocks of 8, 1100 steps: chunks of at most 256 of B's rows), and one more;
# rows that fit one tile in shorter chunks only (float32, 200 rows of 1100 steps: 4 chunks of 275 with
# a 512 KiB L2), B packed a chunk at a time; last row blocks of 2 and 4 computed rows, the 2-row ones
# summing odd and even steps apart (8, 10 and 28 rows: 6 + 2, 6 + 4 and 24 + 4 with 6-row blocks, 8 + 2
# and 24 + 4 with 8-row ones; 333 steps, an odd count).
SHAPES = [(1, 1, 1), (1, 64, 200), (3, 5, 7), (37, 300, 97), (300, 513, 50), (13, 1000, 130), (257, 40, 33),
          (600, 1100, 70), (6, 0, 9), (0, 4, 5), (4, 3, 0), (64, 1100, 200), (65, 70, 200), (200, 1100, 70),
          (8, 333, 50), (10, 333, 50), (28, 333, 50)]


def check_product(got: torch.Tensor, a: torch.Tensor, b: torch.Tensor, what: str = "") -> None:
    exact = a.double() @ b.double()
    if a.dtype == torch.float64:
        torch.testing.assert_close(got, exact, rtol=1e-12, atol=1e-12 * max(1.0, a.shape[1] ** 0.5),
                                   msg=lambda m: f"{what}: {m}")
    else:
        assert got.dtype == torch.float32
        assert_within_reduction_bound(got, exact, (a.double() ** 2) @ (b.double() ** 2), a.shape[1], what)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
def test_mm_matches_exact_product(dtype, shape):
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    got = mm(a, b)
    assert got.shape == (m, n) and got.is_contiguous()
    check_product(got, a, b, f"{shape}")


# A last block of columns of every width, 1 to 128 columns past whole blocks: each shape computes
# only the vectors that cover it (1 to nr / lanes of them), for 1-, 3- and 13-row products.
PARTIAL_PANELS = [(m, 37, n) for m in (1, 3, 13) for n in range(1, 129)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mm_partial_panels_of_every_width(dtype):
    for m, k, n in PARTIAL_PANELS:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        check_product(mm(a, b), a, b, f"{m}x{k}x{n}")


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_small_products_split_between_threads_anywhere(threads):
    """A product of one row tile runs as equal runs of (panel, row block) units, one a thread: as the
    column and thread counts vary, the runs begin and end inside panels at every row block, and
    the last panel is partial at many widths; every column of every row must be computed once."""
    with num_threads(threads):
        for m, n in [(m, n) for m in (8, 20) for n in range(40, 260, 7)]:
            a, b = torch.randn(m, 700, dtype=torch.float64), torch.randn(700, n, dtype=torch.float64)
            check_product(mm(a, b), a, b, f"{m}x700x{n} on {threads} threads")


LAYOUTS = ["a transposed", "b transposed", "both strided", "b a column slice, few rows", "b contiguous, 4 rows",
           "b contiguous, 8 rows", "b transposed, few rows",
           "b strided, few rows", "b transposed and strided, few rows", "b transposed, one row tile"]


def operands(layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = torch.randn(70, 150), torch.randn(150, 90)
    if layout == "a transposed":
        a = a.T.contiguous().T
    elif layout == "b transposed":
        b = b.T.contiguous().T
    elif layout == "both strided":
        a, b = torch.randn(140, 300)[::2, ::2], torch.randn(300, 270)[::2, ::3]
    elif layout == "b a column slice, few rows":
        a, b = torch.randn(20, 150), torch.randn(150, 200)[:, 13:113]
    elif layout in ("b contiguous, 4 rows", "b contiguous, 8 rows"):
        a, b = torch.randn(int(layout.split()[2]), 1100), torch.randn(1100, 100)
    elif layout == "b a column slice of 4 KiB rows, 30 rows":
        a, b = torch.randn(30, 300), torch.randn(300, 1024)[:, 5:105]
    elif layout == "b transposed, few rows":
        a, b = torch.randn(20, 1100), torch.randn(90, 1100).T
    elif layout == "b strided, few rows":
        a, b = torch.randn(20, 1100), torch.randn(1100, 270)[:, ::3]
    elif layout == "b transposed and strided, few rows":
        a, b = torch.randn(20, 1100), torch.randn(90, 2200)[:, ::2].T
    else:
        a, b = torch.randn(100, 1100), torch.randn(90, 1100).T
    return a, b


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mm_reads_any_strides(layout):
    """Operands in place, as the LSTM passes them (W_ihᵀ, dgatesᵀ, slices of a time-major tensor).
    With few rows of A, B's whole panels are read in place at its row stride (the last row's run
    ends inside the row, columns past the slice are never read into the result), or, where its rows
    are not contiguous or a panel's row is not whole cache lines and more than one row block reads it
    (AVX2's 4 × 3 shape, 24 floats, on 8 rows; on 4 rows it is read in place) or its row stride is a
    multiple of 4 KiB and four row blocks or more read it (aliased_blocks), packed a reduction
    chunk at a time as the tiles reach them (1100 steps: two chunks), along B's rows, as a transpose
    of Wᵀ or one value at a time; so is B for rows of A that fit one row tile (100 rows, where L2
    holds 100 rows of a chunk: 800 KiB or more)."""
    a, b = operands(layout)
    check_product(mm(a, b), a, b, layout)


# A·Wᵀ for 1 to kDotRows (4) rows of A, W's rows contiguous along the reduction: the unpacked Dot
# kernel (csrc/cpu/simd/gemm.h) where the reduction has at least 64 steps a row (gemm.h
# kDotStepsPerRow: 65 and 131 steps take it for 1 and 2 rows, 300 for up to 4), M rows against J of
# W's rows at a time (J: 2 to 8 by instruction set and M), a partial last vector of steps, n leaving
# every partial group of W's rows, A's and W's rows longer than the reduction (slices); fewer steps
# and 5 rows take the packed path.
FEW_ROWS = [(m, k, n) for m in range(1, 6) for k in (7, 65, 131, 300) for n in (1, 2, 3, 5, 7, 9, 17, 257)]


def few_rows_operands(m: int, k: int, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(m, k + 3, dtype=dtype)[:, :k], torch.randn(n, k + 5, dtype=dtype)[:, :k].T


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_few_rows_against_a_transposed_weight(dtype, threads):
    with num_threads(threads):
        for m, k, n in FEW_ROWS:
            a, b = few_rows_operands(m, k, n, dtype)
            check_product(mm(a, b), a, b, f"{m}x{k}x{n}")


def test_every_cpu_instruction_set(cpu_isa):
    """Each instruction set's micro-kernels and packing transpose (capped by HOTKERNELS_CPU_ISA),
    over shapes that leave partial blocks of every width for all of them and over every layout of the
    operands."""
    code = (
        "import torch\n"
        "from hotkernels.ops.gemm import mm\n"
        "from tests.test_gemm import FEW_ROWS, LAYOUTS, PARTIAL_PANELS, SHAPES, check_product, operands\n"
        "from tests.test_gemm import few_rows_operands\n"
        "for dtype in (torch.float32, torch.float64):\n"
        "    for m, k, n in SHAPES + PARTIAL_PANELS:\n"
        "        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)\n"
        "        check_product(mm(a, b), a, b, f'{m}x{k}x{n} {dtype}')\n"
        "    for m, k, n in FEW_ROWS:\n"
        "        a, b = few_rows_operands(m, k, n, dtype)\n"
        "        check_product(mm(a, b), a, b, f'{m}x{k}x{n} {dtype}')\n"
        "for layout in LAYOUTS:\n"
        "    a, b = operands(layout)\n"
        "    check_product(mm(a, b), a, b, layout)\n"
    )
    run_with_isa(cpu_isa, code)


def test_gradients_and_registration():
    a = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(mm, (a, b))
    torch.library.opcheck(ops.mm.default, (a, b))
    torch.library.opcheck(ops.mm.default, (a.detach().float(), b.detach().float()))
    compiled = torch.compile(mm, fullgraph=True)
    torch.testing.assert_close(compiled(a, b), a @ b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("args, message", [
    ((torch.randn(3), torch.randn(3, 2)), r"hotkernels.mm: expected 'self' to be 2-D"),
    ((torch.randn(2, 3), torch.randn(3)), r"hotkernels.mm: expected 'mat2' to be 2-D"),
    ((torch.randn(2, 3), torch.randn(4, 2)), r"hotkernels.mm: 'self' and 'mat2' shapes cannot be multiplied"),
    ((torch.randn(2, 3), torch.randn(3, 2).double()), r"hotkernels.mm: expected 'mat2' to have dtype"),
    ((torch.ones(2, 3, dtype=torch.int32), torch.ones(3, 2, dtype=torch.int32)), r"hotkernels.mm: expected 'self'"),
    ((torch.randn(2, 3).half(), torch.randn(3, 2).half()), r"hotkernels.mm: expected 'self' to be float32 or float64"),
])
def test_bad_input_names_the_argument(args, message):
    with pytest.raises(RuntimeError, match=message):
        mm(*args)


def test_fma_probe_counts_its_operations(cpu_isa):
    """The probe does what it reports: iterations × accumulators × lanes × 2 FLOPs per thread (12
    accumulators on 16-register instruction sets, 24 on AVX-512), and a positive rate."""
    lanes, accumulators = {"base": (4, 12), "avx2": (8, 12), "avx512": (16, 24)}[cpu_isa]
    assert ops.fma_peak_loop(cpu_isa, 10) == 10 * accumulators * lanes * 2 * torch.get_num_threads()
    assert fma_peak_gflops(cpu_isa, seconds=0.01) > 0


def test_fma_probe_refuses_bad_arguments():
    with pytest.raises(RuntimeError, match="expected 'isa' to be base, avx2 or avx512"):
        ops.fma_peak_loop("sse9", 1)
    with pytest.raises(RuntimeError, match="expected 'iterations' >= 0"):
        ops.fma_peak_loop("base", -1)
