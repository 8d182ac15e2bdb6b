"""Fused optimizers: drop-in replacements for ``torch.optim`` and for the "over9000" family.

Each step is one fused pass over the params of a group (LAMB and Ralamb: a norm pass, then one
update pass; NovoGrad: a gradient-norm pass, then one update pass), through the
``torch.ops.hotkernels`` optimizer ops (csrc/cpu/optim.cpp, csrc/cuda/optim.cu).

DTensor params (FSDP2's ``fully_shard``, tensor parallelism) are taken as torch's fused Adam takes
them: the state is created as DTensors like the params (so ``state_dict`` holds DTensors), and each
rank steps its local shards. The norms over a whole param (LAMB's and Ralamb's trust ratio, LAMB's
global gradient norm, NovoGrad's layer norms) are summed over the shards, one all-reduce per mesh
dim. Grads in other placements are redistributed to their params'; Partial params, plain grads of
DTensor params and state in other placements than its param raise a ``TypeError``.
"""

from .adam import Adam, AdamW
from .lamb import Lamb, Ralamb
from .lookahead import Lookahead, Ranger, RangerLars
from .novograd import NovoGrad
from .radam import RAdam

LAMB = Lamb  # the paper's name; Lamb is timm's and torch_optimizer's spelling

__all__ = ["LAMB", "Adam", "AdamW", "Lamb", "Lookahead", "NovoGrad", "RAdam", "Ralamb", "Ranger", "RangerLars"]
