// Autograd (and ADInplaceOrView) kernels for the ops that have no derivative.
//
// Without one, torch's default for an op with no Autograd kernel only warns and lets backward pass
// through it with a wrong gradient, and an in-place op leaves the version counters of the tensors
// it overwrites alone, so a tensor saved for some other backward can change unnoticed. Here:
// - the backward ops that python/hotkernels/ops differentiate another way (lstm: _double_backward)
//   get torch's NotImplemented node: backward through them raises "derivative for ... is not
//   implemented";
// - the in-place ops (every hotkernels op whose schema writes an argument, "Tensor(a!)") refuse
//   inputs that require grad while grad mode is on (Autograd key), and bump the version of every
//   tensor they write, as torch's own in-place ops do (ADInplaceOrView key, so also in inference
//   mode). The hotkernels wrappers call them under no_grad (the optimizers) or only when no gradient
//   is needed (mish(inplace=True)).
#include <ATen/core/LegacyTypeDispatch.h>
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

// Autograd key: refuse tensors that require grad (in grad mode), then go on to ADInplaceOrView.
void refuse_grad(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const size_t n = schema.arguments().size();
  if (c10::GradMode::is_enabled()) {
    for (size_t i = 0; i < n; ++i) {
      for_each_tensor((*stack)[stack->size() - n + i], [&](const at::Tensor& t) {
        TORCH_CHECK(!(t.defined() && t.requires_grad()), schema.name(), ": '", schema.arguments()[i].name(),
                    "' requires grad, but this in-place op has no derivative; call it under torch.no_grad()");
      });
    }
  }
  at::AutoDispatchBelowAutograd guard;
  op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
}

// ADInplaceOrView key (also reached in inference mode, which skips Autograd): run the op, then bump
// the version of every tensor it wrote.
void bump_versions(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const size_t n = schema.arguments().size();
  std::vector<at::Tensor> written;
  for (size_t i = 0; i < n; ++i) {
    if (!schema.is_mutable({c10::SchemaArgType::input, i})) continue;
    for_each_tensor((*stack)[stack->size() - n + i], [&](const at::Tensor& t) {
      if (t.defined() && !t.is_inference()) written.push_back(t);
    });
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  }
  for (const at::Tensor& t : written) torch::autograd::impl::bump_version(t);
}

}  // namespace

// The in-place ops are found from their schemas, so that a new one needs no entry here. Called at
// the end of TORCH_LIBRARY (csrc/schemas.cpp), with its library: the schemas must be defined by
// then, and static initialisers of different files (a TORCH_LIBRARY_IMPL block here) run in no
// set order.
void register_in_place_kernels(torch::Library& m) {
  c10::Dispatcher& dispatcher = c10::Dispatcher::singleton();
  for (const c10::OperatorName& name : dispatcher.getAllOpNames()) {
    if (name.getNamespace() != "hotkernels") continue;
    const std::optional<c10::OperatorHandle> op = dispatcher.findSchema(name);
    if (!op || !op->schema().is_mutable()) continue;
    m.impl(name.name.c_str(), torch::dispatch(c10::DispatchKey::Autograd,
                                              torch::CppFunction::makeFromBoxedFunction<&refuse_grad>()));
    m.impl(name.name.c_str(), torch::dispatch(c10::DispatchKey::ADInplaceOrView,
                                              torch::CppFunction::makeFromBoxedFunction<&bump_versions>()));
  }
}

TORCH_LIBRARY_IMPL(hotkernels, Autograd, m) {
  for (const char* op : {"lstm_cell_backward", "lstm_layer_backward", "multi_tensor_sq_norms"}) {
    m.impl(op, torch::autograd::autogradNotImplementedFallback());
  }
}

}  // namespace hotkernels
