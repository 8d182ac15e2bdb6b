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

#include <vector>

namespace hotkernels {

inline at::Tensor match_layout(const at::Tensor& t, const at::Tensor& like) {
  if (t.strides() == like.strides() && t.is_non_overlapping_and_dense()) return t;
  return at::empty_like(like).copy_(t);
}

// An optimizer op walks a param, its grad and its state as flat arrays of one layout. Grads are
// only read, and torch.optim takes them in any layout, so a grad laid out unlike its param (set by
// hand, or a DDP bucket view of a channels_last param) is copied into the param's layout. Only then:
// a grad of another shape, dtype or device is left for check_param_group to refuse (copy_ would
// broadcast or cast it silently).
inline std::vector<at::Tensor> grads_like_params(at::TensorList grads, at::TensorList params) {
  std::vector<at::Tensor> out(grads.begin(), grads.end());
  for (size_t i = 0; i < out.size() && i < params.size(); ++i) {
    const at::Tensor& g = out[i];
    const at::Tensor& p = params[i];
    if (g.defined() && !g.is_sparse() && g.strides() != p.strides() && g.sizes() == p.sizes() &&
        g.dtype() == p.dtype() && g.device() == p.device() && p.is_non_overlapping_and_dense()) {
      out[i] = match_layout(g, p);
    }
  }
  return out;
}

}  // namespace hotkernels
