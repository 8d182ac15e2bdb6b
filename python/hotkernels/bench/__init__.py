"""Benchmark cases shared by ``python -m hotkernels bench`` and the pytest-benchmark suite.

Each op family has a module here whose ``cases(device, quick)`` returns :class:`Case` objects. A case
allocates its inputs lazily (``setup``) and returns named zero-argument callables: ``"torch"`` (the
PyTorch built-in, the baseline), ``"hotkernels"``, and optionally others (e.g. ``"composed"``). Every
callable returns its result so the runner can report the largest difference from the baseline.

Timing: the implementations of a case run in interleaved rounds (torch, hotkernels, ..., torch, ...)
so that machine noise hits them alike, and each reports the median of its rounds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

Impls = dict[str, Callable[[], Any]]


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    device: str
    setup: Callable[[], Impls] = field(repr=False)
    bytes: int = 0  # bytes the op must move at least (its memory floor), for GB/s
    flops: int = 0  # floating-point operations, for GFLOP/s

    @property
    def id(self) -> str:
        return f"{self.family}/{self.device}/{self.name}"


@dataclass
class Result:
    case: Case
    ms: dict[str, float]  # median milliseconds per implementation
    max_error: float

    @property
    def speedup(self) -> float:
        return self.ms["torch"] / self.ms["hotkernels"]

    def rate(self, ceilings: "Ceilings | None" = None) -> str:
        """Achieved rate of the hotkernels implementation, GFLOP/s or GB/s (over the case's memory
        floor), with its share of the machine's ceiling when given."""
        seconds = self.ms["hotkernels"] / 1e3
        if self.case.flops:
            value, unit, ceiling = self.case.flops / seconds / 1e9, "GFLOP/s", ceilings and ceilings.matmul_gflops
        elif self.case.bytes:
            value, unit, ceiling = self.case.bytes / seconds / 1e9, "GB/s", ceilings and ceilings.copy_gbs
        else:
            return "-"
        share = f" ({100 * value / ceiling:.0f}% of ceiling)" if ceiling else ""
        return f"{value:.1f} {unit}{share}"


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
    """Largest absolute difference between two results (tensors, or nested lists/tuples of them)."""
    worst = 0.0
    for a, b in zip(_flatten(got), _flatten(expected), strict=True):
        finite = a.isfinite() & b.isfinite()
        diff = (a.double() - b.double()).abs()[finite]
        if diff.numel():
            worst = max(worst, diff.max().item())
        if not torch.equal(a.isnan(), b.isnan()):
            return float("nan")
    return worst


def measure(impls: Impls, device: str, rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds of each callable over interleaved rounds."""
    for _ in range(warmup):
        for fn in impls.values():
            fn()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(s) for name, s in samples.items()}


def run(case: Case, rounds: int) -> Result:
    impls = case.setup()
    # hotkernels against the baseline; other implementations (composed ops, third-party variants)
    # are there for their times only.
    error = max_error(impls["hotkernels"](), impls["torch"]())
    ms = measure(impls, case.device, rounds)
    del impls
    return Result(case, ms, error)


def families() -> dict[str, Callable[[str, bool], list[Case]]]:
    """Every op family's case list, by name."""
    from . import conv2d, lstm, mish, optim, pool

    return {"conv2d": conv2d.cases, "lstm": lstm.cases, "mish": mish.cases, "optim": optim.cases, "pool": pool.cases}


@dataclass(frozen=True)
class Ceilings:
    """What this machine reaches at all, measured with torch: a large copy and a large matmul."""

    copy_gbs: float  # GB/s, counting bytes read and written
    matmul_gflops: float  # float32 GFLOP/s

    @staticmethod
    def measure(device: str, quick: bool) -> "Ceilings":
        n = (1 << 24) if quick else (1 << 26)  # float32 elements copied
        src = torch.ones(n, device=device)
        dst = torch.empty_like(src)
        copy_ms = measure({"copy": lambda: dst.copy_(src)}, device, rounds=5 if quick else 10)["copy"]
        m = 1024 if quick else (2048 if device == "cpu" else 8192)
        a = torch.randn(m, m, device=device)
        b = torch.randn(m, m, device=device)
        mm_ms = measure({"mm": lambda: a @ b}, device, rounds=3 if quick else 5)["mm"]
        return Ceilings(8 * n / (copy_ms / 1e3) / 1e9, 2 * m**3 / (mm_ms / 1e3) / 1e9)
