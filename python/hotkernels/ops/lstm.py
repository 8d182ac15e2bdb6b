r"""LSTM: a fused cell and a whole layer with its time loop in C++ (gate order i, f, g, o, as torch).

.. math::
    \begin{aligned}
    i &= \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) &
    f &= \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
    g &= \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) &
    o &= \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
    c' &= f \odot c + i \odot g & h' &= o \odot \tanh(c')
    \end{aligned}

With a projection (torch's ``proj_size`` P > 0, the layer op's ``w_hr`` ``[P, H]``) the state is
projected, :math:`h' = W_{hr}(o \odot \tanh(c'))`, so ``h`` has P features (and ``W_{hh}`` is
``[4H, P]``) while ``c`` keeps H.

Ops (schemas in csrc/schemas.cpp):

* ``hotkernels::lstm_cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh) -> (hy, cy, gates)``: the gate
  pre-activations by two GEMMs, then one fused pass for the biases, the gates, ``c'`` and ``h'``.
  ``gates`` holds the activations ``[B, 4H]``; backward saves them, ``cx`` and ``cy``, nothing else.
* ``hotkernels::lstm_layer(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, batch_sizes=None)
  -> (output, cs, gates)``: one direction of one layer over ``input`` ``[T, B, I]``: the input
  projection of every step in one GEMM, then per step one GEMM for ``h·W_hhᵀ`` and the fused pass
  (and, with ``w_hr``, one GEMM for the projection). ``output`` and ``cs`` hold ``h`` (``[T, B, P]``
  with ``w_hr``) and ``c`` of every step, ``gates`` ``[T, B, 4H]`` the activations. A packed batch's
  ``batch_sizes`` (non-increasing, forward direction only) mark the rows past ``batch_sizes[t]`` of
  step ``t`` as padding: the CPU skips them (their outputs are 0, their output gradients ignored),
  CUDA computes them; either way the sequences' results are the same when the caller reads none of
  the padding's outputs and gives them no gradient.
* ``lstm_cell_backward`` / ``lstm_layer_backward``: one fused pass for the gate gradients and ``dc``
  (per step, backward through time, for the layer), then GEMMs for the gradients of the input, the
  state and the weights (for the layer: one GEMM each over all steps) and a sum for the biases.
  The layer's takes ``w_hr`` too; its mask has a 6th entry and it a 7th output, for ``w_hr``
  (``o ⊙ tanh(c)`` recomputed from the saved gates and ``cs``).

Double backward (``create_graph=True``) takes a separate, explicit path, ``_double_backward``: the
gradient is then computed from the formulas above written in differentiable torch ops, so autograd
can differentiate it again. A plain forward and backward never take it (torch.compile's neither).
The backward ops themselves have no derivative and raise if a gradient would flow through them.
Like every hotkernels op, these differentiate in reverse mode only: forward-mode AD raises (as
``torch.func.jvp`` and ``jacfwd``), and torch refuses the ``torch.func`` transforms on the ops'
autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._args import no_forward_ad, non_differentiable, register_autograd


_ops = torch.ops.hotkernels


def _empty_unless(needed: bool, like: Tensor, shape: Sequence[int]) -> Tensor:
    return like.new_empty(shape if needed else (0,))


@torch.library.register_fake("hotkernels::lstm_cell")
def _lstm_cell_fake(input, hx, cx, w_ih, w_hh, b_ih, b_hh):
    batch, hidden = hx.shape
    return input.new_empty(batch, hidden), input.new_empty(batch, hidden), input.new_empty(batch, 4 * hidden)


@torch.library.register_fake("hotkernels::lstm_layer")
def _lstm_layer_fake(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, batch_sizes=None):
    steps, batch = input.shape[:2]
    hidden = cx.shape[1]  # hx has proj_size features with w_hr, hidden_size without
    return (input.new_empty(steps, batch, hx.shape[1]), input.new_empty(steps, batch, hidden),
            input.new_empty(steps, batch, 4 * hidden))


def _backward_fake(input, hx, cx, w_ih, w_hh, mask):
    return (
        _empty_unless(mask[0], input, input.shape),
        _empty_unless(mask[1], input, hx.shape),
        input.new_empty(cx.shape),
        _empty_unless(mask[2], input, w_ih.shape),
        _empty_unless(mask[3], input, w_hh.shape),
        _empty_unless(mask[4], input, (w_hh.shape[0],)),
    )


@torch.library.register_fake("hotkernels::lstm_cell_backward")
def _lstm_cell_backward_fake(grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates, output_mask):
    return _backward_fake(input, hx, cx, w_ih, w_hh, output_mask)


@torch.library.register_fake("hotkernels::lstm_layer_backward")
def _lstm_layer_backward_fake(grad_output, grad_cs, input, hx, cx, w_ih, w_hh, output, cs, gates, w_hr, reverse,
                              output_mask, batch_sizes=None):
    grad_w_hr = _empty_unless(w_hr is not None and output_mask[5], input, w_hr.shape if w_hr is not None else (0,))
    return (*_backward_fake(input, hx, cx, w_ih, w_hh, output_mask), grad_w_hr)


def _mask(ctx) -> list[bool]:
    """lstm_cell_backward's output_mask; the layer's adds w_hr's (argument 7) to it."""
    n = ctx.needs_input_grad
    return [n[0], n[1], n[3], n[4], n[5] or n[6]]


def _grads(ctx, grads: tuple[Tensor, ...]) -> tuple[Tensor | None, ...]:
    """The op's gradients for (input, hx, cx, w_ih, w_hh, b_ih, b_hh), None where not needed."""
    n = ctx.needs_input_grad
    grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias = grads[:6]
    # b_ih and b_hh get the same gradient; give each its own tensor, as autograd may keep it as .grad.
    grad_b_ih = grad_bias if n[5] else None
    grad_b_hh = (grad_bias.clone() if n[5] else grad_bias) if n[6] else None
    return tuple(g if need else None for g, need in zip((grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh), n)) + (
        grad_b_ih,
        grad_b_hh,
    )


def _cell_reference(input: Tensor, hx: Tensor, cx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                    b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(h', c')`` by the formulas above in differentiable torch ops: for ``_double_backward`` only."""
    pre = input @ w_ih.T + hx @ w_hh.T
    for b in (b_ih, b_hh):
        if b is not None:
            pre = pre + b
    i, f, g, o = pre.chunk(4, dim=1)
    cy = f.sigmoid() * cx + i.sigmoid() * g.tanh()
    return o.sigmoid() * cy.tanh(), cy


def _layer_reference(input: Tensor, hx: Tensor, cx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                     b_hh: Tensor | None, w_hr: Tensor | None, reverse: bool) -> tuple[Tensor, Tensor]:
    """``(output, cs)`` of ``lstm_layer`` by ``_cell_reference`` step by step (each ``h`` projected
    by ``w_hr`` if given): for ``_double_backward``."""
    hs, cs = [], []
    h, c = hx, cx
    for t in reversed(range(input.shape[0])) if reverse else range(input.shape[0]):
        h, c = _cell_reference(input[t], h, c, w_ih, w_hh, b_ih, b_hh)
        if w_hr is not None:
            h = h @ w_hr.T
        hs.append(h)
        cs.append(c)
    if reverse:
        hs.reverse()
        cs.reverse()
    return torch.stack(hs), torch.stack(cs)


def _double_backward(ctx, reference: Callable[..., tuple[Tensor, Tensor]], inputs: tuple[Tensor | bool | None, ...],
                     grads: tuple[Tensor, Tensor]) -> tuple[Tensor | None, ...]:
    """The gradients of ``inputs`` (the op's arguments) as a differentiable function of them and of
    ``grads``, for backward with ``create_graph=True``. The backward ops are not differentiable (the
    saved gate activations hide their dependence on the weights and biases), so this recomputes the
    step(s) with ``reference`` in torch ops and differentiates that."""
    need = ctx.needs_input_grad
    wanted = [t for t, n in zip(inputs, need) if n]
    with torch.enable_grad():
        found = iter(torch.autograd.grad(reference(*inputs), wanted, grads, create_graph=True, allow_unused=True))
    return tuple(next(found) if n else None for n in need)


def _or_zeros(grad: Tensor | None, output: Tensor) -> Tensor:
    """An output's gradient for the backward ops: zeros where the output got none."""
    return torch.zeros_like(output) if grad is None else grad


def _cell_setup(ctx, inputs, output) -> None:
    _, cy, gates = output
    non_differentiable(ctx, gates)
    ctx.save_for_backward(*inputs, cy, gates)  # input, hx, cx, w_ih, w_hh, b_ih, b_hh, cy, gates


def _cell_grad(ctx, grad_hy: Tensor | None, grad_cy: Tensor | None, _grad_gates: Tensor | None):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh, cy, gates = ctx.saved_tensors
    grad_hy, grad_cy = _or_zeros(grad_hy, cy), _or_zeros(grad_cy, cy)
    if torch.is_grad_enabled():  # backward(create_graph=True)
        return _double_backward(ctx, _cell_reference, (input, hx, cx, w_ih, w_hh, b_ih, b_hh), (grad_hy, grad_cy))
    grads = _ops.lstm_cell_backward(grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates, _mask(ctx))
    return _grads(ctx, grads)


def _layer_setup(ctx, inputs, output) -> None:
    ctx.reverse, ctx.batch_sizes = inputs[8], inputs[9]
    out, cs, gates = output
    non_differentiable(ctx, gates)
    ctx.save_for_backward(*inputs[:8], out, cs, gates)  # input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, ...


def _layer_grad(ctx, grad_output: Tensor | None, grad_cs: Tensor | None, _grad_gates: Tensor | None):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, out, cs, gates = ctx.saved_tensors
    grad_output, grad_cs = _or_zeros(grad_output, out), _or_zeros(grad_cs, cs)
    if torch.is_grad_enabled():  # backward(create_graph=True)
        args = (input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, ctx.reverse)
        return _double_backward(ctx, _layer_reference, args, (grad_output, grad_cs))
    need_w_hr = w_hr is not None and ctx.needs_input_grad[7]
    grads = _ops.lstm_layer_backward(grad_output, grad_cs, input, hx, cx, w_ih, w_hh, out, cs, gates, w_hr,
                                     ctx.reverse, [*_mask(ctx), need_w_hr], ctx.batch_sizes)
    return _grads(ctx, grads) + (grads[6] if need_w_hr else None, None, None)


register_autograd("hotkernels::lstm_cell", _cell_grad, setup_context=_cell_setup)
register_autograd("hotkernels::lstm_layer", _layer_grad, setup_context=_layer_setup)


def lstm_cell(
    input: Tensor,
    hx: tuple[Tensor, Tensor] | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""One LSTM step, like :class:`torch.nn.LSTMCell` (formulas in this module's docstring).

    Args:
        input: ``(batch, input_size)`` or ``(input_size)`` (unbatched).
        hx: ``(h, c)``, each ``(batch, hidden_size)`` (``(hidden_size)`` unbatched); ``None`` for zeros.
        w_ih: ``(4*hidden_size, input_size)``, the gates' input weights in the order i, f, g, o.
        w_hh: ``(4*hidden_size, hidden_size)``.
        b_ih, b_hh: ``(4*hidden_size)`` or ``None``.

    Returns:
        ``(h', c')``, shaped like ``h`` and ``c``. float32 and float64; float16 and bfloat16 are
        computed in float32 and rounded (saved activations too), on the CPU and CUDA. Under
        :class:`torch.autocast`, as :class:`torch.nn.LSTMCell`: on CUDA in the autocast dtype, on
        the CPU in ``promote(autocast dtype, c.dtype)`` (float32 for a float32 state).
    """
    no_forward_ad("hotkernels.lstm_cell", input, *(hx or ()), w_ih, w_hh, b_ih, b_hh)
    if input.dim() not in (1, 2):
        raise ValueError(
            f"hotkernels.lstm_cell: expected 'input' to be 1-D (input_size) or 2-D (batch, input_size), "
            f"but got {input.dim()}-D"
        )
    unbatched = input.dim() == 1
    if unbatched:
        input = input.unsqueeze(0)
    if hx is None:
        zeros = input.new_zeros(input.shape[0], w_hh.shape[-1])
        h, c = zeros, zeros
    else:
        h, c = hx
        if unbatched:
            h, c = h.unsqueeze(0), c.unsqueeze(0)
    hy, cy, _ = _ops.lstm_cell(input, h, c, w_ih, w_hh, b_ih, b_hh)
    return (hy.squeeze(0), cy.squeeze(0)) if unbatched else (hy, cy)


def _reversal_index(lengths: Tensor, steps: int) -> Tensor:
    """The rows of a padded ``[steps, batch, *]`` batch flattened to ``[steps * batch, *]`` that
    reverse each sequence within its own length (``lengths``, a CPU tensor), padding steps staying
    where they are. The reverse direction runs as the forward one over the batch so gathered, and
    so starts at each sequence's own last step, not in the padding; the index is its own inverse, so
    the same gather puts the outputs back in time order."""
    batch = lengths.numel()
    t = torch.arange(steps).unsqueeze(1)
    source_step = torch.where(t < lengths, lengths - 1 - t, t)
    return (source_step * batch + torch.arange(batch)).flatten()


def _reverse_sequences(x: Tensor, index: Tensor) -> Tensor:
    """``x`` ``[steps, batch, features]`` with each sequence reversed in time by ``_reversal_index``."""
    return x.reshape(-1, x.shape[-1]).index_select(0, index).view(x.shape)


def lstm(
    input: Tensor,
    hx: tuple[Tensor, Tensor],
    params: Sequence[Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""A multi-layer LSTM over a time-major sequence, like ``torch._VF.lstm``.

    Args:
        input: ``(seq_len, batch, input_size)``.
        hx: ``(h_0, c_0)``, ``h_0`` ``(num_layers * num_directions, batch, proj_size or
            hidden_size)``, ``c_0`` ``(num_layers * num_directions, batch, hidden_size)``. As for
            torch, a ``h_0`` narrower than ``c_0`` means projections (``proj_size``).
        params: per layer and direction (the reverse one second), ``w_ih, w_hh[, b_ih, b_hh][,
            w_hr]``, as :attr:`torch.nn.LSTM._flat_weights`; ``w_hr`` ``(proj_size, hidden_size)``
            with projections, when each step's ``h = W_hr(o ⊙ tanh(c))``.
        has_biases: whether ``params`` hold biases.
        num_layers, dropout, train, bidirectional: as :class:`torch.nn.LSTM`; dropout applies to
            every layer's output but the last, when ``train``.
        lengths: ``(batch)`` on the CPU, or ``None``: each sequence's own length, ``input`` being
            padded after it (a packed batch, padded). Each sequence's outputs depend only on its
            own earlier steps, so what is computed in the padding reaches no result that is read
            (if the caller reads none of the padding's outputs): the reverse direction runs over
            each sequence reversed within its length, and ``h_n``, ``c_n`` are taken at each
            sequence's last step. Sorted lengths (longest first, as a packed batch's) let the
            layers skip the padding (their ``batch_sizes``).

    Returns:
        ``(output, h_n, c_n)``: ``output`` ``(seq_len, batch, num_directions * (proj_size or
        hidden_size))``. Under :class:`torch.autocast` all three are in the autocast dtype, as
        torch's LSTM on CUDA and (oneDNN) on the CPU.
    """
    no_forward_ad("hotkernels.lstm", input, *hx, *params)
    h0, c0 = hx
    projected = h0.shape[-1] != c0.shape[-1]
    per_direction = (4 if has_biases else 2) + (1 if projected else 0)
    directions = 2 if bidirectional else 1
    steps, batch = input.shape[:2]
    batch_sizes = None
    if lengths is not None:
        reversal = _reversal_index(lengths, steps).to(input.device) if bidirectional else None
        last = (lengths - 1).to(input.device), torch.arange(batch, device=input.device)
        if bool((lengths[1:] <= lengths[:-1]).all()):  # sorted, as a packed batch: step t's sequences lead
            batch_sizes = (lengths.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1).tolist()
    layer_input = input
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            k = layer * directions + direction
            w = params[k * per_direction : (k + 1) * per_direction]
            b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
            w_hr = w[-1] if projected else None
            weights = (h0[k], c0[k], w[0], w[1], b_ih, b_hh, w_hr)
            if lengths is None:
                reverse = direction == 1
                out, cs, _ = _ops.lstm_layer(layer_input, *weights, reverse)
                h_n.append(out[0 if reverse else -1])
                c_n.append(cs[0 if reverse else -1])
            else:
                x = layer_input if direction == 0 else _reverse_sequences(layer_input, reversal)
                out, cs, _ = _ops.lstm_layer(x, *weights, False, batch_sizes)
                h_n.append(out[last])
                c_n.append(cs[last])
                out = out if direction == 0 else _reverse_sequences(out, reversal)
            outputs.append(out)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
        if dropout > 0 and train and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, dropout, training=True)
    return layer_input, torch.stack(h_n), torch.stack(c_n)
