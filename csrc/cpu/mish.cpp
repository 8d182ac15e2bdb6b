// Mish on the CPU: argument checks, layout, threads; the SIMD math is in csrc/cpu/kernels/mish.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "checks.h"
#include "cpu/elementwise.h"
#include "cpu/huge_pages.h"
#include "cpu/kernels/mish.h"
#include "layout.h"

namespace hotkernels::cpu {
namespace {

at::Tensor mish(const at::Tensor& self) {
  check_floating("mish", "input", self);
  at::Tensor out = huge_pages(at::empty_like(self));
  parallel_map<1>(HK_ISA_TABLE(mish_kernels).forward, out, {match_layout(self, out)});
  return out;
}

void mish_(at::Tensor& self) {
  check_floating("mish_", "input", self);
  if (self.is_non_overlapping_and_dense()) {
    parallel_map<1>(HK_ISA_TABLE(mish_kernels).forward, self, {self});  // reads then writes each element
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
  parallel_map<2>(HK_ISA_TABLE(mish_kernels).backward, grad_input,
                  {match_layout(grad_output, grad_input), match_layout(self, grad_input)});
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) {
  m.impl("mish", &mish);
  m.impl("mish_", &mish_);
  m.impl("mish_backward", &mish_backward);
}

}  // namespace hotkernels::cpu
