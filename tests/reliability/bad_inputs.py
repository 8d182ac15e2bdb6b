"""The bad-input matrix: for each op, inputs a user might pass by mistake or at the edges (wrong
dtype, wrong dim, mismatched devices, zero or negative sizes, NaN/inf data, empty batches, index
math past 32 bits through expanded views), each with what must happen: torch's result or a clear
Python exception. Never a crash, a hang or a silently wrong number.

Cases are Python source snippets so that tests/test_bad_inputs.py can run each op's cases in a
subprocess (a segfault or abort then fails the test instead of killing the run) under a timeout
(a hang fails too). A snippet defines `run()` returning our result; an "equal" case also defines
`expected()` returning torch's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BadInput:
    op: str
    name: str
    source: str  # defines run() (and expected() for "equal")
    outcome: str  # "raises": a Python exception (RuntimeError, ValueError, TypeError, IndexError); "equal": same as torch


PRELUDE = "import torch, torch.nn.functional as F, hotkernels, hotkernels.functional as HF\n"

CASES: list[BadInput] = []


def case(op: str, name: str, outcome: str, source: str) -> None:
    CASES.append(BadInput(op, name, source, outcome))


# --- mish
for dt in ("torch.int64", "torch.int32", "torch.uint8", "torch.bool", "torch.complex64"):
    case("mish", f"dtype {dt}", "raises", f"def run(): return HF.mish(torch.ones(3, dtype={dt}))")
    case("mish", f"inplace dtype {dt}", "raises", f"def run(): return HF.mish(torch.ones(3, dtype={dt}), inplace=True)")
case("mish", "nan and inf data", "equal",
     "x = torch.tensor([float('nan'), float('inf'), -float('inf'), 0.0, -0.0, 3e38, -3e38, 1e-45, -1e-45])\n"
     "def run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "empty batch", "equal", "x = torch.randn(0, 5, 7)\ndef run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "0-dim", "equal", "x = torch.tensor(1.5)\ndef run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "stride-0 (expanded) view of a strided slice", "equal",
     "x = torch.randn(1, 1 << 16).expand(1 << 15, 1 << 16)[:, :8]\n"
     "def run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "backward shape mismatch", "raises", "def run(): return torch.ops.hotkernels.mish_backward(torch.ones(3), torch.ones(4))")
case("mish", "backward dtype mismatch", "raises",
     "def run(): return torch.ops.hotkernels.mish_backward(torch.ones(3, dtype=torch.float64), torch.ones(3))")
case("mish", "backward integer grad", "raises",
     "def run(): return torch.ops.hotkernels.mish_backward(torch.ones(3, dtype=torch.int64), torch.ones(3, dtype=torch.int64))")
case("mish", "inplace on a leaf requiring grad", "raises",
     "def run(): return HF.mish(torch.ones(3, requires_grad=True), inplace=True)")
case("mish", "inplace on an overlapping view", "equal",
     # torch's elementwise in-place ops refuse internal overlap; so must we (or compute it right)
     "def run():\n    x = torch.zeros(1).expand(4)\n    try:\n        return HF.mish(x, inplace=True)\n"
     "    except RuntimeError as e:\n        return 'error'\n"
     "def expected():\n    x = torch.zeros(1).expand(4)\n    try:\n        return F.mish(x, inplace=True)\n"
     "    except RuntimeError as e:\n        return 'error'")
