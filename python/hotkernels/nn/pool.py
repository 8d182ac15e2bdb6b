"""Pooling modules: torch's own classes (same constructor, attributes, repr and state) with forward
routed to the hotkernels functions."""

from torch import Tensor, nn

from ..ops.pool import avg_pool2d, max_pool2d


class MaxPool2d(nn.MaxPool2d):
    r"""2-D max pooling; drop-in for :class:`torch.nn.MaxPool2d` (see
    :func:`hotkernels.functional.max_pool2d`).

    Args:
        kernel_size, stride (default ``kernel_size``), padding, dilation, return_indices, ceil_mode:
            as in :class:`torch.nn.MaxPool2d`.
    """

    @classmethod
    def unsupported(cls, module: nn.MaxPool2d) -> str | None:
        """Why a :class:`torch.nn.MaxPool2d` cannot become this class (:func:`hotkernels.convert`
        keeps it), or ``None``. Every argument runs; the input's dtype shows only at the call, where
        integer inputs, which torch's takes, are refused."""
        return None

    def forward(self, input: Tensor):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(nn.AvgPool2d):
    r"""2-D average pooling; drop-in for :class:`torch.nn.AvgPool2d` (see
    :func:`hotkernels.functional.avg_pool2d`).

    Args:
        kernel_size, stride (default ``kernel_size``), padding, ceil_mode, count_include_pad,
            divisor_override: as in :class:`torch.nn.AvgPool2d`.
    """

    @classmethod
    def unsupported(cls, module: nn.AvgPool2d) -> str | None:
        """Why a :class:`torch.nn.AvgPool2d` cannot become this class (:func:`hotkernels.convert`
        keeps it), or ``None``. Every argument runs; the input's dtype shows only at the call, where
        integer inputs are refused (torch's CPU kernel takes int64)."""
        return None

    def forward(self, input: Tensor) -> Tensor:
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)
