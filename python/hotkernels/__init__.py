"""hotkernels: hot deep-learning kernels in C++ and CUDA, exposed as torch custom ops.

Drop-in replacements: :mod:`hotkernels.functional` for ``torch.nn.functional``, :mod:`hotkernels.nn`
for ``torch.nn`` modules. Every op lives in the ``torch.ops.hotkernels`` namespace, with fake (meta)
kernels and autograd registered in :mod:`hotkernels.ops`, so it works under ``torch.compile``.
"""

import torch

from ._torch_version import TORCH_VERSION as _BUILT_AGAINST

if _BUILT_AGAINST != torch.__version__:
    raise ImportError(
        f"hotkernels was built against torch {_BUILT_AGAINST}, but torch {torch.__version__} is installed. "
        "A C++ extension only loads under the torch it was compiled with: rebuild hotkernels under this torch "
        "(pip install --no-build-isolation --force-reinstall .)."
    )

from . import _C  # noqa: E402  (loads the library: registers every op with the dispatcher)
from . import ops  # noqa: E402  (fake kernels and autograd for those ops)
from . import functional, nn, optim  # noqa: E402
from .convert import Conversion, convert  # noqa: E402

__version__ = "0.1.0"


def build_info() -> dict:
    """How this copy of hotkernels was built, and which CPU code path it runs here."""
    return {
        "hotkernels": __version__,
        "torch (built against)": _C.torch_version,
        "torch (running)": torch.__version__,
        "cuda kernels": _C.with_cuda,
        "cuda archs": _C.cuda_archs or "-",
        "cuda device": torch.cuda.get_device_name() if torch.cuda.is_available() else "-",
        "cpu isa": _C.cpu_isa(),
        "cpu threads": torch.get_num_threads(),
        "compiler": _C.compiler,
    }


__all__ = ["Conversion", "build_info", "convert", "functional", "nn", "ops", "optim"]
