"""pytest-benchmark driver over every case of :mod:`hotkernels.bench` (the cases `python -m hotkernels
bench` times). Run: ``pytest benchmarks/ --benchmark-group-by=group`` (``--bench-quick`` for small
sizes; ``--benchmark-disable`` runs each implementation once, as a smoke test).

As in the command line, a case's implementations run in interleaved rounds: pytest-benchmark times
hotkernels, and before each of its rounds the other implementations (the baselines, the reference,
the others) run once, timed here. Their medians, the baseline, the speedup and the max error land in
the benchmark's ``extra_info`` (and so in ``--benchmark-json``). Speed targets are data beside the
cases (``TARGETS`` in ``hotkernels/bench/<family>.py``), checked by the summary of ``python -m
hotkernels bench``, never here.
"""

import statistics

from hotkernels import bench


def test_case(benchmark, case: bench.Case, rounds: int) -> None:
    impls = case.implementations()
    ours = impls.pop("hotkernels")
    error = bench.max_error(ours(), impls[case.reference_impl]())
    if not benchmark.disabled:
        for _ in range(2):  # warmup, as bench.measure
            for fn in (*impls.values(), ours):
                fn()
    samples: dict[str, list[float]] = {name: [] for name in [*impls, "hotkernels"]}

    def run_the_others() -> None:
        for name, fn in impls.items():
            samples[name].append(bench.time_ms(fn, case.device))

    def run_ours() -> None:
        samples["hotkernels"].append(bench.time_ms(ours, case.device))

    benchmark.group = case.id
    benchmark.pedantic(run_ours, setup=run_the_others, rounds=rounds)
    ms = {name: statistics.median(s) for name, s in samples.items()}
    result = case.result(ms, error)
    benchmark.extra_info.update(ms=ms, baseline=result.baseline, speedup=result.speedup, max_error=error)
