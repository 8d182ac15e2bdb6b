// conv2d on the CPU, the ops: argument checks (csrc/conv2d.h), the compute type (float16/bfloat16
// widened to float) and layout, and the choice of pass (csrc/cpu/conv2d_passes.h): the implicit
// GEMM in general, the depthwise kernels for one channel per group. Results are computed in NCHW
// and returned in torch's layout (as_result).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdint>
#include <type_traits>

#include "conv2d.h"
#include "cpu/conv2d_passes.h"
#include "cpu/dispatch.h"
#include "cpu/kernels/conv2d.h"

namespace hotkernels::cpu {
namespace {

using namespace conv;

at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor as_compute(const at::Tensor& t) { return t.to(compute_type(t.scalar_type())).contiguous(); }

// The kernels compute in NCHW; results go out in the layout torch's ops would give
// (conv2d_output_format, csrc/conv2d.h). One conversion at most
// (dtype and layout together).
at::Tensor as_result(const at::Tensor& t, const at::Tensor& like, at::MemoryFormat format) {
  return t.to(like.scalar_type(), false, false, format);
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_conv2d_tensors("conv2d", input, "input", weight, "weight");
  check_conv2d_bias("conv2d", bias, input, weight);
  const Conv2dGeometry g = conv2d_geometry("conv2d", input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  const at::Tensor x = as_compute(input), w = as_compute(weight);
  const at::Tensor b = bias.has_value() ? as_compute(*bias) : at::Tensor();
  const at::MemoryFormat format = conv2d_output_format(input, weight);
  at::Tensor y = at::empty({g.n, g.k, g.oh, g.ow}, x.options());
  if (y.numel() == 0) return as_result(y, input, format);
  dispatch_compute(x.scalar_type(), [&]<class T>() {
    const T* bp = b.defined() ? b.const_data_ptr<T>() : nullptr;
    if (is_depthwise(g)) {
      depthwise_forward(x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, y.mutable_data_ptr<T>(), g);
      return;
    }
    forward_gemm(x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, y.mutable_data_ptr<T>(), g);
  });
  return as_result(y, input, format);
}

at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  const char* op = "conv2d_backward_input";
  check_conv2d_tensors(op, grad_output, "grad_output", weight, "weight");
  const Conv2dGeometry g = conv2d_geometry(op, input_size, weight.sizes(), stride, padding, dilation, groups);
  check_conv2d_grad_output(op, grad_output, g);
  const at::Tensor gy = as_compute(grad_output), w = as_compute(weight);
  const at::MemoryFormat format = conv2d_output_format(grad_output, weight);
  // Every input pixel is written unless some stride phase has no taps (stride > dilated kernel).
  at::Tensor gx = is_depthwise(g) || !every_phase_has_taps(g) ? at::zeros({g.n, g.c, g.h, g.w}, gy.options())
                                                              : at::empty({g.n, g.c, g.h, g.w}, gy.options());
  if (gx.numel() == 0 || gy.numel() == 0) return as_result(gx, grad_output, format);
  dispatch_compute(gy.scalar_type(), [&]<class T>() {
    if (is_depthwise(g)) {
      depthwise_backward_input(gy.const_data_ptr<T>(), w.const_data_ptr<T>(), gx.mutable_data_ptr<T>(), g);
      return;
    }
    backward_input_gemm(gy.const_data_ptr<T>(), w.const_data_ptr<T>(), gx.mutable_data_ptr<T>(), g);
  });
  return as_result(gx, grad_output, format);
}

at::Tensor conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  const char* op = "conv2d_backward_weight";
  check_conv2d_tensors(op, grad_output, "grad_output", input, "input");
  const Conv2dGeometry g = conv2d_geometry(op, input.sizes(), weight_size, stride, padding, dilation, groups);
  check_conv2d_grad_output(op, grad_output, g);
  const at::Tensor gy = as_compute(grad_output), x = as_compute(input);
  const at::MemoryFormat format = conv2d_output_format(grad_output, input);
  at::Tensor gw = at::empty(weight_size, gy.options());  // every path below writes all of it
  if (gy.numel() == 0) return as_result(gw.zero_(), grad_output, format);  // empty sum
  dispatch_compute(gy.scalar_type(), [&]<class T>() {
    if (is_depthwise(g)) {
      depthwise_backward_weight(gy.const_data_ptr<T>(), x.const_data_ptr<T>(), gw.mutable_data_ptr<T>(), g);
    } else {
      weight_gradient(gy.const_data_ptr<T>(), x.const_data_ptr<T>(), gw.mutable_data_ptr<T>(), g);
    }
  });
  return as_result(gw, grad_output, format);
}

at::Tensor conv2d_backward_bias(const at::Tensor& grad_output) {
  check_floating("conv2d_backward_bias", "grad_output", grad_output);
  TORCH_CHECK(grad_output.dim() == 4, "hotkernels.conv2d_backward_bias: expected 'grad_output' to be 4-D, but got ",
              grad_output.sizes());
  const at::Tensor gy = as_compute(grad_output);
  const int64_t n = gy.size(0), k = gy.size(1), hw = gy.size(2) * gy.size(3);
  at::Tensor gb = at::empty({k}, gy.options());
  dispatch_compute(gy.scalar_type(), [&]<class T>() {
    const T* src = gy.const_data_ptr<T>();
    T* out = gb.mutable_data_ptr<T>();
    at::parallel_for(0, k, grain(n * hw), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) {
          if constexpr (std::is_same_v<T, float>) {
            s += HK_ISA_TABLE(conv2d_kernels).sum_f32(src + (i * k + c) * hw, hw);
          } else {
            s += HK_ISA_TABLE(conv2d_kernels).sum_f64(src + (i * k + c) * hw, hw);
          }
        }
        out[c] = static_cast<T>(s);
      }
    });
  });
  return gb.to(grad_output.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) {
  m.impl("conv2d", &conv2d);
  m.impl("conv2d_backward_input", &conv2d_backward_input);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight);
  m.impl("conv2d_backward_bias", &conv2d_backward_bias);
}

}  // namespace hotkernels::cpu

