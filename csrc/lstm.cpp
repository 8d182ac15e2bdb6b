// LSTM's ops, once for every device: the checks, the geometry and what both devices' bodies take
// alike (contiguous states, the combined bias), then the device's body through its stub
// (csrc/lstm.h).
#include "lstm.h"

#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/tanh.h>

#include <vector>

#include "checks.h"

namespace hotkernels::lstm {

HK_DEFINE_STUB(cell_stub, "lstm_cell", CellFn);
HK_DEFINE_STUB(cell_backward_stub, "lstm_cell_backward", CellBackwardFn);
HK_DEFINE_STUB(layer_stub, "lstm_layer", LayerFn);
HK_DEFINE_STUB(layer_backward_stub, "lstm_layer_backward", LayerBackwardFn);

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

Dims check_args(const char* op, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
                int64_t input_dim, const OptTensor& w_hr) {
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
  const Dims d{input_dim == 3 ? input.size(0) : 1, input.size(-2), input.size(-1), hidden, state};
  check_shape(op, "hx", hx, {d.batch, d.state}, w_hr ? "batch, proj_size" : "batch, hidden_size");
  check_shape(op, "cx", cx, {d.batch, d.hidden}, "batch, hidden_size");
  check_shape(op, "w_ih", w_ih, {4 * d.hidden, d.input}, "4*hidden_size, input_size");
  check_shape(op, "w_hh", w_hh, {4 * d.hidden, d.state}, w_hr ? "4*hidden_size, proj_size" : "4*hidden_size, hidden_size");
  if (b_ih) check_shape(op, "b_ih", *b_ih, {4 * d.hidden}, "4*hidden_size");
  if (b_hh) check_shape(op, "b_hh", *b_hh, {4 * d.hidden}, "4*hidden_size");
  if (w_hr) check_shape(op, "w_hr", *w_hr, {d.state, d.hidden}, "proj_size, hidden_size");
  TORCH_CHECK(d.steps > 0, "hotkernels.", op, ": expected 'input' to have at least one time step, but got shape ",
              input.sizes());
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

at::Tensor unused(const at::Tensor& like) { return at::empty({0}, like.options()); }

at::Tensor recompute_r(const at::Tensor& gates, const at::Tensor& cs, int64_t hidden) {
  return at::mul(gates.narrow(2, 3 * hidden, hidden), at::tanh(cs));
}

namespace {

// b_ih + b_hh in the op-math type, or undefined without biases.
at::Tensor combined_bias(const OptTensor& b_ih, const OptTensor& b_hh, at::ScalarType dtype) {
  const auto op_math = at::toOpMathType(dtype);
  at::Tensor bias;
  for (const OptTensor* b : {&b_ih, &b_hh}) {
    if (!b->has_value()) continue;
    const at::Tensor t = (*b)->to(op_math);
    bias = bias.defined() ? bias.add(t) : t.contiguous();
  }
  return bias;
}

Tensors3 lstm_cell(const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                   const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh) {
  const Dims d = check_args("lstm_cell", input, hx, cx, w_ih, w_hh, b_ih, b_hh, 2);
  return cell_stub(input.device().type(), d, input, hx, cx.contiguous(), w_ih, w_hh,
                   combined_bias(b_ih, b_hh, input.scalar_type()));
}

Tensors6 lstm_cell_backward(const at::Tensor& grad_hy, const at::Tensor& grad_cy, const at::Tensor& input,
                            const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                            const at::Tensor& w_hh, const at::Tensor& cy, const at::Tensor& gates, Mask mask) {
  const char* op = "lstm_cell_backward";
  const Dims d = check_args(op, input, hx, cx, w_ih, w_hh, {}, {}, 2);
  check_saved(op, input, hx.sizes(), gates, {{"grad_hy", &grad_hy}, {"grad_cy", &grad_cy}, {"cy", &cy}});
  return cell_backward_stub(input.device().type(), d, grad_hy.contiguous(), grad_cy.contiguous(), input, hx,
                            cx.contiguous(), w_ih, w_hh, cy.contiguous(), gates.contiguous(), mask);
}

// d with a layer's batch_sizes, checked: one per step, non-increasing, each at most the batch, and
// only for the forward direction (a reversed padded sequence would start in its padding).
Dims with_batch_sizes(const char* op, Dims d, at::OptionalIntArrayRef batch_sizes, bool reverse) {
  if (!batch_sizes) return d;
  const at::IntArrayRef bs = *batch_sizes;
  TORCH_CHECK(!reverse, "hotkernels.", op, ": 'batch_sizes' needs reverse=False (reverse each sequence within its ",
              "length instead)");
  TORCH_CHECK(static_cast<int64_t>(bs.size()) == d.steps, "hotkernels.", op, ": expected 'batch_sizes' to have ",
              d.steps, " entries (one per step of 'input'), but got ", bs.size());
  for (size_t t = 0; t < bs.size(); ++t) {
    TORCH_CHECK(bs[t] >= 0 && bs[t] <= (t == 0 ? d.batch : bs[t - 1]), "hotkernels.", op, ": expected 'batch_sizes' ",
                "to be non-increasing and within [0, batch] (", d.batch, "), but got ", bs);
  }
  d.batch_sizes = bs;
  return d;
}

Tensors3 lstm_layer(const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                    const at::Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
                    bool reverse, at::OptionalIntArrayRef batch_sizes) {
  const char* op = "lstm_layer";
  const Dims d = with_batch_sizes(op, check_args(op, input, hx, cx, w_ih, w_hh, b_ih, b_hh, 3, w_hr), batch_sizes,
                                  reverse);
  return layer_stub(input.device().type(), d, input, hx, cx.contiguous(), w_ih, w_hh,
                    combined_bias(b_ih, b_hh, input.scalar_type()), w_hr, reverse);
}

Tensors7 lstm_layer_backward(const at::Tensor& grad_output, const at::Tensor& grad_cs, const at::Tensor& input,
                             const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                             const at::Tensor& w_hh, const at::Tensor& output, const at::Tensor& cs,
                             const at::Tensor& gates, const OptTensor& w_hr, bool reverse, LayerMask mask,
                             at::OptionalIntArrayRef batch_sizes) {
  const char* op = "lstm_layer_backward";
  const Dims d = with_batch_sizes(op, check_args(op, input, hx, cx, w_ih, w_hh, {}, {}, 3, w_hr), batch_sizes, reverse);
  const int64_t T = d.steps, B = d.batch;
  check_saved(op, input, {T, B, d.hidden}, gates, {{"grad_cs", &grad_cs}, {"cs", &cs}});
  check_states(op, input, {T, B, d.state}, w_hr ? "seq_len, batch, proj_size" : "the shape of the hidden state",
               {{"grad_output", &grad_output}, {"output", &output}});
  return layer_backward_stub(input.device().type(), d, grad_output.contiguous(), grad_cs.contiguous(), input, hx,
                             cx.contiguous(), w_ih, w_hh, output, cs.contiguous(), gates.contiguous(), w_hr,
                             reverse, mask);
}

// Schemas: csrc/schemas.cpp.
void register_ops(torch::Library& m) {
  m.impl("lstm_cell", &lstm_cell);
  m.impl("lstm_cell_backward", &lstm_cell_backward);
  m.impl("lstm_layer", &lstm_layer);
  m.impl("lstm_layer_backward", &lstm_layer_backward);
}

}  // namespace

HK_DEVICE_OPS(register_ops)

}  // namespace hotkernels::lstm
