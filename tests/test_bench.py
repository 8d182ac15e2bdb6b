"""The benchmark harness itself: max error over non-finite values, baselines, the floor check (a
case above its ceiling is flagged in the table and warned about by the bench), the summary against
the targets, and the committed results (README and results files agree, every figure in the README
comes from one)."""

import json
import math
import os
import pathlib
import re
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hotkernels import bench
from hotkernels.bench import optim, report

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

inf, nan = math.inf, math.nan


@pytest.mark.parametrize(
    "got, expected, error",
    [
        ([1.0, 2.0], [1.0, 2.5], 0.5),
        ([inf, 2.0], [1.0, 2.0], inf),  # an inf where torch is finite
        ([1.0, 2.0], [1.0, -inf], inf),
        ([inf, -inf], [-inf, -inf], inf),
        ([nan, 2.0], [1.0, 2.0], inf),  # a NaN where torch has a number
        ([1.0, 2.0], [nan, 2.0], inf),  # a NaN lost
        ([nan, inf, -inf, 1.0], [nan, inf, -inf, 1.25], 0.25),  # the same non-finite values: exact
    ],
)
def test_max_error_counts_non_finite_mismatches(got, expected, error):
    assert bench.max_error(torch.tensor(got), torch.tensor(expected)) == error


def test_max_error_walks_nested_results_and_checks_shapes():
    a, b = torch.ones(3), torch.ones(3)
    assert bench.max_error([a, (a, {"x": a + 1})], [b, (b, {"x": b})]) == 1.0
    assert bench.max_error(torch.empty(0), torch.empty(0)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        bench.max_error(torch.ones(3), torch.ones(1))
    with pytest.raises(ValueError):
        bench.max_error([a, a], [b])


def _result(name="adam x", family="optim", ms=None, baselines=("torch a", "torch b"), bytes=0, flops=0):
    ms = {"torch a": 4.0, "torch b": 2.0, "hotkernels": 1.0} if ms is None else ms
    return bench.Result(family, name, "cpu", list(baselines), baselines[0], ms, 0.0, bytes, flops)


# An old record's ceilings (a memory stream probed over the run) and a new one's (compute only).
CEILINGS = {"cpu": bench.Ceilings([60.0, 50.0, 90.0], stream_probes=[10.0, 12.0, 8.0])}
COMPUTE = {"cpu": bench.Ceilings([60.0, 90.0], [200.0, 240.0])}


def test_baseline_is_the_fastest_present():
    r = _result()
    assert r.baseline == "torch b" and r.speedup == 2.0
    missing = _result(ms={"hotkernels": 1.0, "hotkernels reference loop": 5.0}, baselines=("torch_optimizer",))
    assert missing.baseline is None and missing.speedup is None
    row = report.table([missing], CEILINGS)[-1]
    assert "| torch_optimizer (not installed) | - |" in row and "hotkernels reference loop 5.000" in row


def test_ceilings_are_the_fastest_of_their_probes():
    assert CEILINGS["cpu"].stream_gbs == 12.0 and CEILINGS["cpu"].matmul_gflops == 90.0
    assert CEILINGS["cpu"].compute_gflops == 90.0  # no FMA probe: the matmul is the compute ceiling
    with_fma = COMPUTE["cpu"]
    assert with_fma.compute_gflops == 240.0  # the FMA peak, which a GEMM library's rate is not
    flops = _result("mm", ms={"torch a": 2.0, "hotkernels": 1.0}, baselines=("torch a",), flops=120 * 10**6)
    assert flops.share(with_fma) == 0.5


def test_probe_measures_both_compute_ceilings_on_the_cpu():
    # Rates only, never compared with each other: a timed comparison fails on a loaded machine
    # (the FMA loop's exact FLOP count is tests/test_gemm.py's).
    matmul, fma, round_trip = bench.probe("cpu", quick=True)
    assert all(math.isfinite(x) and x > 0 for x in (matmul, fma))
    assert (round_trip is None) == (torch.get_num_threads() < 2)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two spinning threads on one CPU take a time slice a trip")
def test_core_round_trip_needs_two_threads_and_checks_its_argument():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert 0 < torch.ops.hotkernels.core_round_trip(100) < 1e6  # ns: a line can't take a millisecond
        torch.set_num_threads(1)
        assert math.isnan(torch.ops.hotkernels.core_round_trip(100))
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(RuntimeError, match="core_round_trip: expected 'round_trips' > 0, got 0"):
        torch.ops.hotkernels.core_round_trip(0)


def test_report_names_the_round_trip_where_probed():
    with_trips = {"cpu": bench.Ceilings([90.0], [240.0], round_trip_probes=[60.0, 350.0])}
    lines = report._ceiling_lines(with_trips)
    assert any("round trip between two threads on cpu: 60-350 ns (probes 60, 350)" in line for line in lines)
    assert not any("round trip" in line for line in report._ceiling_lines(COMPUTE))


def test_traffic_counts_write_allocate():
    # read + write-allocate + write, as the floors move theirs
    assert bench.Traffic(read=4, write=(4,)).bytes == 12
    assert bench.Traffic(read=8, write=(4, 4), overwrite=4).bytes == 32
    assert bench.Traffic(update=4).bytes == 8
    radam = bench.Traffic(read=4, update=12)
    assert 2 * radam + bench.Traffic(write=(8,)) == bench.Traffic(read=8, write=(8,), update=24)
    assert radam * 3 == 3 * radam


class _RecordCalls(TorchDispatchMode):
    """Records the arguments of every hotkernels::stream_pass call."""

    def __init__(self) -> None:
        super().__init__()
        self.args: list[tuple] = []  # (reads, sources, copies, updates)
        self.prefetch: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.hotkernels.stream_pass.default:
            self.args.append(args[:4])
            self.prefetch.append(args[4] if len(args) > 4 else (kwargs or {}).get("prefetch", True))  # a default is left out
        return func(*args, **(kwargs or {}))

def test_copy_floor_moves_the_cases_bytes():
    t = bench.Traffic(read=4 * 1000, write=(4 * 300, 4 * 200), overwrite=4 * 100, update=4 * 50)
    impls = bench.Case("x", "y", "cpu", lambda: {"hotkernels": lambda: None}, ("torch a",), traffic=t).implementations()
    floor = impls.pop(bench.FLOOR)
    assert list(impls) == ["hotkernels"]
    # What it moves, seen at its op call: the copies' destinations (fresh for the case's outputs, a
    # kept one for its overwrite) and their sources, which share out the case's reads in proportion
    # (1000 floats over 300, 200, 100: 500, 333, 166, and the one float rounded off read alone), the
    # updated buffer; as many bytes as the case counts, of each kind.
    with _RecordCalls() as calls:
        floor()
    assert len(calls.args) == 1
    # Its calls prefetch in software and leave it to the hardware in turn (its fastest round counts).
    with _RecordCalls() as again:
        floor()
        floor()
    assert calls.prefetch + again.prefetch == [True, False, True]
    reads, sources, copies, updates = ([4 * x.numel() for x in arg] for arg in calls.args[0])
    assert (reads, sources, copies, updates) == ([4 * 1], [4 * 500, 4 * 333, 4 * 166], [4 * 300, 4 * 200, 4 * 100],
                                                 [4 * 50])
    # Nothing copied: every read is read alone.
    with _RecordCalls() as calls:
        bench.copy_floor(bench.Traffic(read=4 * 1000, update=4 * 100), "cpu")()
    assert [[x.numel() for x in arg] for arg in calls.args[0]] == [[1000], [0], [0], [100]]
    # A case of 3 passes over its buffers (an optimizer's 3 steps): 3 passes over a third each.
    floor = bench.copy_floor(bench.Traffic(read=4 * 600, write=(4 * 300,), update=4 * 300), "cpu", passes=3)
    with _RecordCalls() as calls:
        floor()
        floor()
    assert [[[x.numel() for x in arg] for arg in args] for args in calls.args] == 6 * [[[0], [200, 0], [100, 0], [100]]]
    assert calls.prefetch == 3 * [True] + 3 * [False]  # every pass of a round alike
    # A case of passes that move different bytes (Mish forward+backward): each pass in turn.
    forward, backward = bench.Traffic(read=4 * 100, write=(4 * 100,)), bench.Traffic(read=4 * 200, write=(4 * 100,))
    with _RecordCalls() as calls:
        bench.copy_floor(forward + backward, "cpu", passes=(forward, backward))()
    assert [[[x.numel() for x in arg] for arg in args] for args in calls.args] == [[[0], [100, 0], [100, 0], [0]],
                                                                                [[0], [200, 0], [100, 0], [0]]]
    first, second = calls.args  # the backward's reads begin with the forward's (Mish's x), one set of buffers
    assert second[1][0].data_ptr() == first[1][0].data_ptr()
    with pytest.raises(ValueError, match="do not add up"):
        bench.copy_floor(forward + forward, "cpu", passes=(forward, backward))
    # A pass that writes more than it reads (pooling's backward): each source is shorter than its
    # copy, whose rest the floor fills.
    with _RecordCalls() as calls:
        bench.copy_floor(bench.Traffic(read=4 * 100, write=(4 * 400,)), "cpu")()
    assert [[x.numel() for x in arg] for arg in calls.args[0]] == [[0], [100, 0], [400, 0], [0]]
    # No traffic, no floor (a compute-bound case)
    assert bench.FLOOR not in bench.Case("x", "y", "cpu", lambda: {"hotkernels": lambda: None}, ("a",)).implementations()


@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("n", [1, 15, 16, 1000, 3 * 4096 + 17, 100_003])
def test_stream_pass_reads_copies_and_updates_every_value(n, prefetch):
    # Lengths around the vector width, the cache line and the chunk (4096 floats), tensors of
    # different lengths walked in lockstep.
    reads = [torch.full((n,), 2.0**-126), torch.zeros(3 * n + 1)]  # bit 23, and nothing
    reads[1][-1] = 1.0  # the last value of the longest tensor: bits 23-29
    sources = [torch.randn(n), torch.randn(2 * n + 5)]
    copies = [torch.empty_like(s) for s in sources]
    updates = [torch.arange(n, dtype=torch.float32), torch.zeros(7)]
    before = [u.clone() for u in updates]
    bits = torch.ops.hotkernels.stream_pass(reads, sources, copies, updates, prefetch)
    assert bits == 0x3F800000 | 0x00800000
    for s, c in zip(sources, copies):
        assert torch.equal(s, c)
    for b, u in zip(before, updates):
        assert torch.equal(u, b + 1)


@pytest.mark.parametrize("n, m", [(4, 1), (4000, 1000), (4 * (3 * 4096 + 17), 3 * 4096 + 17), (400_012, 100_003),
                                  (100_003, 100_002), (5000, 0)])
def test_stream_pass_copies_the_head_of_each_chunk_of_a_longer_source(n, m):
    # A copy of m values from a source of n: chunk c of the copy (chunks: as many as the longest tensor
    # has 4096 floats, bounds rounded down to 16 floats) is the head of the source's chunk at its
    # bounds scaled by n / m, rounded up, which holds it whole; the rest of each source chunk is read
    # (the value that sets bit 30 lies in the first chunk's tail, which every case here has). One
    # value shorter than its source included: no chunk reaches past the source.
    source, copy = torch.randn(n).abs_().clamp_(max=1.5), torch.empty(m)
    chunks = -(-n // 4096)

    def bound(size: int, at: int) -> int:
        return size if at == chunks else at * size // chunks // 16 * 16

    def scaled(at: int) -> int:
        return -(-at * n // m) if m else bound(n, at)

    first = (bound(m, 0), bound(m, 1))
    tail = scaled(first[1]) - 1 if m else bound(n, 1) - 1
    assert tail >= scaled(first[0]) + first[1] - first[0]  # past the first copy chunk's head
    source[tail] = 2.0
    assert torch.ops.hotkernels.stream_pass([], [source], [copy], []) & 0x40000000
    for c in range(chunks):
        lo, hi = bound(m, c), bound(m, c + 1)
        assert hi - lo <= scaled(hi) - scaled(lo)
        assert torch.equal(copy[lo:hi], source[scaled(lo):scaled(lo) + hi - lo]), c


@pytest.mark.parametrize("n, m", [(1, 4), (1000, 4000), (3 * 4096 + 17, 4 * (3 * 4096 + 17)), (100_002, 100_003),
                                  (113_546, 113_562), (0, 5000)])
def test_stream_pass_fills_a_copy_longer_than_its_source(n, m):
    # A copy of m values from a source of n < m: each chunk of the copy takes the source's chunk at
    # its head and zeros after it; where the chunks' rounding makes a source chunk longer than its
    # copy's (113546 into 113562), its tail is read, not copied. So the copy's nonzero values are the
    # source's in order, each at most once, nearly all of them, and the rest of the copy is 0 (the
    # copy starts as NaN: nothing is left unwritten).
    source, copy = torch.arange(1, n + 1, dtype=torch.float32), torch.full((m,), float("nan"))
    torch.ops.hotkernels.stream_pass([], [source], [copy], [])
    assert not copy.isnan().any()
    copied = copy[copy != 0]
    assert bool((copied[1:] > copied[:-1]).all()) and bool(((copied >= 1) & (copied <= n)).all())
    assert n - copied.numel() <= 16 * -(-max(n, m) // 4096)  # at most a rounding step per chunk
    if m >= 4 * n:
        assert torch.equal(copied, source)


def test_every_cases_floor_runs_off_the_cpu():
    # Where stream_pass is not, the floor is torch's copy_, zero_, sum and add_ (checked on the meta
    # device, no GPU needed): every case's traffic and passes, pooling's backward (a pass that writes
    # more than it reads) included.
    from hotkernels.bench import conv2d, gemm, lstm, mish, models, pool
    families = (conv2d, gemm, lstm, mish, models, optim, pool)
    floors = [c for family in families for c in family.cases("cpu", quick=True) if c.traffic]
    assert any(isinstance(c.passes, tuple) for c in floors)
    for c in floors:
        bench.copy_floor(c.traffic, "meta", c.passes)()


def test_stream_pass_rejects_what_it_cannot_stream():
    x = torch.ones(8)
    with pytest.raises(RuntimeError, match=r"hotkernels.stream_pass: expected 'reads' to hold contiguous float32"):
        torch.ops.hotkernels.stream_pass([x.double()], [], [], [])
    with pytest.raises(RuntimeError, match=r"'updates' to hold contiguous float32 CPU tensors.*not contiguous"):
        torch.ops.hotkernels.stream_pass([], [], [], [torch.ones(4, 4).t()])
    with pytest.raises(RuntimeError, match=r"expected as many 'copies' as 'sources'"):
        torch.ops.hotkernels.stream_pass([], [x], [], [])


def test_a_memory_bound_case_is_judged_against_its_own_floor():
    ms = {"torch a": 4.0, bench.FLOOR: 1.5, "hotkernels": 2.0}
    slow = _result("adam slow", ms=ms, baselines=("torch a",), bytes=24 * 10**6)
    fast = _result("adam fast", ms={**ms, "hotkernels": 1.0}, baselines=("torch a",), bytes=24 * 10**6)
    assert slow.share(COMPUTE["cpu"]) == 0.75 and fast.share(COMPUTE["cpu"]) == 1.5
    assert report.above_ceiling([slow, fast], COMPUTE) == [fast]
    rec = {"machine": report.machine_info(), "date": "d", "command": "c", "rounds": 1, "quick": False,
           "ceilings": {"cpu": {"matmul_probes": [90.0], "fma_probes": [240.0]}}, "results": [vars(slow), vars(fast)]}
    text = report.render(rec)
    assert "12.0 GB/s (75%) | copy floor 1.500 |" in text and "24.0 GB/s (150%) **above the ceiling**" in text
    assert "the case's own floor" in text and "memory stream" not in text


def test_a_case_above_its_ceiling_is_flagged():
    # 24 GB in 1 s: 24 GB/s against a 12 GB/s memory ceiling; 45 GFLOP in 1 s against 90: fine.
    fast = _result("adam fast", ms={"torch a": 2000.0, "hotkernels": 1000.0}, baselines=("torch a",), bytes=24 * 10**9)
    fine = _result("conv", family="conv2d", ms={"torch a": 2000.0, "hotkernels": 1000.0}, baselines=("torch a",),
                   flops=45 * 10**9)
    assert fast.share(CEILINGS["cpu"]) == 2.0 and fine.share(CEILINGS["cpu"]) == 0.5
    assert report.above_ceiling([fast, fine], CEILINGS) == [fast]
    rec = {"machine": report.machine_info(), "date": "d", "command": "c", "rounds": 1, "quick": False,
           "ceilings": {"cpu": {"stream_probes": [12.0], "matmul_probes": [90.0]}},
           "results": [vars(fast), vars(fine)]}
    text = report.render(rec)
    assert "24.0 GB/s (200%) **above the ceiling**" in text and "45.0 GFLOP/s (50%) |" in text
    assert "**Above the ceiling**" in text and "optim/cpu/adam fast" in text


def _summary_line(results, cases: str, issue: int | None = None) -> str:
    (line,) = [s for s in report.summary(results, CEILINGS)
               if f"`{cases}`" in s and (issue is None or f"(issue {issue})" in s)]
    return line


def test_summary_checks_the_targets():
    ms = {"torch Adam fused": 2.0, "hotkernels": 1.0}
    adam = [_result(f"adam {n}", ms=ms, baselines=("torch Adam fused",), bytes=11 * 10**6) for n in "ab"]
    # 11 MB in 1 ms: 11 GB/s, 92% of the 12 GB/s ceiling; 2x >= 0.95x
    assert _summary_line(adam, "adam *").startswith("- **met**: optim (issue 3), cpu, `adam *` (2 cases)")
    slow = [_result("radam a", ms={"torch RAdam foreach": 2.0, "hotkernels": 1.0}, baselines=("torch RAdam foreach",),
                    bytes=11 * 10**6)]
    assert "**not met**" in _summary_line(slow, "radam *") and "measured 2.00x" in _summary_line(slow, "radam *")
    lamb = [_result("lamb a", ms={"hotkernels": 1.0}, baselines=("torch_optimizer",))]
    assert "not measured**" in _summary_line(lamb, "lamb *") and "torch_optimizer is not installed" in _summary_line(
        lamb, "lamb *")
    assert "no case of this run matches it" in _summary_line([], "ranger x6 *")
    # geometric mean: 2x and 0.6x average to 1.1x, which meets a 1.0x target
    conv = [_result(f"forward+backward {i}", family="conv2d", ms={"torch F.conv2d": s, "hotkernels": 1.0},
                    baselines=("torch F.conv2d",)) for i, s in enumerate((2.0, 0.6))]
    assert _summary_line(conv, "forward+backward *", issue=5).startswith("- **met**")
    assert "**not met**" in _summary_line(conv, "*")  # no case below 0.7x


def test_a_missed_speedup_says_what_share_of_the_ceiling_it_takes():
    # 45 GFLOP in 1 s against a 90 GFLOP/s ceiling: 50%; the baseline's 1.25 s: 40%; so 1.5x takes 60%.
    name = "LSTMCell forward+backward float32 B64 I256 H512"
    cell = [_result(name, family="lstm", ms={"torch nn.LSTMCell": 1250.0, "hotkernels": 1000.0},
                    baselines=("torch nn.LSTMCell",), flops=45 * 10**9)]
    assert _summary_line(cell, name).endswith(
        "measured 1.25x (at 50% of the ceiling, against the baseline's 40%; 1.50x takes 60%)")
    # A case that meets it, or has no rate, says nothing more.
    met = [_result(name, family="lstm", ms={"torch nn.LSTMCell": 1600.0, "hotkernels": 1000.0},
                   baselines=("torch nn.LSTMCell",), flops=45 * 10**9)]
    assert _summary_line(met, name).endswith("measured 1.60x")
    no_rate = [_result(name, family="lstm", ms={"torch nn.LSTMCell": 1250.0, "hotkernels": 1000.0},
                       baselines=("torch nn.LSTMCell",))]
    assert _summary_line(no_rate, name).endswith("measured 1.25x")


def test_the_language_model_step_counts_its_gemms_flops():
    # torch's count (FlopCounterMode) is the LSTM's, with the first layer's input gradient (the
    # embedding's weight takes one), plus the head's forward, input gradient and weight gradient.
    from hotkernels.bench import lstm, models
    T, B, vocab, E, H, L = 10, 8, 200, 64, 128, 2  # the quick case's sizes
    (case,) = [c for c in models.cases("cpu", quick=True) if c.name.startswith("language model step")]
    assert f"T{T} B{B} vocab {vocab} E{E} H{H} L{L}" in case.name
    expected = lstm._lstm_flops(T * B, B, E, H, L, backward=True) + 2 * T * B * E * 4 * H + 3 * 2 * T * B * H * vocab
    assert case.flops == expected
    assert all(c.flops > 0 for c in models.cases("cpu", quick=True))


def test_a_case_over_several_sweeps_sums_up_all_their_rounds():
    case = bench.Case("optim", "adam x", "cpu", lambda: {}, ("torch a",), traffic=bench.Traffic(read=4))
    first = bench.Sweep({"torch a": [4.0, 5.0], "hotkernels": [1.0, 9.0], bench.FLOOR: [3.0, 2.0]}, 1e-6,
                        {"hotkernels": 3.0}, 4)
    last = bench.Sweep({"torch a": [6.0, 7.0], "hotkernels": [2.0, 3.0], bench.FLOOR: [1.5, 4.0]}, 1e-7,
                       {"hotkernels": 2.0}, 4)
    r = bench.combine(case, [first, last])
    # medians of all four rounds, the floor's fastest of them; the worst error; the last sweep's losses
    assert r.ms == {"torch a": 5.5, "hotkernels": 2.5, bench.FLOOR: 1.5}
    assert (r.max_error, r.losses, r.steps) == (1e-6, {"hotkernels": 2.0}, 4)


def test_bench_without_torch_optimizer_names_the_missing_baseline(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_optimizer", None)  # import raises ImportError
    cases = {c.name.split()[0]: c for c in optim.cases("cpu", quick=True)}
    impls = cases["lamb"].setup()
    assert "torch_optimizer" not in impls and cases["lamb"].baselines == ("torch_optimizer",)
    r = bench.combine(cases["lamb"], [bench.time_case(cases["lamb"], rounds=1)])
    assert r.baseline is None and r.reference == optim.REFERENCE and r.max_error < 1e-5


def test_embed_replaces_only_the_named_block():
    readme = "a\n<!-- bench:x begin -->\nold\n<!-- bench:x end -->\nb\n"
    out = report.embed(readme, "x", "new\n")
    assert out == "a\n<!-- bench:x begin -->\nnew\n<!-- bench:x end -->\nb\n"
    assert report.embedded(out) == {"x": "new\n"}
    with pytest.raises(ValueError, match="no '<!-- bench:y begin -->'"):
        report.embed(readme, "y", "new\n")


# --- the committed results


def _committed() -> dict[str, str]:
    return report.embedded(README.read_text())


def test_readme_embeds_every_committed_results_file_as_rendered():
    blocks = _committed()
    assert blocks, "README.md embeds no results"
    committed = {p.stem for p in RESULTS.iterdir()}
    assert committed == set(blocks), "every results file is in the README and every README block has one"
    for name, block in blocks.items():
        rec = json.loads((RESULTS / f"{name}.json").read_text())
        rendered = report.render(rec)
        assert (RESULTS / f"{name}.md").read_text() == rendered, (
            f"{name}.md is not what its JSON renders to: python -m hotkernels report "
            f"benchmarks/results/{name}.json --readme README.md")
        assert block == rendered, f"README's {name} block is stale: python -m hotkernels report " \
                                  f"benchmarks/results/{name}.json --readme README.md"


@pytest.mark.parametrize("name", sorted(_committed()))
def test_committed_results_name_their_machine(name):
    rec = json.loads((RESULTS / f"{name}.json").read_text())
    m = rec["machine"]
    assert m["cpu"] and m["cpu_isa"] and m["torch"] and rec["date"]
    if name.startswith("cuda-"):
        # A GPU run: .ci/gpu-check's one short go on a lent machine (--quick), named by the GPU model.
        assert name.removeprefix("cuda-") in m["gpu"].lower().replace(" ", ""), "GPU results are named by the GPU"
    else:
        assert name.endswith(m["cpu_isa"]), "CPU results are named by the instruction set in use"
        assert not rec["quick"]


def test_readme_results_section_has_no_hand_written_figures():
    text = README.read_text()
    section = text[text.index("\n## Results\n"):]
    section = section[: section.find("\n## ", 1)]
    for block in _committed().values():
        section = section.replace(block, "")
    figures = re.findall(r"\d+(?:\.\d+)?\s*(?:x\b|%|ms\b|GB/s|GFLOP/s)", section)
    assert not figures, f"figures outside the generated results blocks: {figures}"


def test_machine_line_names_instruction_set_caps(monkeypatch):
    """A run capped below the CPU's best instruction set says so next to the one it used."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    line = report.machine_line(report.machine_info())
    assert "(capped: " in line and "ONEDNN_MAX_CPU_ISA=AVX2" in line
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    for key in ("HOTKERNELS_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS"):
        monkeypatch.delenv(key, raising=False)
    assert "capped" not in report.machine_line(report.machine_info())
