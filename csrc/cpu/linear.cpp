// Linear on the CPU GEMM core (csrc/cpu/gemm/gemm.h): y = x·Wᵀ + b over the last dimension of x, the
// rows of x (all its leading dimensions) as the product's m. Wᵀ is read through swapped strides (no
// transposed copy: the core packs it, or, for 1 to 4 rows, reads W's rows as they lie), and the bias
// is added by each tile's epilogue while the tile is in cache. Backward is this op again
// (python/hotkernels/ops/linear.py): dx = dy·W and dW = dyᵀ·x are products of the same form.
// float16 and bfloat16 compute in float32 and round the result once, as torch's CPU linear does.
// CPU only: on CUDA, torch's Linear is cuBLAS's GEMM.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <c10/util/accumulate.h>

#include <optional>
#include <vector>

#include "checks.h"
#include "cpu/dispatch.h"
#include "cpu/gemm/gemm.h"

namespace hotkernels::cpu {
namespace {

void check_linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  const char* op = "linear";
  check_floating(op, "input", input);
  check_same_dtype(op, "weight", weight, "input", input);
  check_same_device(op, "weight", weight, "input", input);
  TORCH_CHECK(input.dim() >= 1, "hotkernels.linear: expected 'input' to have at least 1 dimension, but got 0-D");
  TORCH_CHECK(weight.dim() == 2, "hotkernels.linear: expected 'weight' to be 2-D (out_features, in_features), "
              "but got ", weight.dim(), "-D");
  TORCH_CHECK(input.size(-1) == weight.size(1), "hotkernels.linear: expected the last dimension of 'input' ",
              input.sizes(), " to be weight's in_features, ", weight.size(1));
  if (bias) {
    check_same_dtype(op, "bias", *bias, "input", input);
    check_same_device(op, "bias", *bias, "input", input);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "hotkernels.linear: expected 'bias' to have ",
                "shape (", weight.size(0), ",) (out_features), but got ", bias->sizes());
  }
}

at::Tensor linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_linear(input, weight, bias);
  if (is_half(input)) return linear(widen(input), widen(weight), widen(bias)).to(input.scalar_type());
  const at::ScalarType dtype = input.scalar_type();
  const int64_t in = weight.size(1), out_features = weight.size(0);
  // A 2-D input is read in place at its strides; more dimensions are flattened (a copy only where
  // they do not fold into one stride).
  const int64_t rows = c10::multiply_integers(input.sizes().begin(), input.sizes().end() - 1);
  const at::Tensor x = input.dim() == 2 ? input : input.reshape({rows, in});
  const at::Tensor b_dense = bias ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({rows, out_features}, input.options());
  dispatch_compute(dtype, [&]<class T>() {
    T* y = out.mutable_data_ptr<T>();
    const T* b = bias ? b_dense.const_data_ptr<T>() : nullptr;
    gemm::multiply(gemm::matrix<T>(x), gemm::matrix<T>(weight).t(), y, out_features, false,
                   [&](int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
                     if (b == nullptr) return;
                     for (int64_t i = i0; i < i0 + rows; ++i) {
                       T* row = y + i * out_features + j0;
                       for (int64_t j = 0; j < cols; ++j) row[j] += b[j0 + j];
                     }
                   });
  });
  std::vector<int64_t> sizes(input.sizes().begin(), input.sizes().end() - 1);
  sizes.push_back(out_features);
  return out.view(sizes);
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) { m.impl("linear", &linear); }

}  // namespace hotkernels::cpu
