// The CPU ops' one dtype dispatch onto the kernels' compute types: float64 computes in double,
// everything else (float32, and float16/bfloat16 widened by the caller) in float.
#pragma once

#include <c10/core/ScalarType.h>

namespace hotkernels::cpu {

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
