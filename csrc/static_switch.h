// A run-time value turned into a compile-time one (flash-attention's static_switch.h, as a function):
//
//   static_switch<false, true>(channels_last, [&]<bool kChannelsLast>() { launch<kChannelsLast>(...); });
//
// calls the lambda's instantiation for the listed value equal to `value`, and returns what it
// returns. Every listed value is compiled; a value not listed is a bug in the caller, refused with a
// std::logic_error (a RuntimeError in Python). Torch-free, so that the per-instruction-set kernel
// files (csrc/cpu/simd/) use it too. For a type rather than a value, switch on a bool and pick the type with
// std::conditional_t inside.
#pragma once

#include <stdexcept>
#include <utility>

namespace hotkernels {

template <auto First, auto... Rest, class V, class F>
decltype(auto) static_switch(const V& value, F&& f) {
  if constexpr (sizeof...(Rest) == 0) {
    if (!(value == First)) throw std::logic_error("hotkernels: internal error: static_switch met a value it was not given");
    return f.template operator()<First>();
  } else {
    if (value == First) return f.template operator()<First>();
    return static_switch<Rest...>(value, std::forward<F>(f));
  }
}

}  // namespace hotkernels
