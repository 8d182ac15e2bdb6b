from torch import Tensor, nn

from ..ops.mish import mish


class Mish(nn.Module):
    r"""Applies Mish elementwise; drop-in for :class:`torch.nn.Mish`.

    .. math:: \text{Mish}(x) = x \cdot \tanh(\text{Softplus}(x))

    Args:
        inplace: can optionally do the operation in-place. Default: ``False``
    """

    __constants__ = ["inplace"]
    inplace: bool

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return mish(input, inplace=self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""
