// LSTM on CUDA: the whole body of each op once csrc/lstm.cpp has checked its arguments (one stub
// per op, csrc/lstm.h says why). The GEMMs are cuBLAS's (at::mm/addmm) and the time loops run here
// on the host; the two pointwise passes are this file's kernels (formulas of csrc/math/lstm.h, in
// at::opmath_type: float for float16 and bfloat16).
//
// One thread per element of the [rows, hidden] state; it reads that element's four gates from the
// row's i, f, g, o blocks. Grid-stride loops over 64-bit indices, on the current stream.
#include "lstm.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/device_math.cuh"
#include "cuda/grid.cuh"
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

using lstm::Dims;
using lstm::OptTensor;
using lstm::ptr_or_null;
using lstm::unused;

// The pointwise forward of rows of gates (pre-activations without bias in, activations out):
// bias = b_ih + b_hh in the op-math type, or undefined; h, c: the new state, out.
void pointwise_forward(const at::Tensor& gates, const at::Tensor& bias, const at::Tensor& c_prev,
                       const at::Tensor& h, const at::Tensor& c) {
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

// The pointwise backward: dgates (pre-activation gradients) and dc_prev out; dc_prev may be dc
// itself; dc_extra is added to dc, or undefined.
void pointwise_backward(const at::Tensor& gates, const at::Tensor& c_prev, const at::Tensor& c,
                        const at::Tensor& dh, const at::Tensor& dc, const at::Tensor& dc_extra,
                        const at::Tensor& dgates, const at::Tensor& dc_prev) {
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

lstm::Tensors3 cell_forward(const Dims& d, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                            const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& bias) {
  at::Tensor gates = at::mm(input, w_ih.t());
  gates.addmm_(hx, w_hh.t());
  at::Tensor h = at::empty({d.batch, d.hidden}, input.options());
  at::Tensor c = at::empty({d.batch, d.hidden}, input.options());
  pointwise_forward(gates, bias, cx, h, c);
  return {h, c, gates};
}

lstm::Tensors6 cell_backward(const Dims&, const at::Tensor& grad_hy, const at::Tensor& grad_cy,
                             const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                             const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& cy,
                             const at::Tensor& gates, lstm::Mask mask) {
  at::Tensor dgates = at::empty(gates.sizes(), gates.options());
  at::Tensor grad_cx = at::empty(cx.sizes(), cx.options());
  pointwise_backward(gates, cx, cy, grad_hy, grad_cy, {}, dgates, grad_cx);
  return {mask[0] ? at::mm(dgates, w_ih) : unused(input),
          mask[1] ? at::mm(dgates, w_hh) : unused(input),
          grad_cx,
          mask[2] ? at::mm(dgates.t(), input) : unused(input),
          mask[3] ? at::mm(dgates.t(), hx) : unused(input),
          mask[4] ? dgates.sum(0) : unused(input)};
}

lstm::Tensors3 layer_forward(const Dims& d, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                             const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& bias,
                             const OptTensor& w_hr, bool reverse) {
  const int64_t T = d.steps, B = d.batch, H = d.hidden, P = d.state;
  // The input projection of every step in one GEMM; each step then adds h·W_hhᵀ into its slice, and
  // the pointwise pass turns the slice into that step's gate activations in place.
  at::Tensor gates = at::mm(input.reshape({T * B, d.input}), w_ih.t()).view({T, B, 4 * H});
  const at::Tensor w_hh_t = w_hh.t();
  at::Tensor output = at::empty({T, B, P}, input.options());
  at::Tensor cs = at::empty({T, B, H}, input.options());
  // With a projection the pointwise pass writes r = o ⊙ tanh(c) here, and h = r·W_hrᵀ.
  const at::Tensor r = w_hr ? at::empty({B, H}, input.options()) : at::Tensor();
  const at::Tensor w_hr_t = w_hr ? w_hr->t() : at::Tensor();
  at::Tensor h = hx, c = cx;
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    at::Tensor g = gates[t];
    g.addmm_(h, w_hh_t);
    h = output[t];
    if (w_hr) {
      pointwise_forward(g, bias, c, r, cs[t]);
      at::mm_out(h, r, w_hr_t);
    } else {
      pointwise_forward(g, bias, c, h, cs[t]);
    }
    c = cs[t];
  }
  return {output, cs, gates};
}

lstm::Tensors7 layer_backward(const Dims& d, const at::Tensor& grad_output, const at::Tensor& grad_cs,
                              const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                              const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& output,
                              const at::Tensor& cs, const at::Tensor& gates, const OptTensor& w_hr, bool reverse,
                              lstm::LayerMask mask) {
  const int64_t T = d.steps, B = d.batch, H = d.hidden, P = d.state;
  at::Tensor dgates = at::empty({T, B, 4 * H}, gates.options());
  // dh, dc: the gradients reaching the state of the step being processed, from later steps and from
  // the outputs. Step t's dh is its output's gradient plus dgates(t+1)·W_hh, summed by one addmm.
  // With a projection, every step's dh [B, P] is kept (in dhs, for grad W_hr) and the pointwise
  // backward gets dr = dh·W_hr [B, H] as the gradient of its (unprojected) h.
  const int64_t t_last = reverse ? 0 : T - 1;
  const at::Tensor dhs = w_hr ? at::empty({T, B, P}, grad_output.options()) : at::Tensor();
  at::Tensor dh = w_hr ? dhs[t_last].copy_(grad_output[t_last]) : grad_output[t_last].clone();
  at::Tensor dr = w_hr ? at::empty({B, H}, grad_output.options()) : dh;
  at::Tensor dc = at::zeros({B, H}, cs.options());
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? s : T - 1 - s;
    const bool first = s == T - 1;  // first step in forward order: its previous state is (hx, cx)
    const int64_t prev = reverse ? t + 1 : t - 1;
    if (w_hr) at::mm_out(dr, dh, *w_hr);
    pointwise_backward(gates[t], first ? cx : cs[prev], cs[t], dr, dc, grad_cs[t], dgates[t], dc);
    if (!first) {
      if (w_hr) dh = dhs[prev];
      at::addmm_out(dh, grad_output[prev], dgates[t], w_hh);
    }
  }
  const int64_t t_first = reverse ? T - 1 : 0;
  const at::Tensor dg = dgates.view({T * B, 4 * H});
  at::Tensor grad_w_hh = unused(input);
  if (mask[3]) {
    // Σ_t dgates(t)ᵀ·h(t−1): the first step's h(t−1) is hx, the others' are outputs.
    grad_w_hh = at::mm(dgates[t_first].t(), hx);
    if (T > 1) {
      const at::Tensor dg_rest = dgates.narrow(0, reverse ? 0 : 1, T - 1).reshape({(T - 1) * B, 4 * H});
      const at::Tensor h_rest = output.narrow(0, reverse ? 1 : 0, T - 1).reshape({(T - 1) * B, P});
      grad_w_hh.addmm_(dg_rest.t(), h_rest);
    }
  }
  at::Tensor grad_w_hr = unused(input);
  if (w_hr && mask[5]) {
    // Σ_t dh(t)ᵀ·r(t)
    const at::Tensor r = lstm::recompute_r(gates, cs, H);
    grad_w_hr = at::mm(dhs.view({T * B, P}).t(), r.view({T * B, H}));
  }
  return {mask[0] ? at::mm(dg, w_ih).view({T, B, d.input}) : unused(input),
          mask[1] ? at::mm(dgates[t_first], w_hh) : unused(input),
          dc,
          mask[2] ? at::mm(dg.t(), input.reshape({T * B, d.input})) : unused(input),
          grad_w_hh,
          mask[4] ? dg.sum(0) : unused(input),
          grad_w_hr};
}

}  // namespace

HK_REGISTER_STUB(lstm::cell_stub, cuda, &cell_forward);
HK_REGISTER_STUB(lstm::cell_backward_stub, cuda, &cell_backward);
HK_REGISTER_STUB(lstm::layer_stub, cuda, &layer_forward);
HK_REGISTER_STUB(lstm::layer_backward_stub, cuda, &layer_backward);

}  // namespace hotkernels::cuda
