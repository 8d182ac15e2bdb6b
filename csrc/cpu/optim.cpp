// Optimizer steps on the CPU: checks, per-tensor step scalars, and one parallel region per call
// over every span of every tensor of the param group; the SIMD loops are csrc/cpu/kernels/optim.cpp.
// A group may mix dtypes: each span runs the kernel of its tensor's compute type, float16/bfloat16
// widened to float32 (cpu/multi_tensor.h, widened), their state in the param's dtype as torch's
// fused CPU Adam keeps it, or with master weights (param_copies) on float32 copies and state, the
// half params written with the rounded result (stochastically with a rounding_seed). GradScaler's
// grad_scale/found_inf and the clipping norm are read here on the host (optim_host.h,
// read_grad_inputs): the factor joins the step's constants.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "checks.h"
#include "cpu/kernels/optim.h"
#include "cpu/multi_tensor.h"
#include "layout.h"
#include "optim_host.h"

namespace hotkernels::cpu {
namespace {

const OptimKernels& kernels() { return HK_ISA_TABLE(optim_kernels); }

// The param's writes of a span: into the half copy with master weights, rounded stochastically
// with a rounding seed.
struct ParamWrite {
  at::TensorList params, copies;
  std::optional<int64_t> seed;

  Operand copy(const Span& s) const {
    return has_master(params, copies, s.tensor) ? operand(copies[s.tensor], s, true) : Operand{};
  }
  ParamRounding rounding(const Span& s) const {
    return {seed.has_value(), uint64_t(seed.value_or(0)), s.tensor, s.begin};
  }
};

// Per-tensor constants in both compute types, so a span picks its own.
template <template <class> class C>
struct Both {
  C<float> f32;
  C<double> f64;
  template <class T> const C<T>& of() const {
    if constexpr (sizeof(T) == 4) {
      return f32;
    } else {
      return f64;
    }
  }
};

void adam_family(const char* op, bool rectified, at::TensorList params, at::TensorList grads_in,
                 at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                 at::TensorList state_steps, AdamHyper h, const GradInputs& in, const ParamWrite& write) {
  const std::vector<at::Tensor> grads = checked_grads(op, params, write.copies, grads_in);
  check_param_group(op, params,
                    {{"exp_avgs", exp_avgs},
                     {"exp_avg_sqs", exp_avg_sqs},
                     {"max_exp_avg_sqs", max_exp_avg_sqs, h.amsgrad}});
  if (params.empty()) return;
  const HostGradScaling scaling = read_grad_inputs(op, in, params[0]);
  if (scaling.skip) return check_steps(op, state_steps, params.size());
  h.grad_factor = scaling.factor;
  const std::vector<double> steps = increment_steps(op, state_steps, params.size());
  std::vector<Both<math::AdamConsts>> consts(params.size());
  std::vector<AdamMode> modes(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const double t = steps[i];
    bool adaptive = true;
    if (rectified) {
      consts[i] = {radam_consts<float>(h, t, &adaptive), radam_consts<double>(h, t, &adaptive)};
    } else {
      consts[i] = {adam_consts<float>(h, t), adam_consts<double>(h, t)};
    }
    modes[i] = !adaptive ? AdamMode::momentum_only : (h.amsgrad ? AdamMode::amsgrad : AdamMode::adam);
  }
  parallel_typed(params, [&]<class C>(const Span& s) {
    const auto i = s.tensor;
    widened<C, 5>({operand(params[i], s, true), operand(grads[i], s, false), operand(exp_avgs[i], s, true),
                   operand(exp_avg_sqs[i], s, true), h.amsgrad ? operand(max_exp_avg_sqs[i], s, true) : Operand{}},
                  s.size,
                  [&](const std::array<C*, 5>& o, int64_t n) {
                    kernels().of<C>().adam(consts[i].template of<C>(), modes[i], o[0], o[1], o[2], o[3], o[4], n);
                  },
                  write.copy(s), write.rounding(s));
  });
}

void adam_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                at::TensorList max_exp_avg_sqs, at::TensorList state_steps, at::TensorList param_copies, double lr,
                double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
                bool decoupled_weight_decay,
                const OptTensor& grad_scale, const OptTensor& found_inf, const OptTensor& grad_sq_norm,
                double max_grad_norm, std::optional<int64_t> rounding_seed) {
  adam_family("adam_step_", false, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
              {lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay},
              {grad_scale, found_inf, grad_sq_norm, max_grad_norm}, {params, param_copies, rounding_seed});
}

void radam_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                 at::TensorList state_steps, at::TensorList param_copies, double lr, double beta1, double beta2,
                 double eps, double weight_decay, bool decoupled_weight_decay, bool maximize,
                 const OptTensor& grad_scale, const OptTensor& found_inf, const OptTensor& grad_sq_norm,
                 double max_grad_norm, std::optional<int64_t> rounding_seed) {
  adam_family("radam_step_", true, params, grads, exp_avgs, exp_avg_sqs, {}, state_steps,
              {lr, beta1, beta2, eps, weight_decay, false, maximize, decoupled_weight_decay},
              {grad_scale, found_inf, grad_sq_norm, max_grad_norm}, {params, param_copies, rounding_seed});
}

// Σ x² per tensor, summed over spans in span order (deterministic for any thread count).
std::vector<double> span_sums_to_tensors(at::TensorList tensors, const std::vector<Span>& spans,
                                         const std::vector<double>& per_span, int width) {
  std::vector<double> out(tensors.size() * width, 0.0);
  for (size_t k = 0; k < spans.size(); ++k) {
    for (int j = 0; j < width; ++j) out[spans[k].tensor * width + j] += per_span[k * width + j];
  }
  return out;
}

at::ScalarType norms_dtype(at::TensorList tensors) {
  for (const auto& t : tensors) {
    if (t.scalar_type() == at::kDouble) return at::kDouble;
  }
  return at::kFloat;
}

at::Tensor multi_tensor_sq_norms(at::TensorList tensors) {
  check_param_group("multi_tensor_sq_norms", tensors, {});
  const std::vector<Span> spans = split_spans(tensors);
  std::vector<double> per_span(spans.size());
  parallel_typed(tensors, spans, [&]<class C>(const Span& s) {
    double& sum = per_span[&s - spans.data()];
    sum = 0;
    widened<C, 1>({operand(tensors[s.tensor], s, false)}, s.size,
                  [&](const std::array<C*, 1>& o, int64_t n) { sum += kernels().of<C>().sq_norm(o[0], n); });
  });
  const std::vector<double> sums = span_sums_to_tensors(tensors, spans, per_span, 1);
  at::Tensor out = at::empty({int64_t(tensors.size())}, at::TensorOptions().dtype(at::kDouble));
  std::copy(sums.begin(), sums.end(), out.mutable_data_ptr<double>());
  return out.to(norms_dtype(tensors));
}

LambHyper lamb_hyper(double beta1, double beta2, double eps, double weight_decay, bool grad_averaging,
                     bool bias_correction, bool rectify) {
  return {beta1, beta2, eps, weight_decay, grad_averaging, bias_correction, rectify};
}

// Pass 1 of LAMB/Ralamb: unscale, clip and fold the gradient into m and v, and write ‖p‖², ‖u‖² per
// tensor.
void lamb_moments_(at::TensorList params, at::TensorList grads_in, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                   at::TensorList state_steps, at::TensorList param_copies, at::Tensor& norms,
                   const OptTensor& grad_sq_norm, double max_grad_norm,
                   double beta1, double beta2, double eps, double weight_decay, bool grad_averaging,
                   bool bias_correction, bool rectify, double clip_eps, const OptTensor& grad_scale,
                   const OptTensor& found_inf) {
  const char* op = "lamb_moments_";
  const std::vector<at::Tensor> grads = checked_grads(op, params, param_copies, grads_in);
  check_param_group(op, params, {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}});
  if (params.empty()) return;
  check_norms(op, norms, params[0], params.size());
  const HostGradScaling scaling =
      read_grad_inputs(op, {grad_scale, found_inf, grad_sq_norm, grad_sq_norm ? max_grad_norm : 0.0, clip_eps},
                       params[0]);
  if (scaling.skip) return check_steps(op, state_steps, params.size());
  const LambHyper h = lamb_hyper(beta1, beta2, eps, weight_decay, grad_averaging, bias_correction, rectify);
  const std::vector<double> steps = increment_steps(op, state_steps, params.size());
  std::vector<Both<math::LambConsts>> consts(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const double t = steps[i];
    consts[i] = {lamb_consts<float>(h, t), lamb_consts<double>(h, t)};
    consts[i].f32.inv_clip = float(scaling.factor);
    consts[i].f64.inv_clip = scaling.factor;
  }
  const std::vector<Span> spans = split_spans(params);
  std::vector<double> per_span(2 * spans.size());
  parallel_typed(params, spans, [&]<class C>(const Span& s) {
    const auto i = s.tensor;
    double* out = per_span.data() + 2 * (&s - spans.data());
    out[0] = out[1] = 0;
    widened<C, 4>({operand(params[i], s, false), operand(grads[i], s, false), operand(exp_avgs[i], s, true),
                   operand(exp_avg_sqs[i], s, true)},
                  s.size, [&](const std::array<C*, 4>& o, int64_t n) {
                    double block[2];
                    kernels().of<C>().lamb_moments(consts[i].template of<C>(), o[0], o[1], o[2], o[3], n, block);
                    out[0] += block[0];
                    out[1] += block[1];
                  });
  });
  const std::vector<double> sums = span_sums_to_tensors(params, spans, per_span, 2);
  std::copy(sums.begin(), sums.end(), norms.mutable_data_ptr<double>());
}

// Pass 2: p ← p − lr·τ·u with the trust ratio τ of each tensor from pass 1's norms (nothing when
// found_inf is set: pass 1 skipped too).
void lamb_apply_(at::TensorList params, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                 at::TensorList state_steps, at::TensorList param_copies, const at::Tensor& norms, double lr,
                 double beta1, double beta2,
                 double eps, double weight_decay, bool grad_averaging, bool bias_correction, bool rectify,
                 bool adapt, bool trust_clip, const OptTensor& found_inf, std::optional<int64_t> rounding_seed) {
  const char* op = "lamb_apply_";
  check_param_group(op, params, {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}});
  check_master_copies(op, params, param_copies);
  const ParamWrite write{params, param_copies, rounding_seed};
  if (params.empty()) return;
  TORCH_CHECK(state_steps.size() == params.size(), "hotkernels.", op, ": expected one state step per param");
  check_norms(op, norms, params[0], params.size());
  if (read_grad_inputs(op, {std::nullopt, found_inf, std::nullopt, 0.0}, params[0]).skip) return;
  const LambHyper h = lamb_hyper(beta1, beta2, eps, weight_decay, grad_averaging, bias_correction, rectify);
  const double* sq = norms.const_data_ptr<double>();
  std::vector<Both<math::LambConsts>> consts(params.size());
  std::vector<double> steps(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const double t = read_step(op, state_steps, i);
    consts[i] = {lamb_consts<float>(h, t), lamb_consts<double>(h, t)};
    steps[i] = lr * math::trust_ratio(sq[2 * i], sq[2 * i + 1], adapt, trust_clip);
  }
  parallel_typed(params, [&]<class C>(const Span& s) {
    const auto i = s.tensor;
    widened<C, 3>({operand(params[i], s, true), operand(exp_avgs[i], s, false), operand(exp_avg_sqs[i], s, false)},
                  s.size,
                  [&](const std::array<C*, 3>& o, int64_t n) {
                    kernels().of<C>().lamb_apply(consts[i].template of<C>(), C(steps[i]), o[0], o[1], o[2], n);
                  },
                  write.copy(s), write.rounding(s));
  });
}

// NovoGrad: the layer's second moment v (a 0-dim tensor per param) is updated here on the host from
// ‖g‖² (multi_tensor_sq_norms, of the scaled gradient: times the gradient factor f²):
// v ← ‖g‖² on the first step (v = 0), else β₂·v + (1 − β₂)·‖g‖².
void novograd_step_(at::TensorList params, at::TensorList grads_in, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                    at::TensorList max_exp_avg_sqs, at::TensorList state_steps, at::TensorList param_copies,
                    const at::Tensor& grad_sq_norms,
                    double lr, double beta1, double beta2, double eps, double weight_decay, bool grad_averaging,
                    bool amsgrad, const OptTensor& grad_scale, const OptTensor& found_inf,
                    const OptTensor& grad_sq_norm, double max_grad_norm, std::optional<int64_t> rounding_seed) {
  const char* op = "novograd_step_";
  const std::vector<at::Tensor> grads = checked_grads(op, params, param_copies, grads_in);
  check_param_group(op, params, {{"exp_avgs", exp_avgs}});
  const ParamWrite write{params, param_copies, rounding_seed};
  TORCH_CHECK(exp_avg_sqs.size() == params.size() && (!amsgrad || max_exp_avg_sqs.size() == params.size()),
              "hotkernels.", op, ": expected one exp_avg_sq (and max_exp_avg_sq) per param");
  TORCH_CHECK(grad_sq_norms.device().is_cpu() && grad_sq_norms.numel() == int64_t(params.size()), "hotkernels.", op,
              ": expected 'grad_sq_norms' to hold one value per param");
  auto check_scalar = [&](at::TensorList list, const char* name, size_t i) {
    const at::Tensor& t = list[i];
    TORCH_CHECK(t.device().is_cpu() && t.numel() == 1 && at::isFloatingType(t.scalar_type()), "hotkernels.", op,
                ": expected each layer moment to be a one-element floating tensor on the CPU, but '", name, "[", i,
                "]' is ", t.scalar_type(), " of shape ", t.sizes(), " on ", t.device());
  };
  for (size_t i = 0; i < params.size(); ++i) {
    check_scalar(exp_avg_sqs, "exp_avg_sqs", i);
    if (amsgrad) check_scalar(max_exp_avg_sqs, "max_exp_avg_sqs", i);
  }
  if (params.empty()) return;
  const HostGradScaling scaling = read_grad_inputs(op, {grad_scale, found_inf, grad_sq_norm, max_grad_norm}, params[0]);
  if (scaling.skip) return check_steps(op, state_steps, params.size());
  increment_steps(op, state_steps, params.size());  // the last check: nothing is written before it
  const at::Tensor norms = grad_sq_norms.to(at::kDouble).contiguous();
  const double* sq = norms.const_data_ptr<double>();
  // a layer moment's value, in its param's dtype (rounded there when a half type)
  auto get = [](const at::Tensor& t) {
    double x = 0;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "hotkernels_novograd_layer",
                                    [&] { x = double(*t.const_data_ptr<scalar_t>()); });
    return x;
  };
  auto set = [](const at::Tensor& t, double x) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "hotkernels_novograd_layer",
                                    [&] { *t.mutable_data_ptr<scalar_t>() = scalar_t(x); });
  };
  const double f = scaling.factor;
  std::vector<Both<math::NovoGradConsts>> consts(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& v = exp_avg_sqs[i];
    const double g_sq = f * f * sq[i];
    set(v, get(v) == 0 ? g_sq : beta2 * get(v) + (1 - beta2) * g_sq);
    double second = get(v);
    if (amsgrad) {
      const at::Tensor& vmax = max_exp_avg_sqs[i];
      set(vmax, std::max(get(vmax), second));
      second = get(vmax);
    }
    // (f·g)/d = g/(d/f): the factor joins the layer's denominator
    const double denom = (std::sqrt(second) + eps) / f;
    const double averaging = grad_averaging ? 1 - beta1 : 1.0;
    consts[i] = {{float(denom), float(weight_decay), float(averaging), float(beta1), float(lr)},
                 {denom, weight_decay, averaging, beta1, lr}};
  }
  parallel_typed(params, [&]<class C>(const Span& s) {
    const auto i = s.tensor;
    widened<C, 3>({operand(params[i], s, true), operand(grads[i], s, false), operand(exp_avgs[i], s, true)}, s.size,
                  [&](const std::array<C*, 3>& o, int64_t n) {
                    kernels().of<C>().novograd(consts[i].template of<C>(), o[0], o[1], o[2], n);
                  },
                  write.copy(s), write.rounding(s));
  });
}

// With master weights, `fast` are the float32 master copies of the half param_copies.
void lookahead_sync_(at::TensorList fast, at::TensorList slow, at::TensorList param_copies, double alpha,
                     std::optional<int64_t> rounding_seed) {
  check_param_group("lookahead_sync_", fast, {{"slow", slow}});
  check_master_copies("lookahead_sync_", fast, param_copies);
  const ParamWrite write{fast, param_copies, rounding_seed};
  parallel_typed(fast, [&]<class C>(const Span& s) {
    widened<C, 2>({operand(fast[s.tensor], s, true), operand(slow[s.tensor], s, true)}, s.size,
                  [&](const std::array<C*, 2>& o, int64_t n) { kernels().of<C>().lookahead(C(alpha), o[0], o[1], n); },
                  write.copy(s), write.rounding(s));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) {
  m.impl("adam_step_", &adam_step_);
  m.impl("radam_step_", &radam_step_);
  m.impl("multi_tensor_sq_norms", &multi_tensor_sq_norms);
  m.impl("lamb_moments_", &lamb_moments_);
  m.impl("lamb_apply_", &lamb_apply_);
  m.impl("novograd_step_", &novograd_step_);
  m.impl("lookahead_sync_", &lookahead_sync_);
}

}  // namespace hotkernels::cpu
