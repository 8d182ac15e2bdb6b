// Fused optimizer steps (Adam/AdamW, RAdam, LAMB/Ralamb, NovoGrad, Lookahead's sync, the squared
// norms of a list of tensors): what the ops (csrc/optim.cpp) hand each device's kernels, and the
// stubs those kernels register into. A call updates a whole param group in place. The op checks the
// group (every list holds one tensor per param, each of its param's dtype, shape and strides, so one
// flat index walks them all) and counts the steps before any stub runs: a step that raises leaves
// params, state and counters as they were. The per-step scalars (bias corrections, RAdam's
// rectification) follow torch.optim's formulas; they are host-device functions, since CUDA's
// capturable steps (counters on the device) compute them per block from the device counter.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "dispatch_stub.h"
#include "math/optim.h"

namespace hotkernels {

// The value of a one-element float32 or float64 tensor, read on the host (a sync for a GPU tensor).
inline double read_scalar(const at::Tensor& t) {
  if (!t.is_cpu()) return t.item<double>();
  return t.scalar_type() == at::kFloat ? double(*t.const_data_ptr<float>()) : *t.const_data_ptr<double>();
}

// torch.amp's GradScaler and gradient clipping, as the step ops take them (torch's fused Adam's
// grad_scale and found_inf): each an optional one-element float32 or float64 tensor on the params'
// device. The gradient used is g/grad_scale, clipped as clip_grad_norm_ by the unscaled norm
// √grad_sq_norm/grad_scale to max_grad_norm (0: off; grad_sq_norm is then not read; clip_eps as
// math::clip_coefficient); a nonzero found_inf skips the whole step (params, state and step counters
// untouched: the op decides that before any stub runs, except for CUDA's capturable Adam step).
using OptTensor = std::optional<at::Tensor>;

struct GradInputs {
  const OptTensor& grad_scale;
  const OptTensor& found_inf;
  const OptTensor& grad_sq_norm;
  double max_grad_norm;
  double clip_eps = 1e-6;  // clip_grad_norm_'s
};

// Master weights (param_copies given): params are the float32 master copies of the float16/bfloat16
// param_copies (the model's params), of their shapes and strides on their device; an entry that is
// its param itself has no master copy (a float32 param of a master-weights group). The grads are the
// model's params'. Such a param is written into its copy rounded, stochastically for bfloat16 with a
// rounding_seed (math::bfloat16_bits_stochastic).
inline bool has_master(at::TensorList params, at::TensorList copies, size_t i) {
  return !copies.empty() && !copies[i].is_same(params[i]);
}

struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize, decoupled_weight_decay;
  double grad_factor = 1.0;  // unscale and clip (math::grad_factor)
};

// torch.optim.Adam (decoupled_weight_decay: AdamW) at step t.
template <class S>
HK_HOST_DEVICE math::AdamConsts<S> adam_consts(const AdamHyper& h, double t) {
  const double bias_correction1 = 1 - pow(h.beta1, t);
  const double bias_correction2 = 1 - pow(h.beta2, t);
  return {S(h.decoupled_weight_decay ? 0.0 : h.weight_decay),
          S(h.decoupled_weight_decay ? 1 - h.lr * h.weight_decay : 1.0),
          S(1 - h.beta1),
          S(h.beta2),
          S(1 - h.beta2),
          S(h.lr / bias_correction1),
          {S(0), S(1 / sqrt(bias_correction2)), S(h.eps)},
          S(h.maximize ? -h.grad_factor : h.grad_factor)};
}

// RAdam (Liu et al. 2020) at step t, as torch.optim.RAdam: ρ∞ = 2/(1 − β₂) − 1,
// ρ_t = ρ∞ − 2t·β₂ᵗ/(1 − β₂ᵗ); above ρ_t > 5 the adaptive step is scaled by
// r_t = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)), else the step is momentum only.
struct Rectification {
  bool adaptive;
  double rect;  // r_t when adaptive
};

HK_HOST_DEVICE Rectification radam_rectification(double beta2, double t) {
  const double bias_correction2 = 1 - pow(beta2, t);
  const double rho_inf = 2 / (1 - beta2) - 1;
  const double rho_t = rho_inf - 2 * t * pow(beta2, t) / bias_correction2;
  if (!(rho_t > 5.0)) return {false, 0.0};
  return {true, sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))};
}

template <class S>
HK_HOST_DEVICE math::AdamConsts<S> radam_consts(const AdamHyper& h, double t, bool* adaptive) {
  math::AdamConsts<S> c = adam_consts<S>(h, t);
  const Rectification r = radam_rectification(h.beta2, t);
  *adaptive = r.adaptive;
  const double bias_correction1 = 1 - pow(h.beta1, t);
  c.step_size = S(h.lr * (r.adaptive ? r.rect : 1.0) / bias_correction1);
  c.denom.eps_in = S(h.eps);
  c.denom.eps_out = S(0);
  return c;
}

struct LambHyper {
  double beta1, beta2, eps, weight_decay;
  bool grad_averaging, bias_correction;
  bool rectify;  // Ralamb: RAdam's rectified direction instead of Adam's
};

// LAMB direction constants at step t (math::lamb_direction); inv_clip is set by the caller.
// LAMB (NVLAMB): u = (m/(1 − β₁ᵗ)) / (√v/√(1 − β₂ᵗ) + ε) + λp.
// Ralamb: u = r_t·(m/(1 − β₁ᵗ)) / ((√v + ε)/√(1 − β₂ᵗ)) + λp above the threshold, m/(1 − β₁ᵗ) + λp below.
template <class S>
math::LambConsts<S> lamb_consts(const LambHyper& h, double t) {
  const double bias_correction1 = h.bias_correction ? 1 - std::pow(h.beta1, t) : 1.0;
  const double bias_correction2 = h.bias_correction ? 1 - std::pow(h.beta2, t) : 1.0;
  math::LambConsts<S> c{};
  c.inv_clip = S(1);
  c.beta1 = S(h.beta1);
  c.beta3 = S(h.grad_averaging ? 1 - h.beta1 : 1.0);
  c.beta2 = S(h.beta2);
  c.one_minus_beta2 = S(1 - h.beta2);
  c.weight_decay = S(h.weight_decay);
  c.denom.inv_divisor = S(1 / std::sqrt(bias_correction2));
  if (h.rectify) {
    const Rectification r = radam_rectification(h.beta2, t);
    c.adaptive = r.adaptive;
    c.m_scale = S((r.adaptive ? r.rect : 1.0) / bias_correction1);
    c.denom.eps_in = S(h.eps);
    c.denom.eps_out = S(0);
  } else {
    c.adaptive = true;
    c.m_scale = S(1 / bias_correction1);
    c.denom.eps_in = S(0);
    c.denom.eps_out = S(h.eps);
  }
  return c;
}

struct NovoGradHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool grad_averaging, amsgrad;
};

// The stubs' arguments, as the op has checked them: every list holds one tensor per param
// (max_exp_avg_sqs only with amsgrad, param_copies only with master weights), and the grads are laid
// out as the params the model holds (csrc/layout.h, grads_like_params). `steps` are the step counts
// of this step, one per param (the counters, kept on the CPU, already incremented).

// An Adam-family step: Adam/AdamW, or RAdam (rectified; never amsgrad).
struct AdamStep {
  at::TensorList params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, param_copies;
  bool rectified;
  AdamHyper h;
  GradInputs in;
  std::optional<int64_t> rounding_seed;
};
HK_DECLARE_STUB(adam_stub, void(const AdamStep& s, const std::vector<double>& steps));
// Capturable (torch.optim's capturable=True; CUDA only): the counters are float32 tensors on the
// params' device, checked by the op; the kernels increment them and read found_inf on the device.
HK_DECLARE_STUB(adam_capturable_stub, void(const AdamStep& s, at::TensorList state_steps));

// out[i] = ‖tensors[i]‖² (a float64 tensor of one element per tensor, on their device).
HK_DECLARE_STUB(sq_norms_stub, void(const at::Tensor& out, at::TensorList tensors));

// LAMB/Ralamb pass 1: unscale, clip and fold the gradient into m and v, and write ‖p‖², ‖u‖² of each
// tensor into norms[i] (float64 [n, 2, 3], contiguous: each as the three partial sums of
// math::SqSums, which do not underflow or overflow in float64) for pass 2's trust ratios.
struct LambMoments {
  at::TensorList params, grads, exp_avgs, exp_avg_sqs;
  const at::Tensor& norms;
  LambHyper h;
  GradInputs in;
};
HK_DECLARE_STUB(lamb_moments_stub, void(const LambMoments& s, const std::vector<double>& steps));

// Pass 2: p ← p − lr·τ·u with the trust ratio τ of each tensor from pass 1's norms.
struct LambApply {
  at::TensorList params, exp_avgs, exp_avg_sqs, param_copies;
  const at::Tensor& norms;
  double lr;
  LambHyper h;
  bool adapt, trust_clip;
  std::optional<int64_t> rounding_seed;
};
HK_DECLARE_STUB(lamb_apply_stub, void(const LambApply& s, const std::vector<double>& steps));

// NovoGrad: exp_avg_sqs (and max_exp_avg_sqs) are the layer moments, a one-element tensor of its
// param's dtype per param, updated from grad_sq_norms (‖g‖² per param, of the scaled gradient) as
// math::novograd_layer_moment; then the elementwise step. The step counts are not needed.
struct NovoGradStep {
  at::TensorList params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, param_copies;
  const at::Tensor& grad_sq_norms;
  NovoGradHyper h;
  GradInputs in;
  std::optional<int64_t> rounding_seed;
};
HK_DECLARE_STUB(novograd_stub, void(const NovoGradStep& s));

// Lookahead's sync of fast and slow weights (math::lookahead_sync); with master weights, `fast` are
// the float32 master copies of the half param_copies.
HK_DECLARE_STUB(lookahead_stub, void(at::TensorList fast, at::TensorList slow, at::TensorList param_copies,
                                     double alpha, std::optional<int64_t> rounding_seed));

}  // namespace hotkernels
