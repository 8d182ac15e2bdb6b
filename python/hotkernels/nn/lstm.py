from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..ops.lstm import lstm, lstm_cell


class LSTMCell(nn.LSTMCell):
    r"""An LSTM cell; drop-in for :class:`torch.nn.LSTMCell` (same arguments, parameters
    ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, initialisation and state_dict), computed
    by :func:`hotkernels.functional.lstm_cell`: two GEMMs and one fused pass per step.

    Args:
        input_size: the number of features in the input ``x``.
        hidden_size: the number of features in the hidden state ``h``.
        bias: if ``False``, the layer has no ``bias_ih`` and ``bias_hh``. Default: ``True``
    """

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        return lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class LSTM(nn.RNNBase):
    r"""A multi-layer LSTM; drop-in for :class:`torch.nn.LSTM` (same arguments, parameter names
    ``weight_ih_l{k}[_reverse]`` ..., initialisation and state_dict), computed by
    :func:`hotkernels.functional.lstm`: per layer and direction, the input projection of all steps
    in one GEMM and the time loop, forward and backward through time, in C++.

    Supports ``input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional``;
    ``proj_size`` must be 0 and packed sequences are refused (pad them instead).

    It derives from :class:`torch.nn.RNNBase` in mode ``"LSTM"`` (as :class:`torch.nn.LSTM` does)
    rather than from :class:`torch.nn.LSTM`, which ``torch.compile`` refuses to trace.
    """

    # nn.LSTM's shape checks of (input, (h_0, c_0)), with torch's messages.
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)
        if self.proj_size != 0:
            raise ValueError(f"hotkernels.nn.LSTM: proj_size must be 0 (projections are not implemented), got {self.proj_size}")

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if isinstance(input, PackedSequence):
            raise NotImplementedError(
                "hotkernels.nn.LSTM: packed sequences are not supported; pass a padded tensor instead"
            )
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
            zeros = input.new_zeros(self.num_layers * directions, batch, self.hidden_size)
            hx = (zeros, zeros)
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
