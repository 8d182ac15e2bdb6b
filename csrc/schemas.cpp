// Every hotkernels op schema, in one place. Implementations register per device in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; fake (meta) kernels and autograd are registered in
// Python next to each op's wrapper (python/hotkernels/ops/<op>.py).
#include <torch/library.h>

TORCH_LIBRARY(hotkernels, m) {
  const std::vector<at::Tag> pt2 = {at::Tag::pt2_compliant_tag};

  // mish: python/hotkernels/ops/mish.py
  m.def("mish(Tensor input) -> Tensor", pt2);
  m.def("mish_(Tensor(a!) input) -> ()", pt2);  // custom ops that mutate return nothing
  m.def("mish_backward(Tensor grad_output, Tensor input) -> Tensor", pt2);

  // optimizers: python/hotkernels/optim/. One call updates a whole param group in place (lists of
  // tensors, one per param); per-step scalars come from the state steps, which the ops increment.
  m.def("adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] state_steps, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay) -> ()", pt2);
  m.def("radam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(e!)[] state_steps, float lr, float beta1, float beta2, float eps, float weight_decay, "
        "bool decoupled_weight_decay, bool maximize) -> ()", pt2);
  m.def("multi_tensor_sq_norms(Tensor[] tensors) -> Tensor", pt2);
  m.def("lamb_moments_(Tensor[] params, Tensor[] grads, Tensor(a!)[] exp_avgs, Tensor(b!)[] exp_avg_sqs, "
        "Tensor(e!)[] state_steps, Tensor(n!) norms, Tensor? grad_sq_norm, float max_grad_norm, float beta1, "
        "float beta2, float eps, float weight_decay, bool grad_averaging, bool bias_correction, bool rectify) -> ()",
        pt2);
  m.def("lamb_apply_(Tensor(a!)[] params, Tensor[] exp_avgs, Tensor[] exp_avg_sqs, Tensor[] state_steps, "
        "Tensor norms, float lr, float beta1, float beta2, float eps, float weight_decay, bool grad_averaging, "
        "bool bias_correction, bool rectify, bool adapt, bool trust_clip) -> ()", pt2);
  m.def("novograd_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] state_steps, Tensor grad_sq_norms, float lr, float beta1, "
        "float beta2, float eps, float weight_decay, bool grad_averaging, bool amsgrad) -> ()", pt2);
  m.def("lookahead_sync_(Tensor(a!)[] fast, Tensor(b!)[] slow, float alpha) -> ()", pt2);
}
