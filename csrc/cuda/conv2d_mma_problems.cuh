// The three conv2d passes as implicit GEMMs for igemm_mma_kernel (conv2d_mma.cuh), on NHWC
// activations. Each problem is one group `gi` (grid z) of the convolution; all its fields are int32
// (the host checks that every extent fits: conv2d.cu, mma_fits) and offsets are formed in int64.
//
// K orders put the channel innermost — k = (tap, channel) — so that a k-slice of the gathered operand
// is a contiguous channel run of one NHWC pixel.
//
//   forward        C[p][co] = Σ_(tap, ci) x[pixel(p, tap)][ci] · w[co][tap][ci]       p = (n, oy, ox)
//   grad_input     C[p][ci] = Σ_(tap, co) gy[opixel(p, tap)][co] · w[co][ci][tap]    p = (n, y, x) of one
//                  stride class (see BackwardInputProblem)
//   grad_weight    C[co][(tap, ci)] = Σ_p gy[p][co] · x[pixel(p, tap)][ci]            p = (n, oy, ox)
#pragma once

#include "conv2d_mma.cuh"

namespace hotkernels::cuda::mma {

// Sizes and strides shared by the problems (int32, see above).
struct ConvDims {
  int n, c, h, w;        // input
  int kc, oh, ow;        // output channels and size
  int kh, kw, sh, sw, pt, pl, dh, dw;
  int cin_g, cout_g;
  bool nchw_out;  // the GEMM writes an NCHW-contiguous tensor; else NHWC (channels_last)
};

// Forward: rows = output pixels p = (n, oy, ox), columns = output channels of group gi,
// k = (i, j, ci). A = x (NHWC), B = weight as [C_out][kh][kw][C_in/groups] (row-major, K-contiguous).
template <class T_> struct ForwardProblem {
  using T = T_;
  static constexpr bool kAAlongK = true, kBAlongK = true;
  static constexpr bool kAccumulates = false;  // stores T, or adds into a float buffer when split
  int M, N, K, a_h, a_w, b_h, b_w;
  const T* a_ptr;
  const T* b_ptr;
  const T* bias;
  ConvDims d;

  __device__ Part a_row(int, int m) const {
    const int ohw = d.oh * d.ow, n = m / ohw, q = m - n * ohw, oy = q / d.ow, ox = q - oy * d.ow;
    const int y0 = oy * d.sh - d.pt, x0 = ox * d.sw - d.pl;
    return {((int64_t{n} * d.h + y0) * d.w + x0) * d.c, y0, x0};
  }
  __device__ Part a_k(int gi, int k) const {
    const int tap = k / d.cin_g, ci = k - tap * d.cin_g, i = tap / d.kw, j = tap - i * d.kw;
    return {(int64_t{i} * d.dh * d.w + int64_t{j} * d.dw) * d.c + int64_t{gi} * d.cin_g + ci, i * d.dh, j * d.dw};
  }
  __device__ Part b_row(int gi, int n) const { return {int64_t{gi * d.cout_g + n} * K, 0, 0}; }
  __device__ Part b_k(int, int k) const { return {k, 0, 0}; }
  __device__ int64_t out_row(int, int m) const {
    if (!d.nchw_out) return int64_t{m} * d.kc;
    const int ohw = d.oh * d.ow, n = m / ohw;
    return int64_t{n} * d.kc * ohw + (m - n * ohw);
  }
  __device__ int64_t out_col(int gi, int n) const {
    const int64_t co = gi * d.cout_g + n;
    return d.nchw_out ? co * d.oh * d.ow : co;
  }
  __device__ int bias_index(int gi, int n) const { return gi * d.cout_g + n; }
};

// Input gradient of one stride class. Input pixel y receives gy at oy = (y + pt − i·dh) / sh for the
// taps i where that division is exact. Splitting the pixels by (y mod sh, x mod sw) = (ry, rx) makes
// the set of such taps the same for every pixel of a class: i ≡ i0 (mod si) with si = sh/gcd(sh, dh),
// so its GEMM has no zero taps (a 1×1/s2 backward does a quarter of the work of a masked one) and
// no division in its loads. For y = ry + sh·uy and i = i0 + si·a:
//   oy = uy + qy0 − ey·a,   qy0 = (ry + pt − i0·dh) / sh,   ey = si·dh / sh   (both exact).
// Rows = the class's pixels p = (n, uy, ux), columns = input channels of group gi, k = (a, b, co).
// A = gy (NHWC, bounds = output size), B = weight as [groups][C_in/groups][kh][kw][C_out/groups].
struct StrideClass {
  int ry, rx, cy, cx;      // class offset and its pixel count along y and x
  int i0, j0, si, sj;      // valid taps i = i0 + si·a (a < ti), j = j0 + sj·b (b < tj)
  int ti, tj;
  int qy0, qx0, ey, ex;
};

template <class T_> struct BackwardInputProblem {
  using T = T_;
  static constexpr bool kAAlongK = true, kBAlongK = true;
  static constexpr bool kAccumulates = false;
  int M, N, K, a_h, a_w, b_h, b_w;
  const T* a_ptr;
  const T* b_ptr;
  const T* bias;  // nullptr
  ConvDims d;
  StrideClass s;

  __device__ Part a_row(int gi, int m) const {
    const int cxy = s.cy * s.cx, n = m / cxy, q = m - n * cxy, uy = q / s.cx, ux = q - uy * s.cx;
    return {((int64_t{n} * d.oh + uy) * d.ow + ux) * d.kc + int64_t{gi} * d.cout_g, uy, ux};
  }
  __device__ Part a_k(int, int k) const {
    const int tap = k / d.cout_g, co = k - tap * d.cout_g, a = tap / s.tj, b = tap - a * s.tj;
    const int qy = s.qy0 - s.ey * a, qx = s.qx0 - s.ex * b;
    return {(int64_t{qy} * d.ow + qx) * d.kc + co, qy, qx};
  }
  __device__ Part b_row(int gi, int n) const {
    return {int64_t{gi * d.cin_g + n} * d.kh * d.kw * d.cout_g, 0, 0};
  }
  __device__ Part b_k(int, int k) const {
    const int tap = k / d.cout_g, co = k - tap * d.cout_g, a = tap / s.tj, b = tap - a * s.tj;
    const int i = s.i0 + s.si * a, j = s.j0 + s.sj * b;
    return {int64_t{i * d.kw + j} * d.cout_g + co, 0, 0};
  }
  __device__ int64_t out_row(int, int m) const {
    const int cxy = s.cy * s.cx, n = m / cxy, q = m - n * cxy, uy = q / s.cx, ux = q - uy * s.cx;
    const int64_t y = s.ry + int64_t{d.sh} * uy, x = s.rx + int64_t{d.sw} * ux;
    return d.nchw_out ? int64_t{n} * d.c * d.h * d.w + y * d.w + x : ((int64_t{n} * d.h + y) * d.w + x) * d.c;
  }
  __device__ int64_t out_col(int gi, int n) const {
    const int64_t ci = gi * d.cin_g + n;
    return d.nchw_out ? ci * d.h * d.w : ci;
  }
  __device__ int bias_index(int, int) const { return 0; }
};

// Weight gradient: rows = output channels of group gi, columns = (i, j, ci), k = output pixels
// p = (n, oy, ox) (the long reduction, split across blocks). A = gy and B = x, both NHWC, both
// loaded along rows (channels are the contiguous dimension). Writes the weight's own layout
// [C_out][C_in/groups][kh][kw].
template <class T_> struct BackwardWeightProblem {
  using T = T_;
  static constexpr bool kAAlongK = false, kBAlongK = false;
  static constexpr bool kAccumulates = true;  // always into a zeroed float buffer (split over pixels)
  int M, N, K, a_h, a_w, b_h, b_w;
  const T* a_ptr;
  const T* b_ptr;
  const T* bias;  // nullptr
  ConvDims d;

  __device__ Part a_row(int gi, int m) const { return {int64_t{gi} * d.cout_g + m, 0, 0}; }
  __device__ Part a_k(int, int p) const { return {int64_t{p} * d.kc, 0, 0}; }
  __device__ Part b_row(int gi, int n) const {
    const int tap = n / d.cin_g, ci = n - tap * d.cin_g, i = tap / d.kw, j = tap - i * d.kw;
    return {(int64_t{i} * d.dh * d.w + int64_t{j} * d.dw) * d.c + int64_t{gi} * d.cin_g + ci, i * d.dh, j * d.dw};
  }
  __device__ Part b_k(int, int p) const {
    const int ohw = d.oh * d.ow, n = p / ohw, q = p - n * ohw, oy = q / d.ow, ox = q - oy * d.ow;
    const int y0 = oy * d.sh - d.pt, x0 = ox * d.sw - d.pl;
    return {((int64_t{n} * d.h + y0) * d.w + x0) * d.c, y0, x0};
  }
  __device__ int64_t out_row(int gi, int m) const { return int64_t{gi * d.cout_g + m} * d.cin_g * d.kh * d.kw; }
  __device__ int64_t out_col(int, int n) const {
    const int taps = d.kh * d.kw, tap = n / d.cin_g;
    return int64_t{n - tap * d.cin_g} * taps + tap;
  }
  __device__ int bias_index(int, int) const { return 0; }
};

}  // namespace hotkernels::cuda::mma
