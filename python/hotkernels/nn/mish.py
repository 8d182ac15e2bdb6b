from torch import Tensor, nn

from ..ops.mish import mish


class Mish(nn.Mish):
    r"""Applies Mish elementwise; drop-in for (and a subclass of) :class:`torch.nn.Mish`.

    .. math:: \text{Mish}(x) = x \cdot \tanh(\text{Softplus}(x))

    Args:
        inplace: can optionally do the operation in-place. Default: ``False``
    """

    @classmethod
    def unsupported(cls, module: nn.Mish) -> str | None:
        """Why a :class:`torch.nn.Mish` cannot become this class (:func:`hotkernels.convert` keeps
        it), or ``None``: ``inplace`` runs either way, and the input's dtype shows only at the call."""
        return None

    def forward(self, input: Tensor) -> Tensor:
        return mish(input, inplace=self.inplace)
