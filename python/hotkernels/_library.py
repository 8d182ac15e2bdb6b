"""Loads ``libhotkernels.so``: the ops (registered with torch's dispatcher as it loads) and its build info.

The library links libtorch and never Python (``torch.ops.load_library``, torch's way for custom ops
without Python bindings), so one build serves every Python version. Its build information comes
from a few plain C functions, read here through :mod:`ctypes`.
"""

import ctypes
import pathlib

import torch

from ._torch_version import TORCH_VERSION as _BUILT_AGAINST

PATH = pathlib.Path(__file__).with_name("libhotkernels.so")

if _BUILT_AGAINST != torch.__version__:
    raise ImportError(
        f"hotkernels was built against torch {_BUILT_AGAINST}, but torch {torch.__version__} is installed. "
        "A C++ extension only loads under the torch it was compiled with: rebuild hotkernels under this torch "
        "(pip install --no-build-isolation --force-reinstall .)."
    )

torch.ops.load_library(str(PATH))
_lib = ctypes.CDLL(str(PATH))  # the same handle: dlopen of a loaded library returns it


def _text(function: str) -> str:
    fn = getattr(_lib, function)
    fn.restype = ctypes.c_char_p
    return fn().decode()


torch_version: str = _text("hotkernels_torch_version")
"""The torch version the library was compiled against."""
with_cuda: bool = bool(_lib.hotkernels_with_cuda())
"""Whether the CUDA kernels are compiled in."""
cuda_archs: str = _text("hotkernels_cuda_archs")
"""The CUDA compute capabilities compiled for, space-separated; empty without CUDA."""
compiler: str = _text("hotkernels_compiler")
"""The host compiler's version."""


def cpu_isa() -> str:
    """The CPU instruction set the kernels use on this machine: ``base``, ``avx2`` or ``avx512``."""
    return _text("hotkernels_cpu_isa")
