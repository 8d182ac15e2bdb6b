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

namespace hotkernels {

// A param group handed to an optimizer op: every tensor of `lists` (those marked not `used` are
// skipped: an optional state such as max_exp_avg_sqs without amsgrad) must match its param in device, dtype, shape and strides,
// so that one flat index walks all of them; params must be dense floating tensors and grads dense.
struct TensorListArg {
  const char* name;
  at::TensorList list;
  bool used = true;
};

inline void check_param_group(const char* op, at::TensorList params, std::initializer_list<TensorListArg> lists) {
  for (const auto& arg : lists) {
    TORCH_CHECK(!arg.used || arg.list.size() == params.size(), "hotkernels.", op, ": expected '", arg.name,
                "' to hold one tensor per param (", params.size(), "), but got ", arg.list.size());
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    const std::string pname = "params[" + std::to_string(i) + "]";
    TORCH_CHECK(!p.is_sparse(), "hotkernels.", op, ": sparse params are not supported ('", pname, "')");
    check_floating(op, pname.c_str(), p);
    check_same_device(op, pname.c_str(), p, "params[0]", params[0]);
    TORCH_CHECK(p.is_non_overlapping_and_dense(), "hotkernels.", op, ": expected '", pname,
                "' to be dense (non-overlapping, no gaps), but got strides ", p.strides());
    for (const auto& arg : lists) {
      if (!arg.used) continue;
      const at::Tensor& t = arg.list[i];
      const std::string name = std::string(arg.name) + "[" + std::to_string(i) + "]";
      TORCH_CHECK(!t.is_sparse(), "hotkernels.", op, ": sparse gradients are not supported ('", name, "')");
      check_same_device(op, name.c_str(), t, pname.c_str(), p);
      check_same_dtype(op, name.c_str(), t, pname.c_str(), p);
      check_same_shape(op, name.c_str(), t, pname.c_str(), p);
      TORCH_CHECK(t.strides() == p.strides(), "hotkernels.", op, ": expected '", name, "' to have the strides of '",
                  pname, "' ", p.strides(), ", but got ", t.strides());
    }
  }
}

}  // namespace hotkernels
