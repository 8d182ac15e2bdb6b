"""Runs bad-input cases in this process and prints one JSON line per case; started by
tests/test_bad_inputs.py in a subprocess. `runner OP` runs OP's small cases; `runner OP NAME` runs
the one case NAME (the large cases run that way, alone in their process, so each gets the memory to
itself and a crash names it).

A large case (mem_gb > 0) is skipped, with the reason, when it needs more than
HOTKERNELS_MAX_CASE_GB (default 10: the CI machine has 24 GiB) or more than MemAvailable."""

import gc
import json
import os
import re
import resource
import sys

import torch

from tests.reliability.bad_inputs import CASES, PRELUDE, BadInput

ALLOWED = (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError)
MAX_CASE_GB = float(os.environ.get("HOTKERNELS_MAX_CASE_GB", "10"))


def same(a, b, c: BadInput) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.allclose(a, b, rtol=c.rtol, atol=c.atol, equal_nan=True)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y, c) for x, y in zip(a, b))
    return a == b


def available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9  # kB
    return 0.0


def skip_reason(c: BadInput) -> str | None:
    if c.mem_gb > MAX_CASE_GB:
        return f"needs ~{c.mem_gb:g} GB, above HOTKERNELS_MAX_CASE_GB={MAX_CASE_GB:g}"
    if c.mem_gb > 0 and available_gb() < c.mem_gb + 1:
        return f"needs ~{c.mem_gb:g} GB (+1 GB margin), MemAvailable is {available_gb():.1f} GB"
    return None


def message_problem(c: BadInput, message: str, scope: dict) -> str | None:
    """Why the error message of a "raises" case breaks the promise (the argument named, and the op
    named or torch's words for the same mistake), or None when it keeps it. Where the case defines
    torch_run(), torch must refuse the same call too."""
    if not message.strip():
        return "an empty message"
    if not c.arg:
        return "a case without the argument its message must name"
    if not re.search(c.arg, message, re.IGNORECASE):
        return f"a message that does not name the argument /{c.arg}/: {message[:300]}"
    names_op = bool(c.op_re) and re.search(c.op_re, message) is not None
    if "torch_run" in scope:
        try:
            scope["torch_run"]()
        except ALLOWED as e:
            if names_op or re.search(c.arg, str(e), re.IGNORECASE):
                return None
            return f"a message without the op's name, and torch's names another argument: {str(e)[:300]}"
        return "torch does not raise for it (torch_run returned)"
    return None if names_op else f"a message that does not name the op /{c.op_re}/: {message[:300]}"


def run_case(c: BadInput) -> dict:
    reason = skip_reason(c)
    if reason:
        return {"case": c.name, "expected": c.outcome, "got": "skipped", "reason": reason}
    scope: dict = {}
    exec(PRELUDE + c.source, scope)
    try:
        got = scope["run"]()
        result = "equal" if c.outcome == "equal" and same(got, scope["expected"](), c) else "returned"
    except ALLOWED as e:
        problem = message_problem(c, str(e), scope)
        result = "raises" if problem is None else f"raises with {problem}"
    scope.clear()  # the case's functions refer to scope: break the cycle, free its tensors now
    gc.collect()
    return {"case": c.name, "expected": c.outcome, "got": result}


def main(op: str, name: str | None = None) -> None:
    cases = [c for c in CASES if c.op == op and (c.name == name if name else c.mem_gb == 0)]
    for c in cases:
        print(json.dumps({"start": c.name}), flush=True)
        result = run_case(c)
        result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
