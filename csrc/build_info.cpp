// Build information, read from Python through ctypes (python/hotkernels/_library.py). Plain C
// functions rather than a Python extension module: the library links libtorch only, so one build
// loads under any Python version. The kernels themselves are torch ops (csrc/schemas.cpp),
// registered with the dispatcher when this library is loaded.
#include "cpu/isa.h"

#define HK_EXPORT extern "C" __attribute__((visibility("default")))

// The torch version this library was compiled against ("2.14.1+cu130").
HK_EXPORT const char* hotkernels_torch_version() { return HK_TORCH_VERSION; }

// 1 when the CUDA kernels are compiled in, else 0.
HK_EXPORT int hotkernels_with_cuda() {
#ifdef HK_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

// The CUDA compute capabilities compiled for ("9.0", "8.0 9.0"); empty without CUDA.
HK_EXPORT const char* hotkernels_cuda_archs() { return HK_CUDA_ARCHS; }

// The host compiler's version string.
HK_EXPORT const char* hotkernels_compiler() { return __VERSION__; }

// The CPU instruction set the kernels use on this machine: "base", "avx2" or "avx512".
HK_EXPORT const char* hotkernels_cpu_isa() {
  return hotkernels::cpu::isa_name(hotkernels::cpu::active_isa());
}
