"""Benchmark results as files: the JSON record of a run, the Markdown rendered from it (table,
ceilings, the summary against the issues' targets) and its copy in the README.

The JSON is the source: :func:`render` is a pure function of it, so the Markdown can be rendered
again from a committed JSON at any time (``python -m hotkernels report RESULTS.json --readme
README.md``), and a test checks that the committed Markdown and the README's copy are what
rendering the committed JSON gives. The README holds each results file between
``<!-- bench:NAME begin -->`` and ``<!-- bench:NAME end -->``, NAME being the file's stem.
"""

from __future__ import annotations

import fnmatch
import math
import os
import platform
import re
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import torch

from . import FLOOR, Ceilings, Result, Target, targets


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What a result depends on: CPU model, threads, instruction set in use, GPU, versions."""
    import hotkernels

    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_isa": hotkernels._library.cpu_isa(),
        "torch_cpu_isa": torch.backends.cpu.get_cpu_capability(),  # ATen's vectorized kernels
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "",
        "torch": torch.__version__,
        "hotkernels": hotkernels.__version__,
        "python": platform.python_version(),
        # Instruction-set caps on hotkernels and torch's libraries (an AVX2 run on an AVX-512 CPU).
        "caps": {k: os.environ[k] for k in ISA_CAPS["base"] if os.environ.get(k)},
    }


# What `bench --isa` sets for each instruction set: hotkernels' cap, then torch's three libraries'
# (ATen's vectorized kernels, oneDNN, MKL), each in its own spelling; they read it as they load. The
# machine line records those set.
ISA_CAPS = {
    "base": {"HOTKERNELS_CPU_ISA": "base", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "avx2": {"HOTKERNELS_CPU_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {"HOTKERNELS_CPU_ISA": "avx512", "ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
}


def machine_line(m: dict[str, Any]) -> str:
    gpu = f"GPU {m['gpu']}" if m["gpu"] else "no GPU"
    caps = m.get("caps") or {}
    capped = f" (capped: {', '.join(f'{k}={v}' for k, v in caps.items())})" if caps else ""
    torch_isa = f" (torch's: {m['torch_cpu_isa']})" if m.get("torch_cpu_isa") else ""
    return (f"{m['cpu']} ({m['arch']}), {m['threads']} threads, CPU ISA {m['cpu_isa']}{torch_isa}{capped}, {gpu}; "
            f"torch {m['torch']}, hotkernels {m['hotkernels']}, Python {m['python']}")


def record(results: list[Result], ceilings: dict[str, Ceilings], command: str, rounds: int,
           quick: bool, sweeps: int = 1) -> dict[str, Any]:
    """The JSON record of a run: everything :func:`render` needs."""
    return {
        "machine": machine_info(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "rounds": rounds,
        "sweeps": sweeps,  # records without it: 1
        "quick": quick,
        "floor_ms": "fastest",  # of a case's rounds (records without it: the median)
        "ceilings": {device: asdict(c) for device, c in ceilings.items()},
        "results": [asdict(r) for r in results],
    }


def parse(rec: dict[str, Any]) -> tuple[list[Result], dict[str, Ceilings]]:
    return ([Result(**r) for r in rec["results"]],
            {device: Ceilings(**c) for device, c in rec["ceilings"].items()})


def above_ceiling(results: list[Result], ceilings: dict[str, Ceilings]) -> list[Result]:
    """Cases that ran faster than their floor: their bytes or flops are miscounted, or a ceiling
    probe ran under more load than the case did, or a copy floor is slower than it should be.
    Either way their share is not to be believed."""
    return [r for r in results if (r.share(ceilings.get(r.device)) or 0) > 1]


def _rate_cell(r: Result, ceilings: Ceilings | None) -> str:
    rate = r.rate()
    if rate is None:
        return "-"
    share = r.share(ceilings)
    if share is None:
        return f"{rate[0]:.1f} {rate[1]}"
    flag = " **above the ceiling**" if share > 1 else ""
    return f"{rate[0]:.1f} {rate[1]} ({100 * share:.0f}%){flag}"


def table(results: list[Result], ceilings: dict[str, Ceilings]) -> list[str]:
    lines = ["| case | baseline | baseline ms | hotkernels ms | speedup | max error | hotkernels rate (% of ceiling) "
             "| others ms |", "|" + "---|" * 8]
    for r in results:
        b = r.baseline
        named = b or f"{' or '.join(r.baselines)} (not installed)"
        shown = {b, "hotkernels"}
        others = ", ".join(f"{k} {v:.3f}" for k, v in r.ms.items() if k not in shown) or "-"
        error = f"{r.max_error:.2e}" + ("" if r.reference == b else f" (vs {r.reference})")
        lines.append(f"| {r.id} | {named} | {f'{r.ms[b]:.3f}' if b else '-'} | {r.ms['hotkernels']:.3f} | "
                     f"{f'{r.speedup:.2f}x' if b else '-'} | {error} | {_rate_cell(r, ceilings.get(r.device))} | "
                     f"{others} |")
    return lines


def _loss_lines(results: list[Result]) -> list[str]:
    """The whole-model training cases' losses at their last step: the two models start from the same
    weights and take the same steps on the same batch, so their losses should stay close."""
    lines = []
    for r in results:
        if r.losses:
            losses = ", ".join(f"{name} {loss:.6g}" for name, loss in r.losses.items())
            # A step returns the loss of its forward pass, before its own update.
            lines.append(f"Loss of training step {r.steps} (after {r.steps - 1} updates), {r.id}: {losses}.  ")
    return lines


def _ceiling_lines(ceilings: dict[str, Ceilings]) -> list[str]:
    lines = []
    for device, c in ceilings.items():
        mms = ", ".join(f"{v:.1f}" for v in c.matmul_probes)
        compute = f"float32 matmul {c.matmul_gflops:.1f} GFLOP/s (probes {mms})"
        if c.fma_probes:
            fmas = ", ".join(f"{v:.1f}" for v in c.fma_probes)
            compute = (f"float32 FMA peak of the instruction set in use {c.compute_gflops:.1f} GFLOP/s (probes {fmas}; "
                       f"the compute ceiling), "
                       f"torch's best {compute}")
        if c.stream_probes:  # a record from before memory-bound cases had floors of their own
            streams = ", ".join(f"{v:.1f}" for v in c.stream_probes)
            compute = f"memory stream {c.stream_gbs:.1f} GB/s (probes {streams}), {compute}"
        lines.append(f"Ceilings on {device}, the fastest of {len(c.matmul_probes)} probes spread over the run: "
                     f"{compute}.  ")
        if c.round_trip_probes:
            trips = ", ".join(f"{v:.0f}" for v in c.round_trip_probes)
            lines.append(f"Cache-line round trip between two threads on {device}: {min(c.round_trip_probes):.0f}-"
                         f"{max(c.round_trip_probes):.0f} ns (probes {trips}): tens of ns where the threads' cores "
                         f"share a cache, hundreds where they do not (a shared machine's virtual CPUs, placed apart), "
                         f"and then the kernels that hand data between threads at every step (an LSTM's steps cut over "
                         f"the threads: at batch 1, LSTMCell) run slower.  ")
    return lines


def _share_needed(target: float, r: Result, ceilings: Ceilings | None) -> str:
    """For a case short of a target speedup over its baseline: the share of its ceiling hotkernels
    would have to reach for it at the baseline's time in this run (the baseline's share times the
    target), beside the shares both reached. Above 100%, it takes a rate above the measured ceiling
    (a floor's fastest round, or the best probe). Empty for a case without a rate."""
    share = r.share(ceilings)
    if share is None or r.speedup is None:
        return ""
    baseline = share / r.speedup
    return (f" (at {100 * share:.0f}% of the ceiling, against the baseline's {100 * baseline:.0f}%; "
            f"{target:.2f}x takes {100 * baseline * target:.0f}%)")


def _check(target: Target, matched: list[Result], ceilings: Ceilings | None) -> tuple[str, str]:
    """(verdict, what was measured) for one target over the results its pattern matches."""
    if not matched:
        return "not measured", "no case of this run matches it"
    missing = sorted({b for r in matched if r.baseline is None for b in r.baselines})
    if target.speedup and missing:
        return "not measured", f"its baseline {', '.join(missing)} is not installed"
    met, parts = True, []
    if target.speedup:
        if target.over == "geomean":
            value = math.exp(sum(math.log(r.speedup) for r in matched) / len(matched))
            parts.append(f"{value:.2f}x")
        else:
            worst = min(matched, key=lambda r: (r.speedup, r.name))
            value = worst.speedup
            parts.append(f"{value:.2f}x" + (f" (worst: {worst.name})" if len(matched) > 1 else ""))
            if value < target.speedup:
                parts[-1] += _share_needed(target.speedup, worst, ceilings)
        met &= value >= target.speedup
    if target.floor_share:
        shares = [(r.share(ceilings) or 0.0, r.name) for r in matched]
        value, worst = min(shares)
        parts.append(f"{100 * value:.0f}% of ceiling" + (f" (worst: {worst})" if len(matched) > 1 else ""))
        met &= value >= target.floor_share
    return ("met" if met else "not met"), "measured " + ", ".join(parts)


def summary(results: list[Result], ceilings: dict[str, Ceilings]) -> list[str]:
    """One line per target of the issues (``TARGETS`` in each family's bench module) on the devices
    this run measured: met, not met, or not measured (and why)."""
    lines = []
    for family, family_targets in targets().items():
        for t in family_targets:
            if t.device not in ceilings:
                continue
            matched = [r for r in results
                       if r.family == family and r.device == t.device and fnmatch.fnmatchcase(r.name, t.cases)]
            verdict, measured = _check(t, matched, ceilings.get(t.device))
            goal = []
            if t.speedup:
                scope = "geometric mean" if t.over == "geomean" else "each"
                goal.append(f"{scope} >= {t.speedup:.2f}x")
            if t.floor_share:
                goal.append(f"each >= {100 * t.floor_share:.0f}% of ceiling")
            count = f"{len(matched)} case{'s' if len(matched) != 1 else ''}"
            lines.append(f"- **{verdict}**: {family} (issue {t.issue}), {t.device}, `{t.cases}` ({count}): "
                         f"{' and '.join(goal)}; {measured}")
    return lines


def _rounds(rec: dict[str, Any]) -> str:
    """How many rounds each median is of, and over how many sweeps."""
    sweeps = rec.get("sweeps", 1)
    rounds = f"{sweeps * rec['rounds']} interleaved rounds"
    return rounds if sweeps == 1 else f"{rounds} ({rec['rounds']} in each of {sweeps} sweeps over the cases)"


def render(rec: dict[str, Any]) -> str:
    """The Markdown of a run record: machine, legend, table, ceilings, summary against the targets."""
    results, ceilings = parse(rec)
    quick = " (--quick sizes: small, and run from the caches)"
    # Memory-bound cases are judged against their own copy floor; records from before that, against
    # a memory stream probed over the run.
    own_floors = any(FLOOR in r.ms for r in results)
    # Records made before floors were their fastest round: the median, as for every implementation.
    floor_ms = ", its fastest" if rec.get("floor_ms") == "fastest" else ""
    memory_floor = (f"for GB/s: the case's own floor, its \"{FLOOR}\" (a pass, or one per pass of the case's, "
                    "moving the same bytes of the same kinds over buffers of the same size, an allocation per output "
                    "included, and nothing else: hotkernels::stream_pass on the CPU, torch's copy_, sum and add_ "
                    f"elsewhere; timed in the case's rounds{floor_ms}): floor ms / hotkernels ms" if own_floors else
                    "for GB/s: the faster of a large copy and a large in-place update, counted the same way, for GB/s")
    lines = [
        f"Machine: {machine_line(rec['machine'])}.  ",
        f"Run: {rec['date']}, `{rec['command']}`, medians of {_rounds(rec)}{quick if rec['quick'] else ''}.",
        "",
        "\"baseline\": the fastest of the case's baselines that ran (a torch built-in, or torch_optimizer "
        "where torch has no such optimizer); \"speedup\": baseline ms / hotkernels ms. \"max error\": the "
        "largest absolute difference of hotkernels' result from the baseline's (or the named reference's); an "
        "inf or NaN where the other side differs counts as inf. \"rate\": GFLOP/s, or GB/s over the case's "
        "least DRAM traffic (reads, write-allocates and writes), with its share of the machine's ceiling "
        "(for GFLOP/s: on the CPU the float32 FMA peak of a register-only loop, elsewhere the faster of torch's "
        f"float32 GEMMs; {memory_floor}).",
        "",
        *table(results, ceilings),
        "",
        *_loss_lines(results),
        *_ceiling_lines(ceilings),
    ]
    over = above_ceiling(results, ceilings)
    if over:
        lines += ["", f"**Above the ceiling** (bytes or flops miscounted, or a probe ran under load"
                      f"{', or a copy floor is slow' if own_floors else ''}): "
                      f"{', '.join(r.id for r in over)}."]
    lines += ["", "Against the targets of the issues (`TARGETS` in `python/hotkernels/bench/<family>.py`):", "",
              *summary(results, ceilings)]
    return "\n".join(lines) + "\n"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} begin -->", f"<!-- bench:{name} end -->"


def embedded(readme: str) -> dict[str, str]:
    """Every results block embedded in a README, by name."""
    pattern = re.compile(r"<!-- bench:(\S+) begin -->\n(.*?)<!-- bench:\1 end -->", re.DOTALL)
    return {m.group(1): m.group(2) for m in pattern.finditer(readme)}


def embed(readme: str, name: str, markdown: str) -> str:
    """The README with the block between NAME's markers replaced by ``markdown``."""
    begin, end = _markers(name)
    start, stop = readme.find(begin), readme.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"the README has no '{begin}' ... '{end}' markers: add them where the results go")
    return readme[: start + len(begin)] + "\n" + markdown + readme[stop:]
