// 2-D max and average pooling on CUDA: the kernels and their launches. The op is csrc/pool.cpp;
// window geometry in csrc/math/pool.h.
//
// One thread per output element (forward) or per input element (backward), consecutive threads on
// consecutive addresses: along W for NCHW, along C for channels_last, so loads and stores coalesce.
// The backward kernels are gathers — each input element sums, in a fixed order, over the windows
// that cover it — so they need no atomics and are deterministic. Values compute in at::opmath_type
// (float for float16/bfloat16). Max follows torch's scan (row-major taps, `v > m || isnan(v)`
// replaces, starting from (−inf, first tap inside)), so values and indices match torch's exactly; its
// argmax is written as torch's int64 indices or as uint8 window offsets kh·kW + kw (csrc/math/pool.h).
#include "pool.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <type_traits>

#include "cuda/grid.cuh"
#include "math/pool.h"
#include "static_switch.h"

namespace hotkernels::cuda {
namespace {

using math::MaxArg;

constexpr int kThreads = 256;

// Splits a flat element index into (plane or image, h, w, c): NCHW orders (n·C + c, h, w), channels_last
// (n, h, w, c).
struct Pos {
  int64_t n, c, h, w;
};
template <bool kCL>
__device__ __forceinline__ Pos split(int64_t i, int64_t C, int64_t H, int64_t W) {
  if constexpr (kCL) {
    const int64_t c = i % C;
    i /= C;
    const int64_t w = i % W;
    i /= W;
    return {i / H, c, (i % H), w};
  } else {
    const int64_t w = i % W;
    i /= W;
    const int64_t h = i % H;
    i /= H;
    return {i / C, i % C, h, w};
  }
}

// Offset of element (h, w) of the plane or image that `pos` lies in.
template <bool kCL>
__device__ __forceinline__ int64_t offset(const Pos& pos, int64_t C, int64_t H, int64_t W, int64_t h, int64_t w) {
  if constexpr (kCL) return ((pos.n * H + h) * W + w) * C + pos.c;
  return ((pos.n * C + pos.c) * H + h) * W + w;
}

int blocks_for(int64_t n) { return grid_stride_blocks(n, kThreads, 32); }

#define HK_GRID_STRIDE_LOOP(i, n)                                                                  \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);          \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// The argmax's element type: int64 indices, or uint8 offsets (also for none, where it is null).
template <MaxArg A>
using ArgOf = std::conditional_t<A == MaxArg::indices, int64_t, uint8_t>;

template <class T, bool kCL, MaxArg A>
__global__ void max_forward(const T* __restrict__ in, T* __restrict__ out, ArgOf<A>* __restrict__ arg,
                            math::Pool2d p, int64_t C, int64_t n) {
  using Op = at::opmath_type<T>;
  HK_GRID_STRIDE_LOOP(i, n) {
    const Pos o = split<kCL>(i, C, p.OH, p.OW);
    const int64_t hs = o.h * p.sH - p.pH, ws = o.w * p.sW - p.pW;
    const math::Taps th = math::window_taps(hs, p.kH, p.dH, p.H);
    const math::Taps tw = math::window_taps(ws, p.kW, p.dW, p.W);
    // The argmax of tap (kh, kw): its flat index in the plane, or its offset in the window.
    const auto arg_of = [&](int64_t kh, int64_t kw) {
      return A == MaxArg::indices ? (hs + kh * p.dH) * p.W + ws + kw * p.dW : kh * p.kW + kw;
    };
    Op m = -INFINITY;
    int64_t idx = arg_of(th.k0, tw.k0);
    for (int64_t kh = th.k0; kh < th.k1; ++kh) {
      const int64_t ih = hs + kh * p.dH;
      for (int64_t kw = tw.k0; kw < tw.k1; ++kw) {
        const Op v = static_cast<Op>(in[offset<kCL>(o, C, p.H, p.W, ih, ws + kw * p.dW)]);
        if (v > m || v != v) {
          m = v;
          idx = arg_of(kh, kw);
        }
      }
    }
    out[i] = static_cast<T>(m);
    if constexpr (A != MaxArg::none) arg[i] = static_cast<ArgOf<A>>(idx);
  }
}

// grad_input[h, w] = Σ grad_output[oh, ow] over the windows that cover (h, w) and picked it: whose
// index is h·W + w (indices), or whose offset is kh·kW + kw for their tap (kh, kw) on (h, w) (offsets).
template <class T, bool kCL, MaxArg A>
__global__ void max_backward(const T* __restrict__ grad_out, const ArgOf<A>* __restrict__ arg,
                             T* __restrict__ grad_in, math::Pool2d p, int64_t C, int64_t n) {
  using Op = at::opmath_type<T>;
  HK_GRID_STRIDE_LOOP(i, n) {
    const Pos q = split<kCL>(i, C, p.H, p.W);
    // Windows that reach row h: oh·sH − pH <= h <= oh·sH − pH + (kH − 1)·dH.
    const math::Cover ch = math::covering_outputs(q.h, (p.kH - 1) * p.dH + 1, p.sH, p.pH, p.OH);
    const math::Cover cw = math::covering_outputs(q.w, (p.kW - 1) * p.dW + 1, p.sW, p.pW, p.OW);
    [[maybe_unused]] const int64_t self = q.h * p.W + q.w;
    Op s = 0;
    for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
      const int64_t kh = A == MaxArg::offsets ? math::tap_landing_on(q.h, oh, p.kH, p.sH, p.pH, p.dH) : 0;
      if (kh < 0) continue;
      for (int64_t ow = cw.o0; ow < cw.o1; ++ow) {
        const int64_t o = offset<kCL>(q, C, p.OH, p.OW, oh, ow);
        bool picked;
        if constexpr (A == MaxArg::indices) {
          picked = arg[o] == self;
        } else {
          const int64_t kw = math::tap_landing_on(q.w, ow, p.kW, p.sW, p.pW, p.dW);
          picked = kw >= 0 && arg[o] == kh * p.kW + kw;
        }
        if (picked) s += static_cast<Op>(grad_out[o]);
      }
    }
    grad_in[i] = static_cast<T>(s);
  }
}

template <class T, bool kCL>
__global__ void avg_forward(const T* __restrict__ in, T* __restrict__ out, math::Pool2d p, math::AvgMode mode,
                            int64_t C, int64_t n) {
  using Op = at::opmath_type<T>;
  HK_GRID_STRIDE_LOOP(i, n) {
    const Pos o = split<kCL>(i, C, p.OH, p.OW);
    const math::AvgSpan h = math::avg_span(o.h, p.kH, p.sH, p.pH, p.H);
    const math::AvgSpan w = math::avg_span(o.w, p.kW, p.sW, p.pW, p.W);
    Op s = 0;
    for (int64_t ih = h.lo; ih < h.hi; ++ih) {
      for (int64_t iw = w.lo; iw < w.hi; ++iw) s += static_cast<Op>(in[offset<kCL>(o, C, p.H, p.W, ih, iw)]);
    }
    out[i] = static_cast<T>(s / static_cast<Op>(math::avg_divisor(mode, h, w)));
  }
}

template <class T, bool kCL>
__global__ void avg_backward(const T* __restrict__ grad_out, T* __restrict__ grad_in, math::Pool2d p,
                             math::AvgMode mode, int64_t C, int64_t n) {
  using Op = at::opmath_type<T>;
  HK_GRID_STRIDE_LOOP(i, n) {
    const Pos q = split<kCL>(i, C, p.H, p.W);
    const math::Cover ch = math::covering_outputs(q.h, p.kH, p.sH, p.pH, p.OH);
    const math::Cover cw = math::covering_outputs(q.w, p.kW, p.sW, p.pW, p.OW);
    Op s = 0;
    for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
      const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
      for (int64_t ow = cw.o0; ow < cw.o1; ++ow) {
        const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
        s += static_cast<Op>(grad_out[offset<kCL>(q, C, p.OH, p.OW, oh, ow)]) /
             static_cast<Op>(math::avg_divisor(mode, h, w));
      }
    }
    grad_in[i] = static_cast<T>(s);
  }
}

// Runs f.template operator()<T, kChannelsLast>() — a kernel launch — for `out`'s dtype and g's
// layout, on out's device.
template <class F>
void launch(const at::Tensor& out, const PoolProblem& g, const F& f) {
  const c10::cuda::CUDAGuard guard(out.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "hotkernels_pool2d_cuda", [&] {
    static_switch<false, true>(g.channels_last, [&]<bool kCL>() { f.template operator()<scalar_t, kCL>(); });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void max_pool2d(const at::Tensor& out, const at::Tensor& argmax, const at::Tensor& input, const PoolProblem& g,
                MaxArg arg) {
  const int64_t n = out.numel();
  launch(out, g, [&]<class T, bool kCL>() {
    static_switch<MaxArg::none, MaxArg::indices, MaxArg::offsets>(arg, [&]<MaxArg A>() {
      ArgOf<A>* a = A == MaxArg::none ? nullptr : argmax.mutable_data_ptr<ArgOf<A>>();
      max_forward<T, kCL, A><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          input.const_data_ptr<T>(), out.mutable_data_ptr<T>(), a, g.p, g.C, n);
    });
  });
}

// A: the kind of argmax, indices (max_pool2d_backward) or offsets (max_pool2d_offsets_backward).
template <MaxArg A>
void max_pool2d_backward(const at::Tensor& grad_input, const at::Tensor& grad_output, const at::Tensor& argmax,
                         const PoolProblem& g) {
  const int64_t n = grad_input.numel();
  launch(grad_input, g, [&]<class T, bool kCL>() {
    max_backward<T, kCL, A><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        grad_output.const_data_ptr<T>(), argmax.const_data_ptr<ArgOf<A>>(), grad_input.mutable_data_ptr<T>(), g.p,
        g.C, n);
  });
}

void avg_pool2d(const at::Tensor& out, const at::Tensor& input, const PoolProblem& g, const math::AvgMode& mode) {
  const int64_t n = out.numel();
  launch(out, g, [&]<class T, bool kCL>() {
    avg_forward<T, kCL><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        input.const_data_ptr<T>(), out.mutable_data_ptr<T>(), g.p, mode, g.C, n);
  });
}

void avg_pool2d_backward(const at::Tensor& grad_input, const at::Tensor& grad_output, const PoolProblem& g,
                         const math::AvgMode& mode) {
  const int64_t n = grad_input.numel();
  launch(grad_input, g, [&]<class T, bool kCL>() {
    avg_backward<T, kCL><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        grad_output.const_data_ptr<T>(), grad_input.mutable_data_ptr<T>(), g.p, mode, g.C, n);
  });
}

}  // namespace

HK_REGISTER_STUB(max_pool2d_stub, cuda, &max_pool2d);
HK_REGISTER_STUB(max_pool2d_backward_stub, cuda, &max_pool2d_backward<MaxArg::indices>);
HK_REGISTER_STUB(max_pool2d_offsets_backward_stub, cuda, &max_pool2d_backward<MaxArg::offsets>);
HK_REGISTER_STUB(avg_pool2d_stub, cuda, &avg_pool2d);
HK_REGISTER_STUB(avg_pool2d_backward_stub, cuda, &avg_pool2d_backward);

}  // namespace hotkernels::cuda
