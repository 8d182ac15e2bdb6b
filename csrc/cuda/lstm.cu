// LSTM on CUDA: the two pointwise passes (formulas of csrc/math/lstm.h, in float for float16 and
// bfloat16); the GEMMs (cuBLAS through at::mm/addmm) and time loops are in csrc/lstm.cpp.
//
// One thread per element of the [rows, hidden] state; it reads that element's four gates from the
// row's i, f, g, o blocks. Grid-stride loops over 64-bit indices, on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/device_math.cuh"
#include "cuda/grid.cuh"
#include "lstm.h"
#include "math/lstm.h"

namespace hotkernels::cuda {
namespace {

template <class T>
__global__ void forward_kernel(int64_t n, int64_t H, T* __restrict__ gates, const at::opmath_type<T>* __restrict__ bias,
                               const T* __restrict__ c_prev, T* __restrict__ h, T* __restrict__ c) {
  using Op = at::opmath_type<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t row = e / H, j = e - row * H;
    T* g = gates + row * 4 * H + j;
    Op i = g[0], f = g[H], gg = g[2 * H], o = g[3 * H];
    if (bias != nullptr) {
      i += bias[j];
      f += bias[H + j];
      gg += bias[2 * H + j];
      o += bias[3 * H + j];
    }
    Op c_new, h_new;
    math::lstm_forward(i, f, gg, o, static_cast<Op>(c_prev[e]), c_new, h_new, DeviceExp{});
    g[0] = static_cast<T>(i);
    g[H] = static_cast<T>(f);
    g[2 * H] = static_cast<T>(gg);
    g[3 * H] = static_cast<T>(o);
    c[e] = static_cast<T>(c_new);
    h[e] = static_cast<T>(h_new);
  }
}

// dc_prev may be dc: each thread reads its element before writing it (so no __restrict__ on them).
template <class T>
__global__ void backward_kernel(int64_t n, int64_t H, const T* __restrict__ gates, const T* __restrict__ c_prev,
                                const T* __restrict__ c, const T* __restrict__ dh, const T* dc,
                                const T* __restrict__ dc_extra, T* __restrict__ dgates, T* dc_prev) {
  using Op = at::opmath_type<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    const int64_t row = e / H, j = e - row * H;
    const T* g = gates + row * 4 * H + j;
    T* dg = dgates + row * 4 * H + j;
    Op d_c = dc[e];
    if (dc_extra != nullptr) d_c += static_cast<Op>(dc_extra[e]);
    Op di, df, dgg, d_o;
    math::lstm_backward(static_cast<Op>(g[0]), static_cast<Op>(g[H]), static_cast<Op>(g[2 * H]),
                        static_cast<Op>(g[3 * H]), static_cast<Op>(c_prev[e]), static_cast<Op>(c[e]),
                        static_cast<Op>(dh[e]), d_c, di, df, dgg, d_o, DeviceExp{});
    dg[0] = static_cast<T>(di);
    dg[H] = static_cast<T>(df);
    dg[2 * H] = static_cast<T>(dgg);
    dg[3 * H] = static_cast<T>(d_o);
    dc_prev[e] = static_cast<T>(d_c);
  }
}

constexpr int kThreads = 256;

int blocks_for(int64_t n) { return grid_stride_blocks(n, kThreads, 16); }

template <class T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

void forward(const at::Tensor& gates, const at::Tensor& bias, const at::Tensor& c_prev, const at::Tensor& h,
             const at::Tensor& c) {
  const int64_t n = h.numel();
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(h.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gates.scalar_type(), "hotkernels_lstm_forward_cuda", [&] {
    forward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        n, h.size(-1), gates.mutable_data_ptr<scalar_t>(), ptr_or_null<at::opmath_type<scalar_t>>(bias),
        c_prev.const_data_ptr<scalar_t>(), h.mutable_data_ptr<scalar_t>(), c.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward(const at::Tensor& gates, const at::Tensor& c_prev, const at::Tensor& c, const at::Tensor& dh,
              const at::Tensor& dc, const at::Tensor& dc_extra, const at::Tensor& dgates, const at::Tensor& dc_prev) {
  const int64_t n = c.numel();
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(c.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gates.scalar_type(), "hotkernels_lstm_backward_cuda", [&] {
    backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        n, c.size(-1), gates.const_data_ptr<scalar_t>(), c_prev.const_data_ptr<scalar_t>(),
        c.const_data_ptr<scalar_t>(), dh.const_data_ptr<scalar_t>(), dc.const_data_ptr<scalar_t>(),
        ptr_or_null<scalar_t>(dc_extra), dgates.mutable_data_ptr<scalar_t>(), dc_prev.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

constexpr lstm::Pointwise kPointwise{&forward, &backward};

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CUDA, m) { lstm::register_lstm_ops<kPointwise>(m); }

}  // namespace hotkernels::cuda
