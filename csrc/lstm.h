// LSTM ops: the argument checks every device shares, and a device-generic implementation whose
// GEMMs are at::mm/addmm (cuBLAS) and whose time loops run here; a device using it supplies only the
// two pointwise passes (a Pointwise: csrc/cuda/lstm.cu) and registers the ops with
// register_lstm_ops. The CPU has its own implementation on the GEMM core (csrc/cpu/lstm.cpp).
//
// Layouts: gates are [rows, 4·hidden] (i, f, g, o blocks, torch's order), states [rows, hidden], all
// contiguous; a layer's tensors are time-major [T, B, ...]. Formulas: csrc/math/lstm.h.
//
// Projection (the layer ops' w_hr [P, H], torch's proj_size): the pointwise pass writes the
// unprojected r = o ⊙ tanh(c) [B, H] to a scratch, and h = r·W_hrᵀ [B, P] is one more GEMM per
// step; h feeds W_hh [4H, P] and is the output. Backward: dh [B, P] from the output's gradient and
// the later step, dr = dh·W_hr [B, H] into the pointwise backward (as its dh), grad W_hr = Σ_t
// dh(t)ᵀ·r(t) with r recomputed from the saved gates (o) and cs.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <array>
#include <initializer_list>
#include <optional>
#include <tuple>
#include <utility>

namespace hotkernels::lstm {

struct Pointwise {
  // gates: pre-activations without bias in, activations out; bias: b_ih + b_hh in the compute type
  // (at::opmath_type) or undefined; h, c: the new state, out.
  void (*forward)(const at::Tensor& gates, const at::Tensor& bias, const at::Tensor& c_prev, const at::Tensor& h,
                  const at::Tensor& c);
  // dgates: pre-activation gradients, out; dc_prev: out, may be dc itself; dc_extra: added to dc, or
  // undefined.
  void (*backward)(const at::Tensor& gates, const at::Tensor& c_prev, const at::Tensor& c, const at::Tensor& dh,
                   const at::Tensor& dc, const at::Tensor& dc_extra, const at::Tensor& dgates,
                   const at::Tensor& dc_prev);
};

using Tensors3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Tensors6 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors7 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using OptTensor = std::optional<at::Tensor>;
// Which gradients backward computes: input, hx, w_ih, w_hh, bias (cx's comes free). The others are
// returned as empty tensors.
using Mask = std::array<bool, 5>;
// The layer's: those five, then w_hr (ignored without a projection).
using LayerMask = std::array<bool, 6>;

struct Dims {
  int64_t batch, input, hidden;
  int64_t state;  // features of h: proj_size P with a projection, else hidden
};

// Checks the forward arguments of a cell (input_dim 2: input [B, I]) or a layer (3: [T, B, I]),
// with the layer's projection w_hr [P, H] if given.
Dims check_args(const char* op, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                int64_t input_dim, const OptTensor& w_hr = std::nullopt);
// The saved tensors and incoming gradients of a backward op: like 'input', states of state_shape
// ([B, H] or [T, B, H]) and gates of that shape with 4·H last.
void check_saved(const char* op, const at::Tensor& input, at::IntArrayRef state_shape, const at::Tensor& gates,
                 std::initializer_list<std::pair<const char*, const at::Tensor*>> states);
// Tensors like 'input' of one shape (`meaning` names its dimensions in the message).
void check_states(const char* op, const at::Tensor& input, at::IntArrayRef shape, const char* meaning,
                  std::initializer_list<std::pair<const char*, const at::Tensor*>> states);
// b_ih + b_hh in the compute type (float for float16/bfloat16), or undefined without biases.
at::Tensor combined_bias(const OptTensor& b_ih, const OptTensor& b_hh, at::ScalarType dtype);
// The placeholder returned for a gradient the mask did not ask for.
at::Tensor unused(const at::Tensor& like);

// (h', c', gates): gates are the activations, saved for backward.
Tensors3 cell_forward(const Pointwise& p, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                      const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh);
// (grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias); grad_bias is that of b_ih and of b_hh.
Tensors6 cell_backward(const Pointwise& p, const at::Tensor& grad_hy, const at::Tensor& grad_cy,
                       const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                       const at::Tensor& w_hh, const at::Tensor& cy, const at::Tensor& gates, Mask mask);
// One direction of one layer over all T steps of input [T, B, I]: (output [T, B, P or H] = every
// h, cs [T, B, H] = every c, gates [T, B, 4H]). `reverse` runs from step T−1 down to 0.
Tensors3 layer_forward(const Pointwise& p, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                       const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                       const OptTensor& w_hr, bool reverse);
// Backward through time: grads of (input, hx, cx, w_ih, w_hh, bias, w_hr) from those of output
// and cs.
Tensors7 layer_backward(const Pointwise& p, const at::Tensor& grad_output, const at::Tensor& grad_cs,
                        const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                        const at::Tensor& w_hh, const at::Tensor& output, const at::Tensor& cs,
                        const at::Tensor& gates, const OptTensor& w_hr, bool reverse, LayerMask mask);

// Registers the four ops (schemas in csrc/schemas.cpp) for one dispatch key with that device's passes.
template <const Pointwise& P>
void register_lstm_ops(torch::Library& m) {
  using T = const at::Tensor&;
  m.impl("lstm_cell", [](T input, T hx, T cx, T w_ih, T w_hh, const OptTensor& b_ih, const OptTensor& b_hh) {
    return cell_forward(P, input, hx, cx, w_ih, w_hh, b_ih, b_hh);
  });
  m.impl("lstm_cell_backward", [](T grad_hy, T grad_cy, T input, T hx, T cx, T w_ih, T w_hh, T cy, T gates,
                                  Mask mask) {
    return cell_backward(P, grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates, mask);
  });
  m.impl("lstm_layer", [](T input, T hx, T cx, T w_ih, T w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                          const OptTensor& w_hr, bool reverse) {
    return layer_forward(P, input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse);
  });
  m.impl("lstm_layer_backward", [](T grad_output, T grad_cs, T input, T hx, T cx, T w_ih, T w_hh, T output, T cs,
                                   T gates, const OptTensor& w_hr, bool reverse, LayerMask mask) {
    return layer_backward(P, grad_output, grad_cs, input, hx, cx, w_ih, w_hh, output, cs, gates, w_hr, reverse,
                          mask);
  });
}

}  // namespace hotkernels::lstm
