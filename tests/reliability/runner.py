"""Runs the bad-input cases of one op in this process and prints one JSON line per case; started by
tests/test_bad_inputs.py in a subprocess, with the op name as its only argument."""

import json
import sys

import torch

from tests.reliability.bad_inputs import CASES, PRELUDE

ALLOWED = (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def main(op: str) -> None:
    for c in [c for c in CASES if c.op == op]:
        print(json.dumps({"start": c.name}), flush=True)
        scope: dict = {}
        exec(PRELUDE + c.source, scope)
        try:
            got = scope["run"]()
            result = "equal" if c.outcome == "equal" and same(got, scope["expected"]()) else "returned"
        except ALLOWED as e:
            result = "raises" if str(e).strip() else "raises with an empty message"
        print(json.dumps({"case": c.name, "expected": c.outcome, "got": result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
