"""Fused optimizers: drop-in replacements for ``torch.optim`` and for the "over9000" family.

Each step is one fused pass over the params of a group (LAMB and Ralamb: a norm pass, then one
update pass; NovoGrad: a gradient-norm pass, then one update pass), through the
``torch.ops.hotkernels`` optimizer ops (csrc/cpu/optim.cpp, csrc/cuda/optim.cu).
"""

from .adam import Adam, AdamW
from .lamb import Lamb, Ralamb
from .lookahead import Lookahead, Ranger, RangerLars
from .novograd import NovoGrad
from .radam import RAdam

LAMB = Lamb  # the paper's name; Lamb is timm's and torch_optimizer's spelling

__all__ = ["LAMB", "Adam", "AdamW", "Lamb", "Lookahead", "NovoGrad", "RAdam", "Ralamb", "Ranger", "RangerLars"]
