from torch import Tensor, nn
from torch.nn import functional as F

from ..ops.linear import linear
from ._support import unsupported_parameters


class Linear(nn.Linear):
    r"""Applies an affine linear transformation to the last dimension of the input; drop-in for
    :class:`torch.nn.Linear`, computed on the CPU by :func:`hotkernels.functional.linear` (the
    GEMM core).

    .. math:: y = x A^T + b

    Same arguments (``in_features``, ``out_features``, ``bias``, ``device``, ``dtype``), same
    initialisation, parameter names and ``state_dict``: it is a subclass that only replaces the
    product. On another device (a converted model moved to CUDA) it runs torch's
    :func:`torch.nn.functional.linear`, the vendor's GEMM: hotkernels has no GEMM of its own there.
    """

    @classmethod
    def unsupported(cls, module: nn.Linear) -> str | None:
        """Why a :class:`torch.nn.Linear` cannot become this class (:func:`hotkernels.convert` keeps
        it), or ``None``: the weight's dtype and device decide; off the CPU there is nothing to
        swap, since this class would run torch's linear there."""
        reason = unsupported_parameters(module)
        device = module.weight.device.type
        if reason is None and device not in ("cpu", "meta"):
            reason = f"'weight' is on {device}, where hotkernels' Linear is torch's (the GEMM core is CPU-only)"
        return reason

    def forward(self, input: Tensor) -> Tensor:
        if input.is_cpu or input.is_meta:
            return linear(input, self.weight, self.bias)
        return F.linear(input, self.weight, self.bias)
