"""pytest-benchmark driver for the cases in hotkernels.bench (the same ones `python -m hotkernels bench`
times). Run: `pytest benchmarks/ --benchmark-group-by=group`; each case's implementations form one
group, so the comparison reads side by side. Speed targets live here, never in tests/."""

import pytest
import torch

import hotkernels
from hotkernels import bench

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and hotkernels._library.with_cuda else [])


def cases(family: str) -> list:
    """pytest params for every case of one op family on every device present."""
    return [pytest.param(c, id=c.id) for d in DEVICES for c in bench.families()[family](d, False)]


def time_case(benchmark, case: bench.Case, impl: str) -> None:
    impls = case.setup()
    if impl not in impls:
        pytest.skip(f"{case.id} has no {impl} implementation")
    fn = impls[impl]
    benchmark.group = case.id

    def timed():
        fn()
        bench.synchronize(case.device)

    benchmark.pedantic(timed, rounds=15, warmup_rounds=2)
