"""conv2d: parity with F.conv2d over a parameter grid, gradients (incl. double backward),
torch.library registration, torch.compile, layouts, the nn.Conv2d drop-in, bad input."""

import itertools
import pathlib
import re

import pytest
import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format
from torch._subclasses.fake_tensor import FakeTensorMode

import hotkernels
import hotkernels.functional as HF
from hotkernels.ops.conv2d import _pair, _suggests_channels_last, conv2d_padding
from tests.conftest import allow_tf32, assert_within_reduction_bound, check_inductor, num_threads, run_with_isa

ops = torch.ops.hotkernels

# float64: sums in another order than torch's differ by a few ulp of the partial sums (|partial| ≲ 50)
# for unit-normal data and reductions of up to a few hundred terms. float32 results are checked
# against float64 F.conv2d of the same inputs within tests/conftest.py's reduction bound
# (λ·√R·u·‖terms‖₂ + u·|ref|, R the reduction length of each output): check_float32 below.
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
}


def check_float32(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, kw: dict, y: torch.Tensor,
                  gy: torch.Tensor | None = None, grads: tuple = (), what: str = "") -> None:
    """Our float32 forward `y` (and, given `gy`, our gradients `grads` of input, weight and bias, as
    many as given) against float64 F.conv2d of the same inputs, each within the reduction bound:
    the forward sums C_in/groups·kh·kw products (+ the bias), the input gradient at most
    C_out/groups·kh·kw, the weight gradient N·H_out·W_out, the bias gradient N·H_out·W_out.
    Σ terms² is the same computation over squared operands."""
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    bd = None if b is None else b.detach().double().requires_grad_()
    xa, wa = xd.detach().square().requires_grad_(), wd.detach().square().requires_grad_()
    ba = None if b is None else bd.detach().square().requires_grad_()
    ref, ref_sq = F.conv2d(xd, wd, bd, **kw), F.conv2d(xa, wa, ba, **kw)
    cpg, (kh, kwd) = w.shape[1], w.shape[2:]
    r_fwd = cpg * kh * kwd + (b is not None)
    assert_within_reduction_bound(y, ref, ref_sq, r_fwd, f"{what} forward")
    if gy is None:
        return
    pixels = ref.numel() // ref.shape[-3]  # N·H_out·W_out (H_out·W_out unbatched)
    r = (w.shape[0] // kw.get("groups", 1) * kh * kwd, pixels, pixels)
    inputs = (xd, wd) + (() if bd is None else (bd,))
    sq_inputs = (xa, wa) + (() if ba is None else (ba,))
    want = torch.autograd.grad(ref, inputs, gy.double())
    want_sq = torch.autograd.grad(ref_sq, sq_inputs, gy.double().square())
    for name, got, e, a, n in zip(("input", "weight", "bias"), grads, want, want_sq, r):
        assert_within_reduction_bound(got, e, a, n, f"{what} grad {name}")


# (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
GRID = [
    (2, 4, 9, 11, 6, 3, 1, 1, 1, 1),
    (1, 3, 8, 8, 5, 3, 1, 0, 1, 1),
    (2, 4, 9, 11, 6, (3, 2), 2, (1, 0), (1, 2), 2),
    (2, 6, 10, 7, 9, (2, 3), (2, 1), 2, 1, 3),
    (1, 8, 10, 10, 8, 3, 1, 1, 1, 8),  # depthwise
    (2, 8, 11, 9, 8, 3, 2, 2, 2, 8),  # depthwise, strided and dilated
    (2, 4, 9, 45, 4, 3, 1, 1, 1, 4),  # depthwise, 45 columns: 4-vector blocks, single vectors, a scalar tail
    (1, 6, 13, 21, 6, (3, 5), (1, 2), (1, 2), (2, 1), 6),  # depthwise, column stride only, non-square kernel
    (2, 5, 11, 40, 5, (3, 2), 1, (2, 1), (2, 3), 5),  # depthwise, dilated: input gradient as a flipped correlation
    (1, 3, 7, 8, 3, 3, 1, 3, 1, 3),  # depthwise, padding beyond the kernel: input gradient by scattering
    (1, 4, 9, 9, 8, 5, 1, 2, 1, 4),  # depth multiplier 2 (general path)
    (2, 3, 15, 15, 13, 7, 2, 3, 1, 1),  # ResNet conv1 shape, small
    (2, 16, 7, 7, 20, 1, 2, 0, 1, 1),  # strided 1x1
    (3, 16, 6, 5, 7, 1, 1, 0, 1, 1),  # 1x1
    (1, 3, 5, 5, 4, 3, 1, 4, 1, 1),  # padding larger than the kernel
    (2, 5, 12, 13, 7, 3, 3, 1, 3, 1),  # stride 3, dilation 3
    (1, 2, 4, 30, 3, (1, 5), (1, 3), (0, 2), 1, 1),
    (2, 8, 6, 6, 16, 3, 1, "same", 1, 2),
    (1, 4, 7, 8, 4, (2, 4), 1, "same", (2, 1), 1),  # even extents: asymmetric 'same'
    (1, 4, 7, 8, 4, 3, 2, "valid", 1, 1),
    (2, 5, 5, 6, 67, 3, 1, 1, 1, 1),  # small map, many output channels: partial row blocks
    (2, 10, 5, 4, 134, 3, 1, 1, 1, 2),  # the same per group
    # weight gradient over several pixel chunks per thread, chunks across images (fewer taps than twice
    # the output channels: not the tap rows)
    (3, 12, 23, 21, 56, 3, 1, 1, 1, 2),
    (1, 4, 9, 8, 40, 3, 2, 1, 2, 1),  # packed forward tiles (the virtual grid wastes > 15%), strided, dilated
    (2, 40, 6, 5, 8, 3, 2, 1, 1, 1),  # packed input-gradient tiles (the same), strided
    (1, 8, 4, 4, 256, 3, 1, 1, 1, 1),  # >= 64 output channels: packed forward, rows split across threads
    (1, 6, 5, 4, 260, 3, 1, 1, 1, 2),  # the same per group (130 rows each, a partial row block)
    (1, 130, 6, 6, 12, 3, 1, 1, 1, 1),  # >= 64 input channels: packed input gradient
    # >= 64 channels both ways and 630 reduction steps (3 chunks): packed passes that write the tiles
    # inside one image straight into the output (accumulating over the chunks), the others by a scatter
    (2, 70, 9, 11, 70, 3, 1, 1, 1, 1),
    # a weight gradient twice grad_output's size (576 taps, 242 pixels; maps of 121 pixels, too few for
    # the tap rows): the threads split its tap panels and each sums over every chunk
    (2, 64, 11, 11, 16, 3, 1, 1, 1, 1),
    # 72 rows both ways on a map the virtual grid wastes little of: virtual tiles with AVX-512 (packed
    # from 256 rows there for float, 64 for double), packed ones with AVX2 (from 64 for float)
    (1, 72, 40, 40, 72, 3, 1, 1, 1, 1),
    # short reductions (kd <= 2.5 rows) on the same kind of map: packed tiles with any instruction set;
    # the forward of 16 -> 64 3x3 (144 steps, 64 rows), 1x1 24 -> 12 both ways, 1x1 25 -> 10 (at the
    # ratio) both ways, and 1x1 26 -> 10, whose forward (26 steps, 10 rows) stays virtual
    (1, 16, 40, 40, 64, 3, 1, 1, 1, 1),
    (2, 24, 40, 40, 12, 1, 1, 0, 1, 1),
    (1, 25, 40, 40, 10, 1, 1, 0, 1, 1),
    (1, 26, 40, 40, 10, 1, 1, 0, 1, 1),
    # stride 2, an even width: the input gradient's two column phases of a row phase run on the same
    # tiles and are written together, whole vectors and partial ones (20 and 23 columns), on virtual
    # or packed tiles by how much of the virtual grid is wasted: with AVX-512 virtual ones on the
    # 40x40 map, packed ones at 46 columns; with AVX2 the other way round; packed ones at 12x12
    (2, 8, 40, 40, 12, 3, 2, 1, 1, 1),
    (1, 8, 30, 46, 12, 3, 2, 1, 1, 1),
    (2, 40, 12, 12, 12, 3, 2, 1, 1, 1),
]


def _ids(case):
    return "N{}C{}H{}W{}K{}k{}s{}p{}d{}g{}".format(*case).replace(" ", "")


def _run(case, dtype, device, bias, grad=True):
    n, c, h, w, k, ks, s, p, d, g = case
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = torch.randn(n, c, h, w, dtype=dtype, device=device, requires_grad=grad)
    wt = torch.randn(k, c // g, kh, kw, dtype=dtype, device=device, requires_grad=grad)
    b = torch.randn(k, dtype=dtype, device=device, requires_grad=grad) if bias else None
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", GRID, ids=_ids)
def test_matches_torch(device, dtype, case):
    for bias in (True, False):
        x, w, b, kw = _run(case, dtype, device, bias)
        y = HF.conv2d(x, w, b, **kw)
        inputs = (x, w) + ((b,) if bias else ())
        if dtype == torch.float32:
            gy = torch.randn_like(y)
            check_float32(x, w, b, kw, y, gy, torch.autograd.grad(y, inputs, gy), f"bias={bias}")
            continue
        ref = F.conv2d(x, w, b, **kw)
        torch.testing.assert_close(y, ref, **TOL[dtype])
        gy = torch.randn_like(ref)
        got = torch.autograd.grad(y, inputs, gy)
        want = torch.autograd.grad(ref, inputs, gy)
        for name, a, e in zip(("input", "weight", "bias"), got, want):
            torch.testing.assert_close(a, e, **TOL[dtype], msg=lambda m: f"grad {name}: {m}")


def check_float64(n: int, c: int, h: int, w: int, k: int, kernel: int | tuple[int, int], stride: int,
                  padding: int | str | tuple[int, int], dilation: int, groups: int) -> None:
    """Forward with a bias (the value of pixels that read only padding) and the input and weight
    gradients of random float64 data, against F.conv2d's."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    wt = torch.randn(k, c // groups, kh, kw, dtype=torch.float64, requires_grad=True)
    b = torch.randn(k, dtype=torch.float64)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, ref = HF.conv2d(x, wt, b, **kwargs), F.conv2d(x, wt, b, **kwargs)
    case = (n, c, h, w, k, kernel, stride, padding, dilation, groups)
    torch.testing.assert_close(y, ref, **TOL[torch.float64], msg=lambda m: f"{case}: {m}")
    gy = torch.randn_like(ref)
    for name, got, want in zip(("input", "weight"), torch.autograd.grad(y, (x, wt), gy),
                               torch.autograd.grad(ref, (x, wt), gy)):
        torch.testing.assert_close(got, want, **TOL[torch.float64], msg=lambda m: f"{case} grad {name}: {m}")


@pytest.mark.parametrize("threads", [3, 8])
def test_weight_gradient_on_any_thread_count(threads):
    """The CPU weight gradient splits the pixels over the threads in chunks of equal size (each part
    into its own copy of the gradient, added at the end), and the tap panels too where there are
    fewer chunks than threads: every split must sum each pixel exactly once. (Fewer taps than twice
    the output channels or small maps: not the tap rows.)"""
    with num_threads(threads):
        for n, c, h, k in [(1, 8, 23, 40), (2, 16, 11, 16), (3, 8, 12, 40), (1, 4, 4, 40), (2, 3, 9, 130)]:
            x = torch.randn(n, c, h, h, dtype=torch.float64)
            w = torch.randn(k, c, 3, 3, dtype=torch.float64, requires_grad=True)
            gy = torch.randn(n, k, h, h, dtype=torch.float64)
            got = torch.autograd.grad(HF.conv2d(x, w, padding=1), w, gy)[0]
            want = torch.autograd.grad(F.conv2d(x, w, padding=1), w, gy)[0]
            torch.testing.assert_close(got, want, **TOL[torch.float64], msg=lambda m: f"{(n, c, h, k)}: {m}")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_weight_gradient_tap_rows(threads):
    """Where the taps outnumber the output channels twice over, in chunks of at least 128 pixels and
    at least 512 pixels a thread, the CPU weight gradient takes the taps as the micro-kernel's rows
    (read in place) and the output channels as its columns (grad_output transposed per chunk of at
    most 256 pixels of an image, more where the (group, image, chunk) items would not share out
    evenly among the threads); the threads split the items, each into its own copy, and a copy whose
    thread met no item of a group holds zeros there. float64 against torch: groups whose items fall
    to different threads, partial blocks of taps and of channels, stride 2, dilation 2, several
    chunks per image."""
    with num_threads(threads):
        for n, c, h, w, k, s, d, g in [(1, 12, 40, 40, 10, 1, 1, 2), (2, 8, 66, 62, 8, 2, 1, 1),
                                       (1, 6, 40, 40, 6, 1, 2, 1), (3, 16, 24, 24, 24, 1, 1, 1)]:
            x = torch.randn(n, c, h, w, dtype=torch.float64)
            wt = torch.randn(k, c // g, 3, 3, dtype=torch.float64, requires_grad=True)
            kw = dict(stride=s, padding=d, dilation=d, groups=g)
            y = F.conv2d(x, wt.detach(), **kw)
            gy = torch.randn_like(y)
            got = torch.autograd.grad(HF.conv2d(x, wt, **kw), wt, gy)[0]
            want = torch.autograd.grad(F.conv2d(x, wt, **kw), wt, gy)[0]
            torch.testing.assert_close(got, want, **TOL[torch.float64],
                                       msg=lambda m: f"{(n, c, h, w, k, s, d, g)}: {m}")


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_row_split_on_any_thread_count(threads):
    """With few pixels and many rows (output channels forward, input channels for the input
    gradient), the CPU passes split the rows across the threads, each task packing its own blocks of
    the weights: every row must be computed once, whatever the thread count."""
    with num_threads(threads):
        for n, c, h, k in [(2, 8, 4, 200), (1, 8, 5, 520), (1, 200, 4, 8), (2, 520, 3, 4)]:
            x = torch.randn(n, c, h, h, dtype=torch.float64, requires_grad=True)
            w = torch.randn(k, c, 3, 3, dtype=torch.float64)
            y = HF.conv2d(x, w, padding=1)
            gy = torch.randn_like(y)
            torch.testing.assert_close(y, F.conv2d(x, w, padding=1), **TOL[torch.float64])
            want = torch.autograd.grad(F.conv2d(x, w, padding=1), x, gy)[0]
            torch.testing.assert_close(torch.autograd.grad(y, x, gy)[0], want, **TOL[torch.float64],
                                       msg=lambda m: f"{(n, c, h, k)}: {m}")


@pytest.mark.parametrize("threads", [2, 3])
def test_stride2_column_pairs(threads):
    """A stride-2 input gradient's two column phases of a row phase run on the same tiles, each task
    writing both into whole output rows: float64 against torch where a task holds several images
    (virtual tiles, one per image), per group, and where the rows split across two threads (packed
    tiles, 130 input channels in slices of 72 and 58)."""
    with num_threads(threads):
        for n, c, h, w, k, g in [(3, 8, 6, 30, 8, 1), (2, 16, 20, 20, 24, 2), (2, 130, 34, 36, 256, 1)]:
            x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
            wt = torch.randn(k, c // g, 3, 3, dtype=torch.float64)
            gy = torch.randn(n, k, h // 2, w // 2, dtype=torch.float64)
            got = torch.autograd.grad(HF.conv2d(x, wt, stride=2, padding=1, groups=g), x, gy)[0]
            want = torch.autograd.grad(F.conv2d(x, wt, stride=2, padding=1, groups=g), x, gy)[0]
            torch.testing.assert_close(got, want, **TOL[torch.float64], msg=lambda m: f"{(n, c, h, w, k, g)}: {m}")


def test_virtual_tiles_of_many_rows():
    """With AVX-512's float kernels the CPU computes passes of up to 255 rows (output channels
    forward, input channels for the input gradient) on virtual tiles, many blocks of rows per tile;
    with AVX2's, on packed tiles from 64 rows. float32 forward and gradients, 140 rows (past the
    earlier bound of 128, and a partial block of rows) each way, against float64 torch within the
    reduction bound; and 250 rows on a small map (3 tiles an image), where a task takes several
    images, as many as keep its tiles (144 KiB an image) in half of L2: fewer than its share of the
    batch (4 images of 8 on two threads) where L2 holds under ~1.1 MiB, 3 with a 1 MiB L2."""
    for threads, (n, c, h, w, k) in [(2, (2, 48, 30, 30, 140)), (2, (2, 140, 30, 30, 48)),
                                     (2, (8, 72, 20, 20, 250))]:
        with num_threads(threads):
            x = torch.randn(n, c, h, w, requires_grad=True)
            wt = torch.randn(k, c, 3, 3, requires_grad=True)
            y = HF.conv2d(x, wt, padding=1)
            gy = torch.randn_like(y)
            check_float32(x, wt, None, dict(padding=1), y, gy, torch.autograd.grad(y, (x, wt), gy),
                          what=f"{c} -> {k} @{h}x{w}, {threads} threads")


@pytest.mark.parametrize("threads", [2, 3])
def test_virtual_tiles_shared_evenly(threads):
    """Where an image's virtual-pixel tiles would not share out evenly among the threads (one image
    of 30 × 30 at float64: 40 column blocks of 24 at AVX-512, 7 tiles of 6 blocks), the CPU cuts it
    into more tiles of near-equal numbers of blocks. Forward and both gradients, float64 against
    torch, one image and one image of two groups."""
    with num_threads(threads):
        for c, k, g in [(16, 16, 1), (16, 32, 2)]:
            x = torch.randn(1, c, 30, 30, dtype=torch.float64, requires_grad=True)
            wt = torch.randn(k, c // g, 3, 3, dtype=torch.float64, requires_grad=True)
            y = HF.conv2d(x, wt, padding=1, groups=g)
            gy = torch.randn_like(y)
            want = F.conv2d(x, wt, padding=1, groups=g)
            torch.testing.assert_close(y, want, **TOL[torch.float64])
            for got, exp in zip(torch.autograd.grad(y, (x, wt), gy), torch.autograd.grad(want, (x, wt), gy)):
                torch.testing.assert_close(got, exp, **TOL[torch.float64], msg=lambda m: f"{(c, k, g)}: {m}")


def test_rows_share_their_padding():
    """The CPU's padded copy stores a row's padding columns in front only where the row before does
    not end in them (the zeros are shared), and keeps each row at least as long as the output row:
    forward and both gradients, float64 against torch, through every pass that reads the copy
    (virtual tiles, packed tiles, the direct pass), with padding beyond the kernel on both sides (a
    row could share more columns than the output row leaves: only the virtual tiles would then go
    wrong, as the first case's forward does on either instruction set), asymmetric padding,
    dilation, groups, stride 2, a 5×5 kernel."""
    cases = [  # (n, c, h, w, k, kernel, stride, padding, dilation, groups)
        (2, 4, 30, 26, 8, 3, 1, 4, 1, 1),  # shares 2, not 4: the output row is 32 of 34 columns
        (1, 32, 60, 60, 32, 3, 1, 3, 1, 1),  # the virtual tiles: would write no output column 63
        (2, 8, 24, 28, 8, (2, 4), 1, "same", 1, 1),  # 1 in front, 2 behind; its input gradient's 2, 1
        (2, 8, 28, 28, 16, 3, 1, 2, 2, 2),
        (2, 8, 29, 31, 8, 5, 2, 3, 1, 1),
        (1, 8, 33, 30, 8, 3, 2, (1, 5), 1, 1),
    ]
    for case in cases:
        check_float64(*case)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_images_split_on_use(threads):
    """The CPU splits the padded, phase-split copy of the input (of grad_output for a stride-1 input
    gradient) on use, on the tiles and in the weight gradient: each thread the images of its own
    tasks as it reaches them (a virtual task's several at a time; a ring of the images a packed tile
    or a chunk of pixels can span), where there are at least as many tasks' images as threads (the
    weight gradient also needs one group, and its GEMM images of a chunk of pixels at least); else
    whole, ahead. Forward and both gradients, float64 against torch: several images a task and a
    last task of fewer (small maps), an image whose tasks fall to two threads (both split it), a
    strided forward with groups, dilation, a 5×5 kernel, one image (the copy made whole on two and
    three threads), 72 channels (packed tiles; tiles that span up to 3 images of 10×10, a strided
    one), and 1×1 layers (the weight gradient's GEMM over chunks of pixels that cross images: 21×21
    maps, on 1-3 threads). Which cases take which path depends on the instruction set's shapes
    (AVX-512's here)."""
    cases = [  # (n, c, h, w, k, kernel, stride, padding, dilation, groups)
        (7, 8, 20, 20, 8, 3, 1, 1, 1, 1),
        (3, 8, 40, 40, 16, 3, 2, 1, 1, 2),
        (3, 8, 34, 34, 8, 3, 1, 1, 1, 1),
        (3, 8, 36, 36, 8, 3, 1, 2, 2, 1),
        (3, 8, 30, 30, 8, 5, 1, 2, 1, 1),
        (1, 8, 40, 40, 8, 3, 1, 1, 1, 1),
        (3, 8, 30, 30, 72, 3, 1, 1, 1, 1),
        (9, 8, 10, 10, 72, 3, 1, 1, 1, 1),
        (5, 8, 24, 24, 72, 3, 2, 1, 1, 1),
        (1, 8, 30, 30, 72, 3, 1, 1, 1, 1),
        (3, 16, 21, 21, 16, 1, 1, 0, 1, 1),
        (3, 16, 40, 40, 32, 1, 2, 0, 1, 1),
    ]
    with num_threads(threads):
        for case in cases:
            check_float64(*case)


@pytest.mark.parametrize("threads", [1, 3])
def test_direct_pass_leaves_out_only_padding(threads):
    """On small maps the CPU's direct pass takes pixels as the micro-kernel's rows, grouped by the
    taps that read real values for them (a band of rows × a band of columns), and leaves each group's
    other taps out; the threads split (panel of output channels, block of pixels) units. Every group
    must sum all of its real taps, and pixels that read only padding must come out 0 (plus the bias):
    float64 against torch, forward and both gradients, with several reduction chunks, partial panels
    and blocks, stride, dilation, groups, asymmetric and excess padding. It reads x (grad_output)
    where it lies, or a padded copy where a pixel's reads would start past its plane: forward with
    excess padding, input gradient of an unpadded convolution (its phases wider than grad_output)."""
    cases = [  # (n, c, h, w, k, kernel, stride, padding, dilation, groups)
        (3, 70, 7, 7, 72, 3, 1, 1, 1, 1),  # 630 steps: 3 chunks
        (2, 66, 4, 5, 130, 3, 1, 1, 1, 2),
        (2, 64, 9, 9, 70, 3, 2, 1, 1, 1),
        (2, 66, 8, 8, 64, 3, 2, 1, 1, 1),  # the input gradient's stride-2 phases on the direct pass
        (2, 68, 8, 6, 66, 3, 1, 2, 2, 1),
        (1, 65, 5, 7, 67, (5, 3), 1, (3, 1), 1, 1),  # the first and last rows read only padding
        (2, 64, 6, 6, 64, (2, 3), 1, "same", 1, 1),  # an even kernel: asymmetric padding
        (1, 24, 6, 6, 20, 3, 1, 1, 1, 1),  # few channels: one partial panel
        (2, 64, 7, 7, 66, 3, 1, 0, 1, 1),  # no padding: the input gradient's pixels outnumber grad_output's
    ]
    with num_threads(threads):
        for case in cases:
            check_float64(*case)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(device, dtype):
    x, w, b, kw = _run(GRID[2], dtype, device, True, grad=False)
    ref = F.conv2d(x.float(), w.float(), b.float(), **kw).to(dtype)
    y = HF.conv2d(x, w, b, **kw)
    assert y.dtype == dtype
    tol = dict(rtol=1e-2, atol=2e-2) if dtype == torch.float16 else dict(rtol=2e-2, atol=1e-1)
    torch.testing.assert_close(y, ref, **tol)


def test_every_cpu_instruction_set(cpu_isa):
    """Each SIMD path this CPU can run (capped by HOTKERNELS_CPU_ISA) matches F.conv2d, in float32
    and, on the packed paths (their gather, the output written in place, the bias) and the stride-2
    column pairs (their zipped rows), in float64."""
    code = (
        "import torch, hotkernels\n"
        "import torch.nn.functional as F\n"
        "from tests.test_conv2d import check_float32, TOL\n"
        "for c, k, s, p, d, g, width in [(6, 7, 1, 1, 1, 1, 41), (6, 6, 2, 1, 2, 6, 41), (5, 5, 1, 1, 1, 5, 41),\n"
        "                             (4, 9, 2, 0, 1, 1, 41), (8, 70, 1, 1, 1, 1, 41), (130, 12, 1, 1, 1, 1, 41),\n"
        "                             (2, 8, 1, 1, 1, 1, 41), (8, 12, 2, 1, 1, 1, 62), (70, 12, 2, 1, 1, 1, 46)]:\n"
        "    # from (8, 70): packed paths (the forward of (2, 8) a short reduction: 18 steps, 8 rows), then\n"
        "    # stride 2 at an even width: the input gradient's column phases on the same tiles, zipped\n"
        "    x = torch.randn(2, c, 23, width, requires_grad=True); w = torch.randn(k, c // g, 3, 3, requires_grad=True)\n"
        "    kw = dict(stride=s, padding=p, dilation=d, groups=g)\n"
        "    y = hotkernels.functional.conv2d(x, w, None, **kw); gy = torch.randn_like(y)\n"
        "    check_float32(x, w, None, kw, y, gy, torch.autograd.grad(y, (x, w), gy))\n"
        "    if (c, k) not in ((8, 70), (130, 12), (2, 8), (8, 12), (70, 12)):  # float64 on those only\n"
        "        continue\n"
        "    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()\n"
        "    b = torch.randn(k, dtype=torch.float64, requires_grad=True)\n"
        "    got, want = hotkernels.functional.conv2d(xd, wd, b, **kw), F.conv2d(xd, wd, b, **kw)\n"
        "    torch.testing.assert_close(got, want, **TOL[torch.float64])\n"
        "    gy = torch.randn_like(want)\n"
        "    for a, e in zip(torch.autograd.grad(got, (xd, wd, b), gy), torch.autograd.grad(want, (xd, wd, b), gy)):\n"
        "        torch.testing.assert_close(a, e, **TOL[torch.float64])\n"
    )
    run_with_isa(cpu_isa, code)


def test_unbatched_and_channels_last(device):
    x = torch.randn(4, 9, 10, device=device)
    w = torch.randn(6, 4, 3, 3, device=device)
    check_float32(x, w, None, dict(padding=1), HF.conv2d(x, w, padding=1), what="unbatched")
    xb = torch.randn(2, 4, 9, 10, device=device).to(memory_format=torch.channels_last)
    wb = w.to(memory_format=torch.channels_last)
    check_float32(xb, wb, None, dict(stride=2), HF.conv2d(xb, wb, stride=2), what="channels_last")
    xs = torch.randn(2, 8, 9, 20, device=device)[:, ::2, :, ::2]  # a strided view
    check_float32(xs, w, None, {}, HF.conv2d(xs, w), what="strided")


def _strides(t: torch.Tensor) -> tuple[int, ...]:
    """The strides that place elements: those of dimensions of size > 1 (a size-1 dimension's stride
    is arbitrary, e.g. a depthwise weight's channel stride)."""
    return tuple(st for size, st in zip(t.shape, t.stride()) if size > 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("wfmt", [torch.contiguous_format, torch.channels_last], ids=["w_nchw", "w_nhwc"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["x_nchw", "x_nhwc"])
@pytest.mark.parametrize("case", [GRID[0], GRID[2], GRID[4], GRID[13]], ids=_ids)
def test_output_layout_follows_torch(device, case, fmt, wfmt, dtype):
    """Outputs in torch's layout: on the CPU, and on CUDA for float32, the forward output and both
    gradients channels_last when the input or the weight is; on CUDA float64 always contiguous
    (cuDNN and torch's depthwise kernel keep float64 in NCHW). Eager and fake kernels (on fake
    tensors of the same device) agree, also for an expanded grad_output (``.sum()``)."""
    x, w, b, kw = _run(case, dtype, device, True)
    x = x.detach().to(memory_format=fmt).requires_grad_()
    w = w.detach().to(memory_format=wfmt).requires_grad_()
    y, ref = HF.conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw)
    assert _strides(y) == _strides(ref)
    if dtype == torch.float64:
        torch.testing.assert_close(y, ref, **TOL[dtype])
    for gy in (torch.randn_like(ref), torch.ones((), dtype=dtype, device=device).expand(ref.shape)):  # ref's; .sum()'s
        gx, gw = torch.autograd.grad(y, (x, w), gy, retain_graph=True)
        ex, ew = torch.autograd.grad(ref, (x, w), gy, retain_graph=True)
        assert _strides(gx) == _strides(ex)
        assert _strides(gw) == _strides(ew)
        if dtype == torch.float32:
            check_float32(x, w, b, kw, y, gy, (gx, gw))
        else:
            torch.testing.assert_close(gx, ex, **TOL[dtype])
            torch.testing.assert_close(gw, ew, **TOL[dtype])
    stride, dilation = _pair(kw["stride"], "stride"), _pair(kw["dilation"], "dilation")
    conv_args = (stride, conv2d_padding(kw["padding"], w.shape, stride, dilation), dilation, kw["groups"])
    gy = torch.randn_like(ref)
    with FakeTensorMode() as mode:
        fx, fw, fb, fgy = (mode.from_tensor(t) for t in (x, w, b, gy))
        assert _strides(ops.conv2d(fx, fw, fb, *conv_args)) == _strides(y)
        assert _strides(ops.conv2d_backward_input(fgy, fw, list(x.shape), *conv_args)) == _strides(ex)
        assert _strides(ops.conv2d_backward_weight(fgy, fx, list(w.shape), *conv_args)) == _strides(gw)


def test_layout_rule_shortcut_is_torchs_rule():
    """The Python layout rule's shortcut (_suggests_channels_last: NCHW's or channels_last's own
    strides answered without torch's stride walk) gives torch's answer (suggest_memory_format) for
    every 4-D shape with sizes 0 to 3, in NCHW, channels_last (also as a parameter), with two
    dimensions swapped and sliced: the size-1 dimensions, whose strides are free, and the empty ones
    included."""
    checked = 0
    for shape in itertools.product(range(4), repeat=4):
        x = torch.randn(shape)
        n, c, h, w = shape
        sliced = torch.randn(n, c, 2 * h, w)[:, :, ::2]
        cl = x.to(memory_format=torch.channels_last)
        for t in (x, cl, torch.nn.Parameter(cl), x.transpose(2, 3), x.transpose(0, 1), sliced):
            want = suggest_memory_format(t) == torch.channels_last
            assert _suggests_channels_last(t) == want, (t.shape, t.stride())
            checked += 1
    assert checked == 6 * 4**4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=["f64", "f32", "f16"])
@pytest.mark.parametrize("groups", [1, 2, 4], ids=["dense", "grouped", "depthwise"])
def test_fake_kernels_follow_torch_layouts_for_gpu_tensors(dtype, groups):
    """Runs on the CPU: our fake kernels on fake CUDA tensors give the layouts torch's own fake
    convolution gives them, which asks aten which CUDA backend the call takes and its memory format
    (aten's _select_conv_backend, _conv_determine_backend_memory_format): channels_last when the
    input or the weight is, except float64 (always contiguous on CUDA)."""
    cl, cf = torch.channels_last, torch.contiguous_format
    for fmt in (cf, cl):
        for wfmt in (cf, cl):
            with FakeTensorMode():
                x = torch.empty(2, 4, 8, 8, dtype=dtype, device="cuda").to(memory_format=fmt)
                w = torch.empty(4, 4 // groups, 3, 3, dtype=dtype, device="cuda").to(memory_format=wfmt)
                args = ([1, 1], [1, 1], [1, 1], groups)
                y = F.conv2d(x, w, None, *args)
                gy = torch.empty_like(y)
                ex, ew, _ = torch.ops.aten.convolution_backward(gy, x, w, None, *args[:3], False, [0, 0], groups,
                                                                [True, True, False])
                ours = ops.conv2d(x, w, None, [1, 1], [1, 1, 1, 1], [1, 1], groups)
                gx = ops.conv2d_backward_input(gy, w, list(x.shape), [1, 1], [1, 1, 1, 1], [1, 1], groups)
                gw = ops.conv2d_backward_weight(gy, x, list(w.shape), [1, 1], [1, 1, 1, 1], [1, 1], groups)
            what = f"x {fmt}, weight {wfmt}"
            assert _strides(ours) == _strides(y), what
            assert _strides(gx) == _strides(ex), what
            assert _strides(gw) == _strides(ew), what


def test_gradcheck_and_gradgradcheck(device):
    for case in [(1, 4, 5, 6, 4, (3, 2), (2, 1), 1, (1, 2), 2), (2, 3, 5, 5, 3, 3, 1, 1, 1, 3)]:
        x, w, b, kw = _run(case, torch.float64, device, True)

        def f(x, w, b):
            return HF.conv2d(x, w, b, **kw)

        assert torch.autograd.gradcheck(f, (x, w, b))
        assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_backward_ops_gradcheck(device):
    x, w, _, _ = _run((1, 4, 6, 5, 4, 3, 2, 1, 1, 2), torch.float64, device, False)
    args = ([2, 2], [1, 1, 1, 1], [1, 1], 2)
    gy = torch.randn(1, 4, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, w: ops.conv2d_backward_input(g, w, list(x.shape), *args), (gy, w))
    assert torch.autograd.gradcheck(lambda g, x: ops.conv2d_backward_weight(g, x, list(w.shape), *args), (gy, x))
    assert torch.autograd.gradcheck(ops.conv2d_backward_bias, (gy,))


def test_opcheck(device):
    x = torch.randn(2, 4, 7, 6, device=device, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    args = ([2, 1], [1, 0, 2, 1], [1, 2], 2)
    torch.library.opcheck(ops.conv2d.default, (x, w, b, *args))
    torch.library.opcheck(ops.conv2d.default, (x.to(memory_format=torch.channels_last), w, None, *args))
    y = ops.conv2d(x, w, b, *args)
    gy = torch.randn_like(y, requires_grad=True)
    torch.library.opcheck(ops.conv2d_backward_input.default, (gy, w, list(x.shape), *args))
    torch.library.opcheck(ops.conv2d_backward_weight.default, (gy, x, list(w.shape), *args))
    torch.library.opcheck(ops.conv2d_backward_bias.default, (gy,))


def test_torch_compile_inductor_matches_torch(device):
    """Inductor (torch.compile's default backend) around nn.Conv2d's drop-in against torch's eager
    F.conv2d, float64 (so the comparison is tight): output and the input, weight and bias gradients."""
    torch.manual_seed(0)
    conv = hotkernels.nn.Conv2d(3, 5, 3, padding="same", device=device, dtype=torch.float64)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, device=device, requires_grad=True)
    w, b = conv.weight.detach().requires_grad_(), conv.bias.detach().requires_grad_()
    check_inductor(lambda x, w, b: HF.conv2d(x, w, b, padding="same").relu(),
                   lambda x, w, b: F.conv2d(x, w, b, padding="same").relu(), [x, w, b],
                   ["hotkernels.conv2d.default", "hotkernels.conv2d_backward_input.default",
                    "hotkernels.conv2d_backward_weight.default"], **TOL[torch.float64])


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_module_is_drop_in(device, padding_mode):
    kwargs = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, bias=True, padding_mode=padding_mode)
    torch.manual_seed(1)
    ours = hotkernels.nn.Conv2d(4, 6, (3, 2), device=device, **kwargs)
    torch.manual_seed(1)
    theirs = torch.nn.Conv2d(4, 6, (3, 2), device=device, **kwargs)
    assert isinstance(ours, torch.nn.Conv2d)
    assert repr(ours) == repr(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for k, v in ours.state_dict().items():
        torch.testing.assert_close(v, theirs.state_dict()[k], rtol=0, atol=0)  # same initialisation
    x = torch.randn(2, 4, 9, 10, device=device)
    for inp in (x, x[0]):  # torch's padding modes pad first, then convolve with zero padding
        padded = F.pad(inp, theirs._reversed_padding_repeated_twice, mode=padding_mode) if padding_mode != "zeros" else inp
        kw = dict(stride=(2, 1), padding=0 if padding_mode != "zeros" else (1, 2), dilation=(1, 2), groups=2)
        check_float32(padded, theirs.weight, theirs.bias, kw, ours(inp), what=padding_mode)
    theirs.load_state_dict(ours.state_dict())


def test_rejects_bad_input(device):
    x = torch.randn(2, 4, 8, 8, device=device)
    w = torch.randn(6, 4, 3, 3, device=device)
    with pytest.raises(RuntimeError, match=r"expected input\[2, 4, 8, 8\] to have 8 channels, but got 4 channels"):
        HF.conv2d(x, w, groups=2)
    with pytest.raises(RuntimeError, match=r"Given groups=4, expected weight to be divisible by 4 at dimension 0"):
        HF.conv2d(x, torch.randn(6, 1, 3, 3, device=device), groups=4)
    with pytest.raises(RuntimeError, match=r"Kernel size can't be greater than actual input size"):
        HF.conv2d(x, torch.randn(6, 4, 9, 3, device=device))
    for empty in (x[:, :, :0], x[..., :0]):  # refused as torch refuses it, though padding would give outputs
        with pytest.raises(RuntimeError, match=r"hotkernels.conv2d: expected 'input' to have non-zero height and width"):
            HF.conv2d(empty, torch.randn(6, 4, 1, 1, device=device), padding=1)
    with pytest.raises(RuntimeError, match=r"Expected 3D \(unbatched\) or 4D \(batched\) input to conv2d"):
        HF.conv2d(x[0, 0], w)
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d: expected 'weight' to be 4-D"):
        HF.conv2d(x, w[0])
    with pytest.raises(RuntimeError, match=r"expected bias to be 1-dimensional with 6 elements"):
        HF.conv2d(x, w, torch.randn(5, device=device))
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d: expected 'weight' to have dtype"):
        HF.conv2d(x, w.double())
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d: expected 'input' to be a float32"):
        HF.conv2d(x.int(), w.int())
    with pytest.raises(RuntimeError, match=r"non-positive stride is not supported"):
        HF.conv2d(x, w, stride=0)
    with pytest.raises(RuntimeError, match=r"negative padding is not supported"):
        HF.conv2d(x, w, padding=-1)
    with pytest.raises(RuntimeError, match=r"dilation should be greater than zero"):
        HF.conv2d(x, w, dilation=0)
    with pytest.raises(ValueError, match=r"padding='same' is not supported for strided convolutions"):
        HF.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match=r"Invalid padding string 'full'"):
        HF.conv2d(x, w, padding="full")
    with pytest.raises(RuntimeError, match=r"hotkernels.conv2d_backward_input: expected 'grad_output' of size"):
        ops.conv2d_backward_input(torch.randn(2, 6, 5, 5, device=device), w, [2, 4, 8, 8], [1, 1], [0] * 4, [1, 1], 1)


def test_empty_batch(device):
    x = torch.randn(0, 4, 8, 8, device=device, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, device=device, requires_grad=True)
    b = torch.randn(6, device=device, requires_grad=True)
    y = HF.conv2d(x, w, b)
    assert y.shape == F.conv2d(x, w, b).shape
    # Gradients of an empty sum are zeros (the weight gradient's buffer must not come back unwritten).
    gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b))
    assert gx.shape == x.shape
    assert torch.equal(gw, torch.zeros_like(w)) and torch.equal(gb, torch.zeros_like(b))


def test_more_groups_than_a_grid_dimension(device):
    # 70000 groups of 2 input channels (not depthwise: the implicit GEMM): CUDA launches its group
    # tiles along gridDim.z, which stops at 65535, so the kernel walks them grid-stride.
    g = 70000
    x = torch.randn(1, 2 * g, 2, 2, device=device, requires_grad=True)
    w = torch.randn(g, 2, 1, 1, device=device, requires_grad=True)
    y = HF.conv2d(x, w, groups=g)
    gy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), gy)
    # The float64 reference as sums over each group's 2 channels (torch's grouped convolution loops
    # over 70000 groups in float64 for minutes): y[n, g] = Σ_c x[n, 2g + c]·w[g, c].
    xv, wv, gv = x.detach().double().view(1, g, 2, 2, 2), w.detach().double().view(g, 2), gy.double()
    for got, ref, sq, r, what in [
        (y, torch.einsum("ngchw,gc->nghw", xv, wv), torch.einsum("ngchw,gc->nghw", xv.square(), wv.square()), 2, "forward"),
        (gx.view(1, g, 2, 2, 2), torch.einsum("nghw,gc->ngchw", gv, wv), torch.einsum("nghw,gc->ngchw", gv.square(), wv.square()),
         1, "grad input"),
        (gw.view(g, 2), torch.einsum("ngchw,nghw->gc", xv, gv), torch.einsum("ngchw,nghw->gc", xv.square(), gv.square()), 4,
         "grad weight"),
    ]:
        assert_within_reduction_bound(got, ref, sq, r, what)


# ---------------------------------------------------------------------------------------------
# CUDA kernel paths (csrc/cuda/conv2d.cu): tensor cores (TF32 for float32 when
# torch.backends.cudnn.allow_tf32 is on, f16/bf16), the exact FP32 kernel (allow_tf32 off) and the
# direct depthwise kernels. Every result is compared with float64 F.conv2d of the same (rounded)
# inputs, with a bound that scales with the reduction length R of the pass (unit-normal data: a
# sum of R products has magnitude ~sqrt(R), and independent rounding errors grow like sqrt(R)):
#   exact float32: |err| <= 2e-5·sqrt(R) + 1e-5·|ref|   (float32 rounding of running sums that
#                  grow like sqrt(R): a few 1e-7·sqrt(R) to 1e-6·sqrt(R) for R up to ~10^4);
#   TF32:          |err| <= 5e-3·sqrt(R)                (inputs rounded to 10-bit mantissas:
#                  ~7e-4·sqrt(R) per output, so about 7 standard deviations);
#   f16 / bf16:    |err| <= 1e-4·sqrt(R) + u·|ref|     (float accumulation, one rounding of the
#                  result; u = 2^-10 for f16, 2^-7 for bf16: twice the unit roundoff).
# Cases are chosen to reach every guard: GEMM extents that are not tile multiples, 1/3/5 channels,
# K splits (small outputs, long reductions), both tile shapes, every input-gradient stride class
# (incl. classes that no tap reaches), groups, dilation, asymmetric padding, N = 1.

CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available() or not hotkernels._library.with_cuda,
                               reason="needs a GPU and hotkernels built with CUDA")

# (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups)
CUDA_GRID = [
    (2, 5, 11, 13, 7, 3, 1, 1, 1, 1),  # nothing a multiple of a tile
    (1, 1, 9, 10, 4, 3, 1, 1, 1, 1),  # one input channel (K = taps)
    (2, 3, 33, 31, 16, 7, 2, 3, 1, 1),  # conv1-like: 3 channels, 7x7/s2
    (2, 16, 14, 14, 32, 1, 2, 0, 1, 1),  # 1x1/s2: three of four input-gradient classes get no tap
    (1, 8, 8, 8, 512, 1, 2, 0, 1, 1),  # the same with a long input-gradient reduction: split-K
    (2, 12, 15, 14, 10, 3, 2, 1, 1, 1),  # 3x3/s2, odd sizes
    (1, 8, 17, 16, 8, 3, 3, 2, 2, 1),  # stride 3, dilation 2: taps i ≡ i0 (mod 3)
    (2, 8, 13, 12, 8, 3, 2, 2, 2, 1),  # stride 2, dilation 2: a class gets all taps or none
    (2, 6, 9, 20, 9, (2, 5), (2, 3), (0, 2), (2, 1), 3),  # non-square everything, groups 3
    (2, 6, 12, 12, 6, 2, 4, 0, 1, 1),  # stride larger than the kernel: pixels no output reads
    (1, 5, 1, 9, 4, (1, 3), 2, (0, 1), 1, 1),  # H = 1 < stride
    (2, 16, 9, 9, 32, 3, 1, "same", 1, 4),  # groups 4, 4 channels a group in, 8 out
    (1, 4, 8, 9, 8, (2, 4), 1, "same", (2, 1), 1),  # even extents: asymmetric 'same'
    (2, 4, 10, 10, 8, 3, 1, 1, 1, 4),  # depth multiplier 2 (tensor cores, one channel a group)
    (3, 19, 37, 29, 33, 3, 1, 1, 1, 1),  # larger odd sizes
    (2, 256, 7, 7, 256, 3, 1, 1, 1, 1),  # small output, long reduction: K splits
    (4, 40, 56, 56, 200, 3, 1, 1, 1, 1),  # the 128 x 128 tile, with a partial column tile
    # Tile shapes by the plan for 132 SMs (H100/H200): 128 x 64 (forward, input gradient); 64 x 128
    # (forward) and 128 x 64 (weight gradient); 128 x 128 weight gradient with split forward/input.
    (8, 16, 48, 48, 64, 3, 1, 1, 1, 1),
    (1, 8, 4, 4, 17000, 1, 1, 0, 1, 1),
    (1, 512, 4, 4, 512, 3, 1, 1, 1, 1),
]

DEPTHWISE_GRID = [
    (2, 8, 11, 9, 8, 3, 1, 1, 1, 8),
    (2, 40, 13, 12, 40, 3, 2, 1, 1, 40),  # 40 channels: a partial 32-channel block when NHWC
    (1, 3, 10, 11, 3, 5, 2, 4, 2, 3),  # 25 taps: three tap blocks in the weight gradient
    (2, 6, 7, 8, 6, (1, 2), (1, 2), (0, 1), 1, 6),
    (1, 16, 20, 20, 16, 3, 1, 2, 2, 16),
]


def _reductions(case):
    """Reduction length of the forward, input-gradient and weight-gradient sums of a case."""
    n, c, h, w, k, ks, s, p, d, g = case
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = torch.empty(n, c, h, w, device="meta")
    oh, ow = F.conv2d(x, torch.empty(k, c // g, kh, kw, device="meta"), None, s, p, d, g).shape[2:]
    return c // g * kh * kw, k // g * kh * kw, n * oh * ow


def _bound(kind: str, r: int, ref: torch.Tensor) -> torch.Tensor:
    root = r ** 0.5
    if kind == "exact":
        return 2e-5 * root + 1e-5 * ref.abs()
    if kind == "tf32":
        return torch.full_like(ref, 5e-3 * root)
    u = 2.0 ** -10 if kind == "float16" else 2.0 ** -7
    return 1e-4 * root + u * ref.abs()


def _assert_within(got: torch.Tensor, ref: torch.Tensor, kind: str, r: int, what: str) -> float:
    err = (got.double() - ref).abs()
    bound = _bound(kind, r, ref)
    worst = (err / bound).max().item() if err.numel() else 0.0
    assert worst <= 1.0, f"{what}: max |err| {err.max().item():.3g} exceeds the {kind} bound (ratio {worst:.3g})"
    return err.max().item() if err.numel() else 0.0


def _cuda_case(case, dtype, memory_format, bias=True):
    n, c, h, w, k, ks, s, p, d, g = case
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype).to(memory_format=memory_format).requires_grad_()
    wt = torch.randn(k, c // g, kh, kw, device="cuda", dtype=dtype).requires_grad_()
    b = torch.randn(k, device="cuda", dtype=dtype).requires_grad_() if bias else None
    return x, wt, b, dict(stride=s, padding=p, dilation=d, groups=g)


def _check_cuda_case(case, dtype, kind, memory_format, tf32: bool) -> list[float]:
    """Forward and all gradients against float64 F.conv2d; checks the layouts of the results too.
    Returns the max errors (forward, input, weight)."""
    x, w, b, kw = _cuda_case(case, dtype, memory_format)
    r_fwd, r_in, r_w = _reductions(case)
    with allow_tf32(tf32):
        y = HF.conv2d(x, w, b, **kw)
        gy = torch.randn_like(y)
        gx, gw, gb = torch.autograd.grad(y, (x, w, b), gy)
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = F.conv2d(xd, wd, bd, **kw)
    rx, rw, rb = torch.autograd.grad(ref, (xd, wd, bd), gy.double())
    # torch's layouts (cuDNN's, for these dtypes): all three channels_last when the input is, the
    # weight gradient included.
    assert y.dtype == dtype and y.shape == ref.shape
    assert y.is_contiguous(memory_format=memory_format)
    assert gx.is_contiguous(memory_format=memory_format)
    assert gw.is_contiguous(memory_format=memory_format) and gw.dtype == dtype
    errs = [
        _assert_within(y, ref, kind, r_fwd, "forward"),
        _assert_within(gx, rx, kind, r_in, "grad input"),
        _assert_within(gw, rw, kind, r_w, "grad weight"),
    ]
    # The bias gradient is a plain sum in the accumulation type: exact-float bound, or one rounding.
    _assert_within(gb, rb, "exact" if dtype == torch.float32 else kind, case[0] * y.shape[2] * y.shape[3], "grad bias")
    return errs


@CUDA_ONLY
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CUDA_GRID, ids=_ids)
def test_cuda_exact_float32(case, memory_format):
    """allow_tf32 off: the exact FP32 kernel, to float32 accuracy (a TF32 result would fail)."""
    _check_cuda_case(case, torch.float32, "exact", memory_format, tf32=False)


@CUDA_ONLY
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CUDA_GRID, ids=_ids)
def test_cuda_tf32(case, memory_format):
    """allow_tf32 on (torch's default for convolutions): tensor cores, within the TF32 bound, and
    visibly not exact float32 (the flag is honoured)."""
    errs = _check_cuda_case(case, torch.float32, "tf32", memory_format, tf32=True)
    r_fwd = _reductions(case)[0]
    if r_fwd >= 9:  # enough products per output that rounding the inputs to TF32 shows
        assert errs[0] > 2e-5 * r_fwd ** 0.5, f"forward error {errs[0]:.3g} is float32-exact: TF32 was not used"


@CUDA_ONLY
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", CUDA_GRID, ids=_ids)
def test_cuda_half_types(case, memory_format, dtype):
    _check_cuda_case(case, dtype, "float16" if dtype == torch.float16 else "bfloat16", memory_format, tf32=True)


@CUDA_ONLY
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", DEPTHWISE_GRID, ids=_ids)
def test_cuda_depthwise(case, memory_format, dtype):
    """The direct depthwise kernels compute in float whatever the TF32 flag: exact-float32 bound."""
    kind = {torch.float32: "exact", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
    _check_cuda_case(case, dtype, kind, memory_format, tf32=True)


@CUDA_ONLY
def test_cuda_float64_and_mixed_layouts():
    """float64 (exact kernel) tight, with a contiguous grad_output against a channels_last input;
    a strided (non-dense) input."""
    case = (2, 6, 9, 11, 10, 3, 2, 1, 1, 2)
    x, w, b, kw = _cuda_case(case, torch.float64, torch.channels_last)
    y = HF.conv2d(x, w, b, **kw)
    ref = F.conv2d(x, w, b, **kw)
    torch.testing.assert_close(y, ref, **TOL[torch.float64])
    gy = torch.randn(ref.shape, dtype=torch.float64, device="cuda")  # NCHW-contiguous
    got = torch.autograd.grad(y, (x, w, b), gy)
    want = torch.autograd.grad(ref, (x, w, b), gy)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, **TOL[torch.float64])
    xs = torch.randn(2, 12, 9, 22, device="cuda")[:, ::2, :, ::2]
    with allow_tf32(False):
        torch.testing.assert_close(HF.conv2d(xs, w.float(), None, **kw), F.conv2d(xs, w.float(), None, **kw),
                                   rtol=1e-5, atol=1e-5)


@CUDA_ONLY
def test_cuda_backward_ops_directly():
    """The gradient ops on their own, with the layouts autograd would not produce: a channels_last
    grad_output with a contiguous input, and zero-size batches."""
    case = (2, 8, 10, 9, 12, 3, 2, 1, 1, 2)
    x, w, _, _ = _cuda_case(case, torch.float32, torch.contiguous_format, bias=False)
    args = ([2, 2], [1, 1, 1, 1], [1, 1], 2)
    gy = torch.randn(2, 12, 5, 5, device="cuda").to(memory_format=torch.channels_last)
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.conv2d(xd, wd, None, 2, 1, 1, 2)
    rx, rw = torch.autograd.grad(ref, (xd, wd), gy.double())
    with allow_tf32(False):
        gx = ops.conv2d_backward_input(gy, w, list(x.shape), *args)
        gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *args)
    assert gx.is_contiguous(memory_format=torch.channels_last) and gw.is_contiguous(memory_format=torch.channels_last)
    _assert_within(gx, rx, "exact", 6 * 9, "grad input")
    _assert_within(gw, rw, "exact", 50, "grad weight")
    with allow_tf32(True):
        gx = ops.conv2d_backward_input(gy, w, list(x.shape), *args)
        gw = ops.conv2d_backward_weight(gy, x, list(w.shape), *args)
    _assert_within(gx, rx, "tf32", 6 * 9, "grad input")
    _assert_within(gw, rw, "tf32", 50, "grad weight")
    empty = torch.randn(0, 12, 5, 5, device="cuda")
    assert ops.conv2d_backward_input(empty, w, [0, 8, 10, 9], *args).shape == (0, 8, 10, 9)
    assert torch.equal(ops.conv2d_backward_weight(empty, x[:0], list(w.shape), *args), torch.zeros_like(w))
    assert torch.equal(ops.conv2d_backward_bias(empty), torch.zeros(12, device="cuda"))


@CUDA_ONLY
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_cuda_unaligned_channels_last(dtype):
    """channels_last activations whose data is not 16-byte aligned (views at an odd offset): the
    tensor-core path must use element loads for them (vector_loads) and stay correct, where the
    same shapes from fresh tensors take 16-byte loads (16 channels a group)."""

    def unaligned(n, c, h, w):
        flat = torch.randn(n * h * w * c + 1, device="cuda", dtype=dtype)[1:]
        t = flat.view(n, h, w, c).permute(0, 3, 1, 2)
        assert t.is_contiguous(memory_format=torch.channels_last) and t.data_ptr() % 16 != 0
        return t

    kind = "tf32" if dtype == torch.float32 else "float16"
    x = unaligned(2, 16, 9, 10)
    w = torch.randn(16, 16, 3, 3, device="cuda", dtype=dtype)
    gy = unaligned(2, 16, 9, 10)
    args = ([1, 1], [1, 1, 1, 1], [1, 1], 1)
    xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
    ref = F.conv2d(xd, wd, None, 1, 1)
    rx, rw = torch.autograd.grad(ref, (xd, wd), gy.double())
    with allow_tf32(True):
        fresh = (x.clone(memory_format=torch.channels_last), gy.clone(memory_format=torch.channels_last))
        for got_x, got_gy in ((x, gy), fresh):
            _assert_within(ops.conv2d(got_x, w, None, *args), ref, kind, 16 * 9, "forward")
            _assert_within(ops.conv2d_backward_input(got_gy, w, list(x.shape), *args), rx, kind, 16 * 9, "grad input")
            _assert_within(ops.conv2d_backward_weight(got_gy, got_x, list(w.shape), *args), rw, kind, 180, "grad weight")


@CUDA_ONLY
def test_cuda_deterministic_algorithms():
    # Split reductions add partial sums atomically in no fixed order; under
    # torch.use_deterministic_algorithms every path runs one block per output value instead, so
    # repeated calls give bit-identical results (shapes chosen to split: small outputs over long
    # reductions, on the tensor-core, exact and depthwise paths, and the bias sum).
    x = torch.randn(1, 64, 8, 8, device="cuda")
    w = torch.randn(16, 64, 3, 3, device="cuda")
    gy = torch.randn(1, 16, 8, 8, device="cuda")
    xd, wd = torch.randn(4, 32, 64, 64, device="cuda"), torch.randn(32, 1, 3, 3, device="cuda")
    gyd = torch.randn(4, 32, 64, 64, device="cuda")
    args = ([1, 1], [1, 1, 1, 1], [1, 1])
    calls = [
        lambda: HF.conv2d(x, w, padding=1),
        lambda: ops.conv2d_backward_input(gy, w, list(x.shape), *args, 1),
        lambda: ops.conv2d_backward_weight(gy, x, list(w.shape), *args, 1),
        lambda: ops.conv2d_backward_weight(gyd, xd, list(wd.shape), *args, 32),
        lambda: ops.conv2d_backward_bias(gyd),
    ]
    was = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        for tf32 in (True, False):
            with allow_tf32(tf32):
                for call in calls:
                    assert torch.equal(call(), call())
    finally:
        torch.use_deterministic_algorithms(was)


def _source_constant(path: str, name: str) -> int:
    """An integer constant `name = <digits>;` of a source file, so that the tests below cross the
    limits the code sets, whatever they become."""
    text = (pathlib.Path(__file__).parents[1] / path).read_text()
    return int(re.search(rf"\b{name} = (\d+);", text).group(1))


@CUDA_ONLY
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_cuda_depthwise_weight_gradient_past_the_grid_y_limit(memory_format):
    """The depthwise weight gradient puts blocks of kTapChunk taps along grid y, which CUDA caps at
    kMaxGridYZ (65535) blocks: a kernel of more taps than kMaxGridYZ·kTapChunk (1 × 589,834 here)
    needs the capped grid and the kernel's grid-stride walk over tap blocks (an uncapped launch
    fails). Two output pixels, so gw[c, 0, 0, j] = gy[c, 0]·x[c, j] + gy[c, 1]·x[c, j + 1]: two
    products and one float32 addition, within a few float32 ulp."""
    chunk = _source_constant("csrc/cuda/conv2d_depthwise.cuh", "kTapChunk")
    limit = _source_constant("csrc/cuda/grid.cuh", "kMaxGridYZ")
    taps = limit * chunk + 2 * chunk + 1  # two blocks past the limit, the last one partial
    c = 3
    x = torch.randn(1, c, 1, taps + 1, device="cuda").to(memory_format=memory_format)
    gy = torch.randn(1, c, 1, 2, device="cuda").to(memory_format=memory_format)
    gw = ops.conv2d_backward_weight(gy, x, [c, 1, 1, taps], [1, 1], [0, 0, 0, 0], [1, 1], c)
    xd, gyd = x[0, :, 0].double(), gy[0, :, 0].double()  # [c, taps + 1], [c, 2]
    want = (gyd[:, :1] * xd[:, :taps] + gyd[:, 1:] * xd[:, 1:]).view(c, 1, 1, taps)
    torch.testing.assert_close(gw.double(), want, rtol=1e-6, atol=1e-6)


# Index math past 32 bits on CUDA. Each case holds a few tensors of just over 2^31 float16 elements
# (4.3 GB each, 13 to 22 GB a case: an H200 has 141 GB) and is checked on the slices that hold
# element 0, the elements around 2^31 and the last element, against float64 F.conv2d of those slices
# (inputs exact in float16; float accumulation and one rounding: the float16 bound above).


def _need_gpu_memory(gib: float) -> None:
    if torch.cuda.mem_get_info()[0] < gib * 2**30:
        pytest.skip(f"needs {gib} GiB of free GPU memory")


@CUDA_ONLY
def test_cuda_depthwise_past_int32_indices():
    """The direct depthwise kernels index in int32 only up to INT32_MAX − blocks·256 elements
    (launch_per_element in csrc/cuda/conv2d.cu); 33 × 8 × 2896² = 2^31 + 66,790,784 elements take their
    int64 kernels, forward and input gradient (checked on whole batch items)."""
    _need_gpu_memory(16)
    n, c, h, w = 33, 8, 2896, 2896
    x = torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)
    wt = torch.randn(c, 1, 3, 3, device="cuda", dtype=torch.float16)
    args = ([1, 1], [1, 1, 1, 1], [1, 1], c)
    items = sorted({0, 2**31 // (c * h * w), n - 1})
    y = ops.conv2d(x, wt, None, *args)
    for i in items:
        ref = F.conv2d(x[i:i + 1].double(), wt.double(), None, 1, 1, 1, c)
        _assert_within(y[i:i + 1], ref, "float16", 9, f"forward, batch item {i}")
    del y
    gx = ops.conv2d_backward_input(x, wt, [n, c, h, w], *args)  # x stands in for grad_output (same shape)
    for i in items:
        ref = F.conv_transpose2d(x[i:i + 1].double(), wt.double(), None, 1, 1, 0, c)
        _assert_within(gx[i:i + 1], ref, "float16", 9, f"grad input, batch item {i}")


@CUDA_ONLY
def test_cuda_exact_path_past_int32_extents():
    """A GEMM extent past the tensor-core kernels' int32 bound (mma_fits: N·OH·OW <= 2^31 − 4096)
    sends even float16 to the exact kernel, which indexes in int64: a 1 × 1 convolution over 46341²
    = 2^31 + 4633 pixels, forward and input gradient, checked on whole rows."""
    _need_gpu_memory(24)
    h = w = 46341
    x = torch.randn(1, 2, h, w, device="cuda", dtype=torch.float16)
    wt = torch.randn(1, 2, 1, 1, device="cuda", dtype=torch.float16)
    b = torch.randn(1, device="cuda", dtype=torch.float16)
    args = ([1, 1], [0, 0, 0, 0], [1, 1], 1)
    rows = sorted({0, (2**31 - 1) // w, 2**31 // w, h - 1})
    y = ops.conv2d(x, wt, b, *args)
    for r in rows:
        ref = F.conv2d(x[:, :, r:r + 1].double(), wt.double(), b.double())
        _assert_within(y[:, :, r:r + 1], ref, "float16", 2, f"forward, row {r}")
    gx = ops.conv2d_backward_input(y, wt, [1, 2, h, w], *args)  # y stands in for grad_output
    for r in rows:
        ref = F.conv_transpose2d(y[:, :, r:r + 1].double(), wt.double())
        _assert_within(gx[:, :, r:r + 1], ref, "float16", 1, f"grad input, row {r}")


@CUDA_ONLY
def test_cuda_tensor_cores_past_int32_offsets():
    """The tensor-core kernels keep extents in int32 and form offsets in int64: an NHWC float16
    3 × 3 convolution with 16 channels over 11586² pixels (input and output 2^31 + 282,688
    elements each), forward and input gradient, checked on whole rows (each from the rows around
    it)."""
    _need_gpu_memory(16)
    h = w = 11586
    c = 16
    x = torch.randn(1, h, w, c, device="cuda", dtype=torch.float16).permute(0, 3, 1, 2)  # channels_last
    wt = torch.randn(c, c, 3, 3, device="cuda", dtype=torch.float16)
    args = ([1, 1], [1, 1, 1, 1], [1, 1], 1)
    rows = sorted({0, 2**31 // (w * c), h - 1})

    def band(t, r):  # the rows a 3 × 3, padding 1 result row r depends on, and r's row in that band
        lo = max(r - 1, 0)
        return t[:, :, lo:min(r + 2, h)].double(), r - lo

    y = ops.conv2d(x, wt, None, *args)
    assert y.is_contiguous(memory_format=torch.channels_last)
    for r in rows:
        xb, k = band(x, r)
        _assert_within(y[:, :, r:r + 1], F.conv2d(xb, wt.double(), None, 1, 1)[:, :, k:k + 1], "float16", 9 * c,
                       f"forward, row {r}")
    gx = ops.conv2d_backward_input(y, wt, [1, c, h, w], *args)  # y stands in for grad_output
    for r in rows:
        yb, k = band(y, r)
        ref = F.conv_transpose2d(yb, wt.double(), None, 1, 1)[:, :, k:k + 1]
        _assert_within(gx[:, :, r:r + 1], ref, "float16", 9 * c, f"grad input, row {r}")
