// Host side of the optimizer ops, shared by CPU and CUDA: the per-tensor scalars of one step
// (bias corrections, RAdam's rectification) from the step count, with torch.optim's formulas, and the
// optimizer state step counters (0-dim float tensors on the CPU, as torch.optim keeps them). The
// Adam-family scalars are host-device functions: CUDA's capturable steps (counters on the device)
// compute them per block from the device counter.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <vector>

#include "checks.h"
#include "layout.h"
#include "math/optim.h"

namespace hotkernels {

// A state step counter as torch.optim keeps it without capturable: a one-element float32 or
// float64 tensor on the CPU (read and written on the host).
inline void check_step(const char* op, at::TensorList state_steps, size_t i) {
  const at::Tensor& step = state_steps[i];
  TORCH_CHECK(step.device().is_cpu() && step.numel() == 1 &&
                  (step.scalar_type() == at::kFloat || step.scalar_type() == at::kDouble),
              "hotkernels.", op, ": expected each state step to be a one-element float32 or float64 CPU tensor, but ",
              "'state_steps[", i, "]' is ", step.scalar_type(), " of shape ", step.sizes(), " on ", step.device());
}

// The value of a one-element float32 or float64 CPU tensor (checked by the caller).
inline double read_scalar(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat ? double(*t.const_data_ptr<float>()) : *t.const_data_ptr<double>();
}

inline double read_step(const char* op, at::TensorList state_steps, size_t i) {
  check_step(op, state_steps, i);
  return read_scalar(state_steps[i]);
}

// Checks all n counters, then adds 1 to each and returns the new counts. Every other check of the op
// must come first: a step that raises then leaves every counter (and the params and moments, which
// the kernels update only afterwards) as it was.
inline void check_steps(const char* op, at::TensorList state_steps, size_t n) {
  TORCH_CHECK(state_steps.size() == n, "hotkernels.", op, ": expected 'state_steps' to hold one tensor per param (",
              n, "), but got ", state_steps.size());
  for (size_t i = 0; i < n; ++i) check_step(op, state_steps, i);
}

inline std::vector<double> increment_steps(const char* op, at::TensorList state_steps, size_t n) {
  check_steps(op, state_steps, n);
  std::vector<double> t(n);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& step = state_steps[i];
    t[i] = step.scalar_type() == at::kFloat ? double(*step.mutable_data_ptr<float>() += 1.0f)
                                            : *step.mutable_data_ptr<double>() += 1.0;
  }
  return t;
}

// torch.amp's GradScaler and gradient clipping, as the step ops take them (torch's fused Adam's
// grad_scale and found_inf): each an optional one-element float32 or float64 tensor on the params'
// device. The gradient used is g/grad_scale, clipped as clip_grad_norm_ by the unscaled norm
// √grad_sq_norm/grad_scale to max_grad_norm (0: off; grad_sq_norm is then not needed; clip_eps as
// math::clip_coefficient); a nonzero found_inf skips the whole step (params, state and step counters
// untouched).
using OptTensor = std::optional<at::Tensor>;

struct GradInputs {
  const OptTensor& grad_scale;
  const OptTensor& found_inf;
  const OptTensor& grad_sq_norm;
  double max_grad_norm;
  double clip_eps = 1e-6;  // clip_grad_norm_'s
};

inline void check_grad_inputs(const char* op, const GradInputs& in, const at::Tensor& p0) {
  auto check = [&](const OptTensor& t, const char* name) {
    if (!t.has_value()) return;
    TORCH_CHECK(t->numel() == 1 && (t->scalar_type() == at::kFloat || t->scalar_type() == at::kDouble) &&
                    t->device() == p0.device(),
                "hotkernels.", op, ": expected '", name, "' to be a one-element float32 or float64 tensor on ",
                p0.device(), " (the params' device), but got ", t->scalar_type(), " of shape ", t->sizes(), " on ",
                t->device());
  };
  check(in.grad_scale, "grad_scale");
  check(in.found_inf, "found_inf");
  check(in.grad_sq_norm, "grad_sq_norm");
  TORCH_CHECK(in.max_grad_norm >= 0, "hotkernels.", op,
              ": expected 'max_grad_norm' to be >= 0 (0: no clipping), but got ", in.max_grad_norm);
  TORCH_CHECK(!(in.max_grad_norm > 0) || in.grad_sq_norm.has_value(), "hotkernels.", op,
              ": clipping (max_grad_norm > 0) needs 'grad_sq_norm', the squared norm of the gradients");
}

// The grad inputs read on the host (CPU tensors, or the CUDA path that reads them there).
struct HostGradScaling {
  bool skip;      // found_inf set: the step does nothing
  double factor;  // math::grad_factor: the gradient is multiplied by it
};

inline HostGradScaling read_grad_inputs(const char* op, const GradInputs& in, const at::Tensor& p0) {
  check_grad_inputs(op, in, p0);
  auto value = [](const at::Tensor& t) { return t.is_cpu() ? read_scalar(t) : t.item<double>(); };
  const bool skip = in.found_inf.has_value() && value(*in.found_inf) != 0;
  const double scale = in.grad_scale.has_value() ? value(*in.grad_scale) : 1.0;
  const double sq = in.max_grad_norm > 0 ? value(*in.grad_sq_norm) : 0.0;
  return {skip, math::grad_factor(scale, sq, in.max_grad_norm, in.clip_eps)};
}

// Master weights (param_copies given): params are the float32 master copies of the float16/bfloat16
// param_copies (the model's params), of their shapes and strides on their device; an entry that is
// its param itself has no master copy (a float32 param of a master-weights group). The grads are the
// model's params' (checked against param_copies by the caller).
inline bool has_master(at::TensorList params, at::TensorList copies, size_t i) {
  return !copies.empty() && !copies[i].is_same(params[i]);
}

inline void check_master_copies(const char* op, at::TensorList params, at::TensorList copies) {
  if (copies.empty()) return;
  TORCH_CHECK(copies.size() == params.size(), "hotkernels.", op, ": expected 'param_copies' to hold one tensor per "
              "param (", params.size(), "), but got ", copies.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!has_master(params, copies, i)) continue;
    const at::Tensor& p = params[i];
    const at::Tensor& c = copies[i];
    TORCH_CHECK(p.scalar_type() == at::kFloat && (c.scalar_type() == at::kHalf || c.scalar_type() == at::kBFloat16),
                "hotkernels.", op, ": with master weights, expected 'params[", i, "]' to be float32 and 'param_copies[",
                i, "]' float16 or bfloat16, but got ", p.scalar_type(), " and ", c.scalar_type());
    TORCH_CHECK(p.device() == c.device() && p.sizes() == c.sizes() && p.strides() == c.strides(), "hotkernels.", op,
                ": expected 'params[", i, "]' (master weights) to have the device, shape and strides of 'param_copies[",
                i, "]', but got ", p.device(), " ", p.sizes(), " ", p.strides(), " and ", c.device(), " ", c.sizes(),
                " ", c.strides());
  }
}

// The grads, laid out as the params the model holds: `params`, or with master weights the `copies`
// (params are then their float32 master copies); checked against those.
inline std::vector<at::Tensor> checked_grads(const char* op, at::TensorList params, at::TensorList copies,
                                             at::TensorList grads_in) {
  check_master_copies(op, params, copies);
  const at::TensorList model = copies.empty() ? params : copies;
  std::vector<at::Tensor> grads = grads_like_params(grads_in, model);
  check_param_group(op, model, {{"grads", grads}});
  return grads;
}

// LAMB's per-tensor squared norms (‖p‖², ‖u‖²), written by the moments pass, read by the update pass.
inline void check_norms(const char* op, const at::Tensor& norms, const at::Tensor& p0, size_t n) {
  TORCH_CHECK(norms.device() == p0.device() && norms.dim() == 2 && norms.size(0) == int64_t(n) &&
                  norms.size(1) == 2 && norms.scalar_type() == at::kDouble && norms.is_contiguous(),
              "hotkernels.", op, ": expected 'norms' to be a contiguous float64 tensor of shape [", n,
              ", 2] on the params' device, but got ", norms.scalar_type(), " of shape ", norms.sizes(), " on ",
              norms.device());
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
          {S(0), S(sqrt(bias_correction2)), S(h.eps)},
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
  c.denom.divisor = S(std::sqrt(bias_correction2));
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

}  // namespace hotkernels
