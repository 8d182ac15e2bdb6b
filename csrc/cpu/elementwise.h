// Runs a MapKernel of N inputs (csrc/cpu/simd/map_kernel.h) over tensors of one dense layout (csrc/layout.h),
// split across threads with at::parallel_for. float16/bfloat16 are widened to float through stack
// buffers of kWidenBlock elements, so half types compute in float.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <type_traits>

#include "cpu/simd/map_kernel.h"

namespace hotkernels::cpu {

// Elements per task: large enough that a task outweighs its scheduling (~32k elements = 128 KiB of
// float32 per operand), small enough to balance two or more threads on small tensors.
constexpr int64_t kMapGrain = 32768;
constexpr int64_t kWidenBlock = 512;

template <int N>
void parallel_map(const MapKernel& kernel, const at::Tensor& out, const std::array<at::Tensor, N>& in) {
  const int64_t n = out.numel();
  if (n == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "hotkernels_map", [&] {
    using T = scalar_t;
    T* out_ptr = out.mutable_data_ptr<T>();
    std::array<const T*, N> in_ptr;
    for (int k = 0; k < N; ++k) in_ptr[k] = in[k].template const_data_ptr<T>();

    at::parallel_for(0, n, kMapGrain, [&](int64_t begin, int64_t end) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        std::array<const T*, N> span;
        for (int k = 0; k < N; ++k) span[k] = in_ptr[k] + begin;
        kernel.template of<T>()(out_ptr + begin, span.data(), end - begin);
      } else {
        float in_buf[N][kWidenBlock];
        float out_buf[kWidenBlock];
        std::array<const float*, N> span;
        for (int k = 0; k < N; ++k) span[k] = in_buf[k];
        for (int64_t b = begin; b < end; b += kWidenBlock) {
          const int64_t m = std::min(kWidenBlock, end - b);
          for (int k = 0; k < N; ++k) {
            for (int64_t i = 0; i < m; ++i) in_buf[k][i] = static_cast<float>(in_ptr[k][b + i]);
          }
          kernel.f32(out_buf, span.data(), m);
          for (int64_t i = 0; i < m; ++i) out_ptr[b + i] = static_cast<T>(out_buf[i]);
        }
      }
    });
  });
}

}  // namespace hotkernels::cpu
