// Convolution inner loops on SIMD vectors: the depthwise kernels, the bias gradient's sum, the
// phase splits' column copy and its inverse, and the implicit GEMM's gather of B tiles.
#include "cpu/simd/conv2d.h"

#include <algorithm>
#include <utility>

#include "cpu/simd/simd.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

using math::Conv2dGeometry;

// NV vectors of output row oy from column ox: accumulated in registers over every tap, stored once.
template <class T, int64_t NV>
inline void depthwise_forward_block(const T* row, const int64_t* offsets, const T* w, T bias, T* out, int64_t ox,
                                    const Conv2dGeometry& g) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  V acc[NV];
#pragma GCC unroll 4
  for (int64_t v = 0; v < NV; ++v) acc[v] = simd::broadcast(bias);
  for (int64_t t = 0; t < g.taps(); ++t) {
    const T* src = row + offsets[t] + ox;
    const V wv = simd::broadcast(w[t]);
#pragma GCC unroll 4
    for (int64_t v = 0; v < NV; ++v) acc[v] += wv * simd::load(src + v * L);
  }
#pragma GCC unroll 4
  for (int64_t v = 0; v < NV; ++v) simd::store(out + ox + v * L, acc[v]);
}

template <class T>
void depthwise_forward(const T* xp, int64_t xp_w, const int64_t* offsets, const T* w, T bias, T* out,
                       const Conv2dGeometry& g) {
  constexpr int64_t L = simd::kLanes<T>;
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const T* row = xp + oy * g.sh * xp_w;
    T* o = out + oy * g.ow;
    int64_t ox = 0;
    for (; ox + 4 * L <= g.ow; ox += 4 * L) depthwise_forward_block<T, 4>(row, offsets, w, bias, o, ox, g);
    for (; ox + L <= g.ow; ox += L) depthwise_forward_block<T, 1>(row, offsets, w, bias, o, ox, g);
    for (; ox < g.ow; ++ox) {
      T acc = bias;
      for (int64_t t = 0; t < g.taps(); ++t) acc += w[t] * row[offsets[t] + ox];
      o[ox] = acc;
    }
  }
}

template <class T>
void depthwise_backward_input(const T* gy, const T* w, T* gxp, int64_t xp_w, const Conv2dGeometry& g) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const T* src = gy + oy * g.ow;
    for (int64_t i = 0; i < g.kh; ++i) {
      T* row = gxp + (oy * g.sh + i * g.dh) * xp_w;
      for (int64_t j = 0; j < g.kw; ++j) {
        const T wij = w[i * g.kw + j];
        T* dst = row + j * g.dw;
        int64_t ox = 0;
        if (g.sw == 1) {
          const V wv = simd::broadcast(wij);
          for (; ox + L <= g.ow; ox += L) simd::store(dst + ox, simd::load(dst + ox) + wv * simd::load(src + ox));
        }
        for (; ox < g.ow; ++ox) dst[ox * g.sw] += wij * src[ox];
      }
    }
  }
}

// One dot product per tap over the whole plane; four accumulators, so that consecutive FMAs do not
// wait on each other.
template <class T>
void depthwise_backward_weight(const T* gy, const T* xp, int64_t xp_w, const int64_t* offsets, T* gw,
                               const Conv2dGeometry& g) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  for (int64_t t = 0; t < g.taps(); ++t) {
    V acc[4] = {};
    T tail = 0;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const T* src = xp + oy * g.sh * xp_w + offsets[t];
      const T* d = gy + oy * g.ow;
      int64_t ox = 0;
      for (; ox + 4 * L <= g.ow; ox += 4 * L) {
#pragma GCC unroll 4
        for (int64_t v = 0; v < 4; ++v) acc[v] += simd::load(d + ox + v * L) * simd::load(src + ox + v * L);
      }
      for (; ox + L <= g.ow; ox += L) acc[0] += simd::load(d + ox) * simd::load(src + ox);
      for (; ox < g.ow; ++ox) tail += d[ox] * src[ox];
    }
    const V total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (int64_t l = 0; l < L; ++l) tail += total[l];
    gw[t] += tail;
  }
}

// Vector partial sums over blocks of 4096 values, blocks added in double: float rounding grows with
// the block, not with n.
template <class T>
double sum(const T* x, int64_t n) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  constexpr int64_t kBlock = 4096;
  double total = 0;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    V acc{};
    int64_t i = b;
    for (; i + L <= e; i += L) acc += simd::load(x + i);
    double part = 0;
    for (int64_t l = 0; l < L; ++l) part += acc[l];
    for (; i < e; ++i) part += x[i];
    total += part;
  }
  return total;
}

// Stride 2: the even lanes of two loads. A vector of outputs q..q+L−1 loads src[2q, 2q + 2L), one
// value past its last input: taken only while an output follows it, so no load leaves the row. The
// last m ≤ L outputs load just the 2m − 1 inputs they read (partial loads), rather than run a scalar
// loop: a phase row is often one or two vectors long (28 outputs: one vector and 12 more).
template <class T>
void take_columns(const T* src, int64_t step, T* dst, int64_t n) {
  constexpr int64_t L = simd::kLanes<T>;
  int64_t q = 0;
  if (step == 2 && n > 0) {
    for (; q + L < n; q += L) {
      simd::store(dst + q, simd::even_lanes<T>(simd::load(src + 2 * q), simd::load(src + 2 * q + L)));
    }
    const int64_t m = n - q, inputs = 2 * m - 1;
    const simd::Vec<T> lo = inputs >= L ? simd::load(src + 2 * q) : simd::load_partial(src + 2 * q, inputs);
    const simd::Vec<T> hi = inputs > L ? simd::load_partial(src + 2 * q + L, inputs - L) : simd::Vec<T>{};
    const simd::Vec<T> v = simd::even_lanes<T>(lo, hi);
    if (m == L) {
      simd::store(dst + q, v);
    } else {
      simd::store_partial(dst + q, v, m);
    }
    return;
  }
  for (; q < n; ++q) dst[q] = src[q * step];
}

// Whole vectors of both phases zipped into two of the row; the last m < L values of each in partial
// loads and stores, which touch nothing past the row segment: the next one may be another task's,
// written at the same time.
template <class T>
void zip_columns(const T* even, const T* odd, T* dst, int64_t n) {
  constexpr int64_t L = simd::kLanes<T>;
  int64_t q = 0;
  for (; q + L <= n; q += L) {
    const simd::Vec<T> e = simd::load(even + q), o = simd::load(odd + q);
    simd::store(dst + 2 * q, simd::zip<T, 0>(e, o));
    simd::store(dst + 2 * q + L, simd::zip<T, 1>(e, o));
  }
  if (q == n) return;
  const int64_t m = n - q;
  const simd::Vec<T> e = simd::load_partial(even + q, m), o = simd::load_partial(odd + q, m);
  if (2 * m >= L) {
    simd::store(dst + 2 * q, simd::zip<T, 0>(e, o));
    if (2 * m > L) simd::store_partial(dst + 2 * q + L, simd::zip<T, 1>(e, o), 2 * m - L);
  } else {
    simd::store_partial(dst + 2 * q, simd::zip<T, 0>(e, o), 2 * m);
  }
}

template <class T>
void gather_runs(const T* src, const int64_t* offsets, int64_t steps, const GatherRun* runs, int64_t n_runs, T* dst,
                 int64_t count, int64_t width) {
  constexpr int64_t L = simd::kLanes<T>;
  static_assert(L * sizeof(T) <= kGatherSlackBytes);
  for (int64_t t = 0; t < steps; ++t) {
    const T* s = src + offsets[t];
    T* d = dst + t * width;
    for (const GatherRun* run = runs; run < runs + n_runs; ++run) {
      for (int64_t u = 0; u < run->len; u += L) simd::store(d + run->col + u, simd::load(s + run->src + u));
    }
    std::fill(d + count, d + width, T(0));
  }
}

template <class T>
constexpr Conv2dKernel<T> kernels() {
  return {&depthwise_forward<T>, &depthwise_backward_input<T>, &depthwise_backward_weight<T>, &sum<T>,
          &take_columns<T>, &zip_columns<T>, &gather_runs<T>};
}

}  // namespace

extern const Conv2dKernels conv2d_kernels = {kernels<float>(), kernels<double>()};

}  // namespace hotkernels::cpu::HK_ISA
