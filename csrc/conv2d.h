// conv2d (formulas and geometry: csrc/math/conv2d.h): the checks and geometry of the ops
// (csrc/conv2d.cpp), the layout of their results, and the stubs that the ops call and each device's
// kernels register into. Messages follow torch's own (F.conv2d), prefixed with the op's name.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <optional>

#include "checks.h"
#include "dispatch_stub.h"
#include "math/conv2d.h"

namespace hotkernels {

// `padding` is [top, left, bottom, right]: leading pads, then trailing pads, each in (h, w) order.
inline math::Conv2dGeometry conv2d_geometry(const char* op, at::IntArrayRef input, at::IntArrayRef weight,
                                            at::IntArrayRef stride, at::IntArrayRef padding,
                                            at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(input.size() == 4, "hotkernels.", op, ": expected 'input' to be 4-D (batched), but got input of size: ",
              input);
  TORCH_CHECK(weight.size() == 4, "hotkernels.", op, ": expected 'weight' to be 4-D, but got weight of size: ",
              weight);
  // As torch: an empty batch is fine, an empty image is not, even where padding would give it outputs.
  TORCH_CHECK(input[2] > 0 && input[3] > 0, "hotkernels.", op,
              ": expected 'input' to have non-zero height and width (only a zero batch is supported), but got "
              "input of size: ", input);
  TORCH_CHECK(stride.size() == 2 && dilation.size() == 2 && padding.size() == 4, "hotkernels.", op,
              ": expected 2 strides, 4 paddings and 2 dilations, but got ", stride, ", ", padding, " and ", dilation);
  TORCH_CHECK(groups > 0, "hotkernels.", op, ": non-positive groups is not supported");
  for (int64_t s : stride) TORCH_CHECK(s > 0, "hotkernels.", op, ": non-positive stride is not supported");
  for (int64_t d : dilation) TORCH_CHECK(d > 0, "hotkernels.", op, ": dilation should be greater than zero");
  for (int64_t p : padding) TORCH_CHECK(p >= 0, "hotkernels.", op, ": negative padding is not supported");
  TORCH_CHECK(weight[0] % groups == 0, "hotkernels.", op, ": Given groups=", groups,
              ", expected weight to be divisible by ", groups, " at dimension 0, but got weight of size ", weight,
              " instead");
  TORCH_CHECK(weight[0] > 0 && weight[1] > 0 && weight[2] > 0 && weight[3] > 0, "hotkernels.", op,
              ": expected a non-empty weight, but got weight of size ", weight);
  TORCH_CHECK(input[1] == weight[1] * groups, "hotkernels.", op, ": Given groups=", groups, ", weight of size ",
              weight, ", expected input", input, " to have ", weight[1] * groups, " channels, but got ", input[1],
              " channels instead");
  // The padded input and the dilated kernel's span, where int64 holds them.
  int64_t hp = 0, wp = 0, eh = 0, ew = 0;
  const bool overflows =
      __builtin_add_overflow(input[2], padding[0], &hp) || __builtin_add_overflow(hp, padding[2], &hp) ||
      __builtin_add_overflow(input[3], padding[1], &wp) || __builtin_add_overflow(wp, padding[3], &wp) ||
      __builtin_mul_overflow(dilation[0], weight[2] - 1, &eh) || __builtin_add_overflow(eh, 1, &eh) ||
      __builtin_mul_overflow(dilation[1], weight[3] - 1, &ew) || __builtin_add_overflow(ew, 1, &ew);
  TORCH_CHECK(!overflows, "hotkernels.", op, ": the padded input (padding ", padding,
              ") or the dilated kernel (dilation ", dilation, ", weight of size ", weight, ") is too large");
  TORCH_CHECK(hp >= eh && wp >= ew, "hotkernels.", op, ": Calculated padded input size per channel: (", hp, " x ", wp,
              "). Kernel size: (", eh, " x ", ew, "). Kernel size can't be greater than actual input size");
  const int64_t oh = math::conv_out_size(input[2], padding[0], padding[2], weight[2], stride[0], dilation[0]);
  const int64_t ow = math::conv_out_size(input[3], padding[1], padding[3], weight[3], stride[1], dilation[1]);
  // A stride along which there is a single output moves no window: 1 there gives the same results
  // (forward and both gradients) and keeps what the kernels size or loop by the stride (the CPU's
  // depthwise planes and input-gradient phases, CUDA's stride classes) to the input's size, whatever
  // stride was asked for (torch takes 2^32 and more).
  return {.n = input[0], .c = input[1], .h = input[2], .w = input[3],
          .k = weight[0],
          .oh = oh, .ow = ow,
          .kh = weight[2], .kw = weight[3],
          .sh = oh == 1 ? 1 : stride[0], .sw = ow == 1 ? 1 : stride[1],
          .pt = padding[0], .pl = padding[1],
          .dh = dilation[0], .dw = dilation[1],
          .groups = groups};
}

// The layout torch's convolutions give their output: channels_last when the input or the weight
// suggests it, else contiguous. The gradients follow the same rule with grad_output standing in for
// the argument the op does not take (python/hotkernels/ops/conv2d.py hands grad_output over in the
// output's layout): the input gradient from (grad_output, weight), the weight gradient from
// (grad_output, input). float64 on CUDA is always contiguous: torch runs it on cuDNN (or, depthwise,
// its native kernel), which keep float64 in NCHW whatever the arguments' layouts
// (cudnn_conv_suggest_memory_format in aten/src/ATen/native/ConvUtils.h; the native depthwise kernel
// is NCHW only). The fake kernels there keep the same rule.
inline at::MemoryFormat conv2d_output_format(const at::Tensor& a, const at::Tensor& b) {
  if (a.is_cuda() && a.scalar_type() == at::kDouble) return at::MemoryFormat::Contiguous;
  const bool cl = a.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                  b.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// Where a kernel that writes a contiguous array of dtype `dtype` puts a result bound for `out`: `out`
// itself when it is one already, else a contiguous scratch that finish_into then copies into `out`
// (dtype and layout in one conversion).
inline at::Tensor contiguous_target(const at::Tensor& out, at::ScalarType dtype) {
  if (out.scalar_type() == dtype && out.is_contiguous()) return out;
  return at::empty(out.sizes(), out.options().dtype(dtype), at::MemoryFormat::Contiguous);
}

inline void finish_into(const at::Tensor& out, const at::Tensor& target) {
  if (!target.is_same(out)) out.copy_(target);
}

inline void check_conv2d_tensors(const char* op, const at::Tensor& input, const char* input_name,
                                 const at::Tensor& weight, const char* weight_name) {
  check_floating(op, input_name, input);
  check_same_dtype(op, weight_name, weight, input_name, input);
  check_same_device(op, weight_name, weight, input_name, input);
}

inline void check_conv2d_bias(const char* op, const std::optional<at::Tensor>& bias, const at::Tensor& input,
                              const at::Tensor& weight) {
  if (!bias.has_value()) return;
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "hotkernels.", op, ": Given weight of size ",
              weight.sizes(), ", expected bias to be 1-dimensional with ", weight.size(0),
              " elements, but got bias of size ", bias->sizes(), " instead");
  check_same_dtype(op, "bias", *bias, "input", input);
  check_same_device(op, "bias", *bias, "input", input);
}

inline void check_conv2d_grad_output(const char* op, const at::Tensor& grad_output, const math::Conv2dGeometry& g) {
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == g.n && grad_output.size(1) == g.k &&
                  grad_output.size(2) == g.oh && grad_output.size(3) == g.ow,
              "hotkernels.", op, ": expected 'grad_output' of size [", g.n, ", ", g.k, ", ", g.oh, ", ", g.ow,
              "], but got ", grad_output.sizes());
}

// The device kernels. Each writes every value of its result, which the op has allocated in its
// dtype and layout (conv2d_output_format; `layout` is that layout) and which is never empty.
// A kernel reads its tensor arguments in whatever layout they come.

// y = conv(input, weight) + bias (bias undefined: none)
using Conv2dFn = void(const at::Tensor& y, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                      const math::Conv2dGeometry& g, at::MemoryFormat layout);
// grad_input: the transposed convolution of grad_output
using Conv2dBackwardInputFn = void(const at::Tensor& grad_input, const at::Tensor& grad_output,
                                   const at::Tensor& weight, const math::Conv2dGeometry& g, at::MemoryFormat layout);
// grad_weight = Σ over the batch's output pixels of grad_output × the taps' input pixels
using Conv2dBackwardWeightFn = void(const at::Tensor& grad_weight, const at::Tensor& grad_output,
                                    const at::Tensor& input, const math::Conv2dGeometry& g);
// grad_bias[c] = Σ over batch and pixels of grad_output[:, c]
using Conv2dBackwardBiasFn = void(const at::Tensor& grad_bias, const at::Tensor& grad_output);

HK_DECLARE_STUB(conv2d_stub, Conv2dFn);
HK_DECLARE_STUB(conv2d_backward_input_stub, Conv2dBackwardInputFn);
HK_DECLARE_STUB(conv2d_backward_weight_stub, Conv2dBackwardWeightFn);
HK_DECLARE_STUB(conv2d_backward_bias_stub, Conv2dBackwardBiasFn);

}  // namespace hotkernels
