"""Benchmark cases shared by ``python -m hotkernels bench`` and the pytest-benchmark driver
(``benchmarks/test_bench.py``).

Each op family has a module here with ``cases(device, quick)``, returning :class:`Case` objects, and
``TARGETS``, its speed targets (:class:`Target`, read by the generated summary of
:mod:`hotkernels.bench.report`); so has ``models``, whole-model training steps. A case allocates
its inputs lazily (``setup``) and returns named
zero-argument callables: ``"hotkernels"``, its baseline(s), and optionally others (a composed op, a
third-party library). Every callable returns its result so that the runner can compare it with the
case's reference.

Names say what an implementation is: ``torch ...`` only for a torch built-in; ``torch_optimizer``
for that package (optional: a case whose baseline is missing says so instead of timing a stand-in);
``hotkernels reference loop`` for a plain-PyTorch loop of ours.

Timing: the implementations of a case run in interleaved rounds (baseline, hotkernels, ...,
baseline, ...) so that machine noise hits them alike, and each reports the median of its rounds;
a run may sweep its cases several times, a case's rounds then being those of all its sweeps.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

Impls = dict[str, Callable[[], Any]]


@dataclass(frozen=True)
class Traffic:
    """The least bytes a pass moves through memory, by kind: ``read``, bytes only read; ``write``,
    the sizes of the outputs the pass allocates, bytes written to fresh memory (an allocation of
    tens of MB is fresh pages, faulted in on first touch, on every call);
    ``overwrite``, bytes written over memory that exists and is not read (a copy into a kept buffer);
    ``update``, bytes read and written back in place.

    :attr:`bytes` counts them as DRAM traffic: a write (fresh or not) also costs the read of its
    cache line before it (write-allocate), an update one read and one write back. The case's floor
    (:func:`copy_floor`) moves the same bytes of the same kinds, so a case's share of it is like for
    like."""

    read: int = 0
    write: tuple[int, ...] = ()
    overwrite: int = 0
    update: int = 0

    @property
    def bytes(self) -> int:
        return self.read + 2 * (sum(self.write) + self.overwrite + self.update)

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.read + other.read, self.write + other.write, self.overwrite + other.overwrite,
                       self.update + other.update)

    def __mul__(self, k: int) -> Traffic:
        """k runs of the pass: each output allocated k times. (For a pass that allocates nothing,
        also its per-element traffic scaled to k elements, as the optimizer cases use it.)"""
        return Traffic(k * self.read, k * self.write, k * self.overwrite, k * self.update)

    __rmul__ = __mul__


#: The name of a memory-bound case's floor among its implementations (:func:`copy_floor`).
FLOOR = "copy floor"


_MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux
_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None


def _fresh(like: torch.Tensor) -> torch.Tensor:
    """A new tensor like ``like``, uninitialised; on the CPU under Linux with its 2 MiB-aligned
    interior advised ``MADV_HUGEPAGE``, as hotkernels' ops advise their large outputs
    (``csrc/huge_pages.h``): fresh memory of tens of MB comes from the OS on every call, and faults
    in faster in huge pages (with transparent huge pages off, the advice does nothing)."""
    out = torch.empty_like(like)
    if out.is_cpu and _LIBC is not None:
        huge = 2 << 20
        begin = -(-out.data_ptr() // huge) * huge
        end = (out.data_ptr() + out.nbytes) // huge * huge
        if end > begin + huge:
            _LIBC.madvise(ctypes.c_void_p(begin), ctypes.c_size_t(end - begin), ctypes.c_int(_MADV_HUGEPAGE))
    return out


def copy_floor(t: Traffic, device: str, passes: int | tuple[Traffic, ...] = 1) -> Callable[[], Any]:
    """The floor of a memory-bound case: a pass that moves the case's bytes, of the same kinds, over
    buffers of the same total size (so from the same level of the cache hierarchy), and does
    nothing else, timed in the case's own interleaved rounds (so under the same load). A case that
    makes ``passes`` passes over its buffers (an optimizer's k steps) has as floor that many passes
    over buffers of 1/passes of its bytes each. A case whose passes move different bytes gives each
    pass's traffic instead (Mish forward+backward: the forward's, then the backward's, as its floor is
    a clone and then a binary elementwise op), summing to ``t``: its floor makes those passes in turn
    (one fused pass over all of them was slower: on a Zen 4 hotkernels' two beat it), each reading
    from the front of one set of read buffers and updating the front of one set of updated ones, so
    that a later pass re-reads what an earlier one read, as Mish's backward re-reads x.

    Each ``write`` is a copy into a fresh allocation of its size, as the case's output is (with
    huge pages advised, as hotkernels' ops advise theirs: :func:`_fresh`), ``overwrite`` a copy
    into a kept buffer; each copy reads its source, taken from the case's reads; ``update`` adds 1
    in place. On the CPU each pass is one fused pass (``hotkernels::stream_pass``, in the
    instruction set's vector width), as the fused kernel it is the floor of streams its operands
    together, with software prefetch and without in alternate rounds (the floor being its fastest
    round, it is the faster of the two on the machine). There the reads are shared out among the
    copies' sources in proportion to the copies' sizes: a source longer than its copy is read in one
    stream of which the copy takes the head of every chunk (a reduction reads its input in one
    stream as it writes its output), a shorter one is copied to the head of each chunk of its copy
    and the rest of the chunk filled (a pass that writes more than it reads: pooling's backward);
    reads are read alone where nothing is copied. Elsewhere torch's copy_ (into fresh and kept
    buffers, each copy's source its own size, or where the reads fall short a share of them and the
    copy zeroed after it), sum (the reads beyond the copies') and add_. A case faster than its floor
    has its bytes miscounted, or the floor is to be fixed."""
    if isinstance(passes, int):
        t = Traffic(t.read // passes, tuple(n // passes for n in t.write), t.overwrite // passes, t.update // passes)
        runs = passes * [_copy_pass(t, device)]
    else:
        if sum(passes, Traffic()) != t:
            raise ValueError(f"copy_floor: the passes {passes} do not add up to the case's traffic {t}")
        reads = torch.ones(max(p.read for p in passes) // 4, device=device)
        updated = torch.ones(max(p.update for p in passes) // 4, device=device)
        runs = [_copy_pass(p, device, reads, updated) for p in passes]
    # Alternate rounds prefetch in software and leave it to the hardware (the CPU's; every pass of a
    # round alike): the floor is its fastest round, and which streams faster depends on the machine
    # (csrc/cpu/stream.cpp).
    prefetch = itertools.cycle((True, False))

    def run() -> None:
        p = next(prefetch)
        for once in runs:
            once(p)

    return run


def _copy_pass(t: Traffic, device: str, reads: torch.Tensor | None = None,
               updated: torch.Tensor | None = None) -> Callable[[bool], Any]:
    """One pass of :func:`copy_floor`, called with whether to prefetch in software: its reads from the
    front of ``reads`` and its updates at the front of ``updated`` where given (buffers that other
    passes share), else from buffers of its own.

    In floats, on the CPU copy k of ``size`` reads size·read/copied, rounded down: more than it
    writes, the rest of its source read as it copies, or less, the rest of the copy filled; the
    rounding's few floats (all reads, if nothing is copied) are read alone. Elsewhere a copy reads
    its own size where the reads cover every copy, and the rest of the reads are summed apart."""
    reads = torch.ones(t.read // 4, device=device) if reads is None else reads
    updated = (torch.ones(t.update // 4, device=device) if updated is None else updated)[: t.update // 4]
    sizes, total = [n // 4 for n in (*t.write, t.overwrite)], t.read // 4
    shares = [size * total // sum(sizes) if size else 0 for size in sizes]
    if device != "cpu" and total >= sum(sizes):
        shares = sizes
    *sources, rest = reads[:total].split([*shares, total - sum(shares)])
    fresh_like, over_dst = [torch.ones(n, device=device) for n in sizes[:-1]], torch.ones(sizes[-1], device=device)
    if device == "cpu":
        return lambda prefetch: torch.ops.hotkernels.stream_pass(
            [rest], sources, [*map(_fresh, fresh_like), over_dst], [updated], prefetch)

    def copy(src: torch.Tensor, dst: torch.Tensor) -> None:  # the source, and zeros after it where shorter
        dst[: src.numel()].copy_(src)
        if src.numel() < dst.numel():
            dst[src.numel():].zero_()

    def run(prefetch: bool) -> None:
        for src, like in zip(sources, fresh_like):
            copy(src, _fresh(like))
        copy(sources[-1], over_dst)
        rest.sum()
        updated.add_(1.0)

    return run


def input_grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               grad_output: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A forward+backward run of ``fn`` on ``x`` (a leaf that requires grad), backpropagating
    ``grad_output``; it returns x's gradient, made anew each run. The gradient is returned, never
    kept in ``x.grad``: the implementations of a case share ``x``, and a gradient kept there would
    be freed in the next one's timed call (torch's 100 MB max-pool gradient, in 4 KiB pages, took
    ~9 ms to unmap inside ours)."""

    def run() -> torch.Tensor:
        return torch.autograd.grad(fn(x), x, grad_output)[0]

    return run


@dataclass(frozen=True)
class Case:
    """One benchmark: what to run, against what, and the work it does (for its rate)."""

    family: str
    name: str
    device: str
    setup: Callable[[], Impls] = field(repr=False)
    # Implementations that are the baseline: the fastest of those present is the row's baseline
    # (e.g. torch's fused and foreach Adam). Absent ones (an optional package) are skipped.
    baselines: tuple[str, ...] = ()
    # Implementation whose result hotkernels' must match (default: the first baseline). Differs
    # where the baseline computes a variant of the algorithm (torch_optimizer's Lamb is not NVLAMB).
    reference: str = ""
    traffic: Traffic | None = None  # least memory traffic: for GB/s, and the case's floor
    # The passes over its buffers in which it moves `traffic`: a count of like passes, or each pass's
    # traffic; its floor's (copy_floor).
    passes: int | tuple[Traffic, ...] = 1
    flops: int = 0  # floating-point operations, for GFLOP/s
    # A training step (the whole-model cases): every call takes one optimizer step and returns the
    # loss, so the run also reports the loss each implementation reached after its last step.
    trains: bool = False

    @property
    def id(self) -> str:
        return f"{self.family}/{self.device}/{self.name}"

    @property
    def reference_impl(self) -> str:
        return self.reference or self.baselines[0]

    def implementations(self) -> Impls:
        """What the case times: its setup's implementations, and a memory-bound case's floor."""
        impls = self.setup()
        if self.traffic:
            impls[FLOOR] = copy_floor(self.traffic, self.device, self.passes)
        return impls

    def result(self, ms: dict[str, float], max_error: float, losses: dict[str, float] | None = None,
               steps: int = 0) -> Result:
        return Result(self.family, self.name, self.device, list(self.baselines), self.reference_impl, ms, max_error,
                      self.traffic.bytes if self.traffic else 0, self.flops, losses or {}, steps)


@dataclass(frozen=True)
class Target:
    """A speed target of an op family, checked by the generated results summary. ``issue``: the
    number of the tracker issue that set it, which the summary names.

    ``cases`` is an ``fnmatch`` pattern over case names (without family and device). ``over``:
    ``"each"`` holds every matching case to ``speedup`` (the worst is reported), ``"geomean"``
    their geometric mean. ``floor_share``: the least share of the machine's ceiling each matching
    case must reach (0: none)."""

    issue: int
    device: str
    cases: str
    speedup: float = 0.0
    over: str = "each"
    floor_share: float = 0.0

    def __post_init__(self) -> None:
        if self.over not in ("each", "geomean"):
            raise ValueError(f"Target.over must be 'each' or 'geomean', got {self.over!r}")


@dataclass(frozen=True)
class Result:
    """What one case measured: plain data, written to and read back from the results JSON."""

    family: str
    name: str
    device: str
    baselines: list[str]
    reference: str
    ms: dict[str, float]  # milliseconds per implementation: the median of its rounds, a floor's fastest
    max_error: float  # largest difference of hotkernels' result from the reference's
    bytes: int = 0
    flops: int = 0
    losses: dict[str, float] = field(default_factory=dict)  # training cases: each one's loss at step `steps`
    steps: int = 0

    @property
    def id(self) -> str:
        return f"{self.family}/{self.device}/{self.name}"

    @property
    def baseline(self) -> str | None:
        """The fastest baseline that ran, or None where none is installed."""
        present = [b for b in self.baselines if b in self.ms]
        return min(present, key=self.ms.__getitem__) if present else None

    @property
    def speedup(self) -> float | None:
        b = self.baseline
        return self.ms[b] / self.ms["hotkernels"] if b else None

    def rate(self) -> tuple[float, str] | None:
        """Achieved rate of the hotkernels implementation: (GFLOP/s, "GFLOP/s") over its flops, or
        (GB/s, "GB/s") over its least traffic; None for a case that counts neither."""
        seconds = self.ms["hotkernels"] / 1e3
        if self.flops:
            return self.flops / seconds / 1e9, "GFLOP/s"
        if self.bytes:
            return self.bytes / seconds / 1e9, "GB/s"
        return None

    def share(self, ceilings: Ceilings | None) -> float | None:
        """The rate as a share of the machine's ceiling for its kind; above 1 means the case beat its
        floor, i.e. its bytes or flops are miscounted or a probe ran slow. GFLOP/s: of the compute
        ceiling. GB/s: its own floor's time over its time (:func:`copy_floor`, the same bytes); in
        records made before cases had floors, of the memory stream probed over the run."""
        rate = self.rate()
        if rate is None or ceilings is None:
            return None
        if rate[1] == "GFLOP/s":
            return rate[0] / ceilings.compute_gflops
        if FLOOR in self.ms:
            return self.ms[FLOOR] / self.ms["hotkernels"]
        return rate[0] / ceilings.stream_gbs if ceilings.stream_probes else None


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return []


def max_error(got: Any, expected: Any) -> float:
    """Largest absolute difference between two results (tensors, or nested lists/tuples/dicts of
    them). Non-finite values count: a position where either side is inf or NaN and the two differ
    (inf against a finite value, +inf against -inf, NaN against anything but NaN) is an infinite
    error, so a kernel that overflows or loses its NaNs cannot pass as exact."""
    worst = 0.0
    for a, b in zip(_flatten(got), _flatten(expected), strict=True):
        if a.shape != b.shape:
            raise ValueError(f"max_error: shapes differ, {tuple(a.shape)} against {tuple(b.shape)}")
        a, b = a.detach().double(), b.detach().double()
        same = (a == b) | (a.isnan() & b.isnan())
        # inf - inf and NaN - x are NaN: every such position that is not `same` is an infinite error.
        diff = (a - b).abs().nan_to_num(nan=math.inf, posinf=math.inf).masked_fill_(same, 0)
        if diff.numel():
            worst = max(worst, diff.max().item())
    return worst


def time_ms(fn: Callable[[], Any], device: str) -> float:
    """Milliseconds of one call, the device synchronized on both sides."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


WARMUP = 2  # untimed interleaved rounds before the timed ones


def samples(impls: Impls, device: str, rounds: int, warmup: int = WARMUP) -> dict[str, list[float]]:
    """Milliseconds of each callable's calls in ``rounds`` interleaved rounds, after ``warmup``
    untimed ones."""
    for _ in range(warmup):
        for fn in impls.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            out[name].append(time_ms(fn, device))
    return out


def summarize(ms: dict[str, list[float]], fastest: tuple[str, ...] = ()) -> dict[str, float]:
    """Each callable's median, or for the names in ``fastest`` (a floor) its least, as a ceiling is
    the best of its probes: the load on a shared machine swings within a run, and a floor's median
    lets a case's fast spell beat it."""
    return {name: (min if name in fastest else statistics.median)(s) for name, s in ms.items()}


def measure(impls: Impls, device: str, rounds: int, warmup: int = WARMUP) -> dict[str, float]:
    """Each callable's median milliseconds over interleaved rounds."""
    return summarize(samples(impls, device, rounds, warmup))


@dataclass(frozen=True)
class Sweep:
    """One timing of a case (:func:`time_case`): its implementations' samples, hotkernels' error
    against the reference, and for a training case each one's loss after ``steps`` steps."""

    ms: dict[str, list[float]]
    error: float
    losses: dict[str, float]
    steps: int


def time_case(case: Case, rounds: int) -> Sweep:
    """Sets the case up, checks hotkernels' result against the reference's, and times its
    implementations in interleaved rounds; the inputs are freed after."""
    impls = case.implementations()
    error = max_error(impls["hotkernels"](), impls[case.reference_impl]())
    ms = samples(impls, case.device, rounds)
    losses, steps = {}, 0
    if case.trains:  # one more step each: its loss is the model's after all the others (first call, warmup, rounds)
        losses = {name: float(fn()) for name, fn in impls.items()}
        steps = 1 + WARMUP + rounds + 1
    del impls
    return Sweep(ms, error, losses, steps)


def combine(case: Case, sweeps: list[Sweep]) -> Result:
    """The case's result over its sweeps (timings of it far apart in a run, so that a spell of load
    on a shared machine hits a part of its rounds, not all): the summary of all their rounds, the
    largest error, and the last sweep's losses."""
    ms = {name: [t for s in sweeps for t in s.ms[name]] for name in sweeps[0].ms}
    return case.result(summarize(ms, fastest=(FLOOR,)), max(s.error for s in sweeps), sweeps[-1].losses,
                       sweeps[-1].steps)


def families() -> dict[str, Callable[[str, bool], list[Case]]]:
    """Every op family's case list, by name."""
    from . import conv2d, gemm, linear, lstm, mish, models, optim, pool

    return {"conv2d": conv2d.cases, "gemm": gemm.cases, "linear": linear.cases, "lstm": lstm.cases, "mish": mish.cases,
            "optim": optim.cases, "pool": pool.cases, "models": models.cases}


def targets() -> dict[str, list[Target]]:
    """Every op family's speed targets, by name."""
    from . import conv2d, gemm, linear, lstm, mish, models, optim, pool

    return {"conv2d": conv2d.TARGETS, "gemm": gemm.TARGETS, "linear": linear.TARGETS, "lstm": lstm.TARGETS,
            "mish": mish.TARGETS, "optim": optim.TARGETS, "pool": pool.TARGETS, "models": models.TARGETS}


def probe(device: str, quick: bool) -> tuple[float, float | None, float | None]:
    """One measurement of the machine's compute ceilings and of how far apart its threads are:
    (float32 matmul GFLOP/s, float32 FMA GFLOP/s, cache-line round trip between two threads in ns;
    the last two None on CUDA, the round trip also with one thread). (Memory-bound cases have
    floors of their own: :func:`copy_floor`.)

    Matmul: a square float32 matmul (2048 on the CPU, 8192 on CUDA,
    1024 quick), the compute ceiling of the GEMM-bound cases. On the CPU the faster of torch's two
    GEMM libraries: its BLAS (``torch.mm``; MKL takes a slow path on AMD CPUs) and oneDNN
    (``F.linear`` on ``to_mkldnn()`` tensors). On CUDA with the TF32 setting that cuDNN uses, as
    the conv2d cases do. Each a median of its rounds. FMA (CPU only): the register-only FMA loop of
    the instruction set hotkernels runs (:func:`hotkernels.ops.gemm.fma_peak_gflops`) on every
    thread, the floor no float32 kernel can pass, where a GEMM library's rate is one it can. Round
    trip (CPU only): ``hotkernels::core_round_trip`` between intra-op threads 0 and 1, the median
    of three: no ceiling, but what a shared machine changes between runs (its virtual CPUs on cores
    of one cache, or apart), and what the kernels that hand data between threads at every step
    (an LSTM's steps cut over the threads: at batch 1, LSTMCell) pay."""
    m = 1024 if quick else (2048 if device == "cpu" else 8192)
    a = torch.randn(m, m, device=device)
    b = torch.randn(m, m, device=device)
    gemms = {"mm": lambda: a @ b}
    if device == "cpu" and torch.backends.mkldnn.is_available():
        a_dnn, b_dnn = a.to_mkldnn(), b.to_mkldnn()
        gemms["onednn"] = lambda: F.linear(a_dnn, b_dnn)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        mm_ms = min(measure(gemms, device, rounds=3 if quick else 5).values())
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    fma = round_trip = None
    if device == "cpu":
        from .._library import cpu_isa
        from ..ops.gemm import fma_peak_gflops

        fma = max(fma_peak_gflops(cpu_isa(), seconds=0.05 if quick else 0.2) for _ in range(3))
        ns = statistics.median(torch.ops.hotkernels.core_round_trip(20000) for _ in range(3))
        round_trip = ns if math.isfinite(ns) else None
    return 2 * m**3 / (mm_ms / 1e3) / 1e9, fma, round_trip


@dataclass(frozen=True)
class Ceilings:
    """What this machine computes at all: the fastest of several :func:`probe` runs spread over a
    benchmark run. One probe catches whatever load the shared machine had at that moment, so a
    median of the probes is no ceiling: cases that ran in a fast spell beat it.

    ``stream_probes`` only in records made before memory-bound cases had floors of their own: a
    DRAM stream of 4x the last-level cache, which cases that fit in a large L3 beat."""

    matmul_probes: list[float]  # float32 GEMM GFLOP/s
    fma_probes: list[float] = field(default_factory=list)  # float32 FMA-loop GFLOP/s (CPU)
    stream_probes: list[float] = field(default_factory=list)  # GB/s, as Traffic.bytes counts
    round_trip_probes: list[float] = field(default_factory=list)  # ns, a cache line between two threads (CPU)

    @property
    def stream_gbs(self) -> float:
        return max(self.stream_probes)

    @property
    def matmul_gflops(self) -> float:
        return max(self.matmul_probes)

    @property
    def compute_gflops(self) -> float:
        """The compute ceiling: the FMA loop's peak where probed (the CPU), else the matmul's."""
        return max(self.fma_probes) if self.fma_probes else self.matmul_gflops
