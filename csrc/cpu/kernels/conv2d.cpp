// Convolution inner loops on SIMD vectors: the weight-gradient correlation and the depthwise kernels.
#include "cpu/kernels/conv2d.h"

#include <algorithm>
#include <utility>

#include "cpu/kernels/simd.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

using math::Conv2dGeometry;

// Up to kRows × kCols dot products of length len at once (12 accumulators on AVX2): the kCols rows
// of d stay in registers, the x rows are loaded one at a time.
constexpr int64_t kCorrRows = 3;  // rows of d
constexpr int64_t kCorrCols = 4;  // rows of x (columns of g)

template <class T, int64_t R, int64_t K>
inline void correlate_block(const T* __restrict__ d, int64_t d_stride, int64_t d_batch, const T* __restrict__ x,
                            int64_t x_batch, const int64_t* __restrict__ offsets, int64_t batch, int64_t len,
                            T* __restrict__ g, int64_t ldg) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  V acc[R][K];
#pragma GCC unroll 4
  for (int64_t i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int64_t k = 0; k < K; ++k) acc[i][k] = V{};
  for (int64_t b = 0; b < batch; ++b) {
    const T* db = d + b * d_batch;
    const T* xk[K];
#pragma GCC unroll 4
    for (int64_t k = 0; k < K; ++k) xk[k] = x + b * x_batch + offsets[k];
    for (int64_t v = 0; v < len; v += L) {
      V dv[R];
#pragma GCC unroll 4
      for (int64_t i = 0; i < R; ++i) dv[i] = simd::load(db + i * d_stride + v);
#pragma GCC unroll 4
      for (int64_t k = 0; k < K; ++k) {
        const V xv = simd::load(xk[k] + v);
#pragma GCC unroll 4
        for (int64_t i = 0; i < R; ++i) acc[i][k] += dv[i] * xv;
      }
    }
  }
  for (int64_t i = 0; i < R; ++i) {
    for (int64_t k = 0; k < K; ++k) {
      T s = 0;
      for (int64_t l = 0; l < L; ++l) s += acc[i][k][l];
      g[i * ldg + k] += s;
    }
  }
}

template <class T, int64_t R>
inline void correlate_rows(const T* d, int64_t d_stride, int64_t d_batch, const T* x, int64_t x_batch,
                           const int64_t* offsets, int64_t nk, int64_t batch, int64_t len, T* g, int64_t ldg) {
  int64_t k = 0;
  for (; k + kCorrCols <= nk; k += kCorrCols) {
    correlate_block<T, R, kCorrCols>(d, d_stride, d_batch, x, x_batch, offsets + k, batch, len, g + k, ldg);
  }
  if (k + 2 <= nk) {
    correlate_block<T, R, 2>(d, d_stride, d_batch, x, x_batch, offsets + k, batch, len, g + k, ldg);
    k += 2;
  }
  if (k < nk) correlate_block<T, R, 1>(d, d_stride, d_batch, x, x_batch, offsets + k, batch, len, g + k, ldg);
}

template <class T>
void correlate(const T* d, int64_t d_stride, int64_t d_batch, int64_t m, const T* x, int64_t x_batch,
               const int64_t* offsets, int64_t nk, int64_t batch, int64_t len, T* g, int64_t ldg) {
  int64_t i = 0;
  for (; i + kCorrRows <= m; i += kCorrRows) {
    correlate_rows<T, kCorrRows>(d + i * d_stride, d_stride, d_batch, x, x_batch, offsets, nk, batch, len,
                                 g + i * ldg, ldg);
  }
  for (; i < m; ++i) {
    correlate_rows<T, 1>(d + i * d_stride, d_stride, d_batch, x, x_batch, offsets, nk, batch, len, g + i * ldg, ldg);
  }
}

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

template <class T>
constexpr DepthwiseKernel<T> depthwise() {
  return {&depthwise_forward<T>, &depthwise_backward_input<T>, &depthwise_backward_weight<T>};
}

}  // namespace

extern const Conv2dKernels conv2d_kernels = {
    {&correlate<float>, simd::kLanes<float>},
    {&correlate<double>, simd::kLanes<double>},
    depthwise<float>(),
    depthwise<double>(),
    &sum<float>,
    &sum<double>,
};

}  // namespace hotkernels::cpu::HK_ISA
