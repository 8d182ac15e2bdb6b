// The optimizer ops, once for every device (csrc/optim.h): each checks its whole param group, its
// step counters and grad inputs, decides whether GradScaler's found_inf skips the step, counts the
// step, and only then runs its device kernels through a stub. Every check comes before any write: a
// step that raises leaves params, state and counters as they were, so a retried step does not run
// some params one step ahead of their moments.
#include "optim.h"

#include <ATen/ops/empty.h>

#include <string>

#include "checks.h"
#include "layout.h"

namespace hotkernels {

HK_DEFINE_STUB(adam_stub, "adam_step_", void(const AdamStep& s, const std::vector<double>& steps));
HK_DEFINE_STUB(adam_capturable_stub, "adam_step_", void(const AdamStep& s, at::TensorList state_steps));
HK_DEFINE_STUB(sq_norms_stub, "multi_tensor_sq_norms", void(const at::Tensor& out, at::TensorList tensors));
HK_DEFINE_STUB(lamb_moments_stub, "lamb_moments_", void(const LambMoments& s, const std::vector<double>& steps));
HK_DEFINE_STUB(lamb_apply_stub, "lamb_apply_", void(const LambApply& s, const std::vector<double>& steps));
HK_DEFINE_STUB(novograd_stub, "novograd_step_", void(const NovoGradStep& s));
HK_DEFINE_STUB(lookahead_stub, "lookahead_sync_",
               void(at::TensorList fast, at::TensorList slow, at::TensorList param_copies, double alpha,
                    std::optional<int64_t> rounding_seed));

namespace {

void check_one_per_param(const char* op, const char* name, at::TensorList list, size_t n) {
  TORCH_CHECK(list.size() == n, "hotkernels.", op, ": expected '", name, "' to hold one tensor per param (", n,
              "), but got ", list.size());
}

// A list of a param group (those not `used` are skipped: an optional state such as max_exp_avg_sqs
// without amsgrad). Each of its tensors must match its param in device, dtype, shape and strides, so
// that one flat index walks all of them; params must be dense floating tensors.
struct TensorListArg {
  const char* name;
  at::TensorList list;
  bool used = true;
};

void check_param_group(const char* op, at::TensorList params, std::initializer_list<TensorListArg> lists) {
  for (const auto& arg : lists) {
    if (arg.used) check_one_per_param(op, arg.name, arg.list, params.size());
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    const std::string pname = "params[" + std::to_string(i) + "]";
    TORCH_CHECK(!p.is_sparse(), "hotkernels.", op, ": sparse params are not supported ('", pname, "')");
    check_floating(op, pname.c_str(), p);
    check_same_device(op, pname.c_str(), p, "params[0]", params[0]);
    TORCH_CHECK(p.is_non_overlapping_and_dense(), "hotkernels.", op, ": expected '", pname,
                "' to be dense (non-overlapping, no gaps), but got strides ", p.strides());
    for (const auto& arg : lists) {
      if (!arg.used) continue;
      const at::Tensor& t = arg.list[i];
      const std::string name = std::string(arg.name) + "[" + std::to_string(i) + "]";
      TORCH_CHECK(!t.is_sparse(), "hotkernels.", op, ": sparse gradients are not supported ('", name, "')");
      check_same_device(op, name.c_str(), t, pname.c_str(), p);
      check_same_dtype(op, name.c_str(), t, pname.c_str(), p);
      check_same_shape(op, name.c_str(), t, pname.c_str(), p);
      TORCH_CHECK(t.strides() == p.strides(), "hotkernels.", op, ": expected '", name, "' to have the strides of '",
                  pname, "' ", p.strides(), ", but got ", t.strides());
    }
  }
}

// Master weights and stochastic rounding: the Adam family and Lookahead's sync take them on every
// device, LAMB and NovoGrad on the CPU only (their CUDA kernels write the params in place).
void check_master_weights_on_cpu(const char* op, at::TensorList params, at::TensorList param_copies,
                                 std::optional<int64_t> rounding_seed) {
  TORCH_CHECK((param_copies.empty() && !rounding_seed.has_value()) || params.empty() || params[0].is_cpu(),
              "hotkernels.", op,
              ": 'param_copies' (master weights) and 'rounding_seed' (stochastic rounding) are not implemented on "
              "CUDA yet");
}

void check_master_copies(const char* op, at::TensorList params, at::TensorList copies) {
  if (copies.empty()) return;
  check_one_per_param(op, "param_copies", copies, params.size());
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
std::vector<at::Tensor> checked_grads(const char* op, at::TensorList params, at::TensorList copies,
                                      at::TensorList grads_in) {
  check_master_copies(op, params, copies);
  const at::TensorList model = copies.empty() ? params : copies;
  std::vector<at::Tensor> grads = grads_like_params(grads_in, model);
  check_param_group(op, model, {{"grads", grads}});
  return grads;
}

void check_grad_inputs(const char* op, const GradInputs& in, const at::Tensor& p0) {
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

// Whether found_inf skips the step: read on the host (one sync per step with a GradScaler on CUDA),
// since whether to count the step on the CPU counters is a host decision.
bool found_inf_set(const GradInputs& in) { return in.found_inf.has_value() && read_scalar(*in.found_inf) != 0; }

// LAMB's per-tensor squared norms (‖p‖², ‖u‖², each as its math::SqSums parts), written by the
// moments pass, read by the update pass.
void check_norms(const char* op, const at::Tensor& norms, const at::Tensor& p0, size_t n) {
  TORCH_CHECK(norms.device() == p0.device() && norms.dim() == 3 && norms.size(0) == int64_t(n) &&
                  norms.size(1) == 2 && norms.size(2) == math::kSqParts && norms.scalar_type() == at::kDouble &&
                  norms.is_contiguous(),
              "hotkernels.", op, ": expected 'norms' to be a contiguous float64 tensor of shape [", n, ", 2, ",
              math::kSqParts, "] on the params' device, but got ", norms.scalar_type(), " of shape ", norms.sizes(),
              " on ", norms.device());
}

// The step counters, as torch.optim keeps them without capturable: one per param, each a one-element
// float32 or float64 tensor on the CPU (read and written on the host).
void check_steps(const char* op, at::TensorList state_steps, size_t n) {
  check_one_per_param(op, "state_steps", state_steps, n);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& step = state_steps[i];
    TORCH_CHECK(step.device().is_cpu() && step.numel() == 1 &&
                    (step.scalar_type() == at::kFloat || step.scalar_type() == at::kDouble),
                "hotkernels.", op, ": expected each state step to be a one-element float32 or float64 CPU tensor, but ",
                "'state_steps[", i, "]' is ", step.scalar_type(), " of shape ", step.sizes(), " on ", step.device());
  }
}

std::vector<double> read_steps(const char* op, at::TensorList state_steps, size_t n) {
  check_steps(op, state_steps, n);
  std::vector<double> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = read_scalar(state_steps[i]);
  return t;
}

// Checks all n counters, then adds 1 to each and returns the new counts: the op's last check.
std::vector<double> increment_steps(const char* op, at::TensorList state_steps, size_t n) {
  check_steps(op, state_steps, n);
  std::vector<double> t(n);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& step = state_steps[i];
    t[i] = step.scalar_type() == at::kFloat ? double(*step.mutable_data_ptr<float>() += 1.0f)
                                            : *step.mutable_data_ptr<double>() += 1.0;
  }
  return t;
}

// Capturable steps: the counters on the params' device (CUDA), float32 as torch.optim's.
void check_device_steps(const char* op, at::TensorList params, at::TensorList state_steps) {
  check_one_per_param(op, "state_steps", state_steps, params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& s = state_steps[i];
    TORCH_CHECK(s.device() == params[i].device() && s.numel() == 1 && s.scalar_type() == at::kFloat, "hotkernels.", op,
                ": with state steps on the GPU (capturable), expected each to be a one-element float32 tensor on its "
                "param's device, but 'state_steps[", i, "]' is ", s.scalar_type(), " of shape ", s.sizes(), " on ",
                s.device());
  }
}

// NovoGrad's layer moments: one element of its param's dtype on its param's device per param.
void check_layer_moments(const char* op, at::TensorList params, at::TensorList moments, const char* name) {
  check_one_per_param(op, name, moments, params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& t = moments[i];
    const at::Tensor& p = params[i];
    TORCH_CHECK(t.numel() == 1 && t.scalar_type() == p.scalar_type() && t.device() == p.device(), "hotkernels.", op,
                ": expected each layer moment to be a one-element tensor of its param's dtype and device, but '",
                name, "[", i, "]' is ", t.scalar_type(), " of shape ", t.sizes(), " on ", t.device(), " (its param: ",
                p.scalar_type(), " on ", p.device(), ")");
  }
}

void adam_family(const char* op, AdamStep s, at::TensorList grads_in, at::TensorList state_steps) {
  const std::vector<at::Tensor> grads = checked_grads(op, s.params, s.param_copies, grads_in);
  s.grads = grads;
  check_param_group(op, s.params,
                    {{"exp_avgs", s.exp_avgs},
                     {"exp_avg_sqs", s.exp_avg_sqs},
                     {"max_exp_avg_sqs", s.max_exp_avg_sqs, s.h.amsgrad}});
  if (s.params.empty()) return;
  const at::Tensor& p0 = s.params[0];
  check_grad_inputs(op, s.in, p0);
  // capturable (counters on the GPU): the kernels read found_inf and count the step
  if (p0.is_cuda() && !state_steps.empty() && state_steps[0].is_cuda()) {
    check_device_steps(op, s.params, state_steps);
    return adam_capturable_stub(p0.device().type(), s, state_steps);
  }
  if (found_inf_set(s.in)) return check_steps(op, state_steps, s.params.size());
  adam_stub(p0.device().type(), s, increment_steps(op, state_steps, s.params.size()));
}

void adam_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                at::TensorList max_exp_avg_sqs, at::TensorList state_steps, at::TensorList param_copies, double lr,
                double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
                bool decoupled_weight_decay, const OptTensor& grad_scale, const OptTensor& found_inf,
                const OptTensor& grad_sq_norm, double max_grad_norm, std::optional<int64_t> rounding_seed) {
  adam_family("adam_step_",
              {params, {}, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, param_copies, false,
               {lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay},
               {grad_scale, found_inf, grad_sq_norm, max_grad_norm}, rounding_seed},
              grads, state_steps);
}

void radam_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                 at::TensorList state_steps, at::TensorList param_copies, double lr, double beta1, double beta2,
                 double eps, double weight_decay, bool decoupled_weight_decay, bool maximize,
                 const OptTensor& grad_scale, const OptTensor& found_inf, const OptTensor& grad_sq_norm,
                 double max_grad_norm, std::optional<int64_t> rounding_seed) {
  adam_family("radam_step_",
              {params, {}, exp_avgs, exp_avg_sqs, {}, param_copies, true,
               {lr, beta1, beta2, eps, weight_decay, false, maximize, decoupled_weight_decay},
               {grad_scale, found_inf, grad_sq_norm, max_grad_norm}, rounding_seed},
              grads, state_steps);
}

// float64 when any tensor is, else float32 (the sums are float64 either way).
at::Tensor multi_tensor_sq_norms(at::TensorList tensors) {
  const char* op = "multi_tensor_sq_norms";
  check_param_group(op, tensors, {});
  TORCH_CHECK(!tensors.empty(), "hotkernels.", op, ": expected at least one tensor");
  at::Tensor out = at::empty({int64_t(tensors.size())}, tensors[0].options().dtype(at::kDouble));
  sq_norms_stub(tensors[0].device().type(), out, tensors);
  for (const at::Tensor& t : tensors) {
    if (t.scalar_type() == at::kDouble) return out;
  }
  return out.to(at::kFloat);
}

void lamb_moments_(at::TensorList params, at::TensorList grads_in, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                   at::TensorList state_steps, at::TensorList param_copies, at::Tensor& norms,
                   const OptTensor& grad_sq_norm, double max_grad_norm, double beta1, double beta2, double eps,
                   double weight_decay, bool grad_averaging, bool bias_correction, bool rectify, double clip_eps,
                   const OptTensor& grad_scale, const OptTensor& found_inf) {
  const char* op = "lamb_moments_";
  check_master_weights_on_cpu(op, params, param_copies, std::nullopt);
  const std::vector<at::Tensor> grads = checked_grads(op, params, param_copies, grads_in);
  check_param_group(op, params, {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}});
  if (params.empty()) return;
  check_norms(op, norms, params[0], params.size());
  // without grad_sq_norm the step is not clipped, whatever max_grad_norm says
  const GradInputs in{grad_scale, found_inf, grad_sq_norm, grad_sq_norm ? max_grad_norm : 0.0, clip_eps};
  check_grad_inputs(op, in, params[0]);
  if (found_inf_set(in)) return check_steps(op, state_steps, params.size());
  const std::vector<double> steps = increment_steps(op, state_steps, params.size());
  lamb_moments_stub(params[0].device().type(),
                    {params, grads, exp_avgs, exp_avg_sqs, norms,
                     {beta1, beta2, eps, weight_decay, grad_averaging, bias_correction, rectify}, in},
                    steps);
}

// Nothing when found_inf is set: pass 1 skipped too. The counters are only read (pass 1 counted).
void lamb_apply_(at::TensorList params, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                 at::TensorList state_steps, at::TensorList param_copies, const at::Tensor& norms, double lr,
                 double beta1, double beta2, double eps, double weight_decay, bool grad_averaging,
                 bool bias_correction, bool rectify, bool adapt, bool trust_clip, const OptTensor& found_inf,
                 std::optional<int64_t> rounding_seed) {
  const char* op = "lamb_apply_";
  check_master_weights_on_cpu(op, params, param_copies, rounding_seed);
  check_param_group(op, params, {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}});
  check_master_copies(op, params, param_copies);
  if (params.empty()) return;
  check_norms(op, norms, params[0], params.size());
  check_one_per_param(op, "state_steps", state_steps, params.size());
  const GradInputs in{std::nullopt, found_inf, std::nullopt, 0.0};
  check_grad_inputs(op, in, params[0]);
  if (found_inf_set(in)) return;
  lamb_apply_stub(params[0].device().type(),
                  {params, exp_avgs, exp_avg_sqs, param_copies, norms, lr,
                   {beta1, beta2, eps, weight_decay, grad_averaging, bias_correction, rectify}, adapt, trust_clip,
                   rounding_seed},
                  read_steps(op, state_steps, params.size()));
}

void novograd_step_(at::TensorList params, at::TensorList grads_in, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                    at::TensorList max_exp_avg_sqs, at::TensorList state_steps, at::TensorList param_copies,
                    const at::Tensor& grad_sq_norms, double lr, double beta1, double beta2, double eps,
                    double weight_decay, bool grad_averaging, bool amsgrad, const OptTensor& grad_scale,
                    const OptTensor& found_inf, const OptTensor& grad_sq_norm, double max_grad_norm,
                    std::optional<int64_t> rounding_seed) {
  const char* op = "novograd_step_";
  check_master_weights_on_cpu(op, params, param_copies, rounding_seed);
  const std::vector<at::Tensor> grads = checked_grads(op, params, param_copies, grads_in);
  check_param_group(op, params, {{"exp_avgs", exp_avgs}});
  check_layer_moments(op, params, exp_avg_sqs, "exp_avg_sqs");
  if (amsgrad) check_layer_moments(op, params, max_exp_avg_sqs, "max_exp_avg_sqs");
  if (params.empty()) return;
  check_same_device(op, "grad_sq_norms", grad_sq_norms, "params[0]", params[0]);
  TORCH_CHECK(grad_sq_norms.numel() == int64_t(params.size()), "hotkernels.", op,
              ": expected 'grad_sq_norms' to hold one value per param (", params.size(), "), but got ",
              grad_sq_norms.numel());
  const GradInputs in{grad_scale, found_inf, grad_sq_norm, max_grad_norm};
  check_grad_inputs(op, in, params[0]);
  if (found_inf_set(in)) return check_steps(op, state_steps, params.size());
  increment_steps(op, state_steps, params.size());
  novograd_stub(params[0].device().type(),
                {params, grads, exp_avgs, exp_avg_sqs, amsgrad ? max_exp_avg_sqs : at::TensorList{}, param_copies,
                 grad_sq_norms, {lr, beta1, beta2, eps, weight_decay, grad_averaging, amsgrad}, in, rounding_seed});
}

void lookahead_sync_(at::TensorList fast, at::TensorList slow, at::TensorList param_copies, double alpha,
                     std::optional<int64_t> rounding_seed) {
  const char* op = "lookahead_sync_";
  check_param_group(op, fast, {{"slow", slow}});
  check_master_copies(op, fast, param_copies);
  if (fast.empty()) return;
  lookahead_stub(fast[0].device().type(), fast, slow, param_copies, alpha, rounding_seed);
}

void register_ops(torch::Library& m) {
  m.impl("adam_step_", &adam_step_);
  m.impl("radam_step_", &radam_step_);
  m.impl("multi_tensor_sq_norms", &multi_tensor_sq_norms);
  m.impl("lamb_moments_", &lamb_moments_);
  m.impl("lamb_apply_", &lamb_apply_);
  m.impl("novograd_step_", &novograd_step_);
  m.impl("lookahead_sync_", &lookahead_sync_);
}

}  // namespace

HK_DEVICE_OPS(register_ops)

}  // namespace hotkernels
