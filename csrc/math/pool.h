// 2-D pooling windows, shared by the CPU kernels (csrc/cpu/simd/pool.cpp, csrc/cpu/pool.cpp) and
// the CUDA kernels (csrc/cuda/pool.cu). Torch-free: the shapes are computed and checked once by
// csrc/pool.h (mirroring python/hotkernels/ops/pool.py's `pool2d_geometry`).
//
// Output (oh, ow)'s window starts at (oh·sH − pH, ow·sW − pW) and takes kH × kW taps, dH rows and
// dW columns apart. Taps outside the input are padding: max pooling skips them (torch's CPU and CUDA
// kernels scan only the taps inside, row by row); average pooling counts them as zeros.
#pragma once

#include <cstdint>

#include "math/common.h"

namespace hotkernels::math {

struct Pool2d {
  int64_t H, W, OH, OW;  // input and output plane sizes
  int64_t kH, kW, sH, sW, pH, pW, dH, dW;
};

// Average pooling's divisor: divisor_override when given (any non-zero value, as torch), else the
// window's size counted over the padded input (count_include_pad) or over the input only.
struct AvgMode {
  bool count_include_pad;
  bool has_divisor_override;
  int64_t divisor_override;
};

// Taps of one window along one dimension that fall inside [0, size): k in [k0, k1), where the window
// starts at `start` and has `k` taps `d` apart. k0 == k1 when none does.
struct Taps {
  int64_t k0, k1;
};
HK_HOST_DEVICE Taps window_taps(int64_t start, int64_t k, int64_t d, int64_t size) {
  const int64_t k0 = start < 0 ? (-start + d - 1) / d : 0;
  const int64_t last = size - 1 - start;  // the largest offset that stays inside
  int64_t k1 = last < 0 ? 0 : last / d + 1;
  k1 = k1 < k ? k1 : k;
  return {k0, k1 > k0 ? k1 : k0};
}

// Average pooling along one dimension (no dilation), as torch computes it: the window
// [start, start + k) is first clipped to the padded input [−p, size + p) — its length there is what
// count_include_pad divides by — and then to the input, [lo, hi).
struct AvgSpan {
  int64_t lo, hi, padded;
};
HK_HOST_DEVICE AvgSpan avg_span(int64_t o, int64_t k, int64_t s, int64_t p, int64_t size) {
  const int64_t start = o * s - p;
  int64_t end = start + k;
  end = end < size + p ? end : size + p;
  return {start > 0 ? start : 0, end < size ? end : size, end - start};
}

HK_HOST_DEVICE int64_t avg_divisor(const AvgMode& mode, const AvgSpan& h, const AvgSpan& w) {
  if (mode.has_divisor_override) return mode.divisor_override;
  if (mode.count_include_pad) return h.padded * w.padded;
  return (h.hi - h.lo) * (w.hi - w.lo);
}

// Outputs whose window (no dilation) covers input index i: o in [o0, o1), those with
// o·s − p <= i < o·s − p + k, clipped to [0, out).
struct Cover {
  int64_t o0, o1;
};
HK_HOST_DEVICE Cover covering_outputs(int64_t i, int64_t k, int64_t s, int64_t p, int64_t out) {
  const int64_t lo = i + p - k + 1;  // o·s >= lo
  int64_t o0 = lo <= 0 ? 0 : (lo + s - 1) / s;
  int64_t o1 = (i + p) / s + 1;  // o·s <= i + p (i + p >= 0)
  o1 = o1 < out ? o1 : out;
  return {o0, o1 > o0 ? o1 : o0};
}

// Max pooling's compact argmax: the position kh·kW + kw of the maximum's tap within its window, one
// byte per output, so kernels of at most 256 taps (larger ones keep torch's int64 indices).
constexpr int64_t kMaxOffsetTaps = 256;

// What max pooling writes besides the values: nothing (inference), torch's int64 indices (flat
// h·W + w in the plane), or the uint8 window offsets above (what autograd saves).
enum class MaxArg { none, indices, offsets };

// The tap of output o's window (start o·s − p, taps d apart, k of them) that lands on input index i:
// (i − o·s + p) / d when that is a whole number below k, else −1 (i lies between taps or past them).
// The outputs whose windows reach i at all are covering_outputs(i, (k − 1)·d + 1, s, p, out).
HK_HOST_DEVICE int64_t tap_landing_on(int64_t i, int64_t o, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t from_start = i - (o * s - p);
  return from_start >= 0 && from_start % d == 0 && from_start / d < k ? from_start / d : -1;
}

}  // namespace hotkernels::math
