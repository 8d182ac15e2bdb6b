// conv2d's CPU kernels: the compute type (float16/bfloat16 widened to float), NCHW arrays, and the
// choice of pass (csrc/cpu/conv2d_passes.h): the implicit GEMM in general, the depthwise kernels for
// one channel per group. Results are computed in NCHW and reach the op's output with one conversion
// at most (contiguous_target, csrc/conv2d.h).
#include "conv2d.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cstdint>

#include "cpu/conv2d_passes.h"
#include "cpu/dispatch.h"

namespace hotkernels::cpu {
namespace {

using namespace conv;

at::Tensor as_compute(const at::Tensor& t) { return t.to(at::toOpMathType(t.scalar_type())).contiguous(); }

at::Tensor compute_target(const at::Tensor& out) {
  return contiguous_target(out, at::toOpMathType(out.scalar_type()));
}

// The depthwise kernels, where they apply and their padded plane fits (depthwise_planes_fit).
bool depthwise(const Conv2dGeometry& g) { return g.depthwise() && depthwise_planes_fit(g); }

void conv2d(const at::Tensor& y, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
            const Conv2dGeometry& g, at::MemoryFormat) {
  const at::Tensor x = as_compute(input), w = as_compute(weight);
  const at::Tensor b = bias.defined() ? as_compute(bias) : at::Tensor();
  const at::Tensor yc = compute_target(y);
  dispatch_compute(x.scalar_type(), [&]<class T>() {
    const T* bp = b.defined() ? b.const_data_ptr<T>() : nullptr;
    const auto pass = depthwise(g) ? &depthwise_forward<T> : &forward_gemm<T>;
    pass(x.const_data_ptr<T>(), w.const_data_ptr<T>(), bp, yc.mutable_data_ptr<T>(), g);
  });
  finish_into(y, yc);
}

void conv2d_backward_input(const at::Tensor& gx, const at::Tensor& grad_output, const at::Tensor& weight,
                           const Conv2dGeometry& g, at::MemoryFormat) {
  const at::Tensor gy = as_compute(grad_output), w = as_compute(weight);
  const at::Tensor gxc = compute_target(gx);
  // The GEMM leaves the input pixels that no tap reaches (a stride phase without taps) unwritten.
  if (!depthwise(g) && !every_phase_has_taps(g)) gxc.zero_();
  dispatch_compute(gy.scalar_type(), [&]<class T>() {
    const auto pass = depthwise(g) ? &depthwise_backward_input<T> : &backward_input_gemm<T>;
    pass(gy.const_data_ptr<T>(), w.const_data_ptr<T>(), gxc.mutable_data_ptr<T>(), g);
  });
  finish_into(gx, gxc);
}

void conv2d_backward_weight(const at::Tensor& gw, const at::Tensor& grad_output, const at::Tensor& input,
                            const Conv2dGeometry& g) {
  const at::Tensor gy = as_compute(grad_output), x = as_compute(input);
  const at::Tensor gwc = compute_target(gw);
  dispatch_compute(gy.scalar_type(), [&]<class T>() {
    const auto pass = depthwise(g) ? &depthwise_backward_weight<T> : &weight_gradient<T>;
    pass(gy.const_data_ptr<T>(), x.const_data_ptr<T>(), gwc.mutable_data_ptr<T>(), g);
  });
  finish_into(gw, gwc);
}

void conv2d_backward_bias(const at::Tensor& gb, const at::Tensor& grad_output) {
  const at::Tensor gy = as_compute(grad_output);
  const at::Tensor gbc = compute_target(gb);
  const int64_t n = gy.size(0), k = gy.size(1), hw = gy.size(2) * gy.size(3);
  dispatch_compute(gy.scalar_type(), [&]<class T>() {
    const auto sum = kernels<T>().sum;
    const T* src = gy.const_data_ptr<T>();
    T* out = gbc.mutable_data_ptr<T>();
    at::parallel_for(0, k, grain(n * hw), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += sum(src + (i * k + c) * hw, hw);
        out[c] = static_cast<T>(s);
      }
    });
  });
  finish_into(gb, gbc);
}

}  // namespace

HK_REGISTER_STUB(conv2d_stub, cpu, &conv2d);
HK_REGISTER_STUB(conv2d_backward_input_stub, cpu, &conv2d_backward_input);
HK_REGISTER_STUB(conv2d_backward_weight_stub, cpu, &conv2d_backward_weight);
HK_REGISTER_STUB(conv2d_backward_bias_stub, cpu, &conv2d_backward_bias);

}  // namespace hotkernels::cpu
