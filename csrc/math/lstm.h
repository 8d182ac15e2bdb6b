// LSTM cell (Hochreiter & Schmidhuber 1997, torch's gate order i, f, g, o):
//   i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)      (a: gate pre-activations incl. biases)
//   c' = f·c + i·g,   h' = o·tanh(c')
// Backward, from dh' and dc' (the gradient reaching c' from outside), with t = tanh(c'):
//   dĉ = dc' + dh'·o·(1 − t²)                               (everything that reaches c')
//   da_i = dĉ·g·i(1 − i),  da_f = dĉ·c·f(1 − f),  da_g = dĉ·i(1 − g²),  da_o = dh'·t·o(1 − o)
//   dc = dĉ·f
// so backward needs the gate activations, c and c' (t is recomputed: one exp, no extra memory).
//
// σ(x) = 1/(1 + e⁻ˣ) and tanh(x) = 2σ(2x) − 1 from one exp each. Both saturate correctly (e⁻ˣ → inf
// gives 0, → 0 gives 1) and propagate NaN. tanh near 0 carries an absolute (not relative) error of
// about one ulp of 1, which is what an LSTM's sums can resolve anyway.
#pragma once

#include "math/common.h"

namespace hotkernels::math {

template <class V, class Exp>
HK_HOST_DEVICE V sigmoid(V x, Exp exp) {
  return 1.0f / (1.0f + exp(-x));
}

template <class V, class Exp>
HK_HOST_DEVICE V tanh_via_exp(V x, Exp exp) {
  return 2.0f / (1.0f + exp(-2.0f * x)) - 1.0f;
}

// In: i, f, g, o hold the pre-activations, c the previous cell state. Out: i, f, g, o hold the gate
// activations, c_new and h_new the new state.
template <class V, class Exp>
HK_HOST_DEVICE void lstm_forward(V& i, V& f, V& g, V& o, V c, V& c_new, V& h_new, Exp exp) {
  i = sigmoid(i, exp);
  f = sigmoid(f, exp);
  g = tanh_via_exp(g, exp);
  o = sigmoid(o, exp);
  c_new = f * c + i * g;
  h_new = o * tanh_via_exp(c_new, exp);
}

// In: the gate activations, c, c_new, dh (= dh'), dc (= dc'). Out: di..do the pre-activation
// gradients, dc the gradient of the previous cell state.
template <class V, class Exp>
HK_HOST_DEVICE void lstm_backward(V i, V f, V g, V o, V c, V c_new, V dh, V& dc, V& di, V& df, V& dg, V& d_o,
                                  Exp exp) {
  const V t = tanh_via_exp(c_new, exp);
  const V dc_total = dc + dh * o * (1.0f - t * t);
  di = dc_total * g * i * (1.0f - i);
  df = dc_total * c * f * (1.0f - f);
  dg = dc_total * i * (1.0f - g * g);
  d_o = dh * t * o * (1.0f - o);
  dc = dc_total * f;
}

}  // namespace hotkernels::math
