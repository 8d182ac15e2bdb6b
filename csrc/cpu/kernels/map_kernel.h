// Elementwise kernels over contiguous spans: out[i] = f(in_0[i], ..., in_{N-1}[i]) for i < n.
// The table holds one entry per compute type; float16/bfloat16 tensors are widened to float by the
// caller (csrc/cpu/elementwise.h). Torch-free: included by the per-instruction-set kernel files.
#pragma once

#include <cstdint>

namespace hotkernels::cpu {

template <int N>
struct MapKernel {
  void (*f32)(float* out, const float* const* in, int64_t n);
  void (*f64)(double* out, const double* const* in, int64_t n);
};

}  // namespace hotkernels::cpu
