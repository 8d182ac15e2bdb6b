// The optimizer steps' CUDA kernels (csrc/optim.h): multi-tensor apply (csrc/cuda/multi_tensor.cuh)
// of the formulas in csrc/math/optim.h, computing in at::opmath_type (float for float16/bfloat16
// params and state). Tensors are bucketed by (dtype, step) so that each launch takes its scalars by
// value. Reductions (norms) go through a block reduction and one double atomicAdd per block and
// tensor; LAMB's trust ratios and every gradient factor (GradScaler's grad_scale, the clipping norm:
// csrc/optim.h, GradInputs) are read on the device, by every block, so a step never syncs the host
// for them. GradScaler's found_inf: with capturable (device) step counters it is read on the device
// too (the step-counter kernel and every block skip); with step counters on the CPU, whether to
// count the step is a host decision, taken by the op (one sync per step with a GradScaler).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cub/block/block_reduce.cuh>
#include <map>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cuda/multi_tensor.cuh"
#include "math/optim.h"
#include "optim.h"
#include "static_switch.h"

namespace hotkernels::cuda {
namespace {

struct DeviceSqrt {
  __device__ __forceinline__ float operator()(float x) const { return sqrtf(x); }
  __device__ __forceinline__ double operator()(double x) const { return ::sqrt(x); }
};

template <class T>
__device__ __forceinline__ T* at_(void* p) {
  return static_cast<T*>(p);
}

// Sums over the block of the math::SqSums parts of p and u, added into out[0..5] (p's parts, then
// u's) by thread 0. Only the middle part where the compute type keeps one plain sum (float).
template <class Op>
__device__ __forceinline__ void block_add_sq_sums(const math::SqSums<Op>& p, const math::SqSums<Op>& u,
                                                  double* out) {
  using Reduce = cub::BlockReduce<Op, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const math::SqSums<Op>* sums[2] = {&p, &u};
#pragma unroll
  for (int j = 0; j < 2; ++j) {
#pragma unroll
    for (int k = 0; k < math::kSqParts; ++k) {
      if (!math::kScaledSqSums<Op> && k != 1) continue;
      const Op total = Reduce(tmp).Sum(sums[j]->part[k]);
      __syncthreads();  // tmp is reused by the next sum
      if (threadIdx.x == 0) atomicAdd(out + j * math::kSqParts + k, double(total));
    }
  }
}

// GradInputs on the device (float64 copies; null when absent).
struct DeviceGradInputs {
  const double* grad_scale;
  const double* found_inf;
  const double* grad_sq_norm;
  double max_grad_norm, clip_eps;

  __device__ bool skip() const { return found_inf != nullptr && *found_inf != 0; }
  __device__ double factor() const {
    return math::grad_factor(grad_scale != nullptr ? *grad_scale : 1.0,
                             grad_sq_norm != nullptr ? *grad_sq_norm : 0.0, max_grad_norm, clip_eps);
  }
};

// Device float64 copies of the grad inputs (queued on the stream: no sync), kept alive by `keep`;
// found_inf only with_found_inf (capturable steps: the op has read it otherwise).
DeviceGradInputs device_grad_inputs(const GradInputs& in, std::vector<at::Tensor>& keep, bool with_found_inf) {
  auto ptr = [&](const OptTensor& t) -> const double* {
    if (!t.has_value()) return nullptr;
    keep.push_back(t->to(at::kDouble).contiguous());
    return keep.back().const_data_ptr<double>();
  };
  const double* grad_sq_norm = in.max_grad_norm > 0 ? ptr(in.grad_sq_norm) : nullptr;
  const double* found_inf = with_found_inf ? ptr(in.found_inf) : nullptr;
  return {ptr(in.grad_scale), found_inf, grad_sq_norm, in.max_grad_norm, in.clip_eps};
}

// How a param's value is written (csrc/math/optim.h): rounded to nearest, or for bfloat16
// stochastically with the bits of (seed, tensor, element), as on the CPU.
struct Rounding {
  bool stochastic;
  uint64_t seed;
};

Rounding rounding(std::optional<int64_t> seed) { return {seed.has_value(), uint64_t(seed.value_or(0))}; }

template <class G, class Op>
__device__ __forceinline__ G round_param(Op x, const Rounding& r, int64_t tensor, int64_t i) {
  if constexpr (std::is_same_v<G, c10::BFloat16>) {
    if (r.stochastic) {
      return G(math::bfloat16_bits_stochastic(float(x), math::rounding_bits(r.seed, tensor, i)), G::from_bits());
    }
  }
  return G(x);
}

// One Adam-family step on this block's range of one tensor: p, g, m, v (and v̂ with kAmsgrad) are
// tc's first five lists, the sixth the param copies. G is the grads' type: T's, or with master
// weights (T float32) the half params' (then the sixth list), written with the rounded result.
template <class T, class G, bool kAmsgrad, bool kAdaptive, class Chunks>
__device__ __forceinline__ void adam_range(const Chunks& tc, const BlockWork& w,
                                           const math::AdamConsts<at::opmath_type<T>>& c, const Rounding& r) {
  using Op = at::opmath_type<T>;
  constexpr bool kCopy = !std::is_same_v<T, G>;
  T* p = at_<T>(tc.ptr[0][w.t]);
  const G* g = at_<G>(tc.ptr[1][w.t]);
  T* m = at_<T>(tc.ptr[2][w.t]);
  T* v = at_<T>(tc.ptr[3][w.t]);
  T* vmax = at_<T>(tc.ptr[4][w.t]);
  G* copy = at_<G>(tc.ptr[5][w.t]);
  const int64_t tensor = tc.index[w.t];
  for (int64_t i = w.begin + threadIdx.x; i < w.end; i += blockDim.x) {
    Op pv = p[i], mv = m[i], vv = v[i];
    Op xv = kAmsgrad ? Op(vmax[i]) : Op(0);
    math::adam_step<kAmsgrad, kAdaptive>(pv, Op(g[i]), mv, vv, xv, c, DeviceSqrt{});
    if constexpr (kCopy) {
      p[i] = T(pv);
      copy[i] = round_param<G>(pv, r, tensor, i);
    } else {
      p[i] = round_param<T>(pv, r, tensor, i);
    }
    m[i] = T(mv);
    v[i] = T(vv);
    if constexpr (kAmsgrad) vmax[i] = T(xv);
  }
}

template <class T, class G, bool kAmsgrad, bool kAdaptive>
__global__ void __launch_bounds__(kThreads)
    adam_kernel(TensorChunks<6> tc, math::AdamConsts<at::opmath_type<T>> c, DeviceGradInputs d, Rounding r) {
  c.grad_factor *= at::opmath_type<T>(d.factor());  // ±1 from the host
  adam_range<T, G, kAmsgrad, kAdaptive>(tc, block_work(tc), c, r);
}

struct Bucket {
  at::ScalarType dtype, grad_dtype;
  double step;
  std::vector<int64_t> index;
};

// Tensors grouped by (dtype, grads' dtype, step), in first-seen order (the grads' dtype differs with
// master weights: float32 params, float16/bfloat16 grads).
std::vector<Bucket> buckets(at::TensorList params, const std::vector<double>& steps, at::TensorList grads = {}) {
  std::vector<Bucket> out;
  std::map<std::tuple<int, int, double>, size_t> where;
  for (size_t i = 0; i < params.size(); ++i) {
    const at::ScalarType g = grads.empty() ? params[i].scalar_type() : grads[i].scalar_type();
    const auto key = std::make_tuple(int(params[i].scalar_type()), int(g), steps.empty() ? 0.0 : steps[i]);
    auto it = where.find(key);
    if (it == where.end()) {
      it = where.emplace(key, out.size()).first;
      out.push_back({params[i].scalar_type(), g, std::get<2>(key), {}});
    }
    out[it->second].index.push_back(int64_t(i));
  }
  return out;
}

// Runs f.template operator()<T, G>() for a bucket's dtypes: T the params', G the grads' or the param
// copies' (T's, or with master weights float16/bfloat16 for float32 params).
template <class F>
void dispatch_param_grad(const Bucket& b, const F& f) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.dtype, "hotkernels_optim_cuda", [&] {
    using T = scalar_t;
    if constexpr (std::is_same_v<T, float>) {
      if (b.grad_dtype == at::kHalf) return f.template operator()<T, c10::Half>();
      if (b.grad_dtype == at::kBFloat16) return f.template operator()<T, c10::BFloat16>();
    }
    f.template operator()<T, T>();
  });
}

cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }

// Capturable steps (torch.optim's capturable=True): the step counters are float32 tensors on the
// device, incremented by a kernel, and every block derives its tensor's step scalars from its
// counter, so a step neither reads anything on the host nor depends on host values that change
// from step to step: it can be captured in a CUDA graph and replayed.
struct StepCounters {
  float* step[kMaxTensors];
  int n;
};

__global__ void increment_steps_kernel(StepCounters sc, DeviceGradInputs d) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t < sc.n && !d.skip()) *sc.step[t] += 1.0f;
}

template <class T, class G, bool kAmsgrad>
__global__ void __launch_bounds__(kThreads)
    adam_capturable_kernel(TensorChunks<7> tc, AdamHyper h, bool rectified, DeviceGradInputs d, Rounding r) {
  using Op = at::opmath_type<T>;
  if (d.skip()) return;
  h.grad_factor = d.factor();
  const BlockWork w = block_work(tc);
  const double t = *at_<float>(tc.ptr[6][w.t]);
  bool adaptive = true;
  const math::AdamConsts<Op> c = rectified ? radam_consts<Op>(h, t, &adaptive) : adam_consts<Op>(h, t);
  if (adaptive) {
    adam_range<T, G, kAmsgrad, true>(tc, w, c, r);
  } else {
    adam_range<T, G, false, false>(tc, w, c, r);  // RAdam before rectification (no amsgrad in RAdam)
  }
}

// The lists of an Adam-family launch: p, g, m, v, then v̂ (without amsgrad never read: exp_avg_sqs
// stands in for it), then the param copies (without master weights never written: the params stand
// in for them).
std::array<at::TensorList, 6> adam_lists(const AdamStep& s) {
  return {s.params, s.grads, s.exp_avgs, s.exp_avg_sqs, s.h.amsgrad ? s.max_exp_avg_sqs : s.exp_avg_sqs,
          s.param_copies.empty() ? s.params : s.param_copies};
}

void adam_capturable(const AdamStep& s, at::TensorList state_steps) {
  const c10::cuda::CUDAGuard guard(s.params[0].device());
  std::vector<at::Tensor> keep;
  const DeviceGradInputs d = device_grad_inputs(s.in, keep, /*with_found_inf=*/true);
  const Rounding r = rounding(s.rounding_seed);
  for (size_t k0 = 0; k0 < s.params.size(); k0 += kMaxTensors) {
    StepCounters sc;
    sc.n = static_cast<int>(std::min<size_t>(kMaxTensors, s.params.size() - k0));
    for (int k = 0; k < sc.n; ++k) sc.step[k] = state_steps[k0 + k].mutable_data_ptr<float>();
    increment_steps_kernel<<<1, kMaxTensors, 0, stream()>>>(sc, d);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const std::array<at::TensorList, 6> l = adam_lists(s);
  for (const Bucket& b : buckets(s.params, {}, s.grads)) {
    dispatch_param_grad(b, [&]<class T, class G>() {
      static_switch<false, true>(s.h.amsgrad, [&]<bool kAmsgrad>() {
        for_each_launch<7>({l[0], l[1], l[2], l[3], l[4], l[5], state_steps}, b.index,
                           [&](const TensorChunks<7>& tc, int n) {
          adam_capturable_kernel<T, G, kAmsgrad><<<n, kThreads, 0, stream()>>>(tc, s.h, s.rectified, d, r);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
    });
  }
}

void adam(const AdamStep& s, const std::vector<double>& steps) {
  const c10::cuda::CUDAGuard guard(s.params[0].device());
  std::vector<at::Tensor> keep;
  const DeviceGradInputs d = device_grad_inputs(s.in, keep, /*with_found_inf=*/false);
  const Rounding r = rounding(s.rounding_seed);
  for (const Bucket& b : buckets(s.params, steps, s.grads)) {
    dispatch_param_grad(b, [&]<class T, class G>() {
      using Op = at::opmath_type<T>;
      bool adaptive = true;
      const math::AdamConsts<Op> c =
          s.rectified ? radam_consts<Op>(s.h, b.step, &adaptive) : adam_consts<Op>(s.h, b.step);
      using math::AdamMode;
      static_switch<AdamMode::adam, AdamMode::amsgrad, AdamMode::momentum_only>(
          math::adam_mode(s.h.amsgrad, adaptive), [&]<AdamMode kMode>() {
            for_each_launch<6>(adam_lists(s), b.index, [&](const TensorChunks<6>& tc, int n) {
              adam_kernel<T, G, kMode == AdamMode::amsgrad, kMode != AdamMode::momentum_only>
                  <<<n, kThreads, 0, stream()>>>(tc, c, d, r);
              C10_CUDA_KERNEL_LAUNCH_CHECK();
            });
          });
    });
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) sq_norm_kernel(TensorChunks<1> tc, double* out) {
  using Op = at::opmath_type<T>;
  const BlockWork w = block_work(tc);
  const T* x = at_<T>(tc.ptr[0][w.t]);
  Op s = 0;
  for (int64_t i = w.begin + threadIdx.x; i < w.end; i += blockDim.x) {
    const Op a = x[i];
    s += a * a;
  }
  using Reduce = cub::BlockReduce<Op, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const Op total = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) atomicAdd(out + tc.index[w.t], double(total));
}

void sq_norms(const at::Tensor& out, at::TensorList tensors) {
  const c10::cuda::CUDAGuard guard(tensors[0].device());
  out.zero_();  // the blocks add into it
  for (const Bucket& b : buckets(tensors, {})) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.dtype, "hotkernels_sq_norms_cuda", [&] {
      for_each_launch<1>({tensors}, b.index, [&](const TensorChunks<1>& tc, int n) {
        sq_norm_kernel<scalar_t><<<n, kThreads, 0, stream()>>>(tc, out.mutable_data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    lamb_moments_kernel(TensorChunks<4> tc, math::LambConsts<at::opmath_type<T>> c, DeviceGradInputs d,
                        double* norms) {
  using Op = at::opmath_type<T>;
  c.inv_clip = Op(d.factor());
  const BlockWork w = block_work(tc);
  const T* p = at_<T>(tc.ptr[0][w.t]);
  const T* g = at_<T>(tc.ptr[1][w.t]);
  T* m = at_<T>(tc.ptr[2][w.t]);
  T* v = at_<T>(tc.ptr[3][w.t]);
  math::SqSums<Op> p_sq, u_sq;
  for (int64_t i = w.begin + threadIdx.x; i < w.end; i += blockDim.x) {
    Op mv = m[i], vv = v[i];
    const Op pv = p[i];
    math::lamb_moments(Op(g[i]), mv, vv, c);
    m[i] = T(mv);
    v[i] = T(vv);
    p_sq.add(pv);
    // The direction from the stored (rounded) moments, exactly as the apply pass will see them.
    u_sq.add(math::lamb_direction(pv, Op(T(mv)), Op(T(vv)), c, DeviceSqrt{}));
  }
  block_add_sq_sums(p_sq, u_sq, norms + 2 * math::kSqParts * tc.index[w.t]);
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    lamb_apply_kernel(TensorChunks<3> tc, math::LambConsts<at::opmath_type<T>> c, const double* norms, double lr,
                      bool adapt, bool trust_clip) {
  using Op = at::opmath_type<T>;
  const BlockWork w = block_work(tc);
  const double* parts = norms + 2 * math::kSqParts * tc.index[w.t];  // of ‖p‖², then of ‖u‖²
  const Op step = Op(lr * math::trust_ratio(parts, parts + math::kSqParts, adapt, trust_clip));
  T* p = at_<T>(tc.ptr[0][w.t]);
  const T* m = at_<T>(tc.ptr[1][w.t]);
  const T* v = at_<T>(tc.ptr[2][w.t]);
  for (int64_t i = w.begin + threadIdx.x; i < w.end; i += blockDim.x) {
    const Op pv = p[i];
    p[i] = T(pv - step * math::lamb_direction(pv, Op(m[i]), Op(v[i]), c, DeviceSqrt{}));
  }
}

void lamb_moments(const LambMoments& s, const std::vector<double>& steps) {
  const c10::cuda::CUDAGuard guard(s.params[0].device());
  std::vector<at::Tensor> keep;
  const DeviceGradInputs d = device_grad_inputs(s.in, keep, /*with_found_inf=*/false);
  s.norms.zero_();  // the blocks add into it
  for (const Bucket& b : buckets(s.params, steps)) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.dtype, "hotkernels_lamb_moments_cuda", [&] {
      const auto c = lamb_consts<at::opmath_type<scalar_t>>(s.h, b.step);
      for_each_launch<4>({s.params, s.grads, s.exp_avgs, s.exp_avg_sqs}, b.index,
                         [&](const TensorChunks<4>& tc, int n) {
                           lamb_moments_kernel<scalar_t><<<n, kThreads, 0, stream()>>>(
                               tc, c, d, s.norms.mutable_data_ptr<double>());
                           C10_CUDA_KERNEL_LAUNCH_CHECK();
                         });
    });
  }
}

void lamb_apply(const LambApply& s, const std::vector<double>& steps) {
  const c10::cuda::CUDAGuard guard(s.params[0].device());
  for (const Bucket& b : buckets(s.params, steps)) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.dtype, "hotkernels_lamb_apply_cuda", [&] {
      const auto c = lamb_consts<at::opmath_type<scalar_t>>(s.h, b.step);
      for_each_launch<3>({s.params, s.exp_avgs, s.exp_avg_sqs}, b.index, [&](const TensorChunks<3>& tc, int n) {
        lamb_apply_kernel<scalar_t><<<n, kThreads, 0, stream()>>>(tc, c, s.norms.const_data_ptr<double>(), s.lr,
                                                                  s.adapt, s.trust_clip);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
}

// fast, slow, and the param copies (G ≠ T: fast are their float32 master weights, the copies
// written with the rounded result, as adam_range).
template <class T, class G>
__global__ void __launch_bounds__(kThreads)
    lookahead_kernel(TensorChunks<3> tc, at::opmath_type<T> alpha, Rounding r) {
  using Op = at::opmath_type<T>;
  const BlockWork w = block_work(tc);
  T* fast = at_<T>(tc.ptr[0][w.t]);
  T* slow = at_<T>(tc.ptr[1][w.t]);
  G* copy = at_<G>(tc.ptr[2][w.t]);
  const int64_t tensor = tc.index[w.t];
  for (int64_t i = w.begin + threadIdx.x; i < w.end; i += blockDim.x) {
    Op f = fast[i], s = slow[i];
    math::lookahead_sync(f, s, alpha);
    if constexpr (!std::is_same_v<T, G>) {
      fast[i] = T(f);
      copy[i] = round_param<G>(f, r, tensor, i);
    } else {
      fast[i] = round_param<T>(f, r, tensor, i);
    }
    slow[i] = T(s);
  }
}

void lookahead(at::TensorList fast, at::TensorList slow, at::TensorList param_copies, double alpha,
               std::optional<int64_t> rounding_seed) {
  const c10::cuda::CUDAGuard guard(fast[0].device());
  const at::TensorList copies = param_copies.empty() ? fast : param_copies;
  const Rounding r = rounding(rounding_seed);
  for (const Bucket& b : buckets(fast, {}, copies)) {
    dispatch_param_grad(b, [&]<class T, class G>() {
      for_each_launch<3>({fast, slow, copies}, b.index, [&](const TensorChunks<3>& tc, int n) {
        lookahead_kernel<T, G><<<n, kThreads, 0, stream()>>>(tc, at::opmath_type<T>(alpha), r);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
}

// NovoGrad's layer moments (math::novograd_layer_moment), one thread per tensor; with amsgrad
// v̂ ← max(v̂, v).
struct LayerMoments {
  void* v[kMaxTensors];
  void* vmax[kMaxTensors];
  int32_t index[kMaxTensors];
  int n;
};

template <class T>
__global__ void novograd_layer_kernel(LayerMoments lm, const double* sq, DeviceGradInputs d, double beta2,
                                      bool amsgrad) {
  using Op = at::opmath_type<T>;
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= lm.n) return;
  T* v = at_<T>(lm.v[t]);
  const double f = d.factor();  // ‖f·g‖² = f²‖g‖²
  const Op norm = Op(f * f * sq[lm.index[t]]);
  *v = T(math::novograd_layer_moment(Op(*v), norm, Op(beta2), Op(1 - beta2)));
  if (amsgrad) {
    T* vmax = at_<T>(lm.vmax[t]);
    *vmax = Op(*vmax) > Op(*v) ? *vmax : *v;
  }
}

// The elementwise pass; the fourth pointer is the tensor's (max_)exp_avg_sq, read for its denominator,
// divided by the gradient factor f ((f·g)/d = g/(d/f)).
template <class T>
__global__ void __launch_bounds__(kThreads)
    novograd_kernel(TensorChunks<4> tc, math::NovoGradConsts<at::opmath_type<T>> c, double eps, DeviceGradInputs d) {
  using Op = at::opmath_type<T>;
  const BlockWork w = block_work(tc);
  c.denom = Op((double(DeviceSqrt{}(Op(*at_<T>(tc.ptr[3][w.t])))) + eps) / d.factor());
  T* p = at_<T>(tc.ptr[0][w.t]);
  const T* g = at_<T>(tc.ptr[1][w.t]);
  T* m = at_<T>(tc.ptr[2][w.t]);
  for (int64_t i = w.begin + threadIdx.x; i < w.end; i += blockDim.x) {
    Op pv = p[i], mv = m[i];
    math::novograd_step(pv, Op(g[i]), mv, c);
    p[i] = T(pv);
    m[i] = T(mv);
  }
}

void novograd(const NovoGradStep& s) {
  const NovoGradHyper& h = s.h;
  const c10::cuda::CUDAGuard guard(s.params[0].device());
  std::vector<at::Tensor> keep;
  const DeviceGradInputs d = device_grad_inputs(s.in, keep, /*with_found_inf=*/false);
  const at::Tensor sq = s.grad_sq_norms.to(at::kDouble).contiguous();
  const at::TensorList second = h.amsgrad ? s.max_exp_avg_sqs : s.exp_avg_sqs;
  const double averaging = h.grad_averaging ? 1 - h.beta1 : 1.0;
  for (const Bucket& b : buckets(s.params, {})) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.dtype, "hotkernels_novograd_cuda", [&] {
      using Op = at::opmath_type<scalar_t>;
      for (size_t k0 = 0; k0 < b.index.size(); k0 += kMaxTensors) {
        LayerMoments lm;
        lm.n = static_cast<int>(std::min<size_t>(kMaxTensors, b.index.size() - k0));
        for (int k = 0; k < lm.n; ++k) {
          const int64_t i = b.index[k0 + k];
          lm.v[k] = s.exp_avg_sqs[i].data_ptr();
          lm.vmax[k] = h.amsgrad ? s.max_exp_avg_sqs[i].data_ptr() : nullptr;
          lm.index[k] = static_cast<int32_t>(i);
        }
        novograd_layer_kernel<scalar_t><<<1, kMaxTensors, 0, stream()>>>(lm, sq.const_data_ptr<double>(), d, h.beta2,
                                                                         h.amsgrad);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      const math::NovoGradConsts<Op> c{Op(1), Op(h.weight_decay), Op(averaging), Op(h.beta1), Op(h.lr)};
      for_each_launch<4>({s.params, s.grads, s.exp_avgs, second}, b.index, [&](const TensorChunks<4>& tc, int n) {
        novograd_kernel<scalar_t><<<n, kThreads, 0, stream()>>>(tc, c, h.eps, d);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
}

}  // namespace

HK_REGISTER_STUB(adam_stub, cuda, &adam);
HK_REGISTER_STUB(adam_capturable_stub, cuda, &adam_capturable);
HK_REGISTER_STUB(sq_norms_stub, cuda, &sq_norms);
HK_REGISTER_STUB(lamb_moments_stub, cuda, &lamb_moments);
HK_REGISTER_STUB(lamb_apply_stub, cuda, &lamb_apply);
HK_REGISTER_STUB(novograd_stub, cuda, &novograd);
HK_REGISTER_STUB(lookahead_stub, cuda, &lookahead);

}  // namespace hotkernels::cuda
