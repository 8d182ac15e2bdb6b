// Multi-tensor work on the CPU: a param group's tensors are cut into spans of at most kSpan
// elements (a small tensor is one span), and all spans of the group run in one at::parallel_for
// region, so hundreds of small tensors cost one fork/join, not hundreds. float16/bfloat16 tensors
// compute in float32 (as torch's fused CPU Adam), widened through stack buffers as parallel_map does.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/elementwise.h"

namespace hotkernels::cpu {

// 16k elements: 64 KiB of float32 per operand, enough to hide the per-span overhead, small enough
// that ~10M parameters give hundreds of spans to balance over the threads.
constexpr int64_t kSpan = 16384;
// Below this many elements in all, the group runs on the calling thread.
constexpr int64_t kSerialBelow = 65536;

struct Span {
  int64_t tensor;  // position in the list
  int64_t begin, size;
};

inline std::vector<Span> split_spans(at::TensorList tensors) {
  std::vector<Span> spans;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const int64_t n = tensors[t].numel();
    for (int64_t b = 0; b < n; b += kSpan) spans.push_back({int64_t(t), b, std::min(kSpan, n - b)});
  }
  return spans;
}

// f(const Span&) for every span, in one parallel region.
template <class F>
void parallel_spans(const std::vector<Span>& spans, const F& f) {
  const int64_t n = static_cast<int64_t>(spans.size());
  int64_t total = 0;
  for (const Span& s : spans) total += s.size;
  const int64_t grain = total < kSerialBelow ? std::max<int64_t>(n, 1) : 1;
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) f(spans[i]);
  });
}

// The type a tensor of storage type T computes in: double for float64, else float.
template <class T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Runs f.template operator()<T>(span) for every span (of `spans`, split from `tensors`: a reduction
// indexes its per-span results by &span - spans.data()), T the span's tensor's storage type (float,
// double, c10::Half or c10::BFloat16: a param group may mix them).
template <class F>
void parallel_typed(at::TensorList tensors, const std::vector<Span>& spans, const F& f) {
  parallel_spans(spans, [&](const Span& s) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, tensors[s.tensor].scalar_type(), "hotkernels_optim",
                                    [&] { f.template operator()<scalar_t>(s); });
  });
}

template <class F>
void parallel_typed(at::TensorList tensors, const F& f) {
  parallel_typed(tensors, split_spans(tensors), f);
}

// kernel(operands, n) on n elements of N operands of storage type T, in T's compute type: float32
// and float64 operands in place; float16/bfloat16 ones kWidenBlock elements at a time, widened into
// stack buffers, those whose bit is set in `written` narrowed back afterwards (round to nearest).
// A null operand (an unused list) stays null.
template <class T, size_t N, class K>
void widened(const std::array<T*, N>& ops, unsigned written, int64_t n, const K& kernel) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    kernel(ops, n);
  } else {
    float buf[N][kWidenBlock];
    for (int64_t b = 0; b < n; b += kWidenBlock) {
      const int64_t m = std::min(kWidenBlock, n - b);
      std::array<float*, N> block{};
      for (size_t k = 0; k < N; ++k) {
        if (ops[k] == nullptr) continue;
        block[k] = buf[k];
        for (int64_t i = 0; i < m; ++i) buf[k][i] = static_cast<float>(ops[k][b + i]);
      }
      kernel(block, m);
      for (size_t k = 0; k < N; ++k) {
        if (ops[k] == nullptr || !(written >> k & 1u)) continue;
        for (int64_t i = 0; i < m; ++i) ops[k][b + i] = static_cast<T>(buf[k][i]);
      }
    }
  }
}

}  // namespace hotkernels::cpu
