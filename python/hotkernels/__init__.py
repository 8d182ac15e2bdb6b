"""hotkernels: hot deep-learning kernels in C++ and CUDA, exposed as torch custom ops.

Drop-in replacements: :mod:`hotkernels.functional` for ``torch.nn.functional``, :mod:`hotkernels.nn`
for ``torch.nn`` modules. Every op lives in the ``torch.ops.hotkernels`` namespace, with fake (meta)
kernels and autograd registered in :mod:`hotkernels.ops`, so it works under ``torch.compile``.
"""

import importlib.metadata
import pathlib
import sys

import torch

from . import _library  # loads the library: registers every op with the dispatcher
from . import ops  # fake kernels and autograd for those ops
from . import functional, nn, optim
from .convert import Conversion, convert


def _version() -> str:
    """The version pyproject.toml declares: read from the source tree's own pyproject.toml when
    hotkernels runs from it (``PYTHONPATH=python``, the in-place build, which has no package metadata,
    or an installed copy's that may be older), else from the installed package's metadata."""
    pyproject = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"
    if sys.version_info >= (3, 11) and pyproject.is_file():  # tomllib is new in Python 3.11
        import tomllib

        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if project.get("name") == "hotkernels":
            return project["version"]
    try:
        return importlib.metadata.version("hotkernels")
    except importlib.metadata.PackageNotFoundError:  # a source tree, not installed, on Python 3.10
        return "unknown"


__version__ = _version()


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
