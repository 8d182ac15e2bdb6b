// Mish's ops, once for every device: checks, the output's layout, then the device kernel through its
// stub (csrc/mish.h).
#include "mish.h"

#include <ATen/ops/empty_like.h>

#include "checks.h"
#include "huge_pages.h"
#include "layout.h"

namespace hotkernels {

HK_DEFINE_STUB(mish_stub, "mish", void(const at::Tensor& out, const at::Tensor& self));
HK_DEFINE_STUB(mish_backward_stub, "mish_backward",
               void(const at::Tensor& grad_input, const at::Tensor& grad_output, const at::Tensor& self));

namespace {

at::Tensor mish(const at::Tensor& self) {
  check_floating("mish", "input", self);
  at::Tensor out = huge_pages(at::empty_like(self));
  mish_stub(self.device().type(), out, match_layout(self, out));
  return out;
}

void mish_(at::Tensor& self) {
  check_floating("mish_", "input", self);
  if (self.is_non_overlapping_and_dense()) {
    mish_stub(self.device().type(), self, self);  // each element read, then written
  } else {
    self.copy_(mish(self));  // a strided view: work on a dense copy
  }
}

at::Tensor mish_backward(const at::Tensor& grad_output, const at::Tensor& self) {
  check_floating("mish_backward", "input", self);
  check_same_dtype("mish_backward", "grad_output", grad_output, "input", self);
  check_same_shape("mish_backward", "grad_output", grad_output, "input", self);
  check_same_device("mish_backward", "grad_output", grad_output, "input", self);
  at::Tensor grad_input = huge_pages(at::empty_like(self));
  mish_backward_stub(self.device().type(), grad_input, match_layout(grad_output, grad_input),
                     match_layout(self, grad_input));
  return grad_input;
}

void register_ops(torch::Library& m) {
  m.impl("mish", &mish);
  m.impl("mish_", &mish_);
  m.impl("mish_backward", &mish_backward);
}

}  // namespace

HK_DEVICE_OPS(register_ops)

}  // namespace hotkernels
