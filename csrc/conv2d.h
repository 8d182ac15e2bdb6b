// conv2d argument checks and geometry, shared by the CPU and CUDA ops. Messages follow torch's own
// (F.conv2d), prefixed with the op's name.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

#include "checks.h"
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
  const int64_t hp = input[2] + padding[0] + padding[2], wp = input[3] + padding[1] + padding[3];
  const int64_t eh = dilation[0] * (weight[2] - 1) + 1, ew = dilation[1] * (weight[3] - 1) + 1;
  TORCH_CHECK(hp >= eh && wp >= ew, "hotkernels.", op, ": Calculated padded input size per channel: (", hp, " x ", wp,
              "). Kernel size: (", eh, " x ", ew, "). Kernel size can't be greater than actual input size");
  math::Conv2dGeometry g{};
  g.n = input[0];
  g.c = input[1];
  g.h = input[2];
  g.w = input[3];
  g.k = weight[0];
  g.kh = weight[2];
  g.kw = weight[3];
  g.sh = stride[0];
  g.sw = stride[1];
  g.pt = padding[0];
  g.pl = padding[1];
  g.dh = dilation[0];
  g.dw = dilation[1];
  g.groups = groups;
  g.oh = math::conv_out_size(g.h, padding[0], padding[2], g.kh, g.sh, g.dh);
  g.ow = math::conv_out_size(g.w, padding[1], padding[3], g.kw, g.sw, g.dw);
  return g;
}

// The layout torch's convolutions (oneDNN, cuDNN) give their output: channels_last when the input
// or the weight suggests it, else contiguous. The gradients follow the same rule with grad_output
// standing in for the argument the op does not take (python/hotkernels/ops/conv2d.py hands
// grad_output over in the output's layout): the input gradient from (grad_output, weight), the
// weight gradient from (grad_output, input). The fake kernels there keep it too.
inline at::MemoryFormat conv2d_output_format(const at::Tensor& input, const at::Tensor& weight) {
  const bool cl = input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                  weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
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

}  // namespace hotkernels
