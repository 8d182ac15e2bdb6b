// Mish on CUDA: the formulas of csrc/math/mish.h through the vectorised elementwise map.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "checks.h"
#include "cuda/device_math.cuh"
#include "cuda/elementwise.cuh"
#include "layout.h"
#include "math/mish.h"

namespace hotkernels::cuda {
namespace {

struct Forward {
  template <class V> __device__ V operator()(V x) const { return math::mish_forward(x, DeviceExp{}, DeviceReciprocal{}); }
};
struct Backward {
  template <class V> __device__ V operator()(V grad, V x) const { return math::mish_backward(grad, x, DeviceExp{}, DeviceReciprocal{}); }
};

at::Tensor mish(const at::Tensor& self) {
  check_floating("mish", "input", self);
  at::Tensor out = at::empty_like(self);
  map<1>(Forward{}, out, {match_layout(self, out)});
  return out;
}

void mish_(at::Tensor& self) {
  check_floating("mish_", "input", self);
  if (self.is_non_overlapping_and_dense()) {
    map<1>(Forward{}, self, {self});
  } else {
    self.copy_(mish(self));
  }
}

at::Tensor mish_backward(const at::Tensor& grad_output, const at::Tensor& self) {
  check_floating("mish_backward", "input", self);
  check_same_dtype("mish_backward", "grad_output", grad_output, "input", self);
  check_same_shape("mish_backward", "grad_output", grad_output, "input", self);
  check_same_device("mish_backward", "grad_output", grad_output, "input", self);
  at::Tensor grad_input = at::empty_like(self);
  map<2>(Backward{}, grad_input, {match_layout(grad_output, grad_input), match_layout(self, grad_input)});
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CUDA, m) {
  m.impl("mish", &mish);
  m.impl("mish_", &mish_);
  m.impl("mish_backward", &mish_backward);
}

}  // namespace hotkernels::cuda
