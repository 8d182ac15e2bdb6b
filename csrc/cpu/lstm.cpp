// LSTM on the CPU: the two pointwise passes, split over threads; the SIMD math is in
// csrc/cpu/kernels/lstm.cpp, the GEMMs and time loops in csrc/lstm.cpp.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <type_traits>

#include "cpu/kernels/lstm.h"
#include "lstm.h"

namespace hotkernels::cpu {
namespace {

// Elements (of batch·hidden) per task: an element costs five exponentials forward (one backward)
// and ~10 loads and stores, so 8k of them are some 50 µs of work, well above a task's scheduling;
// smaller steps (an RNN step of a small batch) stay on one thread.
constexpr int64_t kLstmGrain = 8192;

template <class T, template <class> class Args>
auto pick(const LstmTyped<Args>& typed) {
  if constexpr (std::is_same_v<T, float>) {
    return typed.f32;
  } else {
    return typed.f64;
  }
}

template <class T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

void forward(const at::Tensor& gates, const at::Tensor& bias, const at::Tensor& c_prev, const at::Tensor& h,
             const at::Tensor& c) {
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "hotkernels_lstm_forward", [&] {
    const LstmForwardArgs<scalar_t> args{gates.mutable_data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias),
                                         c_prev.const_data_ptr<scalar_t>(), h.mutable_data_ptr<scalar_t>(),
                                         c.mutable_data_ptr<scalar_t>(), h.size(-1)};
    const auto kernel = pick<scalar_t>(HK_ISA_TABLE(lstm_kernels).forward);
    at::parallel_for(0, h.numel(), kLstmGrain, [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
  });
}

void backward(const at::Tensor& gates, const at::Tensor& c_prev, const at::Tensor& c, const at::Tensor& dh,
              const at::Tensor& dc, const at::Tensor& dc_extra, const at::Tensor& dgates, const at::Tensor& dc_prev) {
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "hotkernels_lstm_backward", [&] {
    // dc_prev may be dc (updated in place): each element is read before it is written.
    const LstmBackwardArgs<scalar_t> args{gates.const_data_ptr<scalar_t>(),   c_prev.const_data_ptr<scalar_t>(),
                                          c.const_data_ptr<scalar_t>(),       dh.const_data_ptr<scalar_t>(),
                                          dc.const_data_ptr<scalar_t>(),      ptr_or_null<scalar_t>(dc_extra),
                                          dgates.mutable_data_ptr<scalar_t>(), dc_prev.mutable_data_ptr<scalar_t>(),
                                          c.size(-1)};
    const auto kernel = pick<scalar_t>(HK_ISA_TABLE(lstm_kernels).backward);
    at::parallel_for(0, c.numel(), kLstmGrain, [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
  });
}

constexpr lstm::Pointwise kPointwise{false, &forward, &backward};

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) { lstm::register_lstm_ops<kPointwise>(m); }

}  // namespace hotkernels::cpu
