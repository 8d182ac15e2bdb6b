// conv2d on CUDA: one shared-memory tiled implicit-GEMM kernel, instantiated for the forward pass,
// the input gradient and the weight gradient (each a "problem" that says how to read A and B and
// where C goes), plus a direct depthwise forward kernel. Half types load as float and accumulate
// in float; double in double. Tensors are made NCHW-contiguous first.
//
// Tiles: C is cut into 64 × 64 tiles per group (grid x: columns, y: rows, z: group × K split,
// each walked grid-stride past CUDA's grid limits);
// 256 threads stage 16-deep slices of A and B in shared memory and each accumulates a 4 × 4 block.
// The weight gradient reduces over every output pixel of the batch, so it splits that reduction
// across blocks (grid z) and adds the partial tiles atomically into a float/double buffer.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "conv2d.h"

namespace hotkernels::cuda {
namespace {

using math::Conv2dGeometry;

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

// Input pixel of output pixel q = oy·ow + ox for tap (i, j); false when it falls in the padding.
__device__ __forceinline__ bool input_pixel(const Conv2dGeometry& g, int64_t q, int64_t i, int64_t j, int64_t& iy,
                                            int64_t& ix) {
  iy = q / g.ow * g.sh - g.pt + i * g.dh;
  ix = q % g.ow * g.sw - g.pl + j * g.dw;
  return iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
}

// y[n][gi·M + m][q] = Σ_k w[gi·M + m][k] · x_col[k][(n, q)] + bias; k = (ci, i, j).
template <class T, class Acc>
struct Forward {
  const T* x;
  const T* w;
  const T* bias;
  T* y;
  Conv2dGeometry g;
  __device__ int64_t rows() const { return g.cout_g(); }
  __device__ int64_t cols() const { return g.n * g.oh * g.ow; }
  __device__ int64_t depth() const { return g.kdim(); }
  __device__ Acc a(int64_t gi, int64_t m, int64_t k) const { return static_cast<Acc>(w[(gi * rows() + m) * depth() + k]); }
  __device__ Acc b(int64_t gi, int64_t k, int64_t p) const {
    const int64_t ci = k / g.taps(), i = k % g.taps() / g.kw, j = k % g.kw;
    const int64_t n = p / (g.oh * g.ow), q = p % (g.oh * g.ow);
    int64_t iy, ix;
    if (!input_pixel(g, q, i, j, iy, ix)) return Acc(0);
    return static_cast<Acc>(x[((n * g.c + gi * g.cin_g() + ci) * g.h + iy) * g.w + ix]);
  }
  __device__ void store(int64_t gi, int64_t m, int64_t p, Acc v) const {
    const int64_t n = p / (g.oh * g.ow), q = p % (g.oh * g.ow), co = gi * rows() + m;
    y[(n * g.k + co) * g.oh * g.ow + q] = static_cast<T>(bias ? v + static_cast<Acc>(bias[co]) : v);
  }
};

// gx[n][gi·Cin_g + ci][y][x] = Σ_{co,i,j} w[co][ci][i][j] · gy[n][co][oy][ox] where oy·sh = y + pt − i·dh
// (and alike for x): the transposed convolution, reading only taps that land on a stride step.
template <class T, class Acc>
struct BackwardInput {
  const T* gy;
  const T* w;
  T* gx;
  Conv2dGeometry g;
  __device__ int64_t rows() const { return g.cin_g(); }
  __device__ int64_t cols() const { return g.n * g.h * g.w; }
  __device__ int64_t depth() const { return g.cout_g() * g.taps(); }
  __device__ Acc a(int64_t gi, int64_t ci, int64_t k) const {
    const int64_t co = k / g.taps(), t = k % g.taps();
    return static_cast<Acc>(w[((gi * g.cout_g() + co) * g.cin_g() + ci) * g.taps() + t]);
  }
  __device__ Acc b(int64_t gi, int64_t k, int64_t p) const {
    const int64_t co = k / g.taps(), i = k % g.taps() / g.kw, j = k % g.kw;
    const int64_t n = p / (g.h * g.w), q = p % (g.h * g.w);
    const int64_t ey = q / g.w + g.pt - i * g.dh, ex = q % g.w + g.pl - j * g.dw;
    if (ey < 0 || ex < 0 || ey % g.sh != 0 || ex % g.sw != 0) return Acc(0);
    const int64_t oy = ey / g.sh, ox = ex / g.sw;
    if (oy >= g.oh || ox >= g.ow) return Acc(0);
    return static_cast<Acc>(gy[((n * g.k + gi * g.cout_g() + co) * g.oh + oy) * g.ow + ox]);
  }
  __device__ void store(int64_t gi, int64_t ci, int64_t p, Acc v) const {
    const int64_t n = p / (g.h * g.w), q = p % (g.h * g.w);
    gx[(n * g.c + gi * g.cin_g() + ci) * g.h * g.w + q] = static_cast<T>(v);
  }
};

// gw[gi·M + m][k] += Σ_p gy[n][gi·M + m][q] · x_col[k][(n, q)] over a slice of p = (n, q): the
// reduction runs over the GEMM's depth, so rows = output channels, columns = (ci, i, j).
template <class T, class Acc>
struct BackwardWeight {
  const T* gy;
  const T* x;
  Acc* gw;  // float/double accumulation buffer, zeroed
  Conv2dGeometry g;
  __device__ int64_t rows() const { return g.cout_g(); }
  __device__ int64_t cols() const { return g.kdim(); }
  __device__ int64_t depth() const { return g.n * g.oh * g.ow; }
  __device__ Acc a(int64_t gi, int64_t m, int64_t p) const {
    const int64_t n = p / (g.oh * g.ow), q = p % (g.oh * g.ow);
    return static_cast<Acc>(gy[(n * g.k + gi * g.cout_g() + m) * g.oh * g.ow + q]);
  }
  __device__ Acc b(int64_t gi, int64_t k, int64_t p) const {
    const int64_t ci = k / g.taps(), i = k % g.taps() / g.kw, j = k % g.kw;
    const int64_t n = p / (g.oh * g.ow), q = p % (g.oh * g.ow);
    int64_t iy, ix;
    if (!input_pixel(g, q, i, j, iy, ix)) return Acc(0);
    return static_cast<Acc>(x[((n * g.c + gi * g.cin_g() + ci) * g.h + iy) * g.w + ix]);
  }
  __device__ void store(int64_t gi, int64_t m, int64_t k, Acc v) const {
    atomicAdd(gw + (gi * g.cout_g() + m) * g.kdim() + k, v);
  }
};

// The weight-gradient problem reads B(k, p) with p as depth; the kernel asks for b(gi, depth, col).
template <class P> struct Transposed : P {
  __device__ auto b(int64_t gi, int64_t d, int64_t col) const { return P::b(gi, col, d); }
};

// One 64 × 64 tile of C: rows [m0, m0 + kBM), columns [n0, n0 + kBN) of group gi, reducing over
// depth [k_begin, k_end). Ends with a barrier, so the caller may stage the next tile right away.
template <class Acc, class P>
__device__ __forceinline__ void igemm_tile(const P& prob, Acc (&as)[kBK][kBM], Acc (&bs)[kBK][kBN], int64_t gi,
                                           int64_t m0, int64_t n0, int64_t k_begin, int64_t k_end) {
  const int64_t rows = prob.rows(), cols = prob.cols();
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  Acc acc[4][4] = {};
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kBK) {
    for (int e = threadIdx.x; e < kBK * kBM; e += kThreads) {
      const int kk = e / kBM, mm = e % kBM;  // consecutive threads: consecutive rows
      const int64_t k = k0 + kk, m = m0 + mm;
      as[kk][mm] = (k < k_end && m < rows) ? prob.a(gi, m, k) : Acc(0);
    }
    for (int e = threadIdx.x; e < kBK * kBN; e += kThreads) {
      const int kk = e / kBN, nn = e % kBN;  // consecutive threads: consecutive columns (pixels)
      const int64_t k = k0 + kk, n = n0 + nn;
      bs[kk][nn] = (k < k_end && n < cols) ? prob.b(gi, k, n) : Acc(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      Acc av[4], bv[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) av[u] = as[kk][ty + 16 * u];
#pragma unroll
      for (int v = 0; v < 4; ++v) bv[v] = bs[kk][tx + 16 * v];
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] += av[u] * bv[v];
    }
    __syncthreads();
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) {
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const int64_t m = m0 + ty + 16 * u, n = n0 + tx + 16 * v;
      if (m < rows && n < cols) prob.store(gi, m, n, acc[u][v]);
    }
  }
}

// Tiles (column tile, row tile, group × K split) are walked grid-stride in all three grid dimensions:
// gridDim.y and gridDim.z stop at 65535 (a grouped convolution may have more groups than that), so
// the launch caps the grid and each block takes every gridDim-th tile.
template <class Acc, class P>
__global__ void __launch_bounds__(kThreads) igemm_kernel(P prob, int64_t groups, int64_t splits) {
  __shared__ Acc as[kBK][kBM];
  __shared__ Acc bs[kBK][kBN];
  const int64_t rows = prob.rows(), cols = prob.cols(), depth = prob.depth();
  const int64_t per = (depth + splits - 1) / splits;
  const int64_t row_tiles = (rows + kBM - 1) / kBM, col_tiles = (cols + kBN - 1) / kBN;
  for (int64_t z = blockIdx.z; z < groups * splits; z += gridDim.z) {
    const int64_t gi = z / splits, k_begin = z % splits * per, k_end = min(depth, k_begin + per);
    for (int64_t ry = blockIdx.y; ry < row_tiles; ry += gridDim.y) {
      for (int64_t cx = blockIdx.x; cx < col_tiles; cx += gridDim.x) {
        igemm_tile<Acc>(prob, as, bs, gi, ry * kBM, cx * kBN, k_begin, k_end);
      }
    }
  }
}

template <class Acc, class P>
void launch(const P& prob, int64_t rows, int64_t cols, int64_t groups, int64_t splits) {
  constexpr int64_t kMaxX = 0x7fffffff, kMaxYZ = 65535;  // CUDA's grid limits
  const dim3 grid(static_cast<unsigned>(std::min((cols + kBN - 1) / kBN, kMaxX)),
                  static_cast<unsigned>(std::min((rows + kBM - 1) / kBM, kMaxYZ)),
                  static_cast<unsigned>(std::min(groups * splits, kMaxYZ)));
  igemm_kernel<Acc><<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(prob, groups, splits);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Depthwise forward: one thread per output value.
template <class T, class Acc>
__global__ void depthwise_forward_kernel(const T* x, const T* w, const T* bias, T* y, Conv2dGeometry g) {
  const int64_t total = g.n * g.k * g.oh * g.ow;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t q = e % (g.oh * g.ow), c = e / (g.oh * g.ow) % g.k, n = e / (g.oh * g.ow * g.k);
    Acc s = bias ? static_cast<Acc>(bias[c]) : Acc(0);
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        int64_t iy, ix;
        if (input_pixel(g, q, i, j, iy, ix)) {
          s += static_cast<Acc>(w[c * g.taps() + i * g.kw + j]) * static_cast<Acc>(x[((n * g.c + c) * g.h + iy) * g.w + ix]);
        }
      }
    }
    y[e] = static_cast<T>(s);
  }
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_conv2d_tensors("conv2d", input, "input", weight, "weight");
  check_conv2d_bias("conv2d", bias, input, weight);
  const Conv2dGeometry g = conv2d_geometry("conv2d", input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty({g.n, g.k, g.oh, g.ow}, x.options());
  if (y.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hotkernels_conv2d_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const scalar_t* bp = b.defined() ? b.const_data_ptr<scalar_t>() : nullptr;
    if (g.cin_g() == 1 && g.cout_g() == 1) {
      const int64_t total = y.numel();
      const int blocks = static_cast<int>(std::min<int64_t>((total + 255) / 256, 65535));
      depthwise_forward_kernel<scalar_t, Acc><<<blocks, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
          x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), bp, y.mutable_data_ptr<scalar_t>(), g);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    const Forward<scalar_t, Acc> prob{x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), bp,
                                      y.mutable_data_ptr<scalar_t>(), g};
    launch<Acc>(prob, g.cout_g(), g.n * g.oh * g.ow, g.groups, 1);
  });
  return y;
}

at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  const char* op = "conv2d_backward_input";
  check_conv2d_tensors(op, grad_output, "grad_output", weight, "weight");
  const Conv2dGeometry g = conv2d_geometry(op, input_size, weight.sizes(), stride, padding, dilation, groups);
  check_conv2d_grad_output(op, grad_output, g);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor gy = grad_output.contiguous(), w = weight.contiguous();
  at::Tensor gx = at::zeros({g.n, g.c, g.h, g.w}, gy.options());
  if (gx.numel() == 0 || gy.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "hotkernels_conv2d_backward_input_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const BackwardInput<scalar_t, Acc> prob{gy.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                            gx.mutable_data_ptr<scalar_t>(), g};
    launch<Acc>(prob, g.cin_g(), g.n * g.h * g.w, g.groups, 1);
  });
  return gx;
}

at::Tensor conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  const char* op = "conv2d_backward_weight";
  check_conv2d_tensors(op, grad_output, "grad_output", input, "input");
  const Conv2dGeometry g = conv2d_geometry(op, input.sizes(), weight_size, stride, padding, dilation, groups);
  check_conv2d_grad_output(op, grad_output, g);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor gy = grad_output.contiguous(), x = input.contiguous();
  const at::ScalarType acc_type = gy.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor acc = at::zeros(weight_size, gy.options().dtype(acc_type));
  if (gy.numel() == 0) return acc.to(gy.scalar_type());
  // Enough K splits to give every SM a few blocks, each still reducing over ≥ 1024 pixels.
  const int64_t tiles = g.groups * ((g.cout_g() + kBM - 1) / kBM) * ((g.kdim() + kBN - 1) / kBN);
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t depth = g.n * g.oh * g.ow;
  const int64_t splits = std::max<int64_t>(1, std::min((4 * sms + tiles - 1) / tiles, (depth + 1023) / 1024));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "hotkernels_conv2d_backward_weight_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    Transposed<BackwardWeight<scalar_t, Acc>> prob;
    static_cast<BackwardWeight<scalar_t, Acc>&>(prob) = {gy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                                         acc.mutable_data_ptr<Acc>(), g};
    launch<Acc>(prob, g.cout_g(), g.kdim(), g.groups, splits);
  });
  return acc.to(gy.scalar_type());
}

// Σ over batch and pixels per channel: one block per channel, a tree reduction in shared memory.
template <class T, class Acc>
__global__ void channel_sum_kernel(const T* gy, T* out, int64_t n, int64_t k, int64_t hw) {
  __shared__ Acc part[256];
  const int64_t c = blockIdx.x;
  Acc s = 0;
  for (int64_t e = threadIdx.x; e < n * hw; e += blockDim.x) s += static_cast<Acc>(gy[(e / hw * k + c) * hw + e % hw]);
  part[threadIdx.x] = s;
  __syncthreads();
  for (int width = blockDim.x / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) part[threadIdx.x] += part[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[c] = static_cast<T>(part[0]);
}

at::Tensor conv2d_backward_bias(const at::Tensor& grad_output) {
  check_floating("conv2d_backward_bias", "grad_output", grad_output);
  TORCH_CHECK(grad_output.dim() == 4, "hotkernels.conv2d_backward_bias: expected 'grad_output' to be 4-D, but got ",
              grad_output.sizes());
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor gy = grad_output.contiguous();
  const int64_t n = gy.size(0), k = gy.size(1), hw = gy.size(2) * gy.size(3);
  at::Tensor gb = at::empty({k}, gy.options());
  if (k == 0) return gb;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "hotkernels_conv2d_backward_bias_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    channel_sum_kernel<scalar_t, Acc><<<static_cast<unsigned>(k), 256, 0, at::cuda::getCurrentCUDAStream()>>>(
        gy.const_data_ptr<scalar_t>(), gb.mutable_data_ptr<scalar_t>(), n, k, hw);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gb;
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CUDA, m) {
  m.impl("conv2d", &conv2d);
  m.impl("conv2d_backward_input", &conv2d_backward_input);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight);
  m.impl("conv2d_backward_bias", &conv2d_backward_bias);
}

}  // namespace hotkernels::cuda
