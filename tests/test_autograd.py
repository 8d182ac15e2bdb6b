"""The ops' autograd in the contexts torch's own ops work in, for every op family: non-reentrant
activation checkpointing (its saved tensors' unpack hooks recompute the forward inside the
backward), compiled autograd (torch.compile tracing the backward), and a backward with
create_graph. The gradients must be torch's own ops' in float64 (python/hotkernels/ops/_args.py
register_autograd runs the formulas below autograd in a plain backward, and as they are in the
others)."""

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import hotkernels.functional as HF
from hotkernels.ops.gemm import mm


def _conv(F, x, w):
    return F.conv2d(x, w, padding=1)


def _mish(F, x, w):
    return F.mish(x * w.sum())


def _max_pool(F, x, w):
    return F.max_pool2d(x * w.sum(), 3, 2, 1)


def _avg_pool(F, x, w):
    return F.avg_pool2d(x * w.sum(), 2)


def _lstm_cell(F, x, w):
    h = torch.zeros(2, 3, dtype=x.dtype)
    cell = HF.lstm_cell if F is HF else torch.lstm_cell
    return cell(x.flatten(1)[:, :4], (h, h), w, torch.ones(12, 3, dtype=x.dtype))[0]


def _lstm(F, x, w):
    h = torch.zeros(1, 2, 3, dtype=x.dtype)
    args = (x.flatten(1)[:, :8].reshape(2, 2, 4), (h, h), [w, torch.ones(12, 3, dtype=x.dtype)], False, 1, 0.0, False,
            False)
    return HF.lstm(*args)[0] if F is HF else torch.lstm(*args, False)[0]  # torch's: and batch_first


def _linear(F, x, w):
    return F.linear(x.flatten(1), w, w[:, 0])


def _mm(F, x, w):
    return (mm if F is HF else torch.mm)(x.flatten(1), w.flatten(1).t())


# family: (f(functional, x, w), the weight's shape); x is (2, 3, 6, 6)
FAMILIES = {
    "conv2d": (_conv, (4, 3, 3, 3)),
    "mish": (_mish, (3,)),
    "max_pool2d": (_max_pool, (3,)),
    "avg_pool2d": (_avg_pool, (3,)),
    "lstm_cell": (_lstm_cell, (12, 4)),
    "lstm": (_lstm, (12, 4)),
    "mm": (_mm, (5, 108)),
    "linear": (_linear, (5, 108)),
}


def _grads(family, run, functional=HF):
    """run(f, x, w) with f the family's function of (x, w) on `functional`'s ops (ours, or torch's
    torch.nn.functional), on the same float64 inputs every time."""
    f, shape = FAMILIES[family]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=gen).requires_grad_()
    w = torch.randn(shape, dtype=torch.float64, generator=gen).requires_grad_()
    return run(lambda x, w: f(functional, x, w), x, w)


def _eager(f, x, w):
    return torch.autograd.grad(f(x, w).square().sum(), (x, w))


def _torchs(family, run=_eager):
    return _grads(family, run, torch.nn.functional)


@pytest.mark.parametrize("family", FAMILIES)
def test_non_reentrant_checkpoint(family):
    def run(f, x, w):
        return torch.autograd.grad(checkpoint(f, x, w, use_reentrant=False).square().sum(), (x, w))

    for a, b in zip(_grads(family, run), _torchs(family), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_autograd(family):
    from torch._dynamo import compiled_autograd

    torch._dynamo.reset()

    def run(f, x, w):
        loss = f(x, w).square().sum()
        with compiled_autograd._enable(torch.compile(backend="eager", fullgraph=True)):
            loss.backward()
        return x.grad, w.grad

    for a, b in zip(_grads(family, run), _torchs(family), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_create_graph(family):
    """With create_graph the gradient carries a graph of its own (the formulas' ops recorded), and
    the second derivatives are torch's."""
    def run(f, x, w):
        gx, = torch.autograd.grad(f(x, w).square().sum(), x, create_graph=True)
        assert gx.grad_fn is not None
        return torch.autograd.grad(gx.square().sum(), (x, w))

    for a, b in zip(_grads(family, run), _torchs(family, run), strict=True):
        torch.testing.assert_close(a, b)
