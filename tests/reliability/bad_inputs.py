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
    # Peak memory in GB of a large case (index math past 2^31, below); 0 for the small ones. A large
    # case runs alone in its own subprocess and is skipped, with the reason, when /proc/meminfo's
    # MemAvailable is smaller or it needs more than the bound (tests/reliability/runner.py).
    mem_gb: float = 0.0
    rtol: float = 1e-5  # "equal": torch.allclose tolerances (a case states its dtype's own)
    atol: float = 1e-6
    # "raises": the message must name the argument (`arg`, a regular expression, case-insensitive) and
    # either name the op (`op_re`, a regular expression) or, when the source defines torch_run() (the
    # same mistake passed to torch's own op), be in torch's words: torch raises too, and its message
    # names the same argument. (The substance, not one torch version's wording: torch 2.11 and 2.14
    # phrase some messages differently.)
    arg: str = ""
    op_re: str = ""


PRELUDE = "import torch, torch.nn.functional as F, hotkernels, hotkernels.functional as HF\n"

CASES: list[BadInput] = []


def case(op: str, name: str, outcome: str, source: str, **kw) -> None:
    CASES.append(BadInput(op, name, source, outcome, **kw))


# --- mish
for dt in ("torch.int64", "torch.int32", "torch.uint8", "torch.bool", "torch.complex64"):
    case("mish", f"dtype {dt}", "raises", f"def run(): return HF.mish(torch.ones(3, dtype={dt}))", arg="'input'",
         op_re=r"hotkernels\.mish\b")
    case("mish", f"inplace dtype {dt}", "raises", f"def run(): return HF.mish(torch.ones(3, dtype={dt}), inplace=True)",
         arg="'input'", op_re=r"hotkernels\.mish_")
case("mish", "nan and inf data", "equal",
     "x = torch.tensor([float('nan'), float('inf'), -float('inf'), 0.0, -0.0, 3e38, -3e38, 1e-45, -1e-45])\n"
     "def run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "empty batch", "equal", "x = torch.randn(0, 5, 7)\ndef run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "0-dim", "equal", "x = torch.tensor(1.5)\ndef run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "stride-0 (expanded) view of a strided slice", "equal",
     "x = torch.randn(1, 1 << 16).expand(1 << 15, 1 << 16)[:, :8]\n"
     "def run(): return HF.mish(x)\ndef expected(): return F.mish(x)")
case("mish", "backward shape mismatch", "raises", "def run(): return torch.ops.hotkernels.mish_backward(torch.ones(3), torch.ones(4))",
     arg="'grad_output'", op_re=r"hotkernels\.mish_backward")
case("mish", "backward dtype mismatch", "raises",
     "def run(): return torch.ops.hotkernels.mish_backward(torch.ones(3, dtype=torch.float64), torch.ones(3))",
     arg="'grad_output'", op_re=r"hotkernels\.mish_backward")
case("mish", "backward integer grad", "raises",
     "def run(): return torch.ops.hotkernels.mish_backward(torch.ones(3, dtype=torch.int64), torch.ones(3, dtype=torch.int64))",
     arg="'(input|grad_output)'", op_re=r"hotkernels\.mish_backward")
case("mish", "inplace on a leaf requiring grad", "raises",
     "def run(): return HF.mish(torch.ones(3, requires_grad=True), inplace=True)\n"
     "def torch_run(): return F.mish(torch.ones(3, requires_grad=True), inplace=True)", arg="leaf Variable")
case("mish", "inplace on an overlapping view", "equal",
     # torch's elementwise in-place ops refuse internal overlap; so must we (or compute it right)
     "def run():\n    x = torch.zeros(1).expand(4)\n    try:\n        return HF.mish(x, inplace=True)\n"
     "    except RuntimeError as e:\n        return 'error'\n"
     "def expected():\n    x = torch.zeros(1).expand(4)\n    try:\n        return F.mish(x, inplace=True)\n"
     "    except RuntimeError as e:\n        return 'error'")

# --- pool
for fn in ("max_pool2d", "avg_pool2d"):
    x4 = "torch.randn(2, 3, 9, 9)"
    case("pool", f"{fn} integer input", "raises", f"def run(): return HF.{fn}(torch.ones(1, 1, 4, 4, dtype=torch.int64), 2)",
         arg="'input'", op_re=rf"hotkernels\.{fn}")
    # torch's words behind the op's name (torch's own messages lack it, and torch 2.11 answers a
    # negative stride or a zero kernel with "integer out of range"): (call, the argument named)
    for name, call, arg in [
        ("2-D input", "(torch.randn(4, 4), 2)", "input"),
        ("5-D input", "(torch.randn(1, 1, 1, 4, 4), 2)", "input"),
        ("zero stride", f"({x4}, 2, stride=0)", "stride"),
        ("negative stride", f"({x4}, 2, stride=-1)", "stride"),
        ("zero kernel", f"({x4}, 0)", "stride|kernel"),  # the stride defaults to the kernel size: torch names it
        ("padding over half the kernel", f"({x4}, 3, padding=2)", "pad"),
        ("kernel larger than input", "(torch.randn(1, 1, 3, 3), 5)", "input size"),
    ]:
        # torch's avg_pool2d answers a 2-D input with "Dimension out of range": its max_pool2d's words, then
        ref = "max_pool2d" if name == "2-D input" else fn
        case("pool", f"{fn} {name}", "raises", f"def run(): return HF.{fn}{call}\ndef torch_run(): return F.{ref}{call}",
             arg=arg, op_re=rf"\b{fn}: ")
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
case("pool", "max_pool2d dilation 0", "raises", "def run(): return HF.max_pool2d(torch.randn(1, 1, 8, 8), 2, dilation=0)\n"
     "def torch_run(): return F.max_pool2d(torch.randn(1, 1, 8, 8), 2, dilation=0)", arg="dilation")
case("pool", "avg_pool2d divisor_override 0", "raises",
     "def run(): return HF.avg_pool2d(torch.randn(1, 1, 8, 8), 2, divisor_override=0)\n"
     "def torch_run(): return F.avg_pool2d(torch.randn(1, 1, 8, 8), 2, divisor_override=0)", arg="divisor")
# A stride that moves no window (one output along it) gives torch's values and gradients without
# buffers that grow with it (10^8 took 6.6 GB, 2^57 crashed); past int32 it raises, as torch's does.
# Rows wider than the windows' buffer at stride 1 (W >= 64) caught a buffer sized by the stride.
for fn in ("max_pool2d", "avg_pool2d"):
    for shape, kernel, stride in [("(2, 3, 5, 6)", "2", "10**8"), ("(2, 3, 5, 6)", "2", "(1, 2**31 - 1)"),
                                  ("(2, 3, 5, 6)", "2", "(2**30, 2)"), ("(2, 3, 4, 64)", "2", "(1, 100)"),
                                  ("(1, 2, 224, 224)", "3", "10**8"), ("(2, 3, 70, 5)", "(3, 2)", "(100, 1)")]:
        indices = ", return_indices=True" if fn == "max_pool2d" else ""
        case("pool", f"{fn} {shape} stride {stride} past the input", "equal",
             "def grads(f):\n    torch.manual_seed(0)\n"
             f"    x = torch.randn({shape}, dtype=torch.float64, requires_grad=True)\n"
             f"    out = f(x, {kernel}, {stride}{indices})\n"
             "    out = out if isinstance(out, tuple) else (out,)\n"
             "    return (*out, torch.autograd.grad(out[0], x, torch.ones_like(out[0]))[0])\n"
             f"def run(): return grads(HF.{fn})\ndef expected(): return grads(F.{fn})", rtol=1e-12, atol=1e-12)
    rest = "[1, 1], False" if fn == "max_pool2d" else "False, True, None"
    for stride in ("2**31", "2**57"):
        case("pool", f"{fn} stride {stride}", "raises", f"def run(): return HF.{fn}(torch.randn(1, 1, 4, 4), 2, {stride})",
             arg="'stride'", op_re=rf"hotkernels\.{fn}")
        case("pool", f"{fn} op with stride {stride}", "raises",
             f"def run(): return torch.ops.hotkernels.{fn}(torch.randn(1, 1, 4, 4), [2, 2], [{stride}] * 2, [0, 0], {rest})",
             arg="'stride'", op_re=rf"hotkernels\.{fn}")
    case("pool", f"{fn} float kernel_size", "raises", f"def run(): return HF.{fn}(torch.randn(1, 1, 4, 4), (2.9, 2.9))",
         arg="kernel_size", op_re=rf"hotkernels\.{fn}")
# The float32 max-pool kernels keep plane indices in int32 lanes: planes of 2^31 elements are
# refused, the half types before their float32 copy (8 GiB here) is made. run() checks both: a
# failed assert is not an allowed exception, so the case fails (not "raises").
for dt in ("torch.float32", "torch.float16", "torch.bfloat16"):
    case("pool", f"max_pool2d {dt} plane of 2^31 elements (expanded view)", "raises",
         "import resource\n"
         "def run():\n"
         "    try:\n"
         f"        return HF.max_pool2d(torch.zeros(1, 1, 1, 1, dtype={dt}).expand(1, 1, 1 << 16, 1 << 15), 2)\n"
         "    except RuntimeError as e:\n"
         "        assert 'planes of 2^31 or more elements are not supported' in str(e), str(e)\n"
         "        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2e6, 'refused after a large copy'\n"
         "        raise\n", arg="'input'", op_re=r"hotkernels\.max_pool2d")

# --- lstm
LSTM_ARGS = "torch.randn(4, 8), (torch.randn(4, 16), torch.randn(4, 16)), torch.randn(64, 8), torch.randn(64, 16)"
case("lstm", "cell integer input", "raises",
     "def run(): return HF.lstm_cell(torch.ones(4, 8, dtype=torch.int64), (torch.randn(4, 16), torch.randn(4, 16)), "
     "torch.randn(64, 8), torch.randn(64, 16))", arg="'input'", op_re=r"hotkernels\.lstm_cell")
case("lstm", "cell w_ih of the wrong shape", "raises",
     "def run(): return HF.lstm_cell(torch.randn(4, 8), (torch.randn(4, 16), torch.randn(4, 16)), torch.randn(60, 8), torch.randn(64, 16))",
     arg="'w_ih'", op_re=r"hotkernels\.lstm_cell")
case("lstm", "cell hx batch mismatch", "raises",
     "def run(): return HF.lstm_cell(torch.randn(4, 8), (torch.randn(3, 16), torch.randn(4, 16)), torch.randn(64, 8), torch.randn(64, 16))",
     arg="'hx'", op_re=r"hotkernels\.lstm_cell")
case("lstm", "cell 3-D input", "raises",
     "def run(): return HF.lstm_cell(torch.randn(2, 4, 8), (torch.randn(4, 16), torch.randn(4, 16)), torch.randn(64, 8), torch.randn(64, 16))",
     arg="'input'", op_re=r"hotkernels\.lstm_cell")
case("lstm", "cell dtype mismatch", "raises",
     "def run(): return HF.lstm_cell(torch.randn(4, 8, dtype=torch.float64), (torch.randn(4, 16), torch.randn(4, 16)), "
     "torch.randn(64, 8), torch.randn(64, 16))", arg="'input'", op_re=r"hotkernels\.lstm_cell")
case("lstm", "cell nan data", "equal",
     "torch.manual_seed(0)\nc = torch.nn.LSTMCell(8, 16)\nx = torch.randn(4, 8); x[0, 0] = float('nan'); x[1, 1] = float('inf')\n"
     "def run():\n    return HF.lstm_cell(x, None, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)\n"
     "def expected(): return c(x)")
case("lstm", "LSTM input of the wrong size", "raises",
     "def run(): return hotkernels.nn.LSTM(8, 16)(torch.randn(5, 3, 7))\n"
     "def torch_run(): return torch.nn.LSTM(8, 16)(torch.randn(5, 3, 7))", arg="input_size")
case("lstm", "LSTM proj_size not below hidden_size", "raises",
     "def run(): return hotkernels.nn.LSTM(8, 16, proj_size=16)\n"
     "def torch_run(): return torch.nn.LSTM(8, 16, proj_size=16)", arg="proj_size")
case("lstm", "LSTM proj_size h_0 of hidden_size", "raises",
     "def run(): return hotkernels.nn.LSTM(8, 16, proj_size=4)(torch.randn(5, 3, 8), (torch.zeros(1, 3, 16), torch.zeros(1, 3, 16)))\n"
     "def torch_run(): return torch.nn.LSTM(8, 16, proj_size=4)(torch.randn(5, 3, 8), (torch.zeros(1, 3, 16), torch.zeros(1, 3, 16)))",
     arg=r"hidden\[0\]")
case("lstm", "layer w_hr of the wrong shape", "raises",
     "def run(): return torch.ops.hotkernels.lstm_layer(torch.randn(5, 3, 8), torch.zeros(3, 4), torch.zeros(3, 16), "
     "torch.randn(64, 8), torch.randn(64, 4), None, None, torch.randn(4, 15), False)",
     arg="'w_hr'", op_re=r"hotkernels\.lstm_layer")
case("lstm", "LSTM empty sequence", "raises",
     "def run(): return hotkernels.nn.LSTM(8, 16)(torch.randn(0, 3, 8))", arg="'input'",
     op_re=r"hotkernels\.(nn\.LSTM|lstm_layer)")

# --- conv2d
X, W = "torch.randn(2, 4, 9, 9)", "torch.randn(6, 4, 3, 3)"
# (name, call, the argument the message names, torch's words: the same call on F.conv2d raises too)
for name, call, arg, torch_words in [
    ("channel mismatch", f"({X}, torch.randn(6, 3, 3, 3))", "input", False),
    ("groups not dividing in_channels", "(torch.randn(2, 5, 9, 9), torch.randn(6, 1, 3, 3), groups=2)", "groups", False),
    ("groups not dividing out_channels", f"({X}, torch.randn(5, 2, 3, 3), groups=2)", "groups", False),
    ("kernel larger than padded input", "(torch.randn(1, 4, 3, 3), torch.randn(2, 4, 5, 5))", "kernel size", False),
    ("2-D input", f"(torch.randn(4, 9), {W})", "input", True),
    ("5-D input", f"(torch.randn(1, 2, 4, 9, 9), {W})", "input", True),
    ("3-D weight", f"({X}, torch.randn(6, 4, 3))", "'weight'", False),
    ("zero stride", f"({X}, {W}, stride=0)", "stride", False),
    ("negative padding", f"({X}, {W}, padding=-1)", "padding", False),
    ("zero dilation", f"({X}, {W}, dilation=0)", "dilation", False),
    ("zero groups", f"({X}, {W}, groups=0)", "groups", False),
    ("integer input", "(torch.ones(2, 4, 9, 9, dtype=torch.int64), torch.ones(6, 4, 3, 3, dtype=torch.int64))", "'input'", False),
    ("weight dtype mismatch", f"({X}, torch.randn(6, 4, 3, 3, dtype=torch.float64))", "'weight'", False),
    ("bias of the wrong size", f"({X}, {W}, torch.randn(5))", "bias", False),
    ("padding='same' with stride 2", f"({X}, {W}, stride=2, padding='same')", "padding", True),
    ("unknown padding string", f"({X}, {W}, padding='full')", "padding", True),
    ("zero output channels (torch refuses them too)", f"({X}, torch.randn(0, 4, 3, 3))", "weight", False),
    ("zero-height input with padding (torch refuses it too)", "(torch.randn(2, 4, 0, 9), torch.randn(6, 4, 1, 1), "
     "padding=1)", "input", False),
]:
    source = f"def run(): return HF.conv2d{call}" + (f"\ndef torch_run(): return F.conv2d{call}" if torch_words else "")
    case("conv2d", name, "raises", source, arg=arg, op_re="" if torch_words else r"hotkernels\.conv2d")
# float32 sums of 36 products differ from torch's by up to ~1e-6 where an output is near 0 (measured:
# both ~6e-6 from float64), so these compare at tests/test_conv2d.py's stated float32 tolerance, on
# seeded data.
CONV_TOL = dict(rtol=1e-4, atol=1e-4)
for name, args in [
    ("empty batch", "torch.randn(0, 4, 9, 9), torch.randn(6, 4, 3, 3)"),
    ("nan and inf data", "torch.tensor([[[[float('nan'), 1., 2.], [float('inf'), -float('inf'), 0.], [1., 2., 3.]]]]), torch.randn(2, 1, 2, 2)"),
    ("expanded (stride-0) input", "torch.randn(1, 4, 1, 9).expand(2, 4, 9, 9), torch.randn(6, 4, 3, 3)"),
]:
    case("conv2d", name, "equal", f"torch.manual_seed(0)\nargs = ({args})\ndef run(): return HF.conv2d(*args)\n"
         "def expected(): return F.conv2d(*args)", **CONV_TOL)
# Strides past the padded input move no window, windows far out in the padding read zeros: torch's
# values and gradients, without a layout (or a loop) that grows with the stride (2^32 crashed:
# the phase split kept sh·sw slots; stride = padding = 2^20 would have taken 2^40).
for name, shapes, kw in [
    ("stride 2^32", "(1, 2, 3, 3), (1, 2, 3, 3)", "stride=2**32"),
    ("stride 2^62", "(1, 2, 3, 3), (1, 2, 3, 3)", "stride=2**62"),
    ("stride and padding 2^20", "(1, 2, 2, 2), (3, 2, 1, 1)", "stride=2**20, padding=2**20"),
    ("one column, stride 2^33", "(2, 4, 5, 7), (3, 4, 3, 2)", "stride=(1, 2**33), padding=(1, 3)"),
    # the input gradient padded grad_output by the padding once the stride was taken as 1
    ("stride 2^22, padding 2^20", "(1, 2, 2, 2), (3, 2, 1, 1)", "stride=2**22, padding=2**20"),
    # the depthwise kernels' padded plane grows with the padding: these take the implicit GEMM
    ("depthwise, stride and padding 16384", "(1, 4, 2, 2), (4, 1, 3, 3)", "stride=16384, padding=16384, groups=4"),
    ("depthwise, padding 40", "(2, 4, 9, 9), (4, 1, 3, 3)", "padding=40, groups=4"),
]:
    case("conv2d", name, "equal",
         f"def grads(f):\n    torch.manual_seed(0)\n    x, w = (torch.randn(s, dtype=torch.float64, requires_grad=True) for s in ({shapes}))\n"
         f"    b = torch.randn(w.shape[0], dtype=torch.float64, requires_grad=True)\n    y = f(x, w, b, {kw})\n"
         "    return (y, *torch.autograd.grad(y, (x, w, b), torch.ones_like(y)))\n"
         "def run(): return grads(HF.conv2d)\ndef expected(): return grads(F.conv2d)", rtol=1e-12, atol=1e-12)
case("conv2d", "padding 2^62", "raises", "def run(): return HF.conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3), padding=2**62)",
     arg="padding", op_re=r"hotkernels\.conv2d")
case("conv2d", "float stride", "raises", "def run(): return HF.conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3), stride=(1.5, 1))",
     arg="stride", op_re=r"hotkernels\.conv2d")

# --- linear
_L = "w, b = torch.randn(4, 3), torch.randn(4)\n"
for name, call, arg in [
    ("integer input", "HF.linear(torch.ones(2, 3, dtype=torch.int64), w.long(), b.long())", "'input'"),
    ("complex input", "HF.linear(torch.ones(2, 3, dtype=torch.complex64), w.cfloat(), b.cfloat())", "'input'"),
    ("weight dtype mismatch", "HF.linear(torch.ones(2, 3), w.double(), b)", "'weight'"),
    ("bias dtype mismatch", "HF.linear(torch.ones(2, 3), w, b.double())", "'bias'"),
    ("in_features mismatch", "HF.linear(torch.ones(2, 5), w, b)", "'input'"),
    ("1-D weight", "HF.linear(torch.ones(2, 3), torch.ones(3), None)", "'weight'"),
    ("3-D weight", "HF.linear(torch.ones(2, 3), torch.ones(1, 4, 3), None)", "'weight'"),
    ("bias of the wrong length", "HF.linear(torch.ones(2, 3), w, torch.ones(5))", "'bias'"),
    ("0-dim input", "HF.linear(torch.tensor(1.0), torch.ones(4, 1), None)", "'input'"),
]:
    case("linear", name, "raises", _L + f"def run(): return {call}", arg=arg, op_re=r"hotkernels\.linear\b")
for name, x in [("empty batch", "torch.randn(0, 3)"), ("no input features", "torch.randn(5, 0)"),
                # one term near the float32 limit: a product that overflows does so in any order of the sum
                ("nan and inf data", "torch.tensor([[float('nan'), 1.0, 2.0], [float('inf'), -1.0, 0.0], "
                                     "[3e38, 0.0, -0.0]])"),
                ("stride-0 (expanded) input", "torch.randn(1, 3).expand(6, 3)")]:
    w = "torch.randn(4, 0), torch.randn(4)" if name == "no input features" else "torch.randn(4, 3), torch.randn(4)"
    case("linear", name, "equal", f"torch.manual_seed(0)\nx = {x}\nw, b = {w}\n"
         "def run(): return HF.linear(x, w, b)\ndef expected(): return F.linear(x, w, b)")

# --- forward-mode AD: the ops differentiate in reverse mode only, and torch passes no tangent through
# a custom op without a forward derivative, silently (a missing or zero derivative): so it raises.
for op, fn, call in [
    ("mish", "mish", "HF.mish(a)"),
    ("pool", "max_pool2d", "HF.max_pool2d(a, 2)"),
    ("pool", "avg_pool2d", "HF.avg_pool2d(a, 2)"),
    ("conv2d", "conv2d", "HF.conv2d(a, torch.randn(3, 4, 3, 3))"),
    ("lstm", "lstm_cell", "hotkernels.nn.LSTMCell(8, 5)(a.flatten(1)[:, :8])"),
    ("lstm", "lstm", "hotkernels.nn.LSTM(8, 5)(a.flatten(2)[..., :8])[0]"),
    ("linear", "linear", "HF.linear(a, torch.randn(5, 8))"),
]:
    x = "torch.randn(2, 4, 8, 8)"
    case(op, f"{fn} under torch.func.jvp", "raises",
         f"def run(): return torch.func.jvp(lambda a: {call}, ({x},), ({x},))", arg="forward-mode AD",
         op_re=rf"hotkernels\.{fn}\b")
case("mish", "mish under torch.func.jacfwd", "raises", "def run(): return torch.func.jacfwd(HF.mish)(torch.randn(4))",
     arg="forward-mode AD", op_re=r"hotkernels\.mish\b")
case("conv2d", "conv2d with a dual weight (torch.autograd.forward_ad)", "raises",
     "import torch.autograd.forward_ad as fwAD\n"
     "def run():\n    with fwAD.dual_level():\n        w = fwAD.make_dual(torch.randn(3, 4, 3, 3), torch.ones(3, 4, 3, 3))\n"
     "        return HF.conv2d(torch.randn(2, 4, 8, 8), w)", arg="forward-mode AD", op_re=r"hotkernels\.conv2d\b")

# --- optim
P = "[torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]"
# The optimizer whose name the sparse-gradient message gives (the Rangers run RAdam and Ralamb inside).
SPARSE_NAMES = {"Adam": "Adam", "AdamW": "Adam", "RAdam": "RAdam", "LAMB": "Lamb", "NovoGrad": "NovoGrad", "Ranger": "RAdam",
                "Ralamb": "Ralamb", "RangerLars": "Ralamb"}
for opt in ("Adam", "AdamW", "RAdam", "LAMB", "NovoGrad", "Ranger", "Ralamb", "RangerLars"):
    # Hyperparameters in torch.optim's words (torch_run: torch.optim's own class, Adam's checks for ours
    # that torch lacks), which name the argument and not the optimizer.
    ref = opt if opt in ("Adam", "AdamW", "RAdam") else "Adam"
    for name, kw, arg in [("negative lr", "lr=-1.0", "learning rate"), ("beta of 1", "betas=(1.0, 0.999)", "beta"),
                          ("negative eps", "eps=-1e-8", "epsilon")]:
        case("optim", f"{opt} {name}", "raises", f"def run(): return hotkernels.optim.{opt}({P}, {kw})\n"
             f"def torch_run(): return torch.optim.{ref}({P}, {kw})", arg=arg)
    case("optim", f"{opt} integer param with a gradient", "raises",
         f"def run():\n    p = torch.zeros(3, dtype=torch.int64)\n    p.grad = torch.ones(3, dtype=torch.int64)\n"
         f"    return hotkernels.optim.{opt}([p]).step()", arg=r"'params\[0\]'",
         op_re=rf"hotkernels\.optim\.{'Lamb' if opt == 'LAMB' else opt}: ")  # the class, as torch.optim's messages
    case("optim", f"{opt} sparse grad", "raises",
         f"def run():\n    p = torch.nn.Parameter(torch.randn(4, 3))\n    o = hotkernels.optim.{opt}([p])\n"
         f"    p.grad = torch.eye(4, 3).to_sparse()\n    return o.step()", arg="sparse gradients", op_re=rf"\b{SPARSE_NAMES[opt]}\b")
    case("optim", f"{opt} no gradients: a no-op", "equal",
         f"def run():\n    p = torch.nn.Parameter(torch.ones(4))\n    hotkernels.optim.{opt}([p]).step()\n    return p.detach()\n"
         f"def expected(): return torch.ones(4)")
for opt in ("Adam", "AdamW", "RAdam"):
    case("optim", f"{opt} NaN and inf gradients as torch.optim", "equal",
         f"def step(cls):\n    p = torch.nn.Parameter(torch.ones(4))\n    o = cls([p], weight_decay=0.1)\n"
         f"    for _ in range(3):\n        p.grad = torch.tensor([float('nan'), float('inf'), 0.0, -1.0])\n        o.step()\n"
         f"    return p.detach()\n"
         f"def run(): return step(hotkernels.optim.{opt})\ndef expected(): return step(torch.optim.{opt})")
case("optim", "Lookahead k=0", "raises", f"def run(): return hotkernels.optim.Lookahead(hotkernels.optim.Adam({P}), k=0)",
     arg=r"\bk\b", op_re="Lookahead")
case("optim", "Lookahead alpha > 1", "raises", f"def run(): return hotkernels.optim.Lookahead(hotkernels.optim.Adam({P}), alpha=1.5)",
     arg="alpha", op_re="Lookahead")

# --- index math past 32 bits
# Each case builds a tensor of more than 2^31 elements (a plane, image or element offset passes 2^31)
# and checks chosen results around element 2^31 and at the end against torch's op on the small
# slice that produces them. Planes (images) differ by a constant (plane_of), so an index that
# wrapped to another plane would show. float32 needs 8 GiB for 2^31 elements: a case's peak (mem_gb,
# measured) is that plus small outputs and workspaces; cases above ~10 GB run only on request
# (runner.py), the others alone in their own subprocess, skipped when memory is short.
BIG_PRELUDE = """
import math
BIG = 1 << 31
def planes(n_planes, plane):
    q = BIG // plane  # the plane (image) that holds element 2^31
    return sorted({q - 1, q, q + 1, n_planes - 1})
def plane_of(base, q):
    return base + (q % 251) / 8
def fill(shape, base, memory_format=torch.contiguous_format):
    # plane_of(base, q) for every plane q of shape's leading dimensions, in one pass
    lead = shape[: len(shape) - base.dim()]
    off = (torch.arange(math.prod(lead)) % 251).to(base.dtype).div_(8).view(*lead, *[1] * base.dim())
    return torch.add(base, off, out=torch.empty(shape, dtype=base.dtype, memory_format=memory_format))
"""

BF16 = dict(rtol=8e-3, atol=1e-37)  # tests/test_mish.py's stated bfloat16 tolerance
case("mish", "expanded view of 2^31 + 69k bfloat16 elements (copied by the op), then in place on the result", "equal",
     BIG_PRELUDE + """
P = 4099  # the pattern's period: odd, so an index off by 2^31 or 2^32 reads another value
R = BIG // P + 17
base = torch.randn(P, generator=torch.Generator().manual_seed(0)).mul_(4).to(torch.bfloat16)
picks = torch.tensor(sorted({BIG - 2, BIG - 1, BIG, BIG + 1, R * P - 1}))
def run():
    y = HF.mish(base.expand(R, P))
    once = y.view(-1)[picks]
    HF.mish(y, inplace=True)
    return once, y.view(-1)[picks]
def expected():  # in float, rounded once, as ours
    once = F.mish(base[picks % P].float()).to(torch.bfloat16)
    return once, F.mish(once.float()).to(torch.bfloat16)
""", mem_gb=8.9, **BF16)
# Not covered: mish_backward past 2^31 needs grad, input and result (12 GiB in a half type).

POOL_BIG = BIG_PRELUDE + """
H, W, C = 60, 61, 7  # NCHW planes of 3660 elements: element 2^31 falls inside one
N = BIG // (C * H * W) + 2
Q = N * C
K = [3, 3]; S = [6, 6]; PAD = [1, 1]
kw = dict(kernel_size=K, stride=S, padding=PAD)
OH, OW = (H + 2 - 3) // 6 + 1, (W + 2 - 3) // 6 + 1
g = torch.Generator().manual_seed(0)
base = torch.randn(H, W, generator=g)
gbase = torch.randn(OH, OW, generator=g)
qs = planes(Q, H * W)
"""
case("pool", "max_pool2d with indices over 2^31 + 36k float32 elements (NCHW)", "equal", POOL_BIG + """
def run():
    y, i = HF.max_pool2d(fill((N, C, H, W), base), return_indices=True, **kw)
    return y.view(Q, OH, OW)[qs], i.view(Q, OH, OW)[qs]
def expected():
    ys, ix = zip(*(F.max_pool2d(plane_of(base, q)[None, None], return_indices=True, **kw) for q in qs))
    return torch.cat(ys).flatten(0, 1), torch.cat(ix).flatten(0, 1)
""", mem_gb=9.7)
case("pool", "max_pool2d_backward into 2^31 + 36k float32 elements (NCHW, expanded input)", "equal", POOL_BIG + """
_, ib = F.max_pool2d(base[None, None], return_indices=True, **kw)
def run():
    gi = torch.ops.hotkernels.max_pool2d_backward(fill((N, C, OH, OW), gbase), torch.zeros(1, 1, H, W).expand(N, C, H, W),
                                                  ib.expand(N, C, OH, OW), K, S, PAD, [1, 1], False)
    return gi.view(Q, H, W)[qs]
def expected():
    return torch.cat([torch.ops.aten.max_pool2d_with_indices_backward(plane_of(gbase, q)[None, None], torch.zeros(1, 1, H, W),
                                                                      K, S, PAD, [1, 1], False, ib) for q in qs]).flatten(0, 1)
""", mem_gb=9.7)
case("pool", "avg_pool2d_backward into 2^31 + 36k float32 elements (NCHW, expanded input)", "equal", POOL_BIG + """
def run():
    gi = torch.ops.hotkernels.avg_pool2d_backward(fill((N, C, OH, OW), gbase), torch.zeros(1, 1, H, W).expand(N, C, H, W),
                                                  K, S, PAD, False, True, None)
    return gi.view(Q, H, W)[qs]
def expected():
    out = []
    for q in qs:
        x = torch.zeros(1, 1, H, W, requires_grad=True)
        F.avg_pool2d(x, **kw).backward(plane_of(gbase, q)[None, None])
        out.append(x.grad[0, 0])
    return torch.stack(out)
""", mem_gb=9.2)
case("pool", "avg_pool2d over 2^31 + 14k float32 elements (channels_last images)", "equal", BIG_PRELUDE + """
H, W, C = 24, 24, 19  # channels_last images of 10944 elements: element 2^31 falls inside one
N = BIG // (C * H * W) + 2
kw = dict(kernel_size=3, stride=4, padding=1, count_include_pad=False)
base = torch.randn(C, H, W, generator=torch.Generator().manual_seed(0))
ns = planes(N, C * H * W)
def run():
    y = HF.avg_pool2d(fill((N, C, H, W), base, torch.channels_last), **kw)
    assert y.is_contiguous(memory_format=torch.channels_last)
    return y[ns]
def expected(): return torch.cat([F.avg_pool2d(plane_of(base, n)[None], **kw) for n in ns])
""", mem_gb=9.4)

CONV_BIG = BIG_PRELUDE + """
C, H, W, K = 3, 50, 53, 4  # images of 7950 elements: element 2^31 falls inside one
N = BIG // (C * H * W) + 2
g = torch.Generator().manual_seed(0)
base = torch.randn(C, H, W, generator=g)
w = torch.randn(K, C, 2, 2, generator=g)
b = torch.randn(K, generator=g)
gbase = torch.randn(K, 7, 7, generator=g)
# stride 8: 7 x 7 outputs, and the phase-split copy of the input keeps 4 of 64 phases (1/16 of it)
kw = dict(stride=8, padding=1)
ns = planes(N, C * H * W)
"""
case("conv2d", "forward over 2^31 + 10k float32 input elements", "equal", CONV_BIG + """
def run(): return HF.conv2d(fill((N, C, H, W), base), w, b, **kw)[ns]
def expected(): return torch.cat([F.conv2d(plane_of(base, n)[None], w, b, **kw) for n in ns])
""", mem_gb=10.0, **CONV_TOL)
case("conv2d", "input gradient of 2^31 + 10k float32 elements", "equal", CONV_BIG + """
def run():
    gx = torch.ops.hotkernels.conv2d_backward_input(fill((N, K, 7, 7), gbase), w, [N, C, H, W], [8, 8], [1, 1, 1, 1], [1, 1], 1)
    return gx[ns]
def expected():
    out = []
    for n in ns:
        x = torch.zeros(1, C, H, W, requires_grad=True)
        F.conv2d(x, w, **kw).backward(plane_of(gbase, n)[None])
        out.append(x.grad)
    return torch.cat(out)
""", mem_gb=9.6, **CONV_TOL)

# LSTM: the CPU computes float32/float64 only, and 2^31 gate elements (8 GiB) come with input,
# hx, cx, h and c of a quarter of that each: ~16 GB, above the bound; run on request.
case("lstm", "cell with 2^31 + 8k gate elements (float32, ~16 GB: on request)", "equal", BIG_PRELUDE + """
Hd = 1024
B = BIG // (4 * Hd) + 2  # gate row B - 2 starts at element 2^31
g = torch.Generator().manual_seed(0)
w_ih, w_hh = torch.randn(4 * Hd, 1, generator=g) / 4, torch.randn(4 * Hd, Hd, generator=g) / 32
b_ih, b_hh = torch.randn(4 * Hd, generator=g), torch.randn(4 * Hd, generator=g)
xb, hb, cb = torch.randn(1, generator=g), torch.randn(Hd, generator=g), torch.randn(Hd, generator=g)
rows = [B - 3, B - 2, B - 1]
def run():
    x, hx, cx = fill((B, 1), xb), fill((B, Hd), hb), fill((B, Hd), cb)  # rows differ by a constant, like planes
    h, c = HF.lstm_cell(x, (hx, cx), w_ih, w_hh, b_ih, b_hh)
    return h[rows], c[rows]
def expected():
    hs, cs = zip(*(torch.lstm_cell(plane_of(xb, r)[None], (plane_of(hb, r)[None], plane_of(cb, r)[None]),
                                   w_ih, w_hh, b_ih, b_hh) for r in rows))
    return torch.cat(hs), torch.cat(cs)
""", mem_gb=16.5, rtol=1e-4, atol=1e-5)

case("optim", "multi_tensor_sq_norms (LAMB's and NovoGrad's norm pass) of 2^31 + 2^20 float32 elements", "equal",
     BIG_PRELUDE + """
M = 1 << 20
def run():
    x = torch.ones(BIG + M)
    x[BIG:] = 2.0  # the elements past 2^31 count 4 each: exact in float32 and float64
    return torch.ops.hotkernels.multi_tensor_sq_norms([x])
def expected(): return torch.tensor([float(BIG + 4 * M)])
""", mem_gb=8.9)
# Optimizer steps hold 2 (Lookahead) to 4 (Adam family) tensors of the param's size: 17 to 35 GB
# past 2^31 float32 elements. Lookahead's sync runs on request.
case("optim", "Lookahead sync of 2^31 + 2^20 float32 elements (~17 GB: on request)", "equal", BIG_PRELUDE + """
M = 1 << 20
picks = torch.tensor([BIG - 1, BIG, BIG + M - 1])
def run():
    fast, slow = torch.ones(BIG + M), torch.zeros(BIG + M)
    fast[BIG:] = 3.0
    torch.ops.hotkernels.lookahead_sync_([fast], [slow], [], 0.5)
    return fast[picks], slow[picks]
def expected(): return torch.tensor([0.5, 1.5, 1.5]), torch.tensor([0.5, 1.5, 1.5])
""", mem_gb=17.5)
