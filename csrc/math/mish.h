// Mish (Misra 2019): mish(x) = x · tanh(softplus(x)) = x · tanh(ln(1 + eˣ)).
//
// One exponential suffices: with e = eˣ and n = e(e + 2),
//   tanh(ln(1 + e)) = ((1+e)² − 1) / ((1+e)² + 1) = n / (n + 2),
// and since sech²(softplus) = 4(n+1)/(n+2)², n + 1 = (e+1)² and sigmoid(x) = e/(1+e),
//   mish'(x) = n/(n+2) + x · 4e(e+1)/(n+2)².
// No cancellation anywhere (n ≥ 0). For x > 20, tanh(softplus(x)) rounds to 1 in float and double
// (as in F.softplus's threshold), so mish(x) = x and mish'(x) = 1 there; that branch also keeps
// e² from overflowing. x = −inf gives −inf · 0 = NaN, exactly like torch's F.mish.
// `exp` and `reciprocal` are the caller's (simd::Exp/Reciprocal on the CPU, libdevice on CUDA);
// reciprocal only ever sees n + 2 ≥ 2 where its result is used.
#pragma once

#include "math/common.h"

namespace hotkernels::math {

constexpr float kMishLinearFrom = 20.0f;

template <class V, class Exp, class Reciprocal>
HK_HOST_DEVICE V mish_forward(V x, Exp exp, Reciprocal reciprocal) {
  const V e = exp(x);
  const V n = e * (e + 2.0f);
  return x > kMishLinearFrom ? x : x * n * reciprocal(n + 2.0f);
}

// grad · mish'(x)
template <class V, class Exp, class Reciprocal>
HK_HOST_DEVICE V mish_backward(V grad, V x, Exp exp, Reciprocal reciprocal) {
  const V e = exp(x);
  const V n = e * (e + 2.0f);
  const V r = reciprocal(n + 2.0f);
  const V slope = (n + x * (4.0f * e * (e + 1.0f)) * r) * r;
  return x > kMishLinearFrom ? grad : grad * slope;
}

}  // namespace hotkernels::math
