// 2-D max and average pooling on CUDA; window geometry in csrc/math/pool.h, argument checks in
// csrc/pool_geometry.h.
//
// One thread per output element (forward) or per input element (backward), consecutive threads on
// consecutive addresses: along W for NCHW, along C for channels_last, so loads and stores coalesce.
// Both backward passes are gathers — each input element sums, in a fixed order, over the windows
// that cover it — so they need no atomics and are deterministic. Values compute in at::opmath_type
// (float for float16/bfloat16). Max follows torch's scan (row-major taps, `v > m || isnan(v)`
// replaces, starting from (−inf, first tap inside)), so values and indices match torch's exactly; its
// argmax is written as torch's int64 indices or as uint8 window offsets kh·kW + kw (csrc/math/pool.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cuda/grid.cuh"
#include "math/pool.h"
#include "pool_geometry.h"

namespace hotkernels::cuda {
namespace {

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

// What max pooling writes besides the values: nothing, torch's indices, or window offsets.
enum class Arg { none, indices, offsets };

// ArgT: int64_t (indices) or uint8_t (offsets); unused for values only.
template <class T, bool kCL, Arg A, class ArgT>
__global__ void max_forward(const T* __restrict__ in, T* __restrict__ out, ArgT* __restrict__ arg, math::Pool2d p,
                            int64_t C, int64_t n) {
  using Op = at::opmath_type<T>;
  HK_GRID_STRIDE_LOOP(i, n) {
    const Pos o = split<kCL>(i, C, p.OH, p.OW);
    const int64_t hs = o.h * p.sH - p.pH, ws = o.w * p.sW - p.pW;
    const math::Taps th = math::window_taps(hs, p.kH, p.dH, p.H);
    const math::Taps tw = math::window_taps(ws, p.kW, p.dW, p.W);
    // The argmax of tap (kh, kw): its flat index in the plane, or its offset in the window.
    const auto arg_of = [&](int64_t kh, int64_t kw) {
      return A == Arg::indices ? (hs + kh * p.dH) * p.W + ws + kw * p.dW : kh * p.kW + kw;
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
    if constexpr (A != Arg::none) arg[i] = static_cast<ArgT>(idx);
  }
}

// grad_input[h, w] = Σ grad_output[oh, ow] over the windows that cover (h, w) and picked it.
template <class T, bool kCL>
__global__ void max_backward(const T* __restrict__ grad_out, const int64_t* __restrict__ indices,
                             T* __restrict__ grad_in, math::Pool2d p, int64_t C, int64_t n) {
  using Op = at::opmath_type<T>;
  HK_GRID_STRIDE_LOOP(i, n) {
    const Pos q = split<kCL>(i, C, p.H, p.W);
    // Windows that reach row h: oh·sH − pH <= h <= oh·sH − pH + (kH − 1)·dH.
    const math::Cover ch = math::covering_outputs(q.h, (p.kH - 1) * p.dH + 1, p.sH, p.pH, p.OH);
    const math::Cover cw = math::covering_outputs(q.w, (p.kW - 1) * p.dW + 1, p.sW, p.pW, p.OW);
    const int64_t self = q.h * p.W + q.w;
    Op s = 0;
    for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
      for (int64_t ow = cw.o0; ow < cw.o1; ++ow) {
        const int64_t o = offset<kCL>(q, C, p.OH, p.OW, oh, ow);
        if (indices[o] == self) s += static_cast<Op>(grad_out[o]);
      }
    }
    grad_in[i] = static_cast<T>(s);
  }
}

// grad_input[h, w] = Σ grad_output[oh, ow] over the windows with a tap (kh, kw) on (h, w) whose
// offset is kh·kW + kw.
template <class T, bool kCL>
__global__ void max_offsets_backward(const T* __restrict__ grad_out, const uint8_t* __restrict__ offsets,
                                     T* __restrict__ grad_in, math::Pool2d p, int64_t C, int64_t n) {
  using Op = at::opmath_type<T>;
  HK_GRID_STRIDE_LOOP(i, n) {
    const Pos q = split<kCL>(i, C, p.H, p.W);
    const math::Cover ch = math::covering_outputs(q.h, (p.kH - 1) * p.dH + 1, p.sH, p.pH, p.OH);
    const math::Cover cw = math::covering_outputs(q.w, (p.kW - 1) * p.dW + 1, p.sW, p.pW, p.OW);
    Op s = 0;
    for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
      const int64_t kh = math::tap_landing_on(q.h, oh, p.kH, p.sH, p.pH, p.dH);
      if (kh < 0) continue;
      for (int64_t ow = cw.o0; ow < cw.o1; ++ow) {
        const int64_t kw = math::tap_landing_on(q.w, ow, p.kW, p.sW, p.pW, p.dW);
        const int64_t o = offset<kCL>(q, C, p.OH, p.OW, oh, ow);
        if (kw >= 0 && offsets[o] == kh * p.kW + kw) s += static_cast<Op>(grad_out[o]);
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

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

std::vector<int64_t> output_shape(const at::Tensor& input, const math::Pool2d& p) {
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape[shape.size() - 2] = p.OH;
  shape[shape.size() - 1] = p.OW;
  return shape;
}

// Calls f(std::bool_constant<channels_last>).
template <class F>
void with_layout(bool channels_last, const F& f) {
  if (channels_last) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

std::tuple<at::Tensor, at::Tensor> max_pool(const char* op, const at::Tensor& input, at::IntArrayRef kernel_size,
                                            at::IntArrayRef stride, at::IntArrayRef padding,
                                            at::IntArrayRef dilation, bool ceil_mode, Arg arg) {
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  if (arg == Arg::offsets) check_offset_taps(op, g.p);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto fmt = format_of(g.channels_last);
  const at::Tensor x = input.contiguous(fmt);
  const auto shape = output_shape(input, g.p);
  at::Tensor out = at::empty(shape, input.options().memory_format(fmt));
  at::Tensor argmax;
  if (arg != Arg::none) {
    argmax = at::empty(shape, input.options().dtype(arg == Arg::indices ? at::kLong : at::kByte).memory_format(fmt));
  }
  const int64_t n = out.numel();
  if (n == 0) return {out, argmax};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hotkernels_max_pool2d_cuda", [&] {
    with_layout(g.channels_last, [&](auto cl) {
      constexpr bool kCL = decltype(cl)::value;
      const auto stream = at::cuda::getCurrentCUDAStream();
      const scalar_t* in = x.const_data_ptr<scalar_t>();
      scalar_t* o = out.mutable_data_ptr<scalar_t>();
      if (arg == Arg::indices) {
        max_forward<scalar_t, kCL, Arg::indices><<<blocks_for(n), kThreads, 0, stream>>>(
            in, o, argmax.mutable_data_ptr<int64_t>(), g.p, g.C, n);
      } else if (arg == Arg::offsets) {
        max_forward<scalar_t, kCL, Arg::offsets><<<blocks_for(n), kThreads, 0, stream>>>(
            in, o, argmax.mutable_data_ptr<uint8_t>(), g.p, g.C, n);
      } else {
        max_forward<scalar_t, kCL, Arg::none><<<blocks_for(n), kThreads, 0, stream>>>(
            in, o, static_cast<uint8_t*>(nullptr), g.p, g.C, n);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, argmax};
}

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(max_pool("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, Arg::none));
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool("max_pool2d_with_indices", input, kernel_size, stride, padding, dilation, ceil_mode, Arg::indices);
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_offsets(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool("max_pool2d_with_offsets", input, kernel_size, stride, padding, dilation, ceil_mode, Arg::offsets);
}

void check_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& input, const math::Pool2d& p) {
  check_same_dtype(op, "grad_output", grad_output, "input", input);
  check_same_device(op, "grad_output", grad_output, "input", input);
  TORCH_CHECK(grad_output.dim() == input.dim() &&
                  grad_output.sizes().slice(0, input.dim() - 2) == input.sizes().slice(0, input.dim() - 2),
              "hotkernels.", op, ": expected 'grad_output' to have the leading dimensions of 'input' ",
              input.sizes(), ", but got ", grad_output.sizes());
  check_output_size(op, grad_output, p);
}

at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& indices,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "max_pool2d_backward";
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  check_backward(op, grad_output, input, g.p);
  check_same_device(op, "indices", indices, "input", input);
  TORCH_CHECK(indices.scalar_type() == at::kLong, "hotkernels.", op, ": expected 'indices' to be int64, but got ",
              indices.scalar_type());
  check_same_shape(op, "indices", indices, "grad_output", grad_output);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto fmt = format_of(g.channels_last);
  const at::Tensor go = grad_output.contiguous(fmt);
  const at::Tensor ix = indices.contiguous(fmt);
  at::Tensor grad_input = at::empty(input.sizes(), grad_output.options().memory_format(fmt));
  const int64_t n = grad_input.numel();
  if (n == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "hotkernels_max_pool2d_backward_cuda",
                                  [&] {
    with_layout(g.channels_last, [&](auto cl) {
      max_backward<scalar_t, decltype(cl)::value><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          go.const_data_ptr<scalar_t>(), ix.const_data_ptr<int64_t>(), grad_input.mutable_data_ptr<scalar_t>(), g.p,
          g.C, n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad_input;
}

at::Tensor max_pool2d_offsets_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& offsets, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "max_pool2d_offsets_backward";
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  check_backward(op, grad_output, input, g.p);
  check_offsets(op, offsets, grad_output, input, g.p);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto fmt = format_of(g.channels_last);
  const at::Tensor go = grad_output.contiguous(fmt);
  const at::Tensor off = offsets.contiguous(fmt);
  at::Tensor grad_input = at::empty(input.sizes(), grad_output.options().memory_format(fmt));
  const int64_t n = grad_input.numel();
  if (n == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(),
                                  "hotkernels_max_pool2d_offsets_backward_cuda", [&] {
    with_layout(g.channels_last, [&](auto cl) {
      max_offsets_backward<scalar_t, decltype(cl)::value>
          <<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              go.const_data_ptr<scalar_t>(), off.const_data_ptr<uint8_t>(), grad_input.mutable_data_ptr<scalar_t>(),
              g.p, g.C, n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad_input;
}

at::Tensor avg_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      std::optional<int64_t> divisor_override) {
  const PoolProblem g = pool2d_geometry("avg_pool2d", input, kernel_size, stride, padding, {1, 1}, ceil_mode);
  const math::AvgMode mode = avg_mode(count_include_pad, divisor_override);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto fmt = format_of(g.channels_last);
  const at::Tensor x = input.contiguous(fmt);
  at::Tensor out = at::empty(output_shape(input, g.p), input.options().memory_format(fmt));
  const int64_t n = out.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hotkernels_avg_pool2d_cuda", [&] {
    with_layout(g.channels_last, [&](auto cl) {
      avg_forward<scalar_t, decltype(cl)::value><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), g.p, mode, g.C, n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor avg_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                               bool count_include_pad, std::optional<int64_t> divisor_override) {
  constexpr const char* op = "avg_pool2d_backward";
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, {1, 1}, ceil_mode);
  check_backward(op, grad_output, input, g.p);
  const math::AvgMode mode = avg_mode(count_include_pad, divisor_override);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto fmt = format_of(g.channels_last);
  const at::Tensor go = grad_output.contiguous(fmt);
  at::Tensor grad_input = at::empty(input.sizes(), grad_output.options().memory_format(fmt));
  const int64_t n = grad_input.numel();
  if (n == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, go.scalar_type(), "hotkernels_avg_pool2d_backward_cuda",
                                  [&] {
    with_layout(g.channels_last, [&](auto cl) {
      avg_backward<scalar_t, decltype(cl)::value><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
          go.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(), g.p, mode, g.C, n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CUDA, m) {
  m.impl("max_pool2d", &max_pool2d);
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices);
  m.impl("max_pool2d_backward", &max_pool2d_backward);
  m.impl("max_pool2d_with_offsets", &max_pool2d_with_offsets);
  m.impl("max_pool2d_offsets_backward", &max_pool2d_offsets_backward);
  m.impl("avg_pool2d", &avg_pool2d);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward);
}

}  // namespace hotkernels::cuda
