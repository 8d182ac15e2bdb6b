// An elementwise kernel over contiguous spans: out[i] = f(in_0[i], ..., in_{N-1}[i]) for i < n, the
// number of inputs N fixed by the kernel. One entry per compute type; float16/bfloat16 tensors are
// widened to float by the caller (csrc/cpu/elementwise.h). Torch-free: included by the
// per-instruction-set kernel files, whose tables of this type are the kernels themselves.
#pragma once

#include <cstdint>

#include "cpu/simd/per_dtype.h"

namespace hotkernels::cpu {

template <class T>
using MapFn = void (*)(T* out, const T* const* in, int64_t n);
using MapKernel = PerDtype<MapFn>;

}  // namespace hotkernels::cpu
