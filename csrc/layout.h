// Memory-layout helpers for elementwise ops, CPU and CUDA.
//
// An elementwise kernel walks flat memory, so all its tensors must share one dense layout. Outputs
// are made with empty_like(input) (the input's strides when it is dense, as torch's own ops and the
// fake kernels in python/hotkernels/ops do); every other operand is brought to that layout, which
// copies only when its strides differ (a contiguous grad against a channels_last input, an expanded
// grad, a sliced view).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

namespace hotkernels {

inline at::Tensor match_layout(const at::Tensor& t, const at::Tensor& like) {
  if (t.strides() == like.strides() && t.is_non_overlapping_and_dense()) return t;
  return at::empty_like(like).copy_(t);
}

}  // namespace hotkernels
