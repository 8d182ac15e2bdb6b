// Direct depthwise conv2d (groups = C_in = C_out): forward, input gradient and weight gradient, for
// NCHW or NHWC tensors alike. Each activation is read through its own strides (any dense layout,
// see Strides) and each thread walks one tensor in its memory order, so the loads and stores of a
// warp are contiguous in either layout. Accumulation in Acc (float for half types, double for double).
#pragma once

#include <algorithm>
#include <cstdint>

#include "math/conv2d.h"

namespace hotkernels::cuda::depthwise {

using math::Conv2dGeometry;

// Element strides of a dense 4-D tensor [n][c][y][x]; `cl` when channels are innermost (NHWC), which
// fixes the order in which a flat index is decomposed.
struct Strides {
  int64_t n, c, y, x;
  bool cl;
};

// (n, c, y, x) of flat index e of a dense tensor of the given extents and layout.
template <class I>
__device__ __forceinline__ void unflatten(I e, bool cl, I c_count, I h, I w, I& n, I& c, I& y, I& x) {
  if (cl) {
    c = e % c_count;
    e /= c_count;
    x = e % w;
    e /= w;
    y = e % h;
    n = e / h;
  } else {
    x = e % w;
    e /= w;
    y = e % h;
    e /= h;
    c = e % c_count;
    n = e / c_count;
  }
}

// y[n][c][oy][ox] = b[c] + Σ_ij w[c][i][j] · x[n][c][oy·sh − pt + i·dh][ox·sw − pl + j·dw].
// One thread per output element; I is int32 when every flat index fits (faster div/mod).
template <class T, class Acc, class I>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                               T* __restrict__ y, Conv2dGeometry g, Strides xs, Strides ys) {
  const I total = static_cast<I>(g.n * g.k * g.oh * g.ow);
  for (I e = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += static_cast<I>(gridDim.x) * blockDim.x) {
    I n, c, oy, ox;
    unflatten<I>(e, ys.cl, static_cast<I>(g.k), static_cast<I>(g.oh), static_cast<I>(g.ow), n, c, oy, ox);
    Acc s = bias ? static_cast<Acc>(bias[c]) : Acc(0);
    const T* xc = x + n * xs.n + c * xs.c;
    const T* wc = w + c * g.kh * g.kw;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t iy = oy * g.sh - g.pt + i * g.dh;
      if (iy < 0 || iy >= g.h) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t ix = ox * g.sw - g.pl + j * g.dw;
        if (ix >= 0 && ix < g.w) s += static_cast<Acc>(wc[i * g.kw + j]) * static_cast<Acc>(xc[iy * xs.y + ix * xs.x]);
      }
    }
    y[n * ys.n + c * ys.c + oy * ys.y + ox * ys.x] = static_cast<T>(s);
  }
}

// gx[n][c][y][x] = Σ_ij w[c][i][j] · gy[n][c][oy][ox] over the taps with oy·sh = y + pt − i·dh exactly
// (and alike for x) inside the output. One thread per input element.
template <class T, class Acc, class I>
__global__ void backward_input_kernel(const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx,
                                      Conv2dGeometry g, Strides gys, Strides gxs) {
  const I total = static_cast<I>(g.n * g.c * g.h * g.w);
  for (I e = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += static_cast<I>(gridDim.x) * blockDim.x) {
    I n, c, y, x;
    unflatten<I>(e, gxs.cl, static_cast<I>(g.c), static_cast<I>(g.h), static_cast<I>(g.w), n, c, y, x);
    Acc s = Acc(0);
    const T* gc = gy + n * gys.n + c * gys.c;
    const T* wc = w + c * g.kh * g.kw;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ey = y + g.pt - i * g.dh;
      if (ey < 0 || ey % g.sh != 0 || ey / g.sh >= g.oh) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t ex = x + g.pl - j * g.dw;
        if (ex < 0 || ex % g.sw != 0 || ex / g.sw >= g.ow) continue;
        s += static_cast<Acc>(wc[i * g.kw + j]) * static_cast<Acc>(gc[ey / g.sh * gys.y + ex / g.sw * gys.x]);
      }
    }
    gx[n * gxs.n + c * gxs.c + y * gxs.y + x * gxs.x] = static_cast<T>(s);
  }
}

// Taps per block of the weight-gradient kernel (one accumulator each per thread): a 3×3 kernel in
// one block, larger kernels in several (grid y).
constexpr int kTapChunk = 9;
constexpr int kWeightThreads = 256;

// gw[c][i][j] += Σ_(n, oy, ox) gy[n][c][oy][ox] · x[n][c][iy][ix] over one slice of the output pixels
// (grid z) for `cb` channels (grid x) and blocks of up to kTapChunk taps (grid y, walked grid-stride:
// a kernel may have more tap blocks than gridDim.y's 65535). Thread = (channel c0 + tid % cb,
// pixel lane tid / cb): cb = 32 when channels are innermost (NHWC: lanes read consecutive channels),
// 1 otherwise (lanes read consecutive pixels). Partial sums are reduced over the pixel lanes in
// shared memory and added atomically into gw (Acc, zeroed).
template <class T, class Acc>
__global__ void __launch_bounds__(kWeightThreads)
    backward_weight_kernel(const T* __restrict__ gy, const T* __restrict__ x, Acc* __restrict__ gw, Conv2dGeometry g,
                           Strides gys, Strides xs, int cb, int64_t per_split) {
  __shared__ Acc part[kTapChunk][kWeightThreads];
  const int lanes = kWeightThreads / cb, lane = threadIdx.x / cb;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * cb + threadIdx.x % cb;
  const int64_t taps = g.kh * g.kw, tap_blocks = (taps + kTapChunk - 1) / kTapChunk;
  const int64_t pixels = g.n * g.oh * g.ow, p_begin = blockIdx.z * per_split;
  const int64_t p_end = std::min(pixels, p_begin + per_split);
  // The loop condition is uniform over the block, so every thread reaches every barrier. A thread
  // rewrites only its own part slots at the top of an iteration, and after the previous
  // iteration's last barrier no thread reads another's: no barrier is needed between iterations.
  for (int64_t tb = blockIdx.y; tb < tap_blocks; tb += gridDim.y) {
    const int64_t t0 = tb * kTapChunk;
    const int nt = static_cast<int>(std::min<int64_t>(kTapChunk, taps - t0));
    Acc acc[kTapChunk] = {};
    if (c < g.c) {
      for (int64_t p = p_begin + lane; p < p_end; p += lanes) {
        const int64_t n = p / (g.oh * g.ow), q = p % (g.oh * g.ow), oy = q / g.ow, ox = q % g.ow;
        const Acc d = static_cast<Acc>(gy[n * gys.n + c * gys.c + oy * gys.y + ox * gys.x]);
        const T* xc = x + n * xs.n + c * xs.c;
#pragma unroll
        for (int t = 0; t < kTapChunk; ++t) {
          if (t >= nt) break;
          const int64_t i = (t0 + t) / g.kw, j = (t0 + t) % g.kw;
          const int64_t iy = oy * g.sh - g.pt + i * g.dh, ix = ox * g.sw - g.pl + j * g.dw;
          if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) acc[t] += d * static_cast<Acc>(xc[iy * xs.y + ix * xs.x]);
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kTapChunk; ++t) part[t][threadIdx.x] = acc[t];
    __syncthreads();
    // Tree over the pixel lanes: part[t][lane·cb + c_local]; lanes is a power of two.
    for (int width = lanes / 2; width > 0; width /= 2) {
      if (lane < width) {
        for (int t = 0; t < nt; ++t) part[t][threadIdx.x] += part[t][threadIdx.x + width * cb];
      }
      __syncthreads();
    }
    if (lane == 0 && c < g.c) {
      for (int t = 0; t < nt; ++t) atomicAdd(gw + c * taps + t0 + t, part[t][threadIdx.x]);
    }
  }
}

}  // namespace hotkernels::cuda::depthwise
