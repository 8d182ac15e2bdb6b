"""Whole-model benchmark cases (``python -m hotkernels bench --models``): one training step of a model
as torch's modules and torch.optim.Adam against the same model after :func:`hotkernels.convert` with
:class:`hotkernels.optim.Adam`. Both start from the same weights and see the same batch every step;
each call is one step (zero_grad, forward, loss, backward, optimizer step) and returns the loss, so
the runner's first comparison is of the two first-step losses, and it reports the loss each model
reached after all its steps (:attr:`hotkernels.bench.Case.trains`).

- ResNet-18-style CNN: torchvision's ResNet-18 layout (7x7/s2 stem, 3x3 max pool, four stages of two
  basic blocks, 64 to 512 channels, average pool, linear head) with Mish for ReLU, batch norm (torch's
  in both models: hotkernels has no batch norm), 10 classes, N=8 images of 112x112, cross-entropy.
- Language model: Embedding(1000, 256) -> LSTM(256, 512, 2 layers, batch_first) -> Linear(512, 1000),
  cross-entropy on next tokens, B=32 sequences of T=50.

A case's rate is over the flops of a step's forward and backward as torch counts them
(:class:`torch.utils.flop_counter.FlopCounterMode`: the GEMMs and convolutions, the LSTM's included;
everything else counts none), so its share of the compute ceiling is what the whole step,
memory-bound parts and all, reaches.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import Case, Target
from .. import convert
from .. import optim as HO

# The CPU kernels in a whole training step; the language model's LSTM and head on our GEMM core.
TARGETS = [
    Target(16, "cpu", "ResNet-18-style *", speedup=1.1),
    Target(15, "cpu", "language model step *", speedup=1.15),
]

BASELINE = "torch modules + torch.optim.Adam"


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with batch norm, the first strided, and a 1x1
    strided projection on the shortcut where the shape changes."""

    def __init__(self, inp: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.act = nn.Mish()
        self.shortcut = nn.Sequential()
        if stride != 1 or inp != out:
            self.shortcut = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.shortcut(x))


def resnet18_mish(classes: int, pooled: int) -> nn.Module:
    """ResNet-18 with Mish; ``pooled`` is the side of the last stage's feature map (4 at 112x112)."""
    widths, layers, inp = (64, 128, 256, 512), [], 64
    for i, width in enumerate(widths):
        layers += [BasicBlock(inp, width, 1 if i == 0 else 2), BasicBlock(width, width, 1)]
        inp = width
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.Mish(),
                         nn.MaxPool2d(3, 2, 1), *layers, nn.AvgPool2d(pooled), nn.Flatten(),
                         nn.Linear(widths[-1], classes))


class LanguageModel(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.embed(tokens))
        return self.head(y)


def _loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss: cross-entropy of the model's logits (any leading dimensions) on the targets."""
    return nn.functional.cross_entropy(model(x).flatten(0, -2), target.flatten())


def _step_flops(build: Callable[[], nn.Module], batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> int:
    """The flops torch counts in one forward and backward of ``build()``'s model on ``batch()``, run on
    the meta device (shapes only: nothing allocated or computed)."""
    with torch.device("meta"):
        model, (x, target) = build(), batch()
    with FlopCounterMode(display=False) as counter:
        _loss(model, x, target).backward()
    return counter.get_total_flops()


def _training_setup(build: Callable[[], nn.Module], batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                    device: str):
    """The case's two implementations: ``build()``'s model with torch's modules and Adam, and a
    second ``build()`` (same seed, same weights) converted to hotkernels with hotkernels' Adam."""

    def setup():
        def model() -> nn.Module:
            torch.manual_seed(0)
            return build().to(device)

        ref, ours = model(), model()
        convert(ours)
        torch.manual_seed(1)
        x, target = (t.to(device) for t in batch())

        def run(m: nn.Module, opt: torch.optim.Optimizer):
            def step() -> torch.Tensor:
                opt.zero_grad()
                loss = _loss(m, x, target)
                loss.backward()
                opt.step()
                return loss.detach()

            return step

        return {BASELINE: run(ref, torch.optim.Adam(ref.parameters(), lr=1e-3)),
                "hotkernels": run(ours, HO.Adam(ours.parameters(), lr=1e-3))}

    return setup


def cases(device: str, quick: bool = False) -> list[Case]:
    n, side, classes = (2, 32, 10) if quick else (8, 112, 10)
    pooled = -(-side // 32)  # stem /4, three strided stages /8 (each rounding up)
    T, B, vocab, E, H, L = (10, 8, 200, 64, 128, 2) if quick else (50, 32, 1000, 256, 512, 2)
    models = [
        (f"ResNet-18-style Mish CNN training step float32 N{n} {side}x{side} Adam",
         lambda: resnet18_mish(classes, pooled),
         lambda: (torch.randn(n, 3, side, side), torch.randint(classes, (n,)))),
        (f"language model step float32 T{T} B{B} vocab {vocab} E{E} H{H} L{L} Adam",
         lambda: LanguageModel(vocab, E, H, L),
         lambda: (lambda t: (t[:, :-1], t[:, 1:]))(torch.randint(vocab, (B, T + 1)))),
    ]
    return [Case("models", name, device, _training_setup(build, batch, device), baselines=(BASELINE,), trains=True,
                 flops=_step_flops(build, batch))
            for name, build, batch in models]
