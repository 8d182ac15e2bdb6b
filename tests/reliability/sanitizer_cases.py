"""One small case per CUDA kernel and path, for compute-sanitizer (.ci/gpu-check).

Under memcheck, racecheck, initcheck and synccheck every launch is instrumented and runs 10-1000x
slower, so each case is the smallest input that still takes its path (the thresholds are the
kernels' own: csrc/cuda/conv2d.cu's tile plan, csrc/cuda/multi_tensor.cuh's kMaxTensors). Values
are not checked here (the CUDA tests do that); each case syncs so an error is reported against it.

    python tests/reliability/sanitizer_cases.py [--device cuda] [--only REGEX] [--list]

``--device cpu`` runs the same cases on the CPU, to time the script's own overhead off a GPU.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from collections.abc import Callable

import torch

import hotkernels
import hotkernels.functional as HF
from hotkernels import optim as HO

CASES: dict[str, Callable[[str], None]] = {}  # name -> case(device)
CUDA_ONLY: set[str] = set()  # cases of dtypes the CPU kernels do not take (skipped with --device cpu)

# (N, C_in, H, W, C_out, kernel, stride, padding, dilation, groups), as tests/test_conv2d.py's grid.
CONV = {
    "odd": (2, 5, 11, 13, 7, 3, 1, 1, 1, 1),  # no extent a tile multiple: every bound guard
    "strided": (2, 8, 13, 12, 8, 3, 2, 2, 2, 1),  # stride 2, dilation 2: tapless input-gradient classes
    "groups": (2, 6, 9, 20, 9, (2, 5), (2, 3), (0, 2), (2, 1), 3),
    "split_k": (2, 256, 7, 7, 256, 3, 1, 1, 1, 1),  # small output, long reduction: K splits
    "tile128": (2, 40, 32, 32, 200, 3, 1, 1, 1, 1),  # the 128 x 128 tile with a partial column tile
}
DEPTHWISE = (2, 40, 13, 12, 40, 3, 2, 1, 1, 40)  # 40 channels: a partial 32-channel block in NHWC


def case(name: str, fn: Callable[..., None], cuda_only: bool = False, **kwargs) -> None:
    """Registers ``fn(device, **kwargs)`` as the case ``name``."""
    CASES[name] = functools.partial(fn, **kwargs)
    if cuda_only:
        CUDA_ONLY.add(name)


def _conv(device: str, geometry: tuple, dtype: torch.dtype, tf32: bool, channels_last: bool) -> None:
    n, c, h, w, k, ks, s, p, d, g = geometry
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = torch.randn(n, c, h, w, device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    wt = torch.randn(k, c // g, kh, kw, device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(k, device=device, dtype=dtype, requires_grad=True)
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32  # read by our conv2d to choose TF32 tensor cores or exact FP32
    try:
        y = HF.conv2d(x, wt, b, stride=s, padding=p, dilation=d, groups=g)
        torch.autograd.grad(y, (x, wt, b), torch.randn_like(y))
    finally:
        torch.backends.cudnn.allow_tf32 = saved


for _name, _geometry in CONV.items():
    for _layout in ("nchw", "nhwc"):
        # exact FP32 (TF32 off), TF32 and bfloat16 tensor cores; float16 on the odd shape alone
        # (the same kernels as bfloat16 but for the operand type).
        _paths = {"exact": (torch.float32, False), "tf32": (torch.float32, True), "bf16": (torch.bfloat16, True)}
        if _name == "odd":
            _paths["f16"] = (torch.float16, True)
            _paths["f64"] = (torch.float64, False)
        for _path, (_dtype, _tf32) in _paths.items():
            case(f"conv2d/{_path}/{_name}/{_layout}", _conv, geometry=_geometry, dtype=_dtype, tf32=_tf32,
                 channels_last=_layout == "nhwc")
    for _dt_name, _dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        case(f"conv2d/depthwise/{_dt_name}/{_layout}", _conv, geometry=DEPTHWISE, dtype=_dt, tf32=True,
             channels_last=_layout == "nhwc")


def _pool(device: str, kind: str, channels_last: bool, dtype: torch.dtype) -> None:
    x = torch.randn(2, 5, 11, 13, device=device, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    if kind == "max":
        y = HF.max_pool2d(x, 3, 2, 1, dilation=2, ceil_mode=True)
    else:
        y = HF.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    torch.autograd.grad(y, x, torch.randn_like(y))


for _kind in ("max", "avg"):
    for _layout in ("nchw", "nhwc"):
        for _dt_name, _dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            case(f"pool/{_kind}/{_dt_name}/{_layout}", _pool, kind=_kind, channels_last=_layout == "nhwc", dtype=_dt)


def _mish(device: str) -> None:
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(1000003, device=device, dtype=dtype, requires_grad=True)  # odd: vector tails
        y = HF.mish(x)
        torch.autograd.grad(y, x, torch.randn_like(y))
        HF.mish(x.detach().clone(), inplace=True)
        HF.mish(torch.randn(64, 33, device=device, dtype=dtype).t())  # strided input


def _lstm_cell(device: str) -> None:
    cell = hotkernels.nn.LSTMCell(12, 20).to(device)
    x = torch.randn(5, 12, device=device, requires_grad=True)
    h, c = cell(x)
    torch.autograd.grad((h.sum(), c.sum()), (x, *cell.parameters()))


def _lstm_layer(device: str, dtype: torch.dtype, proj_size: int = 0) -> None:
    lstm = hotkernels.nn.LSTM(12, 20, num_layers=2, bidirectional=True, proj_size=proj_size).to(device, dtype)
    x = torch.randn(7, 3, 12, device=device, dtype=dtype, requires_grad=True)
    out, (h, c) = lstm(x)
    torch.autograd.grad((out.sum(), h.sum(), c.sum()), (x, *lstm.parameters()))


case("mish/forward-backward-inplace", _mish)
case("lstm/cell", _lstm_cell)
case("lstm/layer", _lstm_layer, dtype=torch.float32)
case("lstm/layer-bf16", _lstm_layer, cuda_only=True, dtype=torch.bfloat16)  # half types: CUDA only
case("lstm/layer-proj", _lstm_layer, dtype=torch.float32, proj_size=7)  # h = W_hr(o ⊙ tanh(c)): 7 of 20


OPTIMIZERS = {
    "Adam": dict(amsgrad=True),
    "AdamW": {},
    "RAdam": {},
    "LAMB": {},
    "Ralamb": {},
    "NovoGrad": dict(amsgrad=True),
    "Ranger": {},
    "RangerLars": {},
}


def _params(device: str, count: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    sizes = [1, 7, 1000, 16384 + 3] * (count // 4) + [5] * (count % 4)  # a chunk boundary, tails
    params = [torch.randn(s, device=device, dtype=dtype, requires_grad=True) for s in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    return params


def _steps(device: str, cls: str, count: int, steps: int, dtype: torch.dtype = torch.float32, **kwargs) -> None:
    optimizer = getattr(HO, cls)(_params(device, count, dtype), lr=1e-3, **kwargs)
    for _ in range(steps):
        optimizer.step()


for _cls, _kw in OPTIMIZERS.items():
    # 6 steps: Lookahead syncs every 5, RAdam rectifies from the 6th.
    case(f"optim/{_cls}", _steps, cls=_cls, count=8, steps=6, **_kw)
    case(f"optim/{_cls}-bf16", _steps, cuda_only=True, cls=_cls, count=8, steps=2, dtype=torch.bfloat16, **_kw)
    # More tensors than one launch carries (csrc/cuda/multi_tensor.cuh: kMaxTensors = 256).
    case(f"optim/{_cls}-multi-launch", _steps, cls=_cls, count=300, steps=2, **_kw)
for _cls in ("Adam", "RAdam"):
    case(f"optim/{_cls}-capturable", _steps, cuda_only=True, cls=_cls, count=300, steps=2, capturable=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--only", default="", help="run the cases whose name matches this regex")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    args = parser.parse_args(argv)
    names = [n for n in CASES if re.search(args.only, n) and not (args.device == "cpu" and n in CUDA_ONLY)]
    if args.list:
        print("\n".join(names))
        return 0
    torch.manual_seed(0)
    start = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        CASES[name](args.device)
        if args.device == "cuda":
            torch.cuda.synchronize()
        print(f"{name}: {time.perf_counter() - t:.2f}s", flush=True)
    print(f"{len(names)} cases in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
