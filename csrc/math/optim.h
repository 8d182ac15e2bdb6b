// Optimizer update formulas, shared by the CPU kernels (GCC vectors) and the CUDA kernels (scalars).
// Per-step scalars (bias corrections, rectification, trust ratio) are computed once per tensor on
// the host or per block on the device and arrive here as plain numbers of the compute type S.
//
// Adam family (torch.optim.Adam/AdamW/RAdam), with g first unscaled and clipped (grad_factor below)
// and negated when maximizing:
//   g ← g + λ·p                       (L2 weight decay, Adam/RAdam; skipped when λ = 0, as torch)
//   p ← p·(1 − lr·λ)                  (decoupled weight decay, AdamW; factor 1 otherwise)
//   m ← m + (1 − β₁)(g − m)           (torch's lerp_)
//   v ← β₂·v + (1 − β₂)·g²
//   v̂ ← max(v̂, v)                     (amsgrad; else v̂ = v)
//   p ← p − step_size · (m / ((√v̂ + ε_in)/s + ε_out))   (adaptive; torch's addcdiv order)
//   p ← p − step_size · m                              (RAdam before rectification, ρ_t ≤ 5)
// Adam:  step_size = lr/(1 − β₁ᵗ), s = √(1 − β₂ᵗ), ε_in = 0, ε_out = ε.
// RAdam: step_size = lr·r_t/(1 − β₁ᵗ), s = √(1 − β₂ᵗ), ε_in = ε, ε_out = 0 (torch adds ε to √v).
//
// LAMB family (NVLAMB, Ralamb), two passes:
//   moments: g ← g·f (unscale and global clip, grad_factor), m ← β₁·m + β₃·g, v ← β₂·v + (1 − β₂)·g²
//   direction: u = a·m / ((√v + ε_in)/s + ε_out) (adaptive) or a·m, then u ← u + λ·p
//   apply: p ← p − lr·τ·u with τ the per-tensor trust ratio ‖p‖/‖u‖.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "math/common.h"

namespace hotkernels::math {

// The adaptive denominator (√v + ε_in)/s + ε_out of both families, as (√v + ε_in)·(1/s) + ε_out:
// within an ulp or so of torch's division, and a multiply where a division would be the step's
// second (an AVX-512 division issues once per ~16 cycles; with the square root and the division by
// the denominator it made the bfloat16 Adam step compute-bound on a Xeon).
template <class S>
struct Denominator {
  S eps_in, inv_divisor, eps_out;
};

template <class V, class S, class Sqrt>
HK_HOST_DEVICE V adaptive_denominator(V v, const Denominator<S>& d, Sqrt sqrt) {
  return (sqrt(v) + d.eps_in) * d.inv_divisor + d.eps_out;
}

template <class S>
struct AdamConsts {
  S l2;               // λ for L2 weight decay (0 when decoupled or without weight decay)
  S decay;            // 1 − lr·λ for decoupled weight decay (1 otherwise)
  S one_minus_beta1;  // 1 − β₁
  S beta2, one_minus_beta2;
  S step_size;
  Denominator<S> denom;
  S grad_factor;      // the gradient's factor: grad_factor below (unscale, clip), negated when maximizing
};

// One Adam-family step on p, m, v (and v̂ when kAmsgrad); kAdaptive false is RAdam's un-rectified
// step (momentum only).
template <bool kAmsgrad, bool kAdaptive, class V, class S, class Sqrt>
HK_HOST_DEVICE void adam_step(V& p, V g, V& m, V& v, V& vmax, const AdamConsts<S>& c, Sqrt sqrt) {
  g = g * c.grad_factor;
  // L2 weight decay only when λ ≠ 0, as torch.optim (which skips the term): 0·p is NaN for a NaN or
  // infinite param, and would carry it into the moments where torch's stay finite.
  if (c.l2 != S(0)) g = g + c.l2 * p;
  p = p * c.decay;
  m = m + c.one_minus_beta1 * (g - m);
  v = c.beta2 * v + c.one_minus_beta2 * (g * g);
  if constexpr (kAdaptive) {
    V vhat = v;
    if constexpr (kAmsgrad) {
      vmax = vmax > v ? vmax : v;
      vhat = vmax;
    }
    p = p - c.step_size * (m / adaptive_denominator(vhat, c.denom, sqrt));
  } else {
    p = p - c.step_size * m;
  }
}

// adam_step's three instantiations, for the code that picks one at run time: Adam, Adam with
// AMSGrad, and RAdam's un-rectified step.
enum class AdamMode { adam, amsgrad, momentum_only };

HK_HOST_DEVICE AdamMode adam_mode(bool amsgrad, bool adaptive) {
  return !adaptive ? AdamMode::momentum_only : (amsgrad ? AdamMode::amsgrad : AdamMode::adam);
}

template <class S>
struct LambConsts {
  S inv_clip;         // the gradient factor (grad_factor: unscale and global clipping)
  S beta1, beta3;     // β₃ = 1 − β₁ with grad averaging, else 1
  S beta2, one_minus_beta2;
  S m_scale;          // a
  Denominator<S> denom;
  S weight_decay;     // λ, added to the direction (decoupled)
  bool adaptive;
};

template <class V, class S>
HK_HOST_DEVICE void lamb_moments(V g, V& m, V& v, const LambConsts<S>& c) {
  g = g * c.inv_clip;
  m = c.beta1 * m + c.beta3 * g;
  v = c.beta2 * v + c.one_minus_beta2 * (g * g);
}

template <class V, class S, class Sqrt>
HK_HOST_DEVICE V lamb_direction(V p, V m, V v, const LambConsts<S>& c, Sqrt sqrt) {
  V u = c.m_scale * m;
  if (c.adaptive) u = u / adaptive_denominator(v, c.denom, sqrt);
  return u + c.weight_decay * p;
}

// LAMB's squared norms ‖p‖², ‖u‖² without underflow or overflow (Blue's algorithm, as LAPACK's
// dnrm2 since 3.10): Σx² is kept as three partial sums, of
//   (x·2⁵³⁷)²  for |x| < 2⁻⁵¹¹: below, x² would be subnormal (under 2⁻¹⁰²²) or 0; scaled, the
//              smallest subnormal 2⁻¹⁰⁷⁴ still squares to 2⁻¹⁰⁷⁴ (not 0), and every square is < 2⁵²;
//   x²         for the rest up to 2⁴⁸⁶: squares from 2⁻¹⁰²² to 2⁹⁷², so 2⁵² of them sum below 2¹⁰²⁴;
//   (x·2⁻⁵³⁸)² for |x| > 2⁴⁸⁶: the largest double scales below 2⁴⁸⁶, so the same headroom holds.
// Scaling by powers of two is exact, and the parts add across spans, blocks and shards as plain sums
// do. Only float64 takes the three: a float32 compute type (float16/bfloat16 params included) keeps
// the one plain sum, in float32 as torch's float32 norm() sums its squares (both lose the squares
// of |x| below ~1e-19 and overflow above ~2e19), without compares and selects per element on its
// fast path. NaN compares false and lands in the middle sum, inf in the big one, as in a plain sum.
template <class C>
inline constexpr bool kScaledSqSums = std::is_same_v<C, double>;

inline constexpr int kSqParts = 3;  // small, middle, big

template <class C, class V = C>  // C the compute type, V what accumulates it (a vector of C, or double)
struct SqSums {
  V part[kSqParts]{};

  HK_HOST_DEVICE void add(V x) {
    if constexpr (kScaledSqSums<C>) {
      const V a = x < V{} ? -x : x;
      const auto small = a < 0x1p-511, big = a > 0x1p486;
      const V up = x * 0x1p537, down = x * 0x1p-538;
      part[0] += small ? up * up : V{};
      part[1] += small | big ? V{} : x * x;
      part[2] += big ? down * down : V{};
    } else {
      part[1] += x * x;
    }
  }
};

// ‖x‖ = root·2^exp from the three parts, combined as dnrm2 does: with a big part the middle one
// joins it at its scale (the small one is below its rounding), else the small one joins the middle
// one at its scale (a subnormal there is off by about 2⁻¹⁰⁷⁵, below the middle one's ulp), else the
// small part alone. root is then a normal number whatever the norm.
struct ScaledNorm {
  double root;
  int exp;
};

HK_HOST_DEVICE ScaledNorm scaled_norm(const double* part) {
  if (part[2] > 0) return {sqrt(part[2] + part[1] * 0x1p-538 * 0x1p-538), 538};
  if (part[1] == 0 && part[0] > 0) return {sqrt(part[0]), -537};
  return {sqrt(part[1] + part[0] * 0x1p-537 * 0x1p-537), 0};
}

// LAMB's trust ratio ‖p‖/‖u‖ from their SqSums parts; 1 where either norm is 0 (or NaN, or not
// adapting). The powers of two apply after the division, so neither norm needs to be representable.
HK_HOST_DEVICE double trust_ratio(const double* p_parts, const double* u_parts, bool adapt, bool trust_clip) {
  const ScaledNorm p = scaled_norm(p_parts), u = scaled_norm(u_parts);
  if (!adapt || !(p.root > 0) || !(u.root > 0)) return 1.0;
  const double r = ldexp(p.root / u.root, p.exp - u.exp);
  return trust_clip && r > 1.0 ? 1.0 : r;
}

// The gradient clipping factor of torch.nn.utils.clip_grad_norm_: min(1, max_norm/(‖g‖ + ε)) with
// ε = 10⁻⁶, NaN for a NaN norm (as torch's clamp); 1 when off (max_norm 0). ε = 0 is NVLAMB's
// (apex FusedLAMB) global clipping g ← g/(‖g‖/max_norm) where ‖g‖ > max_norm.
HK_HOST_DEVICE double clip_coefficient(double grad_norm, double max_grad_norm, double eps) {
  if (!(max_grad_norm > 0)) return 1.0;
  const double coef = max_grad_norm / (grad_norm + eps);
  return coef > 1.0 ? 1.0 : coef;
}

// The factor every optimizer multiplies its gradient by before the update: torch.amp's unscale
// 1/grad_scale (as GradScaler, whose unscale multiplies by the reciprocal), then the clip factor of
// the unscaled norm ‖g‖/grad_scale (clip_grad_norm_ of the unscaled gradient).
HK_HOST_DEVICE double grad_factor(double grad_scale, double grad_sq_norm, double max_grad_norm, double clip_eps) {
  const double inv_scale = 1.0 / grad_scale;
  return inv_scale * clip_coefficient(sqrt(grad_sq_norm) * inv_scale, max_grad_norm, clip_eps);
}

// NovoGrad (Ginsburg et al. 2019, as torch_optimizer.NovoGrad) with the layer's denominator
// d = √v_layer + ε computed per tensor:
//   g' ← g/d + λ·p, g' ← (1 − β₁)·g' (grad averaging), m ← β₁·m + g', p ← p − lr·m
template <class S>
struct NovoGradConsts {
  S denom, weight_decay, averaging, beta1, lr;  // averaging: 1 − β₁ with grad averaging, else 1
};

// The layer's second moment from ‖g‖² (of the unscaled, clipped gradient): v ← ‖g‖² on the first
// step (v = 0), else β₂·v + (1 − β₂)·‖g‖².
template <class V>
HK_HOST_DEVICE V novograd_layer_moment(V v, V g_sq, V beta2, V one_minus_beta2) {
  return v == V(0) ? g_sq : beta2 * v + one_minus_beta2 * g_sq;
}

template <class V, class S>
HK_HOST_DEVICE void novograd_step(V& p, V g, V& m, const NovoGradConsts<S>& c) {
  g = (g / c.denom + c.weight_decay * p) * c.averaging;
  m = c.beta1 * m + g;
  p = p - c.lr * m;
}

// Stochastic rounding of the bfloat16 param writes (master weights or not), the same bits on the CPU
// and on CUDA: 16 random bits per element from a splitmix64 hash of (seed, tensor, element), so the
// result does not depend on how the work is split; 4 elements' bits from each hash.
HK_HOST_DEVICE uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

HK_HOST_DEVICE uint32_t rounding_bits(uint64_t seed, int64_t tensor, int64_t element) {
  const uint64_t e = uint64_t(element);
  return uint32_t(splitmix64((seed ^ splitmix64(uint64_t(tensor))) + (e >> 2)) >> (16 * (e & 3))) & 0xFFFFu;
}

// bfloat16 keeps float32's upper 16 bits: adding 16 random bits below them, then truncating, rounds
// x up with probability equal to its distance from the bfloat16 value below, in units of the last
// place (so updates under half a unit still move the param on average). inf stays inf, NaN a
// (quiet) NaN; a finite value may round up to inf past the largest bfloat16, as rounding up does.
HK_HOST_DEVICE uint16_t bfloat16_bits_stochastic(float x, uint32_t random16) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7F800000u) == 0x7F800000u) return uint16_t(bits >> 16) | ((bits & 0x007FFFFFu) != 0 ? 0x40 : 0);
  return uint16_t((bits + random16) >> 16);
}

// Lookahead sync (Zhang et al. 2019): slow ← slow + α(fast − slow), fast ← slow.
template <class V, class S>
HK_HOST_DEVICE void lookahead_sync(V& fast, V& slow, S alpha) {
  slow = slow + alpha * (fast - slow);
  fast = slow;
}

}  // namespace hotkernels::math
