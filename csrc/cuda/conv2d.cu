// conv2d on CUDA. Three kinds of kernel, chosen per call by named rules (select_path):
//  - tensor cores (conv2d_mma.cuh, conv2d_mma_problems.cuh): implicit GEMMs on NHWC activations
//    for float16/bfloat16 and for float32 when torch's cuDNN TF32 flag is on (TF32 inputs, float
//    accumulation). NCHW inputs are converted to NHWC once (a copy of the tensor: the workspace is
//    bounded by the activations, never an im2col); outputs are written directly in the requested
//    layout. Split-K partial sums (when the output tile grid is too small to fill the GPU) go through
//    a float buffer the size of the output.
//  - depthwise (conv2d_depthwise.cuh): direct kernels for groups = C_in = C_out, any layout.
//  - exact (below): a shared-memory tiled FMA implicit GEMM on NCHW tensors, for float64, for float32
//    with TF32 off (exact FP32, like cuDNN then) and for shapes beyond the tensor-core kernels' int32
//    index bounds (mma_fits).
// The ops (csrc/conv2d.cpp) hand over results allocated in torch's layout (conv2d_output_format in
// csrc/conv2d.h); the kernels below fill them through the stubs declared there.
//
// Exact path tiles: C is cut into 64 × 64 tiles per group (grid x: columns, y: rows, z: group × K
// split, each walked grid-stride past CUDA's grid limits); 256 threads stage 16-deep slices of A
// and B in shared memory and each accumulates a 4 × 4 block. Its weight gradient splits the
// reduction over the batch's pixels across blocks (grid z) and adds the partial tiles atomically
// into a float/double buffer.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/Dispatch_v2.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <tuple>
#include <type_traits>

#include "conv2d.h"
#include "conv2d_depthwise.cuh"
#include "conv2d_mma_problems.cuh"
#include "cuda/grid.cuh"
#include "static_switch.h"

namespace hotkernels::cuda {
namespace {

using math::Conv2dGeometry;

constexpr int kBM = 64, kBN = 64, kBK = 16, kThreads = 256;

// x_col[k][p] of group gi, the implicit im2col matrix that the forward GEMM and the weight gradient
// read: for output pixel p = (n, oy, ox) and k = (ci, i, j), input pixel (oy·sh − pt + i·dh,
// ox·sw − pl + j·dw) of channel gi·Cin_g + ci; 0 in the padding.
template <class Acc, class T>
__device__ __forceinline__ Acc x_col(const T* x, const Conv2dGeometry& g, int64_t gi, int64_t k, int64_t p) {
  const int64_t ci = k / g.taps(), i = k % g.taps() / g.kw, j = k % g.kw;
  const int64_t n = p / (g.oh * g.ow), q = p % (g.oh * g.ow);
  const int64_t iy = q / g.ow * g.sh - g.pt + i * g.dh, ix = q % g.ow * g.sw - g.pl + j * g.dw;
  if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) return Acc(0);
  return static_cast<Acc>(x[((n * g.c + gi * g.cin_g() + ci) * g.h + iy) * g.w + ix]);
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
  __device__ Acc b(int64_t gi, int64_t k, int64_t p) const { return x_col<Acc>(x, g, gi, k, p); }
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
  __device__ Acc b(int64_t gi, int64_t k, int64_t p) const { return x_col<Acc>(x, g, gi, k, p); }
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
  constexpr int64_t kMaxX = 0x7fffffff;  // CUDA's grid limit in x
  const dim3 grid(static_cast<unsigned>(std::min((cols + kBN - 1) / kBN, kMaxX)),
                  static_cast<unsigned>(std::min((rows + kBM - 1) / kBM, kMaxGridYZ)),
                  static_cast<unsigned>(std::min(groups * splits, kMaxGridYZ)));
  igemm_kernel<Acc><<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(prob, groups, splits);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// Path selection.

enum class Path { kDepthwise, kTensorCore, kExact };

// float32 runs as TF32 when torch's flag for cuDNN convolutions says so
// (torch.backends.cudnn.allow_tf32, or torch.backends.cudnn.conv.fp32_precision = "tf32"); read on
// every call, as torch's own cuDNN convolution does. Half types always use the tensor cores
// (float accumulation); float64 never.
bool tensor_core_dtype(at::ScalarType t) {
  if (t == at::kHalf || t == at::kBFloat16) return true;
  return t == at::kFloat && at::globalContext().allowTF32CuDNN(at::Float32Op::CONV);
}

// The tensor-core problems index in int32 (GEMM extents, pixel coordinates) and the kernel marks
// out-of-range rows with coordinates near -2^29: every coordinate must stay below 2^28 and every
// GEMM extent a little below 2^31; the column-tile count is grid y (< 65536). Beyond that, exact.
bool mma_fits(const Conv2dGeometry& g) {
  constexpr int64_t kCoord = int64_t{1} << 28, kExtent = (int64_t{1} << 31) - 4096, kCols = kMaxGridYZ * 64;
  const int64_t coords[] = {g.h, g.w, g.oh * g.sh, g.ow * g.sw, g.pt, g.pl, g.dh * g.kh, g.dw * g.kw, g.sh, g.sw};
  const int64_t extents[] = {g.n * g.oh * g.ow, g.n * g.h * g.w, g.c, g.k, g.kdim(), g.taps() * g.cout_g()};
  return std::all_of(std::begin(coords), std::end(coords), [&](int64_t v) { return v < kCoord; }) &&
         std::all_of(std::begin(extents), std::end(extents), [&](int64_t v) { return v <= kExtent; }) &&
         std::max({g.kdim(), g.cin_g(), g.cout_g()}) <= kCols && g.groups <= kMaxGridYZ;
}

Path select_path(const Conv2dGeometry& g, at::ScalarType t) {
  if (g.depthwise()) return Path::kDepthwise;
  if (tensor_core_dtype(t) && mma_fits(g)) return Path::kTensorCore;
  return Path::kExact;
}

at::MemoryFormat layout_of(const at::Tensor& t) { return t.suggest_memory_format(); }

// ---------------------------------------------------------------------------------------------
// Tensor-core path (host side).

template <class S> struct DeviceType {
  using type = S;
};
template <> struct DeviceType<at::Half> {
  using type = __half;
};
template <> struct DeviceType<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <class S> const typename DeviceType<S>::type* dptr(const at::Tensor& t) {
  return reinterpret_cast<const typename DeviceType<S>::type*>(t.const_data_ptr<S>());
}

mma::ConvDims conv_dims(const Conv2dGeometry& g, bool nchw_out) {
  auto i = [](int64_t v) { return static_cast<int>(v); };  // in range: mma_fits
  return {i(g.n),  i(g.c),  i(g.h),  i(g.w),  i(g.k),  i(g.oh),       i(g.ow),        i(g.kh), i(g.kw),
          i(g.sh), i(g.sw), i(g.pt), i(g.pl), i(g.dh), i(g.dw), i(g.cin_g()), i(g.cout_g()), nchw_out};
}

// Blocks that split one reduction add their partial sums atomically, in no fixed order. Under
// torch.use_deterministic_algorithms every path takes one block per output value instead (its one
// atomic add into a zeroed buffer is exact): `wanted` splits become 1.
bool deterministic() { return at::globalContext().deterministicAlgorithms(); }
int64_t reduction_splits(int64_t wanted) { return deterministic() ? 1 : wanted; }

// Tile shape and K splits for an M × N × K GEMM per group: 128 rows and columns (64 on a side that
// has no more) when that gives every SM a block; otherwise 64 × 64 and, when `split_ok`, enough K
// splits for about two blocks per SM, each still at least 4 k-slices deep.
enum class TileShape { k128x128, k128x64, k64x128, k64x64 };  // in the order of Tiles
using Tiles = std::tuple<mma::Tile128x128, mma::Tile128x64, mma::Tile64x128, mma::Tile64x64>;

struct Plan {
  TileShape tile;
  int splits;
};

Plan plan_gemm(int64_t m, int64_t n, int64_t k, int64_t groups, int bk, bool split_ok) {
  split_ok = split_ok && !deterministic();
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t bm = m <= 64 ? 64 : 128, bn = n <= 64 ? 64 : 128;
  auto blocks = [&](int64_t tm, int64_t tn) { return (m + tm - 1) / tm * ((n + tn - 1) / tn) * groups; };
  if (blocks(bm, bn) >= sms || !split_ok) {
    const TileShape tile = bm == 128 ? (bn == 128 ? TileShape::k128x128 : TileShape::k128x64)
                                     : (bn == 128 ? TileShape::k64x128 : TileShape::k64x64);
    return {tile, 1};
  }
  const int64_t slices = (k + bk - 1) / bk;
  const int64_t want = (2 * sms + blocks(64, 64) - 1) / blocks(64, 64);
  const int64_t splits = std::clamp<int64_t>(std::min(want, slices / 4), 1, kMaxGridYZ / groups);
  return {TileShape::k64x64, static_cast<int>(splits)};
}

template <class Cfg, bool kAtomic, bool kVec, class P, class Out>
void launch_tile(const P& p, int64_t groups, int splits, Out* out) {
  const dim3 grid(static_cast<unsigned>((p.M + Cfg::BM - 1) / Cfg::BM), static_cast<unsigned>((p.N + Cfg::BN - 1) / Cfg::BN),
                  static_cast<unsigned>(groups * splits));
  mma::igemm_mma_kernel<Cfg, kAtomic, kVec><<<grid, Cfg::kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(p, out, splits);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <bool kAtomic, bool kVec, class P, class Out> void launch_shape(const P& p, int64_t groups, const Plan& plan, Out* out) {
  static_switch<TileShape::k128x128, TileShape::k128x64, TileShape::k64x128, TileShape::k64x64>(
      plan.tile, [&]<TileShape kShape>() {
        using Cfg = std::tuple_element_t<static_cast<size_t>(kShape), Tiles>;
        launch_tile<Cfg, kAtomic, kVec>(p, groups, plan.splits, out);
      });
}

// Launches problem p for every group: into `out` (T), or, when `acc` is defined, adding into that
// float buffer. Only the weight gradient (kAccumulates) adds with every tile shape; the other passes
// add only when split, which plan_gemm does with 64 × 64 tiles (fewer kernels to compile). `vec`:
// 16-byte operand loads (vector_loads).
template <class P>
void launch_mma(const P& p, int64_t groups, const Plan& plan, const at::Tensor& out, const at::Tensor& acc, bool vec) {
  if constexpr (P::kAccumulates) {
    TORCH_INTERNAL_ASSERT(!vec);
    launch_shape<true, false>(p, groups, plan, acc.mutable_data_ptr<float>());
  } else {
    static_switch<false, true>(vec, [&]<bool kVec>() {
      if (acc.defined()) {
        TORCH_INTERNAL_ASSERT(plan.tile == TileShape::k64x64);
        launch_tile<mma::Tile64x64, true, kVec>(p, groups, plan.splits, acc.mutable_data_ptr<float>());
      } else {
        launch_shape<false, kVec>(p, groups, plan, static_cast<typename P::T*>(out.mutable_data_ptr()));
      }
    });
  }
}

// 16-byte operand loads need every chunk of 16 / sizeof(T) consecutive k to be one tap's consecutive
// channels at an aligned address: the reduced channel count of a group (`channels`: C_in/groups
// forward, C_out/groups for the input gradient) a multiple of the chunk (then so are every pixel
// stride, group offset, weight row and K), and the operands' data 16-byte aligned.
bool vector_loads(int64_t channels, int64_t elem_size, std::initializer_list<const at::Tensor*> operands) {
  const int64_t chunk = 16 / elem_size;
  return channels % chunk == 0 && std::all_of(operands.begin(), operands.end(), [](const at::Tensor* t) {
           return reinterpret_cast<uintptr_t>(t->const_data_ptr()) % 16 == 0;
         });
}

// Split-K destination: `out` itself (zeroed) for float32, else a zeroed float twin with its layout.
at::Tensor split_buffer(const at::Tensor& out) {
  return out.scalar_type() == at::kFloat ? out.zero_() : at::zeros_like(out, out.options().dtype(at::kFloat));
}

void finish_split(const at::Tensor& out, const at::Tensor& acc) {
  if (acc.defined() && !acc.is_same(out)) out.copy_(acc);
}

void forward_mma(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const Conv2dGeometry& g,
                 const at::Tensor& y, bool nchw_out) {
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor w = weight.permute({0, 2, 3, 1}).contiguous();  // [C_out][kh][kw][C_in/groups]
  AT_DISPATCH_V2(x.scalar_type(), "hotkernels_conv2d_mma_cuda", AT_WRAP([&] {
    using T = typename DeviceType<scalar_t>::type;
    const mma::ForwardProblem<T> p{static_cast<int>(g.n * g.oh * g.ow), static_cast<int>(g.cout_g()), static_cast<int>(g.kdim()),
                                   static_cast<int>(g.h), static_cast<int>(g.w), 1, 1, dptr<scalar_t>(x), dptr<scalar_t>(w),
                                   bias.defined() ? dptr<scalar_t>(bias) : nullptr, conv_dims(g, nchw_out)};
    const Plan plan = plan_gemm(p.M, p.N, p.K, g.groups, mma::Traits<T>::kBK, true);
    const at::Tensor acc = plan.splits > 1 ? split_buffer(y) : at::Tensor();
    launch_mma(p, g.groups, plan, y, acc, vector_loads(g.cin_g(), sizeof(T), {&x, &w}));
    finish_split(y, acc);
  }), at::kFloat, at::kHalf, at::kBFloat16);
}

// The stride classes of the input gradient (see BackwardInputProblem): for each residue (ry, rx), the
// taps that reach it on a stride step. Classes without pixels are skipped; classes without taps
// remain (their GEMM has K = 0 and writes zeros, unless split-K has zeroed the output already).
mma::StrideClass stride_class(const Conv2dGeometry& g, int64_t ry, int64_t rx) {
  mma::StrideClass s{};
  auto axis = [](int64_t r, int64_t size, int64_t stride, int64_t pad, int64_t dil, int64_t taps, int& count, int& t0,
                 int& step, int& nt, int& q0, int& e) {
    count = static_cast<int>((size - r + stride - 1) / stride);
    step = static_cast<int>(stride / std::gcd(stride, dil));
    t0 = 0;
    nt = 0;
    for (int64_t t = 0; t < std::min<int64_t>(taps, step); ++t) {
      if (((r + pad - t * dil) % stride + stride) % stride == 0) {
        t0 = static_cast<int>(t);
        nt = static_cast<int>((taps - 1 - t) / step + 1);
        break;
      }
    }
    q0 = static_cast<int>((r + pad - t0 * dil) / stride);  // exact when nt > 0
    e = static_cast<int>(step * dil / stride);
  };
  s.ry = static_cast<int>(ry);
  s.rx = static_cast<int>(rx);
  axis(ry, g.h, g.sh, g.pt, g.dh, g.kh, s.cy, s.i0, s.si, s.ti, s.qy0, s.ey);
  axis(rx, g.w, g.sw, g.pl, g.dw, g.kw, s.cx, s.j0, s.sj, s.tj, s.qx0, s.ex);
  return s;
}

void backward_input_mma(const at::Tensor& grad_output, const at::Tensor& weight, const Conv2dGeometry& g,
                        const at::Tensor& gx, bool nchw_out) {
  const at::Tensor gy = grad_output.contiguous(at::MemoryFormat::ChannelsLast);
  // [groups][C_in/groups][kh][kw][C_out/groups]: k = (tap, co) contiguous for each input channel.
  const at::Tensor w = weight.reshape({g.groups, g.cout_g(), g.cin_g(), g.kh, g.kw}).permute({0, 2, 3, 4, 1}).contiguous();
  AT_DISPATCH_V2(gy.scalar_type(), "hotkernels_conv2d_mma_cuda", AT_WRAP([&] {
    using T = typename DeviceType<scalar_t>::type;
    // One plan for all classes, from the largest (class (0, 0) has the most pixels; K ≤ all taps):
    // split-K then accumulates every class in one zeroed buffer.
    const int64_t m_max = g.n * ((g.h + g.sh - 1) / g.sh) * ((g.w + g.sw - 1) / g.sw);
    const Plan plan = plan_gemm(m_max, g.cin_g(), g.taps() * g.cout_g(), g.groups, mma::Traits<T>::kBK, true);
    const at::Tensor acc = plan.splits > 1 ? split_buffer(gx) : at::Tensor();
    const bool vec = vector_loads(g.cout_g(), sizeof(T), {&gy, &w});
    for (int64_t ry = 0; ry < std::min(g.sh, g.h); ++ry) {
      for (int64_t rx = 0; rx < std::min(g.sw, g.w); ++rx) {
        const mma::StrideClass s = stride_class(g, ry, rx);
        const mma::BackwardInputProblem<T> p{static_cast<int>(g.n) * s.cy * s.cx, static_cast<int>(g.cin_g()),
                                             s.ti * s.tj * static_cast<int>(g.cout_g()), static_cast<int>(g.oh),
                                             static_cast<int>(g.ow), 1, 1, dptr<scalar_t>(gy), dptr<scalar_t>(w), nullptr,
                                             conv_dims(g, nchw_out), s};
        if (acc.defined() && p.K == 0) continue;  // no tap reaches this class: the zeroed buffer is its result
        launch_mma(p, g.groups, plan, gx, acc, vec);
      }
    }
    finish_split(gx, acc);
  }), at::kFloat, at::kHalf, at::kBFloat16);
}

// Adds the weight gradient into `acc` (float32, contiguous, zeroed): split-K sums.
void backward_weight_mma(const at::Tensor& grad_output, const at::Tensor& input, const Conv2dGeometry& g,
                         const at::Tensor& acc) {
  const at::Tensor gy = grad_output.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor x = input.contiguous(at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_V2(gy.scalar_type(), "hotkernels_conv2d_mma_cuda", AT_WRAP([&] {
    using T = typename DeviceType<scalar_t>::type;
    const mma::BackwardWeightProblem<T> p{static_cast<int>(g.cout_g()), static_cast<int>(g.kdim()),
                                          static_cast<int>(g.n * g.oh * g.ow), 1, 1, static_cast<int>(g.h),
                                          static_cast<int>(g.w), dptr<scalar_t>(gy), dptr<scalar_t>(x), nullptr,
                                          conv_dims(g, false)};
    launch_mma(p, g.groups, plan_gemm(p.M, p.N, p.K, g.groups, mma::Traits<T>::kBK, true), acc, acc, false);
  }), at::kFloat, at::kHalf, at::kBFloat16);
}

// ---------------------------------------------------------------------------------------------
// Depthwise path (host side).

// Strides of a tensor that is dense in `layout`, computed from its sizes: the tensor's own strides
// may be arbitrary along size-1 dimensions, and the kernels' flat indexing assumes the canonical ones.
depthwise::Strides strides_of(const at::Tensor& t, at::MemoryFormat layout) {
  const int64_t c = t.size(1), h = t.size(2), w = t.size(3);
  if (layout == at::MemoryFormat::ChannelsLast) return {h * w * c, 1, w * c, c, true};
  return {c * h * w, h * w, w, 1, false};
}

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// The largest element count the depthwise kernels may walk with int32 indices: the grid-stride loop's
// last step (index + blocks · 256 threads) must not pass INT32_MAX either.
int64_t int32_loop_bound(unsigned blocks) { return kInt32Max - int64_t{blocks} * 256; }

// Launches a depthwise kernel of one thread per element of `out` (grid-stride) as
// `launch.template operator()<I>(blocks)`, I the index type the grid needs for `in` and `out`: int
// where it is enough (fewer registers, faster div/mod), else int64_t.
template <class F>
void launch_per_element(const at::Tensor& in, const at::Tensor& out, F&& launch) {
  const unsigned blocks = grid_stride_blocks(out.numel(), 256, 32);
  static_switch<true, false>(std::max(in.numel(), out.numel()) <= int32_loop_bound(blocks), [&]<bool kInt32>() {
    launch.template operator()<std::conditional_t<kInt32, int, int64_t>>(blocks);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void forward_depthwise(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const Conv2dGeometry& g,
                       const at::Tensor& y, at::MemoryFormat layout) {
  const at::Tensor x = input.contiguous(layout), w = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hotkernels_conv2d_depthwise_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const scalar_t* bp = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    launch_per_element(x, y, [&]<class I>(unsigned blocks) {
      depthwise::forward_kernel<scalar_t, Acc, I><<<blocks, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
          x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), bp, y.mutable_data_ptr<scalar_t>(), g,
          strides_of(x, layout), strides_of(y, layout));
    });
  });
}

void backward_input_depthwise(const at::Tensor& grad_output, const at::Tensor& weight, const Conv2dGeometry& g,
                              const at::Tensor& gx, at::MemoryFormat layout) {
  const at::Tensor gy = grad_output.contiguous(layout), w = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "hotkernels_conv2d_depthwise_backward_input_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    launch_per_element(gy, gx, [&]<class I>(unsigned blocks) {
      depthwise::backward_input_kernel<scalar_t, Acc, I><<<blocks, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
          gy.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), gx.mutable_data_ptr<scalar_t>(), g,
          strides_of(gy, layout), strides_of(gx, layout));
    });
  });
}

// Adds the weight gradient into `gw` (the accumulation type, contiguous, zeroed).
void backward_weight_depthwise(const at::Tensor& grad_output, const at::Tensor& input, const Conv2dGeometry& g,
                               const at::Tensor& gw) {
  const at::MemoryFormat layout = layout_of(input);
  const at::Tensor x = input.contiguous(layout), gy = grad_output.contiguous(layout);
  const int cb = layout == at::MemoryFormat::ChannelsLast ? 32 : 1;
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t cblocks = (g.c + cb - 1) / cb, tblocks = (g.taps() + depthwise::kTapChunk - 1) / depthwise::kTapChunk;
  const int64_t pixels = g.n * g.oh * g.ow, lanes = depthwise::kWeightThreads / cb;
  // About four blocks per SM, each pixel lane still summing at least 8 pixels.
  const int64_t splits = reduction_splits(std::clamp<int64_t>(
      std::min((4 * sms + cblocks * tblocks - 1) / (cblocks * tblocks), (pixels + 8 * lanes - 1) / (8 * lanes)), 1,
      kMaxGridYZ));
  const int64_t per_split = (pixels + splits - 1) / splits;
  // Tap blocks (grid y) pass 65535 for kernels of more than 65535 · kTapChunk taps: the kernel walks
  // them grid-stride.
  const dim3 grid(static_cast<unsigned>(cblocks), static_cast<unsigned>(std::min(tblocks, kMaxGridYZ)),
                  static_cast<unsigned>(splits));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hotkernels_conv2d_depthwise_backward_weight_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    depthwise::backward_weight_kernel<scalar_t, Acc><<<grid, depthwise::kWeightThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        gy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gw.mutable_data_ptr<Acc>(), g, strides_of(gy, layout),
        strides_of(x, layout), cb, per_split);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// ---------------------------------------------------------------------------------------------
// Exact path (host side): NCHW problems, written into the result itself when it is contiguous.

void forward_exact(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias, const Conv2dGeometry& g,
                   const at::Tensor& y) {
  const at::Tensor x = input.contiguous(), w = weight.contiguous(), yc = contiguous_target(y, y.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hotkernels_conv2d_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const scalar_t* bp = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    const Forward<scalar_t, Acc> prob{x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), bp,
                                      yc.mutable_data_ptr<scalar_t>(), g};
    launch<Acc>(prob, g.cout_g(), g.n * g.oh * g.ow, g.groups, 1);
  });
  finish_into(y, yc);
}

void backward_input_exact(const at::Tensor& grad_output, const at::Tensor& weight, const Conv2dGeometry& g,
                          const at::Tensor& gx) {
  const at::Tensor gy = grad_output.contiguous(), w = weight.contiguous(), gxc = contiguous_target(gx, gx.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "hotkernels_conv2d_backward_input_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    const BackwardInput<scalar_t, Acc> prob{gy.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                            gxc.mutable_data_ptr<scalar_t>(), g};
    launch<Acc>(prob, g.cin_g(), g.n * g.h * g.w, g.groups, 1);
  });
  finish_into(gx, gxc);
}

// Adds the weight gradient into `gw` (the accumulation type, contiguous, zeroed).
void backward_weight_exact(const at::Tensor& grad_output, const at::Tensor& input, const Conv2dGeometry& g,
                           const at::Tensor& gw) {
  const at::Tensor gy = grad_output.contiguous(), x = input.contiguous();
  // Enough K splits to give every SM a few blocks, each still reducing over ≥ 1024 pixels.
  const int64_t tiles = g.groups * ((g.cout_g() + kBM - 1) / kBM) * ((g.kdim() + kBN - 1) / kBN);
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t depth = g.n * g.oh * g.ow;
  const int64_t splits =
      reduction_splits(std::max<int64_t>(1, std::min((4 * sms + tiles - 1) / tiles, (depth + 1023) / 1024)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "hotkernels_conv2d_backward_weight_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    Transposed<BackwardWeight<scalar_t, Acc>> prob;
    static_cast<BackwardWeight<scalar_t, Acc>&>(prob) = {gy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                                         gw.mutable_data_ptr<Acc>(), g};
    launch<Acc>(prob, g.cout_g(), g.kdim(), g.groups, splits);
  });
}

// Σ over batch and pixels per channel, in either layout: block = `cb` channels (grid x) × pixel lanes,
// over one slice of the pixels (grid y); partial sums reduced over the lanes in shared memory and
// added atomically into `out` (Acc, zeroed). For a dense tensor pixel q = y·W + x sits at q·stride_x.
template <class T, class Acc>
__global__ void __launch_bounds__(256) channel_sum_kernel(const T* __restrict__ gy, Acc* __restrict__ out, int64_t n, int64_t k,
                                                          int64_t hw, depthwise::Strides s, int cb, int64_t per_split) {
  __shared__ Acc part[256];
  const int lanes = 256 / cb, lane = threadIdx.x / cb;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * cb + threadIdx.x % cb;
  const int64_t p_begin = blockIdx.y * per_split, p_end = std::min(n * hw, p_begin + per_split);
  Acc sum = 0;
  if (c < k) {
    for (int64_t p = p_begin + lane; p < p_end; p += lanes) sum += static_cast<Acc>(gy[p / hw * s.n + c * s.c + p % hw * s.x]);
  }
  part[threadIdx.x] = sum;
  __syncthreads();
  for (int width = lanes / 2; width > 0; width /= 2) {
    if (lane < width) part[threadIdx.x] += part[threadIdx.x + width * cb];
    __syncthreads();
  }
  if (lane == 0 && c < k) atomicAdd(out + c, part[threadIdx.x]);
}

// Adds grad_output's per-channel sums into `gb` (the accumulation type, zeroed).
void bias_gradient(const at::Tensor& grad_output, const at::Tensor& gb) {
  const at::MemoryFormat layout = layout_of(grad_output);
  const at::Tensor gy = grad_output.contiguous(layout);
  const int64_t n = gy.size(0), k = gy.size(1), hw = gy.size(2) * gy.size(3);
  const int cb = layout == at::MemoryFormat::ChannelsLast ? 32 : 1;
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount, cblocks = (k + cb - 1) / cb;
  // About four blocks per SM, each lane still summing at least 8 pixels.
  const int64_t lanes = 256 / cb;
  const int64_t splits = reduction_splits(
      std::clamp<int64_t>(std::min((4 * sms + cblocks - 1) / cblocks, (n * hw + 8 * lanes - 1) / (8 * lanes)), 1,
                          kMaxGridYZ));
  const int64_t per_split = (n * hw + splits - 1) / splits;
  const dim3 grid(static_cast<unsigned>(cblocks), static_cast<unsigned>(splits));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gy.scalar_type(), "hotkernels_conv2d_backward_bias_cuda", [&] {
    using Acc = at::opmath_type<scalar_t>;
    channel_sum_kernel<scalar_t, Acc><<<grid, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
        gy.const_data_ptr<scalar_t>(), gb.mutable_data_ptr<Acc>(), n, k, hw, strides_of(gy, layout), cb, per_split);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// ---------------------------------------------------------------------------------------------
// The stubs' kernels: the path per call (select_path). The sums (weight and bias gradients) go into
// a zeroed contiguous buffer in the accumulation type (the result itself when it is one), then one
// conversion to the result's dtype and layout.

at::Tensor zeroed_accumulator(const at::Tensor& out) {
  return contiguous_target(out, at::toOpMathType(out.scalar_type())).zero_();
}

void conv2d(const at::Tensor& y, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
            const Conv2dGeometry& g, at::MemoryFormat layout) {
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  switch (select_path(g, input.scalar_type())) {
    case Path::kDepthwise: return forward_depthwise(input, weight, b, g, y, layout);
    case Path::kTensorCore: return forward_mma(input, weight, b, g, y, layout != at::MemoryFormat::ChannelsLast);
    case Path::kExact: return forward_exact(input, weight, b, g, y);
  }
}

void conv2d_backward_input(const at::Tensor& gx, const at::Tensor& grad_output, const at::Tensor& weight,
                           const Conv2dGeometry& g, at::MemoryFormat layout) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  switch (select_path(g, grad_output.scalar_type())) {
    case Path::kDepthwise: return backward_input_depthwise(grad_output, weight, g, gx, layout);
    case Path::kTensorCore:
      return backward_input_mma(grad_output, weight, g, gx, layout != at::MemoryFormat::ChannelsLast);
    case Path::kExact: return backward_input_exact(grad_output, weight, g, gx);
  }
}

void conv2d_backward_weight(const at::Tensor& gw, const at::Tensor& grad_output, const at::Tensor& input,
                            const Conv2dGeometry& g) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor acc = zeroed_accumulator(gw);
  switch (select_path(g, grad_output.scalar_type())) {
    case Path::kDepthwise: backward_weight_depthwise(grad_output, input, g, acc); break;
    case Path::kTensorCore: backward_weight_mma(grad_output, input, g, acc); break;
    case Path::kExact: backward_weight_exact(grad_output, input, g, acc); break;
  }
  finish_into(gw, acc);
}

void conv2d_backward_bias(const at::Tensor& gb, const at::Tensor& grad_output) {
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const at::Tensor acc = zeroed_accumulator(gb);
  bias_gradient(grad_output, acc);
  finish_into(gb, acc);
}

}  // namespace

HK_REGISTER_STUB(conv2d_stub, cuda, &conv2d);
HK_REGISTER_STUB(conv2d_backward_input_stub, cuda, &conv2d_backward_input);
HK_REGISTER_STUB(conv2d_backward_weight_stub, cuda, &conv2d_backward_weight);
HK_REGISTER_STUB(conv2d_backward_bias_stub, cuda, &conv2d_backward_bias);

}  // namespace hotkernels::cuda
