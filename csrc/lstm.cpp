// LSTM ops, device-generic part (see csrc/lstm.h): checks, GEMMs and time loops.
#include "lstm.h"

#include <ATen/OpMathType.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/zeros.h>

#include <vector>

#include "checks.h"

namespace hotkernels::lstm {
namespace {

void check_shape(const char* op, const char* arg, const at::Tensor& t, at::IntArrayRef want, const char* meaning) {
  TORCH_CHECK(t.sizes() == want, "hotkernels.", op, ": expected '", arg, "' of shape ", want, " (", meaning,
              "), but got ", t.sizes());
}

void check_like(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& input) {
  check_same_dtype(op, arg, t, "input", input);
  check_same_device(op, arg, t, "input", input);
}

}  // namespace

// The forward arguments of a cell (input [B, I]) or a layer (input [T, B, I]).
Dims check_args(const char* op, const at::Tensor& input, const at::Tensor& hx,
                const at::Tensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih,
                const OptTensor& b_hh, int64_t input_dim, const OptTensor& w_hr) {
  check_floating(op, "input", input);
  check_like(op, "hx", hx, input);
  check_like(op, "cx", cx, input);
  check_like(op, "w_ih", w_ih, input);
  check_like(op, "w_hh", w_hh, input);
  if (b_ih) check_like(op, "b_ih", *b_ih, input);
  if (b_hh) check_like(op, "b_hh", *b_hh, input);
  if (w_hr) check_like(op, "w_hr", *w_hr, input);
  TORCH_CHECK(input.dim() == input_dim, "hotkernels.", op, ": expected 'input' to be ", input_dim, "-D (",
              input_dim == 2 ? "batch, input_size" : "seq_len, batch, input_size", "), but got shape ",
              input.sizes());
  // h has hx's features: hidden_size, or proj_size with a projection (c then gives hidden_size).
  const char* h_features = w_hr ? "proj_size" : "hidden_size";
  TORCH_CHECK(hx.dim() == 2, "hotkernels.", op, ": expected 'hx' to be 2-D (batch, ", h_features,
              "), but got shape ", hx.sizes());
  TORCH_CHECK(!w_hr || cx.dim() == 2, "hotkernels.", op,
              ": expected 'cx' to be 2-D (batch, hidden_size), but got shape ", cx.sizes());
  const int64_t state = hx.size(1), hidden = w_hr ? cx.size(1) : state;
  const Dims d{input.size(-2), input.size(-1), hidden, state};
  check_shape(op, "hx", hx, {d.batch, d.state}, w_hr ? "batch, proj_size" : "batch, hidden_size");
  check_shape(op, "cx", cx, {d.batch, d.hidden}, "batch, hidden_size");
  check_shape(op, "w_ih", w_ih, {4 * d.hidden, d.input}, "4*hidden_size, input_size");
  check_shape(op, "w_hh", w_hh, {4 * d.hidden, d.state}, w_hr ? "4*hidden_size, proj_size" : "4*hidden_size, hidden_size");
  if (b_ih) check_shape(op, "b_ih", *b_ih, {4 * d.hidden}, "4*hidden_size");
  if (b_hh) check_shape(op, "b_hh", *b_hh, {4 * d.hidden}, "4*hidden_size");
  if (w_hr) check_shape(op, "w_hr", *w_hr, {d.state, d.hidden}, "proj_size, hidden_size");
  return d;
}

void check_saved(const char* op, const at::Tensor& input, at::IntArrayRef state_shape, const at::Tensor& gates,
                 std::initializer_list<std::pair<const char*, const at::Tensor*>> states) {
  check_like(op, "gates", gates, input);
  std::vector<int64_t> gates_shape = state_shape.vec();
  gates_shape.back() *= 4;
  check_shape(op, "gates", gates, gates_shape, "..., 4*hidden_size");
  check_states(op, input, state_shape, "the shape of the hidden state", states);
}

void check_states(const char* op, const at::Tensor& input, at::IntArrayRef shape, const char* meaning,
                  std::initializer_list<std::pair<const char*, const at::Tensor*>> states) {
  for (const auto& [name, t] : states) {
    check_like(op, name, *t, input);
    check_shape(op, name, *t, shape, meaning);
  }
}

at::Tensor combined_bias(const OptTensor& b_ih, const OptTensor& b_hh, at::ScalarType dtype) {
  const auto op = at::toOpMathType(dtype);
  at::Tensor bias;
  for (const OptTensor* b : {&b_ih, &b_hh}) {
    if (!b->has_value()) continue;
    const at::Tensor t = (*b)->to(op);
    bias = bias.defined() ? bias.add(t) : t.contiguous();
  }
  return bias;
}

at::Tensor unused(const at::Tensor& like) { return at::empty({0}, like.options()); }

Tensors3 cell_forward(const Pointwise& p, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                      const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh) {
  const Dims d = check_args("lstm_cell", input, hx, cx, w_ih, w_hh, b_ih, b_hh, 2);
  at::Tensor gates = at::mm(input, w_ih.t());
  gates.addmm_(hx, w_hh.t());
  at::Tensor h = at::empty({d.batch, d.hidden}, input.options());
  at::Tensor c = at::empty({d.batch, d.hidden}, input.options());
  p.forward(gates, combined_bias(b_ih, b_hh, input.scalar_type()), cx.contiguous(), h, c);
  return {h, c, gates};
}

Tensors6 cell_backward(const Pointwise& p, const at::Tensor& grad_hy, const at::Tensor& grad_cy,
                       const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                       const at::Tensor& w_hh, const at::Tensor& cy, const at::Tensor& gates, Mask mask) {
  check_args("lstm_cell_backward", input, hx, cx, w_ih, w_hh, {}, {}, 2);
  check_saved("lstm_cell_backward", input, hx.sizes(), gates, {{"grad_hy", &grad_hy}, {"grad_cy", &grad_cy}, {"cy", &cy}});
  at::Tensor dgates = at::empty(gates.sizes(), gates.options());
  at::Tensor grad_cx = at::empty(cx.sizes(), cx.options());
  p.backward(gates.contiguous(), cx.contiguous(), cy.contiguous(), grad_hy.contiguous(), grad_cy.contiguous(), {},
             dgates, grad_cx);
  return {mask[0] ? at::mm(dgates, w_ih) : unused(input),
          mask[1] ? at::mm(dgates, w_hh) : unused(input),
          grad_cx,
          mask[2] ? at::mm(dgates.t(), input) : unused(input),
          mask[3] ? at::mm(dgates.t(), hx) : unused(input),
          mask[4] ? dgates.sum(0) : unused(input)};
}

Tensors3 layer_forward(const Pointwise& p, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                       const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                       const OptTensor& w_hr, bool reverse) {
  const Dims d = check_args("lstm_layer", input, hx, cx, w_ih, w_hh, b_ih, b_hh, 3, w_hr);
  const int64_t T = input.size(0), B = d.batch, H = d.hidden, P = d.state;
  TORCH_CHECK(T > 0, "hotkernels.lstm_layer: expected 'input' to have at least one time step, but got shape ",
              input.sizes());
  // The input projection of every step in one GEMM; each step then adds h·W_hhᵀ into its slice, and
  // the pointwise pass turns the slice into that step's gate activations in place.
  at::Tensor gates = at::mm(input.reshape({T * B, d.input}), w_ih.t()).view({T, B, 4 * H});
  const at::Tensor bias = combined_bias(b_ih, b_hh, input.scalar_type());
  const at::Tensor w_hh_t = w_hh.t();
  at::Tensor output = at::empty({T, B, P}, input.options());
  at::Tensor cs = at::empty({T, B, H}, input.options());
  // With a projection the pointwise pass writes r = o ⊙ tanh(c) here, and h = r·W_hrᵀ.
  const at::Tensor r = w_hr ? at::empty({B, H}, input.options()) : at::Tensor();
  const at::Tensor w_hr_t = w_hr ? w_hr->t() : at::Tensor();
  at::Tensor h = hx, c = cx.contiguous();
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    at::Tensor g = gates[t];
    g.addmm_(h, w_hh_t);
    h = output[t];
    if (w_hr) {
      p.forward(g, bias, c, r, cs[t]);
      at::mm_out(h, r, w_hr_t);
    } else {
      p.forward(g, bias, c, h, cs[t]);
    }
    c = cs[t];
  }
  return {output, cs, gates};
}

Tensors7 layer_backward(const Pointwise& p, const at::Tensor& grad_output, const at::Tensor& grad_cs,
                        const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                        const at::Tensor& w_hh, const at::Tensor& output, const at::Tensor& cs,
                        const at::Tensor& gates, const OptTensor& w_hr, bool reverse, LayerMask mask) {
  const char* op = "lstm_layer_backward";
  const Dims d = check_args(op, input, hx, cx, w_ih, w_hh, {}, {}, 3, w_hr);
  const int64_t T = input.size(0), B = d.batch, H = d.hidden, P = d.state;
  TORCH_CHECK(T > 0, "hotkernels.", op, ": expected 'input' to have at least one time step, but got shape ",
              input.sizes());
  check_saved(op, input, {T, B, H}, gates, {{"grad_cs", &grad_cs}, {"cs", &cs}});
  check_states(op, input, {T, B, P}, w_hr ? "seq_len, batch, proj_size" : "the shape of the hidden state",
               {{"grad_output", &grad_output}, {"output", &output}});
  const at::Tensor go = grad_output.contiguous(), gcs = grad_cs.contiguous(), cs_c = cs.contiguous();
  const at::Tensor g_c = gates.contiguous(), cx_c = cx.contiguous();
  at::Tensor dgates = at::empty({T, B, 4 * H}, gates.options());
  // dh, dc: the gradients reaching the state of the step being processed, from later steps and from
  // the outputs. Step t's dh is its output's gradient plus dgates(t+1)·W_hh, summed by one addmm.
  // With a projection, every step's dh [B, P] is kept (in dhs, for grad W_hr) and the pointwise
  // backward gets dr = dh·W_hr [B, H] as the gradient of its (unprojected) h.
  const int64_t t_last = reverse ? 0 : T - 1;
  const at::Tensor dhs = w_hr ? at::empty({T, B, P}, go.options()) : at::Tensor();
  at::Tensor dh = w_hr ? dhs[t_last].copy_(go[t_last]) : go[t_last].clone();
  at::Tensor dr = w_hr ? at::empty({B, H}, go.options()) : dh;
  at::Tensor dc = at::zeros({B, H}, cs.options());
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? s : T - 1 - s;
    const bool first = s == T - 1;  // first step in forward order: its previous state is (hx, cx)
    const int64_t prev = reverse ? t + 1 : t - 1;
    if (w_hr) at::mm_out(dr, dh, *w_hr);
    p.backward(g_c[t], first ? cx_c : cs_c[prev], cs_c[t], dr, dc, gcs[t], dgates[t], dc);
    if (!first) {
      if (w_hr) dh = dhs[prev];
      at::addmm_out(dh, go[prev], dgates[t], w_hh);
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
    // Σ_t dh(t)ᵀ·r(t), r = o ⊙ tanh(c) recomputed from the saved activations and cell states.
    const at::Tensor r = at::mul(g_c.narrow(2, 3 * H, H), at::tanh(cs_c));
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

}  // namespace hotkernels::lstm
