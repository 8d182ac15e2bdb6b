"""Each op's bad-input matrix (tests/reliability/bad_inputs.py) in a subprocess under a timeout: a
case passes when it gives torch's result or a clear Python exception as listed; a crash or a hang
fails the op's whole matrix, naming the case that was running. The large cases (index math past
2^31, several GB each) run one per subprocess, skipped with the reason when memory is short."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.bad_inputs import CASES
from tests.reliability.runner import skip_reason

ROOT = Path(__file__).resolve().parent.parent
LARGE = [c for c in CASES if c.mem_gb > 0]


def run_runner(args: list[str], timeout: int) -> tuple[int, list[dict], str]:
    """Exit status, JSON lines and stderr of `python -m tests.reliability.runner ARGS`; a hang fails,
    naming the case that was running."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.reliability.runner", *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        started = [json.loads(line)["start"] for line in out.splitlines() if '"start"' in line]
        pytest.fail(f"{args[0]}: hung in case {started[-1] if started else '?'}")
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


@pytest.mark.parametrize("op", sorted({c.op for c in CASES}))
def test_bad_input_matrix(op):
    rc, lines, stderr = run_runner([op], timeout=300)
    started = [r["start"] for r in lines if "start" in r]
    assert rc == 0, f"{op}: crashed (exit {rc}) in case {started[-1] if started else '?'}\n{stderr[-3000:]}"
    results = [r for r in lines if "case" in r]
    assert len(results) == len([c for c in CASES if c.op == op and c.mem_gb == 0])
    wrong = [r for r in results if r["got"] != r["expected"]]
    assert not wrong, wrong


@pytest.mark.parametrize("case", LARGE, ids=[f"{c.op}: {c.name}" for c in LARGE])
def test_index_math_past_2_31(case):
    reason = skip_reason(case)  # checked here too, so a skipped case starts no process
    if reason:
        pytest.skip(reason)
    rc, lines, stderr = run_runner([case.op, case.name], timeout=240)
    assert rc == 0, f"{case.op}: crashed (exit {rc}) in case {case.name}\n{stderr[-3000:]}"
    [result] = [r for r in lines if "case" in r]
    if result["got"] == "skipped":
        pytest.skip(result["reason"])
    assert result["got"] == result["expected"], result
