// The CPU ops' one dtype dispatch onto the kernels' compute types: float64 computes in double,
// everything else (float32, and float16/bfloat16 widened by the caller) in float.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <optional>

namespace hotkernels::cpu {

// float16 and bfloat16 tensors, which the CPU ops widen to their op-math type (float32, the kernels'
// compute type, as torch's CPU ops compute them) before running the float32 path.
inline bool is_half(const at::Tensor& t) { return at::toOpMathType(t.scalar_type()) != t.scalar_type(); }
inline at::Tensor widen(const at::Tensor& t) { return t.to(at::toOpMathType(t.scalar_type())); }
inline std::optional<at::Tensor> widen(const std::optional<at::Tensor>& t) {
  return t ? std::optional(widen(*t)) : std::nullopt;
}

// Runs f.template operator()<T>() with T = double for float64, else float.
template <class F>
void dispatch_compute(c10::ScalarType t, F&& f) {
  if (t == c10::kDouble) {
    f.template operator()<double>();
  } else {
    f.template operator()<float>();
  }
}

}  // namespace hotkernels::cpu
