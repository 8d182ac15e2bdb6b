// Shared by the CPU kernels (on GCC vectors or scalars) and the CUDA kernels (on scalars): the
// formulas in csrc/math/ are written once, as templates over the value type V, and take the
// transcendental functions they need as parameters (simd::Exp on the CPU, a libdevice call on CUDA).
#pragma once

#if defined(__CUDACC__)
#define HK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HK_HOST_DEVICE inline
#endif
