// Autocast (torch.autocast, automatic mixed precision) for the hotkernels ops, as torch's autocast
// treats the ops they replace.
//
// Inside an autocast region torch runs each op of its "lower precision" list with its floating-point
// tensor arguments cast to the region's dtype (float16 or bfloat16), leaving float64 and tensors on
// other devices alone, and runs every op in no list in the dtypes it is given
// (aten/src/ATen/autocast_mode.cpp). The hotkernels ops follow the lists of the torch ops they stand
// for, on each device:
// - conv2d: lower precision on the CPU and CUDA, as torch's conv2d.
// - linear: lower precision on the CPU, as torch's linear (the op is CPU-only).
// - lstm_layer: lower precision on the CPU and CUDA, as torch's LSTM layers (mkldnn_rnn_layer on the
//   CPU, _cudnn_rnn on CUDA). torch's CPU LSTM falls back from oneDNN for projections and packed
//   batches to a path that runs only its GEMMs in the lower precision, returning h or c in float32;
//   ours stays in the autocast dtype there too, as torch's oneDNN and CUDA paths do.
// - lstm_cell: lower precision on CUDA, as torch's lstm_cell. On the CPU torch's cell is in no list:
//   its two gate GEMMs (linear) are, and the elementwise update mixes their result with cx, so it
//   returns promote(autocast dtype, cx.dtype). Ours computes in that dtype, from its operands as
//   given (torch's rounds its GEMMs' operands and results to the autocast dtype).
// - mish, max_pool2d, avg_pool2d and every backward op: no autocast kernel, as torch's mish, pooling
//   and backward ops are in no list. Autocast falls through for them: they compute in their input's
//   dtype, the backward ops in the forward's (its saved tensors and gradients).
//
// The casts are torch's own (at::autocast::cached_cast): autograd ops, so gradients flow back to the
// float32 weights in their own dtype, and a float32 leaf that requires grad (a weight) is cast once
// per region and reused by every later call in it (an LSTMCell stepped over a sequence casts its
// weights once), unless the region was entered with cache_enabled=False. Below the autocast kernel
// autocast is off (its dispatch key excluded), so the op's autograd and device kernels see the cast
// arguments only.
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "lstm.h"

namespace hotkernels {
namespace {

using at::Tensor;
using c10::DeviceType;
using lstm::OptTensor;
using lstm::Tensors3;

// The op `name` called through the dispatcher, from the autocast key down (autograd included).
template <class Sig>
c10::TypedOperatorHandle<Sig> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

Tensor conv2d(const Tensor& input, const Tensor& weight, const OptTensor& bias, at::IntArrayRef stride,
              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  static const auto handle = op<decltype(conv2d)>("hotkernels::conv2d");
  return handle.call(input, weight, bias, stride, padding, dilation, groups);
}

Tensor linear(const Tensor& input, const Tensor& weight, const OptTensor& bias) {
  static const auto handle = op<decltype(linear)>("hotkernels::linear");
  return handle.call(input, weight, bias);
}

Tensors3 lstm_layer(const Tensor& input, const Tensor& hx, const Tensor& cx, const Tensor& w_ih, const Tensor& w_hh,
                    const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr, bool reverse,
                    at::OptionalIntArrayRef batch_sizes) {
  static const auto handle = op<decltype(lstm_layer)>("hotkernels::lstm_layer");
  return handle.call(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, batch_sizes);
}

Tensors3 lstm_cell(const Tensor& input, const Tensor& hx, const Tensor& cx, const Tensor& w_ih, const Tensor& w_hh,
                   const OptTensor& b_ih, const OptTensor& b_hh) {
  static const auto handle = op<decltype(lstm_cell)>("hotkernels::lstm_cell");
  return handle.call(input, hx, cx, w_ih, w_hh, b_ih, b_hh);
}

// torch's autocast kernel of the lower-precision list for F on device D.
template <DeviceType D, class Sig, Sig* F>
constexpr auto lower_precision =
    &at::autocast::WrapFunction<at::autocast::CastPolicy::lower_precision_fp, D, Sig, Sig, F>::type::call;

// The CPU cell: every eligible argument cast to promote(autocast dtype, cx.dtype), the dtype torch's
// CPU cell returns.
Tensors3 lstm_cell_cpu(const Tensor& input, const Tensor& hx, const Tensor& cx, const Tensor& w_ih,
                       const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  const at::ScalarType to =
      at::promote_types(at::autocast::get_lower_precision_fp_from_device_type(DeviceType::CPU), cx.scalar_type());
  const auto cast = [&](const auto& t) { return at::autocast::cached_cast(to, t, DeviceType::CPU); };
  return lstm_cell(cast(input), cast(hx), cast(cx), cast(w_ih), cast(w_hh), cast(b_ih), cast(b_hh));
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, AutocastCPU, m) {
  m.impl("conv2d", lower_precision<DeviceType::CPU, decltype(conv2d), &conv2d>);
  m.impl("linear", lower_precision<DeviceType::CPU, decltype(linear), &linear>);
  m.impl("lstm_layer", lower_precision<DeviceType::CPU, decltype(lstm_layer), &lstm_layer>);
  m.impl("lstm_cell", &lstm_cell_cpu);
}

// Registered in every build (the key exists without CUDA; nothing reaches it there).
TORCH_LIBRARY_IMPL(hotkernels, AutocastCUDA, m) {
  m.impl("conv2d", lower_precision<DeviceType::CUDA, decltype(conv2d), &conv2d>);
  m.impl("lstm_layer", lower_precision<DeviceType::CUDA, decltype(lstm_layer), &lstm_layer>);
  m.impl("lstm_cell", lower_precision<DeviceType::CUDA, decltype(lstm_cell), &lstm_cell>);
}

}  // namespace hotkernels
