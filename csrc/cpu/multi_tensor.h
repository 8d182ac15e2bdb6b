// Multi-tensor work on the CPU: a param group's tensors are cut into spans of at most kSpan
// elements (a small tensor is one span), and all spans of the group run in one at::parallel_for
// region, so hundreds of small tensors cost one fork/join, not hundreds. float16/bfloat16 tensors
// compute in float32 (as torch's fused CPU Adam), widened through stack buffers as parallel_map does;
// with master weights the kernels run on the float32 copies and write the rounded result into the
// half param.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/elementwise.h"
#include "cpu/prefetch.h"
#include "cpu/simd/optim.h"
#include "math/optim.h"

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

// Runs f.template operator()<C>(span) for every span (of `spans`, split from `tensors`: a reduction
// indexes its per-span results by &span - spans.data()), C the compute type of the span's tensor
// (dispatch_compute: a param group may mix dtypes).
template <class F>
void parallel_typed(at::TensorList tensors, const std::vector<Span>& spans, const F& f) {
  parallel_spans(spans, [&](const Span& s) {
    dispatch_compute(tensors[s.tensor].scalar_type(), [&]<class C>() { f.template operator()<C>(s); });
  });
}

template <class F>
void parallel_typed(at::TensorList tensors, const F& f) {
  parallel_typed(tensors, split_spans(tensors), f);
}

// One operand of a span kernel: its tensor's data from the span's first element, its dtype, and
// whether the kernel writes it. No data: an unused operand (amsgrad's v̂ without amsgrad), passed on
// as null.
struct Operand {
  void* data = nullptr;
  at::ScalarType type = at::kFloat;
  bool written = false;
};

inline Operand operand(const at::Tensor& t, const Span& s, bool written) {
  return {static_cast<char*>(t.data_ptr()) + s.begin * t.element_size(), t.scalar_type(), written};
}

// How the param's writes to bfloat16 are rounded: to nearest, or stochastically
// (math::bfloat16_bits_stochastic, with math::rounding_bits: the same for any thread split, and as
// on CUDA).
struct ParamRounding {
  bool stochastic = false;
  uint64_t seed = 0;
  int64_t tensor = 0;  // the param's position in its list
  int64_t first = 0;   // the span's first element in its tensor
};

// m floats of a float16/bfloat16 operand from element `at` of its span (bfloat16 through the SIMD
// conversion of the instruction set in use).
inline void widen_block(const Operand& o, int64_t at, int64_t m, float* out) {
  if (o.type == at::kBFloat16) {
    return HK_ISA_TABLE(bf16_kernels).widen(static_cast<const uint16_t*>(o.data) + at, out, m);
  }
  AT_DISPATCH_REDUCED_FLOATING_TYPES(o.type, "hotkernels_widen", [&] {
    const scalar_t* src = static_cast<const scalar_t*>(o.data) + at;
    for (int64_t i = 0; i < m; ++i) out[i] = static_cast<float>(src[i]);
  });
}

inline void narrow_block(const float* in, const Operand& o, int64_t at, int64_t m, const ParamRounding& r) {
  if (r.stochastic && o.type == at::kBFloat16) {
    c10::BFloat16* dst = static_cast<c10::BFloat16*>(o.data) + at;
    for (int64_t i = 0; i < m; ++i) {
      const uint32_t bits = math::rounding_bits(r.seed, r.tensor, r.first + at + i);
      dst[i] = c10::BFloat16(math::bfloat16_bits_stochastic(in[i], bits), c10::BFloat16::from_bits());
    }
    return;
  }
  if (o.type == at::kBFloat16) {
    return HK_ISA_TABLE(bf16_kernels).narrow(in, static_cast<uint16_t*>(o.data) + at, m);
  }
  AT_DISPATCH_REDUCED_FLOATING_TYPES(o.type, "hotkernels_narrow", [&] {
    scalar_t* dst = static_cast<scalar_t*>(o.data) + at;
    for (int64_t i = 0; i < m; ++i) dst[i] = static_cast<scalar_t>(in[i]);
  });
}

// How far ahead `widened` prefetches its widened operands, in elements: two blocks.
constexpr int64_t kWidenAhead = 2 * kWidenBlock;

// kernel(operands, n) on n elements of N operands in the compute type C: operands of type C in
// place; float16/bfloat16 ones (C is then float) kWidenBlock elements at a time, widened into stack
// buffers and, when written, narrowed back afterwards (round to nearest; operand 0, the param, as
// `rounding` says). `copy`: a float16/bfloat16 param written with the rounded operand 0 (its float32
// master weights).
template <class C, size_t N, class K>
void widened(const std::array<Operand, N>& ops, int64_t n, const K& kernel, const Operand& copy = {},
             const ParamRounding& rounding = {}) {
  auto in_place = [](const Operand& o) { return o.data == nullptr || o.type == c10::CppTypeToScalarType<C>::value; };
  auto at = [](const Operand& o, int64_t i) { return o.data == nullptr ? nullptr : static_cast<C*>(o.data) + i; };
  if (copy.data == nullptr && std::all_of(ops.begin(), ops.end(), in_place)) {
    std::array<C*, N> ptrs;
    for (size_t k = 0; k < N; ++k) ptrs[k] = at(ops[k], 0);
    return kernel(ptrs, n);
  }
  if constexpr (std::is_same_v<C, float>) {
    float buf[N][kWidenBlock];
    for (int64_t b = 0; b < n; b += kWidenBlock) {
      const int64_t m = std::min(kWidenBlock, n - b);
      std::array<float*, N> block;
      for (size_t k = 0; k < N; ++k) {
        block[k] = in_place(ops[k]) ? at(ops[k], b) : buf[k];
        if (!in_place(ops[k])) widen_block(ops[k], b, m, buf[k]);
      }
      // The widened operands' block kWidenAhead further on is fetched while this one computes
      // (csrc/cpu/prefetch.h; the kernel reads only the stack buffers, so without this, memory idles
      // during its divisions).
      for (size_t k = 0; k < N && b + kWidenAhead < n; ++k) {
        if (in_place(ops[k])) continue;
        const int64_t size = c10::elementSize(ops[k].type);
        prefetch_range(static_cast<const char*>(ops[k].data) + (b + kWidenAhead) * size,
                       std::min(m, n - b - kWidenAhead) * size);
      }
      kernel(block, m);
      for (size_t k = 0; k < N; ++k) {
        if (in_place(ops[k]) || !ops[k].written) continue;
        narrow_block(buf[k], ops[k], b, m, k == 0 ? rounding : ParamRounding{});
      }
      if (copy.data != nullptr) narrow_block(block[0], copy, b, m, rounding);
    }
  } else {
    TORCH_INTERNAL_ASSERT(false, "float64 operands are never widened");
  }
}

}  // namespace hotkernels::cpu
