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

  // conv2d: python/hotkernels/ops/conv2d.py. padding = [top, left, bottom, right] (asymmetric for
  // padding='same' with an even kernel extent); input and output are NCHW, 4-D.
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[4] padding, int[2] dilation, "
        "int groups) -> Tensor", pt2);
  m.def("conv2d_backward_input(Tensor grad_output, Tensor weight, int[4] input_size, int[2] stride, "
        "int[4] padding, int[2] dilation, int groups) -> Tensor", pt2);
  m.def("conv2d_backward_weight(Tensor grad_output, Tensor input, int[4] weight_size, int[2] stride, "
        "int[4] padding, int[2] dilation, int groups) -> Tensor", pt2);
  m.def("conv2d_backward_bias(Tensor grad_output) -> Tensor", pt2);
}
