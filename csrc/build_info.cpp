// The pybind11 module hotkernels._C: build information only. The kernels themselves are torch ops
// (csrc/schemas.cpp), registered with the dispatcher when this library is loaded.
#include <pybind11/pybind11.h>

#include "cpu/isa.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "hotkernels build information";
  m.attr("torch_version") = HK_TORCH_VERSION;
#ifdef HK_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.attr("cuda_archs") = HK_CUDA_ARCHS;
  m.attr("compiler") = __VERSION__;
  m.def("cpu_isa", [] { return hotkernels::cpu::isa_name(hotkernels::cpu::active_isa()); },
        "The CPU instruction set the kernels use on this machine (base, avx2 or avx512)");
}
