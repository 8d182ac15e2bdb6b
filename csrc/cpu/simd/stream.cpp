// Vector loops of the memory floor (csrc/cpu/simd/stream.h): whole vectors, then a scalar tail.
#include "cpu/simd/stream.h"

#include "cpu/prefetch.h"
#include "cpu/simd/simd.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

using simd::kLanes;
using simd::vfloat;
using simd::vint32;

// Each loop prefetches as the kernels' elementwise loops do (csrc/cpu/prefetch.h), or, with
// `prefetch` false, leaves it to the hardware: the floor must stream at least as well as the
// kernels do, whichever streams faster on the machine (csrc/cpu/stream.cpp).

uint32_t read(const uint32_t* p, int64_t n, bool prefetch) {
  vint32 bits{};
  int64_t i = 0;
  for (; i + kLanes<float> <= n; i += kLanes<float>) {
    if (prefetch) prefetch_ahead(i, p);
    vint32 v;
    std::memcpy(&v, p + i, sizeof(v));
    bits |= v;
  }
  uint32_t out = 0;
  for (int64_t l = 0; l < kLanes<float>; ++l) out |= static_cast<uint32_t>(bits[l]);
  for (; i < n; ++i) out |= p[i];
  return out;
}

void copy(float* dst, const float* src, int64_t n, bool prefetch) {
  int64_t i = 0;
  for (; i + kLanes<float> <= n; i += kLanes<float>) {
    if (prefetch) {
      prefetch_ahead(i, src);
      prefetch_ahead<Access::write>(i, dst);
    }
    simd::store(dst + i, simd::load(src + i));
  }
  for (; i < n; ++i) dst[i] = src[i];
}

void fill(float* dst, int64_t n, bool prefetch) {
  int64_t i = 0;
  for (; i + kLanes<float> <= n; i += kLanes<float>) {
    if (prefetch) prefetch_ahead<Access::write>(i, dst);
    simd::store(dst + i, vfloat{});
  }
  for (; i < n; ++i) dst[i] = 0.0f;
}

void add_one(float* p, int64_t n, bool prefetch) {
  int64_t i = 0;
  for (; i + kLanes<float> <= n; i += kLanes<float>) {
    if (prefetch) prefetch_ahead<Access::write>(i, p);
    simd::store(p + i, simd::load(p + i) + 1.0f);
  }
  for (; i < n; ++i) p[i] += 1.0f;
}

}  // namespace

extern const StreamKernels stream_kernels{read, copy, fill, add_one};

}  // namespace hotkernels::cpu::HK_ISA
