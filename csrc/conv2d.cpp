// conv2d's ops, once for every device: checks and geometry (csrc/conv2d.h), the result allocated in
// its dtype and torch's layout (conv2d_output_format), then the device kernel through its stub.
#include "conv2d.h"

#include <ATen/ops/empty.h>

namespace hotkernels {

HK_DEFINE_STUB(conv2d_stub, "conv2d", Conv2dFn);
HK_DEFINE_STUB(conv2d_backward_input_stub, "conv2d_backward_input", Conv2dBackwardInputFn);
HK_DEFINE_STUB(conv2d_backward_weight_stub, "conv2d_backward_weight", Conv2dBackwardWeightFn);
HK_DEFINE_STUB(conv2d_backward_bias_stub, "conv2d_backward_bias", Conv2dBackwardBiasFn);

namespace {

using math::Conv2dGeometry;

// A gradient op's checks: grad_output with the forward argument it takes (`arg`), the geometry, and
// grad_output's size against it.
Conv2dGeometry gradient_geometry(const char* op, const at::Tensor& grad_output, const at::Tensor& arg,
                                 const char* arg_name, at::IntArrayRef input_size, at::IntArrayRef weight_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  check_conv2d_tensors(op, grad_output, "grad_output", arg, arg_name);
  const Conv2dGeometry g = conv2d_geometry(op, input_size, weight_size, stride, padding, dilation, groups);
  check_conv2d_grad_output(op, grad_output, g);
  return g;
}

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_conv2d_tensors("conv2d", input, "input", weight, "weight");
  check_conv2d_bias("conv2d", bias, input, weight);
  const Conv2dGeometry g = conv2d_geometry("conv2d", input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  const at::MemoryFormat layout = conv2d_output_format(input, weight);
  at::Tensor y = at::empty({g.n, g.k, g.oh, g.ow}, input.options().memory_format(layout));
  if (y.numel() > 0) conv2d_stub(input.device().type(), y, input, weight, bias.value_or(at::Tensor()), g, layout);
  return y;
}

// The geometry's kernel-size check makes oh, ow ≥ 1, so grad_output is empty only with the batch,
// and then so is grad_input.
at::Tensor conv2d_backward_input(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups) {
  const Conv2dGeometry g = gradient_geometry("conv2d_backward_input", grad_output, weight, "weight", input_size,
                                             weight.sizes(), stride, padding, dilation, groups);
  const at::MemoryFormat layout = conv2d_output_format(grad_output, weight);
  at::Tensor gx = at::empty({g.n, g.c, g.h, g.w}, grad_output.options().memory_format(layout));
  if (gx.numel() > 0) conv2d_backward_input_stub(grad_output.device().type(), gx, grad_output, weight, g, layout);
  return gx;
}

at::Tensor conv2d_backward_weight(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups) {
  const Conv2dGeometry g = gradient_geometry("conv2d_backward_weight", grad_output, input, "input", input.sizes(),
                                             weight_size, stride, padding, dilation, groups);
  const at::MemoryFormat layout = conv2d_output_format(grad_output, input);
  at::Tensor gw = at::empty(weight_size, grad_output.options().memory_format(layout));
  if (grad_output.numel() == 0) return gw.zero_();  // an empty sum
  conv2d_backward_weight_stub(grad_output.device().type(), gw, grad_output, input, g);
  return gw;
}

at::Tensor conv2d_backward_bias(const at::Tensor& grad_output) {
  check_floating("conv2d_backward_bias", "grad_output", grad_output);
  TORCH_CHECK(grad_output.dim() == 4, "hotkernels.conv2d_backward_bias: expected 'grad_output' to be 4-D, but got ",
              grad_output.sizes());
  at::Tensor gb = at::empty({grad_output.size(1)}, grad_output.options());
  if (grad_output.numel() == 0) return gb.zero_();  // an empty sum
  conv2d_backward_bias_stub(grad_output.device().type(), gb, grad_output);
  return gb;
}

void register_ops(torch::Library& m) {
  m.impl("conv2d", &conv2d);
  m.impl("conv2d_backward_input", &conv2d_backward_input);
  m.impl("conv2d_backward_weight", &conv2d_backward_weight);
  m.impl("conv2d_backward_bias", &conv2d_backward_bias);
}

}  // namespace

HK_DEVICE_OPS(register_ops)

}  // namespace hotkernels
