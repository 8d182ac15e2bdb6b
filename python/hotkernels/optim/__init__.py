"""Fused optimizers: drop-in replacements for ``torch.optim`` and for the "over9000" family.

Each step is one fused pass over the params of a group (LAMB and Ralamb: a norm pass, then one
update pass), through the ``torch.ops.hotkernels`` optimizer ops.
"""

from .adam import Adam, AdamW
from .radam import RAdam

__all__ = ["Adam", "AdamW", "RAdam"]
