// Vectorised optimizer kernels (csrc/cpu/kernels/optim.cpp), one table per instruction set. Each
// entry runs over one contiguous span of one tensor; the op (csrc/cpu/optim.cpp) splits a whole
// param group into spans and runs them in one parallel region. Torch-free.
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "math/optim.h"

namespace hotkernels::cpu {

enum class AdamMode { adam, amsgrad, momentum_only };

template <class T>
struct OptimKernelsOf {
  // One Adam-family step (math::adam_step); vmax is read and written only for amsgrad.
  void (*adam)(const math::AdamConsts<T>& c, AdamMode mode, T* p, const T* g, T* m, T* v, T* vmax, int64_t n);
  // Σ x², accumulated in T within the span.
  double (*sq_norm)(const T* x, int64_t n);
  // LAMB moments on m, v; returns Σ p² and Σ u² (u the direction after the update) through out[0..1].
  void (*lamb_moments)(const math::LambConsts<T>& c, const T* p, const T* g, T* m, T* v, int64_t n, double* out);
  // p ← p − step·u (step = lr·trust ratio).
  void (*lamb_apply)(const math::LambConsts<T>& c, T step, T* p, const T* m, const T* v, int64_t n);
  void (*novograd)(const math::NovoGradConsts<T>& c, T* p, const T* g, T* m, int64_t n);
  void (*lookahead)(T alpha, T* fast, T* slow, int64_t n);
};

struct OptimKernels {
  OptimKernelsOf<float> f32;
  OptimKernelsOf<double> f64;
  // bfloat16 (its bits) ⇄ float32 for the widened spans (cpu/multi_tensor.h), as c10::BFloat16
  // converts: widening exact, narrowing to nearest even, NaN to 0x7FC0.
  void (*widen_bf16)(const uint16_t* in, float* out, int64_t n);
  void (*narrow_bf16)(const float* in, uint16_t* out, int64_t n);
  template <class T> const OptimKernelsOf<T>& of() const {
    if constexpr (sizeof(T) == 4) {
      return f32;
    } else {
      return f64;
    }
  }
};

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(OptimKernels, optim_kernels)
