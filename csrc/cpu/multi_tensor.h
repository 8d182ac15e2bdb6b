// Multi-tensor work on the CPU: a param group's tensors are cut into spans of at most kSpan
// elements (a small tensor is one span), and all spans of the group run in one at::parallel_for
// region, so hundreds of small tensors cost one fork/join, not hundreds.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

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

}  // namespace hotkernels::cpu
