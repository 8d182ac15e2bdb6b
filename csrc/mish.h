// Mish, y = x·tanh(softplus(x)) (formulas: csrc/math/mish.h): the stubs that the op (csrc/mish.cpp)
// calls and each device's kernels register into. Every tensor a kernel gets shares one dense layout
// (csrc/layout.h), so the kernels walk flat memory.
#pragma once

#include <ATen/core/Tensor.h>

#include "dispatch_stub.h"

namespace hotkernels {

// out = mish(self); out may be self (mish_)
HK_DECLARE_STUB(mish_stub, void(const at::Tensor& out, const at::Tensor& self));
// grad_input = grad_output · mish'(self)
HK_DECLARE_STUB(mish_backward_stub,
                void(const at::Tensor& grad_input, const at::Tensor& grad_output, const at::Tensor& self));

}  // namespace hotkernels
