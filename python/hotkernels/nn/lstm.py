from __future__ import annotations

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
    batch runs padded: the same layer op over every sequence's steps and the padding after them,
    whose results are never read. Dropout between layers draws its mask over the padded batch, where torch's draws over the
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

    @classmethod
    def unsupported(cls, module: nn.LSTM) -> str | None:
        """Why a :class:`torch.nn.LSTM` cannot become this class (:func:`hotkernels.convert` keeps
        it), or ``None``: every argument of torch's runs (``proj_size`` included), so only its
        weights' dtype and device can stop it."""
        return unsupported_parameters(module)

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
        # The batch runs padded (hotkernels.functional.lstm with `lengths`) and is packed again, so
        # the padding's results are never read and get no gradient.
        padded, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))
        output, h_n, c_n = lstm(
            padded, hx, self._flat_weights, self.bias, self.num_layers, self.dropout, self.training,
            self.bidirectional, lengths=lengths,
        )
        return PackedSequence(pack_padded_sequence(output, lengths).data, batch_sizes, sorted_indices,
                              unsorted_indices), self.permute_hidden((h_n, c_n), unsorted_indices)
