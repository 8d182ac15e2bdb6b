// 2-D max and average pooling, once for every device: checks, geometry (csrc/pool.h), outputs in
// the layout the op keeps, then the device kernel through its stub. The layout is channels_last for
// a 4-D input that suggests it, else contiguous; every tensor a kernel gets is brought to it.
#include "pool.h"

#include <ATen/ops/empty.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "huge_pages.h"

namespace hotkernels {

HK_DEFINE_STUB(max_pool2d_stub, "max_pool2d", MaxPool2dFn);
HK_DEFINE_STUB(max_pool2d_backward_stub, "max_pool2d_backward", MaxPool2dBackwardFn);
HK_DEFINE_STUB(max_pool2d_offsets_backward_stub, "max_pool2d_offsets_backward", MaxPool2dBackwardFn);
HK_DEFINE_STUB(avg_pool2d_stub, "avg_pool2d", AvgPool2dFn);
HK_DEFINE_STUB(avg_pool2d_backward_stub, "avg_pool2d_backward", AvgPool2dFn);

namespace {

using math::MaxArg;

at::MemoryFormat format_of(const PoolProblem& g) {
  return g.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// A forward output: input's leading dimensions, then (OH, OW).
at::Tensor empty_output(const at::Tensor& input, const PoolProblem& g, at::ScalarType dtype) {
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape[shape.size() - 2] = g.p.OH;
  shape[shape.size() - 1] = g.p.OW;
  return huge_pages(at::empty(shape, input.options().dtype(dtype).memory_format(format_of(g))));
}

at::Tensor empty_grad_input(const at::Tensor& grad_output, const at::Tensor& input, const PoolProblem& g) {
  return huge_pages(at::empty(input.sizes(), grad_output.options().memory_format(format_of(g))));
}

std::tuple<at::Tensor, at::Tensor> max_pool(const char* op, const at::Tensor& input, at::IntArrayRef kernel_size,
                                            at::IntArrayRef stride, at::IntArrayRef padding,
                                            at::IntArrayRef dilation, bool ceil_mode, MaxArg arg) {
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  if (arg == MaxArg::offsets) check_offset_taps(op, g.p);
  // The CPU's float32 kernels keep plane indices in int32 lanes (csrc/cpu/simd/pool.cpp), and
  // float16 and bfloat16 compute in float32 there: refused here, before any copy of the input.
  TORCH_CHECK(!input.is_cpu() || input.scalar_type() == at::kDouble || g.p.H * g.p.W <= INT32_MAX, "hotkernels.",
              op, ": float32, float16 and bfloat16 'input' planes of 2^31 or more elements are not supported "
              "(float64 is), got ", g.p.H, "x", g.p.W);
  const at::Tensor x = input.contiguous(format_of(g));
  at::Tensor out = empty_output(input, g, input.scalar_type());
  at::Tensor argmax;
  if (arg != MaxArg::none) argmax = empty_output(input, g, arg == MaxArg::indices ? at::kLong : at::kByte);
  if (out.numel() > 0) max_pool2d_stub(input.device().type(), out, argmax, x, g, arg);
  return {out, argmax};
}

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(max_pool("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, MaxArg::none));
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool("max_pool2d_with_indices", input, kernel_size, stride, padding, dilation, ceil_mode,
                  MaxArg::indices);
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_offsets(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool("max_pool2d_with_offsets", input, kernel_size, stride, padding, dilation, ceil_mode,
                  MaxArg::offsets);
}

// The input's gradient from grad_output and the forward's argmax, by the stub of its kind.
at::Tensor max_backward(const DispatchStub<MaxPool2dBackwardFn>& stub, const at::Tensor& grad_output,
                        const at::Tensor& input, const at::Tensor& argmax, const PoolProblem& g) {
  at::Tensor grad_input = empty_grad_input(grad_output, input, g);
  if (grad_input.numel() > 0) {
    stub(input.device().type(), grad_input, grad_output.contiguous(format_of(g)), argmax.contiguous(format_of(g)), g);
  }
  return grad_input;
}

at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& indices,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "max_pool2d_backward";
  check_backward(op, grad_output, input);
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  check_output_size(op, grad_output, g.p);
  check_indices(op, indices, grad_output, input);
  return max_backward(max_pool2d_backward_stub, grad_output, input, indices, g);
}

at::Tensor max_pool2d_offsets_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& offsets, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "max_pool2d_offsets_backward";
  check_backward(op, grad_output, input);
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  check_output_size(op, grad_output, g.p);
  check_offsets(op, offsets, grad_output, input, g.p);
  return max_backward(max_pool2d_offsets_backward_stub, grad_output, input, offsets, g);
}

at::Tensor avg_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      std::optional<int64_t> divisor_override) {
  const PoolProblem g = pool2d_geometry("avg_pool2d", input, kernel_size, stride, padding, {1, 1}, ceil_mode);
  const math::AvgMode mode = avg_mode("avg_pool2d", count_include_pad, divisor_override);
  const at::Tensor x = input.contiguous(format_of(g));
  at::Tensor out = empty_output(input, g, input.scalar_type());
  if (out.numel() > 0) avg_pool2d_stub(input.device().type(), out, x, g, mode);
  return out;
}

at::Tensor avg_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                               bool count_include_pad, std::optional<int64_t> divisor_override) {
  constexpr const char* op = "avg_pool2d_backward";
  check_backward(op, grad_output, input);
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, {1, 1}, ceil_mode);
  const math::AvgMode mode = avg_mode(op, count_include_pad, divisor_override);
  check_output_size(op, grad_output, g.p);
  at::Tensor grad_input = empty_grad_input(grad_output, input, g);
  if (grad_input.numel() > 0) {
    avg_pool2d_backward_stub(input.device().type(), grad_input, grad_output.contiguous(format_of(g)), g, mode);
  }
  return grad_input;
}

void register_ops(torch::Library& m) {
  m.impl("max_pool2d", &max_pool2d);
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices);
  m.impl("max_pool2d_backward", &max_pool2d_backward);
  m.impl("max_pool2d_with_offsets", &max_pool2d_with_offsets);
  m.impl("max_pool2d_offsets_backward", &max_pool2d_offsets_backward);
  m.impl("avg_pool2d", &avg_pool2d);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward);
}

}  // namespace

HK_DEVICE_OPS(register_ops)

}  // namespace hotkernels
