// 2-D max and average pooling (windows: csrc/math/pool.h): the geometry and the checks of the ops
// (csrc/pool.cpp), and the stubs that each device's kernels register into. The geometry mirrors
// `pool2d_geometry` in python/hotkernels/ops/pool.py (which the functional API, the modules and the
// fake kernels use) check for check, with torch's messages, so a direct call of a
// torch.ops.hotkernels pooling op fails the way F.max_pool2d / F.avg_pool2d do.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

#include "checks.h"
#include "dispatch_stub.h"
#include "math/pool.h"

namespace hotkernels {

// torch's pooling_output_shape: floor (or ceil) of the window count, where with ceil_mode the last
// window must still start inside the input or its left padding.
inline int64_t pool_output_size(const char* op, int64_t size, int64_t k, int64_t pad, int64_t s, int64_t d,
                                bool ceil_mode) {
  TORCH_CHECK(s != 0, "hotkernels.", op, ": stride should not be zero");
  TORCH_CHECK(pad >= 0, "hotkernels.", op, ": pad must be non-negative, but got pad: ", pad);
  TORCH_CHECK(pad <= ((k - 1) * d + 1) / 2, "hotkernels.", op,
              ": pad should be at most half of effective kernel size, but got pad=", pad, ", kernel_size=", k,
              " and dilation=", d);
  const int64_t num = size + 2 * pad - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;  // floor division, as torch's div_rtn
  if (ceil_mode && (out - 1) * s >= size + pad) --out;
  return out;
}

struct PoolProblem {
  math::Pool2d p;
  int64_t N, C;        // N = 1 for a 3-D (C, H, W) input
  bool channels_last;  // a 4-D input whose suggested memory format is channels_last
};

// kernel, stride, padding, dilation: two elements each (the Python wrapper expands single ints and
// defaults stride to kernel_size); dilation {1, 1} for average pooling.
inline PoolProblem pool2d_geometry(const char* op, const at::Tensor& input, at::IntArrayRef kernel,
                                   at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                   bool ceil_mode) {
  check_floating(op, "input", input);
  for (auto [name, arg] : {std::pair{"kernel_size", kernel}, {"stride", stride}, {"padding", padding},
                           {"dilation", dilation}}) {
    TORCH_CHECK(arg.size() == 2, "hotkernels.", op, ": expected '", name, "' to have 2 elements, but got ", arg.size());
    // torch's pooling takes these as int (its message: "value cannot be converted to type int
    // without overflow"); so do the window computations here.
    for (int64_t v : arg) {
      TORCH_CHECK(v == static_cast<int32_t>(v), "hotkernels.", op, ": expected '", name,
                  "' to fit in 32 bits, as torch's pooling takes it, but got ", arg);
    }
  }
  const int64_t dim = input.dim();
  TORCH_CHECK(dim == 3 || dim == 4, "hotkernels.", op, ": non-empty 3D or 4D (batch mode) tensor expected for input");
  const int64_t H = input.size(-2), W = input.size(-1), C = input.size(-3);
  const int64_t OH = pool_output_size(op, H, kernel[0], padding[0], stride[0], dilation[0], ceil_mode);
  const int64_t OW = pool_output_size(op, W, kernel[1], padding[1], stride[1], dilation[1], ceil_mode);
  TORCH_CHECK(kernel[0] > 0 && kernel[1] > 0, "hotkernels.", op, ": kernel size should be greater than zero, but got kH: ",
              kernel[0], " kW: ", kernel[1]);
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, "hotkernels.", op, ": stride should be greater than zero, but got dH: ",
              stride[0], " dW: ", stride[1]);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, "hotkernels.", op,
              ": dilation should be greater than zero, but got dilationH: ", dilation[0], " dilationW: ", dilation[1]);
  const bool channels_last = dim == 4 && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  TORCH_CHECK(C != 0 && H != 0 && W != 0, "hotkernels.", op,
              ": Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:",
              input.sizes());
  TORCH_CHECK(kernel[1] / 2 >= padding[1] && kernel[0] / 2 >= padding[0], "hotkernels.", op,
              ": pad should be smaller than or equal to half of kernel size, but got padW = ", padding[1],
              ", padH = ", padding[0], ", kW = ", kernel[1], ", kH = ", kernel[0]);
  TORCH_CHECK(OH >= 1 && OW >= 1, "hotkernels.", op, ": Given input size: (", C, "x", H, "x", W,
              "). Calculated output size: (", C, "x", OH, "x", OW, "). Output size is too small");
  PoolProblem out;
  // A stride along which there is a single window moves none: 1 there gives the same results and
  // keeps the kernels' stride-sized buffers (a row of windows, csrc/cpu/simd/pool.h) to the padded
  // input's size (stride 10^8 on a 2 × 2 input took 6.6 GB).
  out.p = {H, W, OH, OW, kernel[0], kernel[1], OH == 1 ? 1 : stride[0], OW == 1 ? 1 : stride[1], padding[0], padding[1],
           dilation[0], dilation[1]};
  out.N = dim == 4 ? input.size(0) : 1;
  out.C = C;
  out.channels_last = channels_last;
  return out;
}

// The checks of every backward op before its geometry: grad_output is (..., OH, OW) over input's
// leading dimensions, of input's dtype and device.
inline void check_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& input) {
  check_floating(op, "input", input);
  check_same_dtype(op, "grad_output", grad_output, "input", input);
  check_same_device(op, "grad_output", grad_output, "input", input);
  TORCH_CHECK(input.dim() == 3 || input.dim() == 4, "hotkernels.", op, ": expected 'input' to be 3-D or 4-D, but got ",
              input.dim(), " dimensions");
  TORCH_CHECK(grad_output.dim() == input.dim() &&
                  grad_output.sizes().slice(0, input.dim() - 2) == input.sizes().slice(0, input.dim() - 2),
              "hotkernels.", op, ": expected 'grad_output' to have the leading dimensions of 'input' ", input.sizes(),
              ", but got ", grad_output.sizes());
}

// A backward op's grad_output must have the forward's output size.
inline void check_output_size(const char* op, const at::Tensor& grad_output, const math::Pool2d& p) {
  TORCH_CHECK(grad_output.size(-2) == p.OH && grad_output.size(-1) == p.OW, "hotkernels.", op,
              ": expected 'grad_output' to have the output size ", p.OH, "x", p.OW, ", but got ", grad_output.sizes());
}

// Max pooling's offsets are bytes: refuse windows of more taps, naming the op's kernel_size.
inline void check_offset_taps(const char* op, const math::Pool2d& p) {
  TORCH_CHECK(p.kH * p.kW <= math::kMaxOffsetTaps, "hotkernels.", op, ": expected 'kernel_size' to have at most ",
              math::kMaxOffsetTaps, " taps (uint8 offsets), but got ", p.kH, "x", p.kW,
              "; larger windows need max_pool2d_with_indices");
}

// The checks of max_pool2d_backward's indices, beyond those of every backward op.
inline void check_indices(const char* op, const at::Tensor& indices, const at::Tensor& grad_output,
                          const at::Tensor& input) {
  check_same_device(op, "indices", indices, "input", input);
  TORCH_CHECK(indices.scalar_type() == at::kLong, "hotkernels.", op, ": expected 'indices' to be int64, but got ",
              indices.scalar_type());
  check_same_shape(op, "indices", indices, "grad_output", grad_output);
}

// The checks of max_pool2d_offsets_backward's offsets, beyond those of every backward op.
inline void check_offsets(const char* op, const at::Tensor& offsets, const at::Tensor& grad_output,
                          const at::Tensor& input, const math::Pool2d& p) {
  check_offset_taps(op, p);
  check_same_device(op, "offsets", offsets, "input", input);
  TORCH_CHECK(offsets.scalar_type() == at::kByte, "hotkernels.", op, ": expected 'offsets' to be uint8, but got ",
              offsets.scalar_type());
  check_same_shape(op, "offsets", offsets, "grad_output", grad_output);
}

inline math::AvgMode avg_mode(const char* op, bool count_include_pad, std::optional<int64_t> divisor_override) {
  TORCH_CHECK(divisor_override.value_or(1) != 0, "hotkernels.", op, ": divisor must be not zero");
  return {count_include_pad, divisor_override.has_value(), divisor_override.value_or(0)};
}

// The kernels' signatures. Every tensor a kernel gets is dense in the layout g names (channels_last
// or contiguous), of the input's dtype (the argmax aside), and not empty. A kernel computes in
// the accumulation type of that dtype (float for float16/bfloat16).

// out, and unless `arg` is none the argmax (int64 indices or uint8 offsets), from input.
using MaxPool2dFn = void(const at::Tensor& out, const at::Tensor& argmax, const at::Tensor& input,
                         const PoolProblem& g, math::MaxArg arg);
// grad_input from grad_output and the forward's argmax (indices or offsets, as the stub says).
using MaxPool2dBackwardFn = void(const at::Tensor& grad_input, const at::Tensor& grad_output,
                                 const at::Tensor& argmax, const PoolProblem& g);
// out from input (forward), or grad_input from grad_output (backward).
using AvgPool2dFn = void(const at::Tensor& out, const at::Tensor& in, const PoolProblem& g, const math::AvgMode& mode);

HK_DECLARE_STUB(max_pool2d_stub, MaxPool2dFn);
HK_DECLARE_STUB(max_pool2d_backward_stub, MaxPool2dBackwardFn);          // argmax: indices
HK_DECLARE_STUB(max_pool2d_offsets_backward_stub, MaxPool2dBackwardFn);  // argmax: offsets
HK_DECLARE_STUB(avg_pool2d_stub, AvgPool2dFn);
HK_DECLARE_STUB(avg_pool2d_backward_stub, AvgPool2dFn);

}  // namespace hotkernels
