from torch import Tensor, nn
from torch.nn import functional as F

from ..ops.conv2d import conv2d
from ._support import unsupported_parameters


class Conv2d(nn.Conv2d):
    r"""2-D convolution over ``(N, C_in, H, W)`` or ``(C_in, H, W)`` input; drop-in for
    :class:`torch.nn.Conv2d`, computed by :func:`hotkernels.functional.conv2d`.

    Same arguments (``in_channels``, ``out_channels``, ``kernel_size``, ``stride``, ``padding``
    (int, pair, ``'valid'``, ``'same'``), ``dilation``, ``groups``, ``bias``, ``padding_mode``
    (``'zeros'``, ``'reflect'``, ``'replicate'``, ``'circular'``), ``device``, ``dtype``), same
    initialisation, parameter names and ``state_dict``: it is a subclass that only replaces the
    convolution itself. Non-zero padding modes pad with :func:`torch.nn.functional.pad` first, as
    torch does.
    """

    @classmethod
    def unsupported(cls, module: nn.Conv2d) -> str | None:
        """Why a :class:`torch.nn.Conv2d` cannot become this class (:func:`hotkernels.convert`
        keeps it), or ``None``: every argument runs; the weight's dtype (complex is refused) and
        device decide."""
        return unsupported_parameters(module)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
