// The one shape of a per-dtype kernel table: an entry of type K<float> and one of K<double>, the two
// types the CPU kernels compute in (float16/bfloat16 are widened to float by the op). K is a kernel
// signature (a function pointer type) or a struct of them. Torch-free: included by the
// per-instruction-set kernel files.
#pragma once

#include <type_traits>

namespace hotkernels::cpu {

template <template <class> class K>
struct PerDtype {
  K<float> f32;
  K<double> f64;

  template <class T>
  constexpr const K<T>& of() const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "the CPU kernels compute in float or double");
    if constexpr (std::is_same_v<T, float>) {
      return f32;
    } else {
      return f64;
    }
  }
};

}  // namespace hotkernels::cpu
