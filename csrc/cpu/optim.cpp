// The optimizer steps' CPU kernels (csrc/optim.h): per-tensor step scalars, then one parallel region
// per call over every span of every tensor of the param group; the SIMD loops are
// csrc/cpu/simd/optim.cpp. A group may mix dtypes: each span runs the kernel of its tensor's
// compute type, float16/bfloat16 widened to float32 (cpu/multi_tensor.h, widened), their state in
// the param's dtype as torch's fused CPU Adam keeps it, or with master weights (param_copies) on
// float32 copies and state, the half params written with the rounded result (stochastically with a
// rounding_seed). GradScaler's grad_scale and the clipping norm are read on the host
// (read_grad_factor): the factor joins the step's constants.
#include "optim.h"

#include <ATen/Dispatch.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "cpu/simd/optim.h"
#include "cpu/simd/per_dtype.h"
#include "cpu/multi_tensor.h"

namespace hotkernels::cpu {
namespace {

const OptimKernels& kernels() { return HK_ISA_TABLE(optim_kernels); }

// math::grad_factor, the gradient's multiplier, from the grad inputs (CPU tensors) read here.
double read_grad_factor(const GradInputs& in) {
  const double scale = in.grad_scale.has_value() ? read_scalar(*in.grad_scale) : 1.0;
  const double sq = in.max_grad_norm > 0 ? read_scalar(*in.grad_sq_norm) : 0.0;
  return math::grad_factor(scale, sq, in.max_grad_norm, in.clip_eps);
}

// The param's writes of a span: into the half copy with master weights, rounded stochastically
// with a rounding seed.
struct ParamWrite {
  at::TensorList params, copies;
  std::optional<int64_t> seed;

  Operand copy(const Span& s) const {
    return has_master(params, copies, s.tensor) ? operand(copies[s.tensor], s, true) : Operand{};
  }
  ParamRounding rounding(const Span& s) const {
    return {seed.has_value(), uint64_t(seed.value_or(0)), s.tensor, s.begin};
  }
};

void adam(const AdamStep& s, const std::vector<double>& steps) {
  const size_t n = s.params.size();
  AdamHyper h = s.h;
  h.grad_factor = read_grad_factor(s.in);
  std::vector<PerDtype<math::AdamConsts>> consts(n);
  std::vector<math::AdamMode> modes(n);
  for (size_t i = 0; i < n; ++i) {
    const double t = steps[i];
    bool adaptive = true;
    if (s.rectified) {
      consts[i] = {radam_consts<float>(h, t, &adaptive), radam_consts<double>(h, t, &adaptive)};
    } else {
      consts[i] = {adam_consts<float>(h, t), adam_consts<double>(h, t)};
    }
    modes[i] = math::adam_mode(h.amsgrad, adaptive);
  }
  const ParamWrite write{s.params, s.param_copies, s.rounding_seed};
  // bfloat16 p, g, m and v, written back to nearest, without amsgrad: converted in the kernel's
  // registers.
  auto fused_bf16 = [&](size_t i) {
    if (h.amsgrad || write.seed || has_master(s.params, s.param_copies, i)) return false;
    for (const at::Tensor* t : {&s.params[i], &s.grads[i], &s.exp_avgs[i], &s.exp_avg_sqs[i]}) {
      if (t->scalar_type() != at::kBFloat16) return false;
    }
    return true;
  };
  parallel_typed(s.params, [&]<class C>(const Span& sp) {
    const auto i = sp.tensor;
    if (std::is_same_v<C, float> && fused_bf16(i)) {
      auto bits = [&](const at::Tensor& t) { return static_cast<uint16_t*>(t.data_ptr()) + sp.begin; };
      return HK_ISA_TABLE(bf16_kernels).adam(consts[i].template of<float>(), modes[i] == math::AdamMode::adam,
                                             bits(s.params[i]), bits(s.grads[i]), bits(s.exp_avgs[i]),
                                             bits(s.exp_avg_sqs[i]), sp.size);
    }
    widened<C, 5>({operand(s.params[i], sp, true), operand(s.grads[i], sp, false), operand(s.exp_avgs[i], sp, true),
                   operand(s.exp_avg_sqs[i], sp, true),
                   h.amsgrad ? operand(s.max_exp_avg_sqs[i], sp, true) : Operand{}},
                  sp.size,
                  [&](const std::array<C*, 5>& o, int64_t m) {
                    kernels().of<C>().adam(consts[i].template of<C>(), modes[i], o[0], o[1], o[2], o[3], o[4], m);
                  },
                  write.copy(sp), write.rounding(sp));
  });
}

// out[width·t + j]: the per-span sums (width per span) of tensor t's spans, added in span order, so
// the result does not depend on the thread count.
void span_sums_to_tensors(const std::vector<Span>& spans, const std::vector<double>& per_span, int width,
                          double* out, size_t tensors) {
  std::fill(out, out + tensors * width, 0.0);
  for (size_t k = 0; k < spans.size(); ++k) {
    for (int j = 0; j < width; ++j) out[spans[k].tensor * width + j] += per_span[k * width + j];
  }
}

void sq_norms(const at::Tensor& out, at::TensorList tensors) {
  const std::vector<Span> spans = split_spans(tensors);
  std::vector<double> per_span(spans.size());
  parallel_typed(tensors, spans, [&]<class C>(const Span& s) {
    double& sum = per_span[&s - spans.data()];
    sum = 0;
    widened<C, 1>({operand(tensors[s.tensor], s, false)}, s.size,
                  [&](const std::array<C*, 1>& o, int64_t n) { sum += kernels().of<C>().sq_norm(o[0], n); });
  });
  span_sums_to_tensors(spans, per_span, 1, out.mutable_data_ptr<double>(), tensors.size());
}

void lamb_moments(const LambMoments& s, const std::vector<double>& steps) {
  const double factor = read_grad_factor(s.in);
  std::vector<PerDtype<math::LambConsts>> consts(s.params.size());
  for (size_t i = 0; i < s.params.size(); ++i) {
    consts[i] = {lamb_consts<float>(s.h, steps[i]), lamb_consts<double>(s.h, steps[i])};
    consts[i].f32.inv_clip = float(factor);
    consts[i].f64.inv_clip = factor;
  }
  // per span and tensor: the math::SqSums parts of ‖p‖², then of ‖u‖²
  constexpr int kWidth = 2 * math::kSqParts;
  const std::vector<Span> spans = split_spans(s.params);
  std::vector<double> per_span(kWidth * spans.size());
  parallel_typed(s.params, spans, [&]<class C>(const Span& sp) {
    const auto i = sp.tensor;
    double* out = per_span.data() + kWidth * (&sp - spans.data());
    std::fill(out, out + kWidth, 0.0);
    widened<C, 4>({operand(s.params[i], sp, false), operand(s.grads[i], sp, false), operand(s.exp_avgs[i], sp, true),
                   operand(s.exp_avg_sqs[i], sp, true)},
                  sp.size, [&](const std::array<C*, 4>& o, int64_t n) {
                    double block[kWidth];
                    kernels().of<C>().lamb_moments(consts[i].template of<C>(), o[0], o[1], o[2], o[3], n, block);
                    for (int k = 0; k < kWidth; ++k) out[k] += block[k];
                  });
  });
  span_sums_to_tensors(spans, per_span, kWidth, s.norms.mutable_data_ptr<double>(), s.params.size());
}

void lamb_apply(const LambApply& s, const std::vector<double>& steps) {
  const double* sq = s.norms.const_data_ptr<double>();
  std::vector<PerDtype<math::LambConsts>> consts(s.params.size());
  std::vector<double> step_sizes(s.params.size());
  for (size_t i = 0; i < s.params.size(); ++i) {
    consts[i] = {lamb_consts<float>(s.h, steps[i]), lamb_consts<double>(s.h, steps[i])};
    const double* parts = sq + 2 * math::kSqParts * i;  // of ‖p‖², then of ‖u‖²
    step_sizes[i] = s.lr * math::trust_ratio(parts, parts + math::kSqParts, s.adapt, s.trust_clip);
  }
  const ParamWrite write{s.params, s.param_copies, s.rounding_seed};
  parallel_typed(s.params, [&]<class C>(const Span& sp) {
    const auto i = sp.tensor;
    widened<C, 3>({operand(s.params[i], sp, true), operand(s.exp_avgs[i], sp, false),
                   operand(s.exp_avg_sqs[i], sp, false)},
                  sp.size,
                  [&](const std::array<C*, 3>& o, int64_t n) {
                    kernels().of<C>().lamb_apply(consts[i].template of<C>(), C(step_sizes[i]), o[0], o[1], o[2], n);
                  },
                  write.copy(sp), write.rounding(sp));
  });
}

// The layer moments live in one-element tensors of the param's dtype: computed in double, stored
// rounded to that dtype (a half type rounds there, as the CUDA kernel's stores do).
double get_scalar(const at::Tensor& t) {
  double x = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "hotkernels_novograd_layer",
                                  [&] { x = double(*t.const_data_ptr<scalar_t>()); });
  return x;
}

void set_scalar(const at::Tensor& t, double x) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.scalar_type(), "hotkernels_novograd_layer",
                                  [&] { *t.mutable_data_ptr<scalar_t>() = scalar_t(x); });
}

void novograd(const NovoGradStep& s) {
  const NovoGradHyper& h = s.h;
  const double f = read_grad_factor(s.in);
  const at::Tensor norms = s.grad_sq_norms.to(at::kDouble).contiguous();
  const double* sq = norms.const_data_ptr<double>();
  std::vector<PerDtype<math::NovoGradConsts>> consts(s.params.size());
  for (size_t i = 0; i < s.params.size(); ++i) {
    const at::Tensor& v = s.exp_avg_sqs[i];
    set_scalar(v, math::novograd_layer_moment(get_scalar(v), f * f * sq[i], h.beta2, 1 - h.beta2));  // ‖f·g‖²
    double second = get_scalar(v);
    if (h.amsgrad) {
      const at::Tensor& vmax = s.max_exp_avg_sqs[i];
      set_scalar(vmax, std::max(get_scalar(vmax), second));
      second = get_scalar(vmax);
    }
    // (f·g)/d = g/(d/f): the factor joins the layer's denominator
    const double denom = (std::sqrt(second) + h.eps) / f;
    const double averaging = h.grad_averaging ? 1 - h.beta1 : 1.0;
    consts[i] = {{float(denom), float(h.weight_decay), float(averaging), float(h.beta1), float(h.lr)},
                 {denom, h.weight_decay, averaging, h.beta1, h.lr}};
  }
  const ParamWrite write{s.params, s.param_copies, s.rounding_seed};
  parallel_typed(s.params, [&]<class C>(const Span& sp) {
    const auto i = sp.tensor;
    widened<C, 3>({operand(s.params[i], sp, true), operand(s.grads[i], sp, false), operand(s.exp_avgs[i], sp, true)},
                  sp.size,
                  [&](const std::array<C*, 3>& o, int64_t n) {
                    kernels().of<C>().novograd(consts[i].template of<C>(), o[0], o[1], o[2], n);
                  },
                  write.copy(sp), write.rounding(sp));
  });
}

void lookahead(at::TensorList fast, at::TensorList slow, at::TensorList param_copies, double alpha,
               std::optional<int64_t> rounding_seed) {
  const ParamWrite write{fast, param_copies, rounding_seed};
  parallel_typed(fast, [&]<class C>(const Span& s) {
    widened<C, 2>({operand(fast[s.tensor], s, true), operand(slow[s.tensor], s, true)}, s.size,
                  [&](const std::array<C*, 2>& o, int64_t n) { kernels().of<C>().lookahead(C(alpha), o[0], o[1], n); },
                  write.copy(s), write.rounding(s));
  });
}

}  // namespace

HK_REGISTER_STUB(adam_stub, cpu, &adam);
HK_REGISTER_STUB(sq_norms_stub, cpu, &sq_norms);
HK_REGISTER_STUB(lamb_moments_stub, cpu, &lamb_moments);
HK_REGISTER_STUB(lamb_apply_stub, cpu, &lamb_apply);
HK_REGISTER_STUB(novograd_stub, cpu, &novograd);
HK_REGISTER_STUB(lookahead_stub, cpu, &lookahead);

}  // namespace hotkernels::cpu
