// Autograd kernels for the ops that have no derivative.
//
// Without one, torch's default for an op with no Autograd kernel only warns and lets backward pass
// through it with a wrong gradient, and an in-place op leaves the version counters of the tensors
// it overwrites alone, so a tensor saved for some other backward can change unnoticed. Here:
// - the backward ops that python/hotkernels/ops differentiate another way (lstm: _double_backward)
//   get torch's NotImplemented node: backward through them raises "derivative for ... is not
//   implemented";
// - the in-place ops (schemas "Tensor(a!)", returning nothing) refuse inputs that require grad
//   while grad mode is on, and bump the version of every tensor they write, as torch's own
//   in-place ops do. The hotkernels wrappers call them under no_grad (the optimizers) or only
//   when no gradient is needed (mish(inplace=True)).
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <vector>

namespace hotkernels {
namespace {

void for_each_tensor(const c10::IValue& value, const auto& fn) {
  if (value.isTensor()) {
    fn(value.toTensor());
  } else if (value.isTensorList()) {
    for (const at::Tensor& t : value.toTensorVector()) fn(t);
  }
}

void in_place_without_derivative(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const size_t n = schema.arguments().size();
  const bool grad_mode = c10::GradMode::is_enabled();
  std::vector<at::Tensor> written;
  for (size_t i = 0; i < n; ++i) {
    const bool mutable_arg = schema.is_mutable({c10::SchemaArgType::input, i});
    for_each_tensor((*stack)[stack->size() - n + i], [&](const at::Tensor& t) {
      if (!t.defined()) return;
      TORCH_CHECK(!(grad_mode && t.requires_grad()), schema.name(), ": '", schema.arguments()[i].name(),
                  "' requires grad, but this in-place op has no derivative; call it under torch.no_grad()");
      if (mutable_arg) written.push_back(t);
    });
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  }
  for (const at::Tensor& t : written) {
    if (!t.is_inference()) torch::autograd::impl::bump_version(t);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, Autograd, m) {
  for (const char* op : {"lstm_cell_backward", "lstm_layer_backward", "multi_tensor_sq_norms"}) {
    m.impl(op, torch::autograd::autogradNotImplementedFallback());
  }
  for (const char* op : {"mish_", "adam_step_", "radam_step_", "lamb_moments_", "lamb_apply_", "novograd_step_",
                         "lookahead_sync_"}) {
    m.impl(op, torch::CppFunction::makeFromBoxedFunction<&in_place_without_derivative>());
  }
}

}  // namespace hotkernels
