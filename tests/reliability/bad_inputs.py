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

# --- pool
for fn in ("max_pool2d", "avg_pool2d"):
    x4 = "torch.randn(2, 3, 9, 9)"
    case("pool", f"{fn} integer input", "raises", f"def run(): return HF.{fn}(torch.ones(1, 1, 4, 4, dtype=torch.int64), 2)")
    case("pool", f"{fn} 2-D input", "raises", f"def run(): return HF.{fn}(torch.randn(4, 4), 2)")
    case("pool", f"{fn} 5-D input", "raises", f"def run(): return HF.{fn}(torch.randn(1, 1, 1, 4, 4), 2)")
    case("pool", f"{fn} zero stride", "raises", f"def run(): return HF.{fn}({x4}, 2, stride=0)")
    case("pool", f"{fn} negative stride", "raises", f"def run(): return HF.{fn}({x4}, 2, stride=-1)")
    case("pool", f"{fn} zero kernel", "raises", f"def run(): return HF.{fn}({x4}, 0)")
    case("pool", f"{fn} padding over half the kernel", "raises", f"def run(): return HF.{fn}({x4}, 3, padding=2)")
    case("pool", f"{fn} kernel larger than input", "raises", f"def run(): return HF.{fn}(torch.randn(1, 1, 3, 3), 5)")
    case("pool", f"{fn} empty batch", "equal",
         f"x = torch.randn(0, 3, 8, 8)\ndef run(): return HF.{fn}(x, 2)\ndef expected(): return F.{fn}(x, 2)")
    case("pool", f"{fn} nan and inf data", "equal",
         f"x = torch.tensor([[[[float('nan'), 1., -float('inf'), 2.], [float('inf'), 0., 3., -1.]]]])\n"
         f"def run(): return HF.{fn}(x, 2)\ndef expected(): return F.{fn}(x, 2)")
    case("pool", f"{fn} expanded (stride-0) input", "equal",
         f"x = torch.randn(1, 3, 1, 16).expand(2, 3, 16, 16)\ndef run(): return HF.{fn}(x, 3, 2, 1)\n"
         f"def expected(): return F.{fn}(x, 3, 2, 1)")
case("pool", "max_pool2d windows wholly in the padding (dilation)", "equal",
     "x = torch.randn(2, 3, 1, 5)\nkw = dict(kernel_size=(2, 1), stride=1, padding=(1, 0), dilation=(2, 1))\n"
     "def run(): return HF.max_pool2d(x, return_indices=True, **kw)\n"
     "def expected(): return F.max_pool2d(x, return_indices=True, **kw)")
case("pool", "max_pool2d dilation 0", "raises", "def run(): return HF.max_pool2d(torch.randn(1, 1, 8, 8), 2, dilation=0)")
case("pool", "avg_pool2d divisor_override 0", "raises",
     "def run(): return HF.avg_pool2d(torch.randn(1, 1, 8, 8), 2, divisor_override=0)")

# --- lstm
LSTM_ARGS = "torch.randn(4, 8), (torch.randn(4, 16), torch.randn(4, 16)), torch.randn(64, 8), torch.randn(64, 16)"
case("lstm", "cell integer input", "raises",
     "def run(): return HF.lstm_cell(torch.ones(4, 8, dtype=torch.int64), (torch.randn(4, 16), torch.randn(4, 16)), "
     "torch.randn(64, 8), torch.randn(64, 16))")
case("lstm", "cell w_ih of the wrong shape", "raises",
     "def run(): return HF.lstm_cell(torch.randn(4, 8), (torch.randn(4, 16), torch.randn(4, 16)), torch.randn(60, 8), torch.randn(64, 16))")
case("lstm", "cell hx batch mismatch", "raises",
     "def run(): return HF.lstm_cell(torch.randn(4, 8), (torch.randn(3, 16), torch.randn(4, 16)), torch.randn(64, 8), torch.randn(64, 16))")
case("lstm", "cell 3-D input", "raises",
     "def run(): return HF.lstm_cell(torch.randn(2, 4, 8), (torch.randn(4, 16), torch.randn(4, 16)), torch.randn(64, 8), torch.randn(64, 16))")
case("lstm", "cell dtype mismatch", "raises",
     "def run(): return HF.lstm_cell(torch.randn(4, 8, dtype=torch.float64), (torch.randn(4, 16), torch.randn(4, 16)), "
     "torch.randn(64, 8), torch.randn(64, 16))")
case("lstm", "cell nan data", "equal",
     "torch.manual_seed(0)\nc = torch.nn.LSTMCell(8, 16)\nx = torch.randn(4, 8); x[0, 0] = float('nan'); x[1, 1] = float('inf')\n"
     "def run():\n    return HF.lstm_cell(x, None, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)\n"
     "def expected(): return c(x)")
case("lstm", "LSTM input of the wrong size", "raises",
     "def run(): return hotkernels.nn.LSTM(8, 16)(torch.randn(5, 3, 7))")
case("lstm", "LSTM proj_size", "raises", "def run(): return hotkernels.nn.LSTM(8, 16, proj_size=4)")
case("lstm", "LSTM empty sequence", "raises",
     "def run(): return hotkernels.nn.LSTM(8, 16)(torch.randn(0, 3, 8))")

# --- conv2d
X, W = "torch.randn(2, 4, 9, 9)", "torch.randn(6, 4, 3, 3)"
for name, call in [
    ("channel mismatch", f"HF.conv2d({X}, torch.randn(6, 3, 3, 3))"),
    ("groups not dividing in_channels", "HF.conv2d(torch.randn(2, 5, 9, 9), torch.randn(6, 1, 3, 3), groups=2)"),
    ("groups not dividing out_channels", f"HF.conv2d({X}, torch.randn(5, 2, 3, 3), groups=2)"),
    ("kernel larger than padded input", "HF.conv2d(torch.randn(1, 4, 3, 3), torch.randn(2, 4, 5, 5))"),
    ("2-D input", f"HF.conv2d(torch.randn(4, 9), {W})"),
    ("5-D input", f"HF.conv2d(torch.randn(1, 2, 4, 9, 9), {W})"),
    ("3-D weight", f"HF.conv2d({X}, torch.randn(6, 4, 3))"),
    ("zero stride", f"HF.conv2d({X}, {W}, stride=0)"),
    ("negative padding", f"HF.conv2d({X}, {W}, padding=-1)"),
    ("zero dilation", f"HF.conv2d({X}, {W}, dilation=0)"),
    ("zero groups", f"HF.conv2d({X}, {W}, groups=0)"),
    ("integer input", "HF.conv2d(torch.ones(2, 4, 9, 9, dtype=torch.int64), torch.ones(6, 4, 3, 3, dtype=torch.int64))"),
    ("weight dtype mismatch", f"HF.conv2d({X}, torch.randn(6, 4, 3, 3, dtype=torch.float64))"),
    ("bias of the wrong size", f"HF.conv2d({X}, {W}, torch.randn(5))"),
    ("padding='same' with stride 2", f"HF.conv2d({X}, {W}, stride=2, padding='same')"),
    ("unknown padding string", f"HF.conv2d({X}, {W}, padding='full')"),
    ("zero output channels (torch refuses them too)", f"HF.conv2d({X}, torch.randn(0, 4, 3, 3))"),
]:
    case("conv2d", name, "raises", f"def run(): return {call}")
for name, args in [
    ("empty batch", "torch.randn(0, 4, 9, 9), torch.randn(6, 4, 3, 3)"),
    ("nan and inf data", "torch.tensor([[[[float('nan'), 1., 2.], [float('inf'), -float('inf'), 0.], [1., 2., 3.]]]]), torch.randn(2, 1, 2, 2)"),
    ("expanded (stride-0) input", "torch.randn(1, 4, 1, 9).expand(2, 4, 9, 9), torch.randn(6, 4, 3, 3)"),
]:
    case("conv2d", name, "equal", f"args = ({args})\ndef run(): return HF.conv2d(*args)\ndef expected(): return F.conv2d(*args)")

# --- optim
P = "[torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]"
for opt in ("Adam", "AdamW", "RAdam", "LAMB", "NovoGrad", "Ranger", "Ralamb", "RangerLars"):
    case("optim", f"{opt} negative lr", "raises", f"def run(): return hotkernels.optim.{opt}({P}, lr=-1.0)")
    case("optim", f"{opt} beta of 1", "raises", f"def run(): return hotkernels.optim.{opt}({P}, betas=(1.0, 0.999))")
    case("optim", f"{opt} negative eps", "raises", f"def run(): return hotkernels.optim.{opt}({P}, eps=-1e-8)")
    case("optim", f"{opt} integer param with a gradient", "raises",
         f"def run():\n    p = torch.zeros(3, dtype=torch.int64)\n    p.grad = torch.ones(3, dtype=torch.int64)\n"
         f"    return hotkernels.optim.{opt}([p]).step()")
    case("optim", f"{opt} sparse grad", "raises",
         f"def run():\n    p = torch.nn.Parameter(torch.randn(4, 3))\n    o = hotkernels.optim.{opt}([p])\n"
         f"    p.grad = torch.eye(4, 3).to_sparse()\n    return o.step()")
    case("optim", f"{opt} no gradients: a no-op", "equal",
         f"def run():\n    p = torch.nn.Parameter(torch.ones(4))\n    hotkernels.optim.{opt}([p]).step()\n    return p.detach()\n"
         f"def expected(): return torch.ones(4)")
for opt in ("Adam", "AdamW", "RAdam"):
    case("optim", f"{opt} NaN and inf gradients as torch.optim", "equal",
         f"def step(cls):\n    p = torch.nn.Parameter(torch.ones(4))\n    o = cls([p], weight_decay=0.1)\n"
         f"    for _ in range(3):\n        p.grad = torch.tensor([float('nan'), float('inf'), 0.0, -1.0])\n        o.step()\n"
         f"    return p.detach()\n"
         f"def run(): return step(hotkernels.optim.{opt})\ndef expected(): return step(torch.optim.{opt})")
case("optim", "Lookahead k=0", "raises", f"def run(): return hotkernels.optim.Lookahead(hotkernels.optim.Adam({P}), k=0)")
case("optim", "Lookahead alpha > 1", "raises", f"def run(): return hotkernels.optim.Lookahead(hotkernels.optim.Adam({P}), alpha=1.5)")
