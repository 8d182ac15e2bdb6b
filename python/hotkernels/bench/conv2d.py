"""conv2d benchmark cases: hotkernels vs F.conv2d (the baseline: oneDNN on CPU, cuDNN on GPU), float32.

ResNet-18 / MobileNet-like layers, N=8 unless stated (quick mode: N=1 and the larger layers at
half resolution). Each case times forward and forward+backward; backward computes the input,
weight and bias gradients, except for ResNet's conv1, whose input (the image) needs no gradient in
a network, so neither implementation computes it there. GFLOP/s count 2·MACs of the forward
convolution (three times that for forward+backward, two for conv1 without the input gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Target
from ..ops.conv2d import conv2d

# Against torch (on the GPU: cuDNN, with the same TF32 setting); then the CPU on each instruction set:
# no case below 0.9x, and the 3x3 convolutions of at least 64 input channels, dense or dilated, at 75%
# of the FMA peak.
TARGETS = [
    Target(5, "cpu", "forward+backward *", speedup=1.0, over="geomean"),
    Target(5, "cpu", "*", speedup=0.7),
    Target(5, "cuda", "*", speedup=0.8, over="geomean"),
    Target(5, "cuda", "*", speedup=0.5),
    Target(16, "cpu", "forward+backward *", speedup=0.9),
    Target(16, "cpu", "*->* 3x3*", floor_share=0.75),
    Target(16, "cpu", "* dilated 64 3x3 *", floor_share=0.75),
]

# name, N, C_in, H(=W), C_out, kernel, stride, padding, dilation, groups
_LAYERS = [
    ("resnet conv1 3->64 7x7/s2", 8, 3, 224, 64, 7, 2, 3, 1, 1),
    ("64->64 3x3 56", 8, 64, 56, 64, 3, 1, 1, 1, 1),
    ("64->128 3x3/s2 56", 8, 64, 56, 128, 3, 2, 1, 1, 1),
    ("64->128 1x1/s2 56", 8, 64, 56, 128, 1, 2, 0, 1, 1),
    ("256->256 3x3 14", 8, 256, 14, 256, 3, 1, 1, 1, 1),
    ("512->512 3x3 7", 8, 512, 7, 512, 3, 1, 1, 1, 1),
    ("depthwise 128 3x3 56", 8, 128, 56, 128, 3, 1, 1, 1, 128),
    ("dilated 64 3x3 d2 56", 8, 64, 56, 64, 3, 1, 2, 2, 1),
    ("N=1 64->64 3x3 56", 1, 64, 56, 64, 3, 1, 1, 1, 1),
]


def _setup(n, c, h, k, ks, s, p, d, g, device, backward):
    def setup():
        x = torch.randn(n, c, h, h, device=device, requires_grad=backward and c != 3)
        w = (torch.randn(k, c // g, ks, ks, device=device) / (c // g * ks * ks) ** 0.5).requires_grad_(backward)
        b = torch.randn(k, device=device, requires_grad=backward)
        params = [t for t in (x, w, b) if t.requires_grad]
        gy = torch.randn_like(F.conv2d(x.detach(), w.detach(), None, s, p, d, g)) if backward else None

        def step(fn):
            if not backward:
                return lambda: fn(x, w, b, s, p, d, g)

            def run():
                return torch.autograd.grad(fn(x, w, b, s, p, d, g), params, gy)

            return run

        return {"torch F.conv2d": step(F.conv2d), "hotkernels": step(conv2d)}

    return setup


def _flops(n, c, h, k, ks, s, p, d, g) -> int:
    oh = (h + 2 * p - d * (ks - 1) - 1) // s + 1
    return 2 * n * k * oh * oh * (c // g) * ks * ks


def cases(device: str, quick: bool = False) -> list[Case]:
    out = []
    for name, n, c, h, k, ks, s, p, d, g in _LAYERS:
        if quick:
            n, h = 1, (h // 2 if h >= 56 else h)
        fwd = _flops(n, c, h, k, ks, s, p, d, g)
        out.append(Case("conv2d", f"forward {name}", device, _setup(n, c, h, k, ks, s, p, d, g, device, False),
                        baselines=("torch F.conv2d",), flops=fwd))
        passes = 2 if c == 3 else 3  # forward, weight gradient, input gradient (not for conv1)
        out.append(Case("conv2d", f"forward+backward {name}", device,
                        _setup(n, c, h, k, ks, s, p, d, g, device, True), baselines=("torch F.conv2d",),
                        flops=passes * fwd))
    return out
