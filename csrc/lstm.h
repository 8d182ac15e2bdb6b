// LSTM (formulas: csrc/math/lstm.h): the geometry and checks both devices share, and the stubs that
// the ops (csrc/lstm.cpp) call and each device's kernels register into.
//
// One stub per op, for the op's whole body once its arguments are checked: the devices' algorithms
// differ from there on. The CPU (csrc/cpu/lstm.cpp) runs its GEMMs and time loops on its own GEMM
// core, each pointwise pass fused into the epilogue of the GEMM that completes its input, and
// computes float16/bfloat16 in float; CUDA (csrc/cuda/lstm.cu) runs cuBLAS GEMMs (at::mm/addmm) with
// its pointwise passes as separate kernels, in every dtype. So a body also allocates its outputs:
// the CPU's float16/bfloat16 ones are its float results narrowed.
//
// Layouts: gates are [rows, 4·hidden] (i, f, g, o blocks, torch's order), states [rows, hidden], all
// contiguous; a layer's tensors are time-major [T, B, ...].
//
// Projection (the layer ops' w_hr [P, H], torch's proj_size): the pointwise pass writes the
// unprojected r = o ⊙ tanh(c) [B, H] to a scratch, and h = r·W_hrᵀ [B, P] is one more GEMM per
// step; h feeds W_hh [4H, P] and is the output. Backward: dh [B, P] from the output's gradient and
// the later step, dr = dh·W_hr [B, H] into the pointwise backward (as its dh), grad W_hr = Σ_t
// dh(t)ᵀ·r(t) with r recomputed from the saved gates (o) and cs.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <initializer_list>
#include <optional>
#include <tuple>
#include <utility>

#include "dispatch_stub.h"

namespace hotkernels::lstm {

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
  int64_t steps;  // T: input.size(0) of a layer, 1 for a cell
  int64_t batch, input, hidden;
  int64_t state;  // features of h: proj_size P with a projection, else hidden
  // A layer's batch_sizes (the schemas' comment): the rows of step t that are sequences, the first
  // rows(t) (non-increasing in t); empty: every row. The CPU computes only those; CUDA all rows.
  at::IntArrayRef batch_sizes = {};
  int64_t rows(int64_t t) const { return batch_sizes.empty() ? batch : batch_sizes[t]; }
};

// Checks the forward arguments of a cell (input_dim 2: input [B, I]) or a layer (3: [T, B, I], at
// least one step), with the layer's projection w_hr [P, H] if given.
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

// The placeholder returned for a gradient the mask did not ask for.
at::Tensor unused(const at::Tensor& like);
// r = o ⊙ tanh(c) of every step [T, B, H], recomputed from the saved activations gates [T, B, 4H]
// and cell states cs (both contiguous), for grad W_hr.
at::Tensor recompute_r(const at::Tensor& gates, const at::Tensor& cs, int64_t hidden);

// A kernel's view of an optional tensor: its data, or nullptr when undefined.
template <class T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

// The stubs get the checked arguments, `cx` and the saved tensors and gradients contiguous, and
// `bias` = b_ih + b_hh in the op-math type (at::toOpMathType: float for float16/bfloat16), or
// undefined without biases.

// lstm_cell: (h', c', gates [B, 4H]); gates are the activations, saved for backward.
using CellFn = Tensors3(const Dims& d, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                        const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& bias);
HK_DECLARE_STUB(cell_stub, CellFn);
// lstm_cell_backward: (grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias); grad_bias is
// that of b_ih and of b_hh.
using CellBackwardFn = Tensors6(const Dims& d, const at::Tensor& grad_hy, const at::Tensor& grad_cy,
                                const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                                const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& cy,
                                const at::Tensor& gates, Mask mask);
HK_DECLARE_STUB(cell_backward_stub, CellBackwardFn);
// lstm_layer, one direction of one layer over all T steps of input [T, B, I]: (output [T, B, P or
// H] = every h, cs [T, B, H] = every c, gates [T, B, 4H]). `reverse` runs from step T−1 down to 0.
using LayerFn = Tensors3(const Dims& d, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                         const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& bias,
                         const OptTensor& w_hr, bool reverse);
HK_DECLARE_STUB(layer_stub, LayerFn);
// lstm_layer_backward, backward through time: grads of (input, hx, cx, w_ih, w_hh, bias, w_hr)
// from those of output and cs.
using LayerBackwardFn = Tensors7(const Dims& d, const at::Tensor& grad_output, const at::Tensor& grad_cs,
                                 const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                                 const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& output,
                                 const at::Tensor& cs, const at::Tensor& gates, const OptTensor& w_hr, bool reverse,
                                 LayerMask mask);
HK_DECLARE_STUB(layer_backward_stub, LayerBackwardFn);

}  // namespace hotkernels::lstm
