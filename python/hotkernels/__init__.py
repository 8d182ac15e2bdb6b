"""hotkernels: hot deep-learning kernels in C++ and CUDA, exposed as torch custom ops.

Drop-in replacements: :mod:`hotkernels.functional` for ``torch.nn.functional``, :mod:`hotkernels.nn`
for ``torch.nn`` modules. Every op lives in the ``torch.ops.hotkernels`` namespace, with fake (meta)
kernels and autograd registered in :mod:`hotkernels.ops`, so it works under ``torch.compile``.
"""

import torch

from . import _library  # loads the library: registers every op with the dispatcher
from . import ops  # fake kernels and autograd for those ops
from . import functional, nn, optim
from .convert import Conversion, convert

__version__ = "0.1.0"


def build_info() -> dict:
    """How this copy of hotkernels was built, and which CPU code path it runs here."""
    return {
        "hotkernels": __version__,
        "torch (built against)": _library.torch_version,
        "torch (running)": torch.__version__,
        "cuda kernels": _library.with_cuda,
        "cuda archs": _library.cuda_archs or "-",
        "cuda device": torch.cuda.get_device_name() if torch.cuda.is_available() else "-",
        "cpu isa": _library.cpu_isa(),
        "cpu threads": torch.get_num_threads(),
        "compiler": _library.compiler,
    }


__all__ = ["Conversion", "build_info", "convert", "functional", "nn", "ops", "optim"]
