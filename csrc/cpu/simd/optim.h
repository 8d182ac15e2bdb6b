// Vectorised optimizer kernels (csrc/cpu/simd/optim.cpp), one table per instruction set. Each
// entry runs over one contiguous span of one tensor; csrc/cpu/optim.cpp splits a whole param group
// into spans and runs them in one parallel region. Torch-free.
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "cpu/simd/per_dtype.h"
#include "math/optim.h"

namespace hotkernels::cpu {

template <class T>
struct OptimKernel {
  // One Adam-family step (math::adam_step); vmax is read and written only for amsgrad.
  void (*adam)(const math::AdamConsts<T>& c, math::AdamMode mode, T* p, const T* g, T* m, T* v, T* vmax, int64_t n);
  // Σ x², accumulated in T within the span.
  double (*sq_norm)(const T* x, int64_t n);
  // LAMB moments on m, v; returns the math::SqSums parts of Σ p² then of Σ u² (u the direction after
  // the update) through out[0..5].
  void (*lamb_moments)(const math::LambConsts<T>& c, const T* p, const T* g, T* m, T* v, int64_t n, double* out);
  // p ← p − step·u (step = lr·trust ratio).
  void (*lamb_apply)(const math::LambConsts<T>& c, T step, T* p, const T* m, const T* v, int64_t n);
  void (*novograd)(const math::NovoGradConsts<T>& c, T* p, const T* g, T* m, int64_t n);
  void (*lookahead)(T alpha, T* fast, T* slow, int64_t n);
};
using OptimKernels = PerDtype<OptimKernel>;

// bfloat16 (its bits) ⇄ float32 for the widened spans (cpu/multi_tensor.h), as c10::BFloat16
// converts: widening exact, narrowing to nearest even, NaN to 0x7FC0. And the Adam step on bfloat16
// p, g, m, v, converting each vector in registers: the same values as a widened span (the same
// conversions, the same float32 arithmetic), without its round trip through memory, which cost more
// than the step's arithmetic. No amsgrad (its v̂ goes through a widened span); `adaptive` false is
// RAdam's un-rectified step (momentum only).
struct Bf16Kernels {
  void (*widen)(const uint16_t* in, float* out, int64_t n);
  void (*narrow)(const float* in, uint16_t* out, int64_t n);
  void (*adam)(const math::AdamConsts<float>& c, bool adaptive, uint16_t* p, const uint16_t* g, uint16_t* m,
               uint16_t* v, int64_t n);
};

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(hotkernels::cpu::OptimKernels, optim_kernels)
HK_DECLARE_ISA_TABLE(hotkernels::cpu::Bf16Kernels, bf16_kernels)
