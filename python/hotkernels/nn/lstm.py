from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..ops.lstm import lstm, lstm_cell
from ._support import unsupported_parameters


class LSTMCell(nn.LSTMCell):
    r"""An LSTM cell; drop-in for :class:`torch.nn.LSTMCell` (same arguments, parameters
    ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, initialisation and state_dict), computed
    by :func:`hotkernels.functional.lstm_cell`: two GEMMs and one fused pass per step.

    Args:
        input_size: the number of features in the input ``x``.
        hidden_size: the number of features in the hidden state ``h``.
        bias: if ``False``, the layer has no ``bias_ih`` and ``bias_hh``. Default: ``True``
    """

    @classmethod
    def unsupported(cls, module: nn.LSTMCell) -> str | None:
        """Why a :class:`torch.nn.LSTMCell` cannot become this class (:func:`hotkernels.convert`
        keeps it), or ``None``: every argument runs, weights of any floating dtype on the CPU or CUDA."""
        return unsupported_parameters(module)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        return lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class LSTM(nn.RNNBase):
    r"""A multi-layer LSTM; drop-in for :class:`torch.nn.LSTM` (same arguments, parameter names
    ``weight_ih_l{k}[_reverse]`` ..., initialisation and state_dict), computed by
    :func:`hotkernels.functional.lstm`: per layer and direction, the input projection of all steps
    in one GEMM and the time loop, forward and backward through time, in C++.

    Supports every argument of :class:`torch.nn.LSTM`: ``input_size, hidden_size, num_layers, bias,
    batch_first, dropout, bidirectional, proj_size``. With ``proj_size`` P > 0 each layer and
    direction also has ``weight_hr_l{k}[_reverse]`` ``(P, hidden_size)`` and the hidden state is
    projected, ``h = W_hr(o ⊙ tanh(c))``: ``h_0``, ``h_n`` have P features, ``c_0``, ``c_n``
    ``hidden_size``, the output ``num_directions * P``. Input is a padded tensor or, as for
    :class:`torch.nn.LSTM`, a :class:`~torch.nn.utils.rnn.PackedSequence` (sorted or not; the output
    is then packed alike and ``h_n``, ``c_n`` are taken at each sequence's own last step). A packed
    batch runs padded: the
    same layer op over every sequence's steps and the padding after them, whose results are never
    read. Dropout between layers draws its mask over the padded batch, where torch's draws over the
    packed data: the same distribution, other masks for the same seed.

    It derives from :class:`torch.nn.RNNBase` in mode ``"LSTM"`` (as :class:`torch.nn.LSTM` does)
    rather than from :class:`torch.nn.LSTM`, which ``torch.compile`` refuses to trace.
    """

    # nn.LSTM's shape checks of (input, (h_0, c_0)), with torch's messages, and its reordering of
    # (h, c) into and out of a packed batch's sorted order.
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)
        reason = _unsupported_arguments(self)
        if reason is not None:
            raise ValueError(f"hotkernels.nn.LSTM: {reason}")

    @classmethod
    def unsupported(cls, module: nn.LSTM) -> str | None:
        """Why a :class:`torch.nn.LSTM` cannot become this class (:func:`hotkernels.convert` keeps
        it), or ``None``: its arguments (as this class's constructor checks them), then its weights'
        dtype and device."""
        return _unsupported_arguments(module) or unsupported_parameters(module)

    def forward(
        self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        if input.dim() not in (2, 3):
            raise ValueError(f"hotkernels.nn.LSTM: expected 'input' to be 2-D or 3-D, but got {input.dim()}-D")
        # As torch's LSTM.forward: params swapped in without __setattr__ (torch.func.functional_call,
        # parametrizations) must reach self._flat_weights, or the step would use the old ones.
        self._update_flat_weights()
        batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        directions = 2 if self.bidirectional else 1
        if not batched:
            input = input.unsqueeze(batch_dim)
        batch = input.shape[batch_dim]
        if hx is None:
            hx = self._zero_state(input, batch)
        else:
            if not batched:
                if hx[0].dim() != 2 or hx[1].dim() != 2:
                    raise RuntimeError(
                        f"For unbatched 2-D input, hx and cx should also be 2-D but got "
                        f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                    )
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        self.check_forward_args(input, hx, None)
        if self.batch_first:
            input = input.transpose(0, 1)
        output, h_n, c_n = lstm(
            input, hx, self._flat_weights, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional
        )
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(batch_dim)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def _zero_state(self, like: Tensor, batch: int) -> tuple[Tensor, Tensor]:
        """``(h_0, c_0)`` of zeros: ``h_0`` has ``proj_size`` features if set, ``c_0`` ``hidden_size``."""
        layers = self.num_layers * (2 if self.bidirectional else 1)
        h_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        return like.new_zeros(layers, batch, h_size), like.new_zeros(layers, batch, self.hidden_size)

    def _forward_packed(
        self, input: PackedSequence, hx: tuple[Tensor, Tensor] | None
    ) -> tuple[PackedSequence, tuple[Tensor, Tensor]]:
        """``forward`` of a packed batch, as torch's: the sequences stay in the packed (sorted) order
        throughout, ``hx`` (given in the caller's order) is permuted into it and ``h_n``, ``c_n``
        back out of it; ``batch_first`` plays no part."""
        self._update_flat_weights()
        data, batch_sizes, sorted_indices, unsorted_indices = input
        if hx is None:
            hx = self._zero_state(data, int(batch_sizes[0]))
            self.check_forward_args(data, hx, batch_sizes)
        else:
            self.check_forward_args(data, hx, batch_sizes)
            hx = self.permute_hidden(hx, sorted_indices)
        output, h_n, c_n = _lstm_packed(
            data, batch_sizes, hx, self._flat_weights, self.bias, self.num_layers, self.dropout, self.training,
            self.bidirectional,
        )
        return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), self.permute_hidden(
            (h_n, c_n), unsorted_indices
        )


def _unsupported_arguments(module: nn.RNNBase) -> str | None:
    """The :class:`torch.nn.LSTM` arguments this class cannot run, for its constructor and for
    ``LSTM.unsupported`` alike; ``None`` when it runs them all (it does now: every argument of
    torch's, ``proj_size`` included)."""
    return None


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


def _lstm_packed(
    data: Tensor,
    batch_sizes: Tensor,
    hx: tuple[Tensor, Tensor],
    params: Sequence[Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`hotkernels.functional.lstm` over a packed batch (``data``, ``batch_sizes``: the
    sequences sorted by decreasing length, ``hx`` in that order): ``(output data, h_n, c_n)``.

    The batch is padded once and every layer runs the padded ``lstm_layer`` op over all of it. Each
    sequence's outputs depend only on its own earlier steps, so what the op computes in the padding
    reaches no result that is read: the layers above read it only in their own padding, ``h_n`` and
    ``c_n`` are taken at each sequence's last step, and the output is packed again (so the padding
    also gets no gradient). The reverse direction runs forward over each sequence reversed within
    its length (``_reversal_index``)."""
    padded, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))
    steps, batch = padded.shape[:2]
    device = data.device
    reversal = _reversal_index(lengths, steps).to(device) if bidirectional else None
    # (step, sequence) of each sequence's last step; in the reversed order, that of its first.
    last = (lengths - 1).to(device), torch.arange(batch, device=device)
    h0, c0 = hx
    projected = h0.shape[-1] != c0.shape[-1]  # proj_size, as in hotkernels.functional.lstm
    per_direction = (4 if has_biases else 2) + (1 if projected else 0)
    directions = 2 if bidirectional else 1
    layer_input = padded
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            k = layer * directions + direction
            w = params[k * per_direction : (k + 1) * per_direction]
            b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
            w_hr = w[-1] if projected else None
            x = layer_input if direction == 0 else _reverse_sequences(layer_input, reversal)
            out, cs, _ = torch.ops.hotkernels.lstm_layer(x, h0[k], c0[k], w[0], w[1], b_ih, b_hh, w_hr, False)
            h_n.append(out[last])
            c_n.append(cs[last])
            outputs.append(out if direction == 0 else _reverse_sequences(out, reversal))
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=2)
        if dropout > 0 and train and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, dropout, training=True)
    return pack_padded_sequence(layer_input, lengths).data, torch.stack(h_n), torch.stack(c_n)
