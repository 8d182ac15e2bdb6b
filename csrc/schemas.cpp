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
}
