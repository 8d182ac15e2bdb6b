// Argument checks shared by every op, CPU and CUDA. Messages name the op and the argument, the way
// torch's own do, and raise RuntimeError in Python (TORCH_CHECK).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace hotkernels {

// float32, float64, float16 or bfloat16: the dtypes every hotkernels op computes in.
inline void check_floating(const char* op, const char* arg, const at::Tensor& t) {
  const auto dt = t.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16, "hotkernels.", op,
              ": expected '", arg, "' to be a float32, float64, float16 or bfloat16 tensor, but got ", dt);
}

inline void check_same_dtype(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                             const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "hotkernels.", op, ": expected '", arg, "' to have dtype ",
              ref.scalar_type(), " like '", ref_arg, "', but got ", t.scalar_type());
}

inline void check_same_device(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                              const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), "hotkernels.", op, ": expected all tensors to be on the same device, but '",
              arg, "' is on ", t.device(), " and '", ref_arg, "' is on ", ref.device());
}

inline void check_same_shape(const char* op, const char* arg, const at::Tensor& t, const char* ref_arg,
                             const at::Tensor& ref) {
  TORCH_CHECK(t.sizes() == ref.sizes(), "hotkernels.", op, ": expected '", arg, "' to have the shape of '", ref_arg,
              "' ", ref.sizes(), ", but got ", t.sizes());
}

}  // namespace hotkernels
