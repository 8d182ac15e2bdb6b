"""Each op's bad-input matrix (tests/reliability/bad_inputs.py) in a subprocess under a timeout: a
case passes when it gives torch's result or a clear Python exception as listed; a crash or a hang
fails the op's whole matrix, naming the case that was running."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.bad_inputs import CASES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("op", sorted({c.op for c in CASES}))
def test_bad_input_matrix(op):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.reliability.runner", op], capture_output=True, text=True,
                              timeout=300, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        started = [json.loads(line)["start"] for line in (e.stdout or b"").decode().splitlines() if '"start"' in line]
        pytest.fail(f"{op}: hung in case {started[-1] if started else '?'}")
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    started = [r["start"] for r in lines if "start" in r]
    assert proc.returncode == 0, f"{op}: crashed (exit {proc.returncode}) in case {started[-1] if started else '?'}\n{proc.stderr[-3000:]}"
    results = [r for r in lines if "case" in r]
    assert len(results) == len([c for c in CASES if c.op == op])
    wrong = [r for r in results if r["got"] != r["expected"]]
    assert not wrong, wrong
