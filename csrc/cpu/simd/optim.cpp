// Optimizer steps on SIMD vectors over one contiguous span; the formulas are csrc/math/optim.h,
// shared with CUDA. Full vectors first, then the tail element by element through the same
// formulas on scalars (a zero-padded vector tail could divide 0 by 0 and poison the norms).
#include "cpu/simd/optim.h"

#include <algorithm>
#include <cstring>

#include "cpu/simd/simd.h"
#include "cpu/prefetch.h"
#include "cpu/simd/vmath.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

using simd::load;
using simd::store;

template <class T, bool kAmsgrad, bool kAdaptive>
void adam_span(const math::AdamConsts<T>& c, T* p, const T* g, T* m, T* v, T* vmax, int64_t n) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    prefetch_ahead(i, p, g, m, v);
    if constexpr (kAmsgrad) prefetch_ahead(i, vmax);
    V pv = load(p + i), mv = load(m + i), vv = load(v + i);
    V xv = kAmsgrad ? load(vmax + i) : V{};
    math::adam_step<kAmsgrad, kAdaptive>(pv, load(g + i), mv, vv, xv, c, simd::Sqrt{});
    store(p + i, pv);
    store(m + i, mv);
    store(v + i, vv);
    if constexpr (kAmsgrad) store(vmax + i, xv);
  }
  for (; i < n; ++i) {
    T x = kAmsgrad ? vmax[i] : T{};
    math::adam_step<kAmsgrad, kAdaptive>(p[i], g[i], m[i], v[i], x, c, simd::Sqrt{});
    if constexpr (kAmsgrad) vmax[i] = x;
  }
}

template <class T>
void adam(const math::AdamConsts<T>& c, math::AdamMode mode, T* p, const T* g, T* m, T* v, T* vmax, int64_t n) {
  switch (mode) {
    case math::AdamMode::adam: return adam_span<T, false, true>(c, p, g, m, v, vmax, n);
    case math::AdamMode::amsgrad: return adam_span<T, true, true>(c, p, g, m, v, vmax, n);
    case math::AdamMode::momentum_only: return adam_span<T, false, false>(c, p, g, m, v, vmax, n);
  }
}

template <class T>
double sq_norm(const T* x, int64_t n) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  V acc0{}, acc1{};  // two accumulators: the adds need not wait on each other
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    prefetch_ahead(i, x);
    const V a = load(x + i), b = load(x + i + L);
    acc0 += a * a;
    acc1 += b * b;
  }
  double s = simd::reduce_add(acc0 + acc1);
  for (; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

template <class T>
void lamb_moments(const math::LambConsts<T>& c, const T* p, const T* g, T* m, T* v, int64_t n, double* out) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  math::SqSums<T, V> p_sq, u_sq;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    prefetch_ahead(i, p, g, m, v);
    V mv = load(m + i), vv = load(v + i);
    const V pv = load(p + i);
    math::lamb_moments(load(g + i), mv, vv, c);
    store(m + i, mv);
    store(v + i, vv);
    p_sq.add(pv);
    u_sq.add(math::lamb_direction(pv, mv, vv, c, simd::Sqrt{}));
  }
  math::SqSums<T, double> ps, us;  // the lanes' sums, then the tail's squares in double
  for (int k = 0; k < math::kSqParts; ++k) {
    ps.part[k] = simd::reduce_add(p_sq.part[k]);
    us.part[k] = simd::reduce_add(u_sq.part[k]);
  }
  for (; i < n; ++i) {
    math::lamb_moments(g[i], m[i], v[i], c);
    ps.add(double(p[i]));
    us.add(double(math::lamb_direction(p[i], m[i], v[i], c, simd::Sqrt{})));
  }
  std::copy(ps.part, ps.part + math::kSqParts, out);
  std::copy(us.part, us.part + math::kSqParts, out + math::kSqParts);
}

template <class T>
void lamb_apply(const math::LambConsts<T>& c, T step, T* p, const T* m, const T* v, int64_t n) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    prefetch_ahead(i, p, m, v);
    const V pv = load(p + i);
    store(p + i, pv - step * math::lamb_direction(pv, load(m + i), load(v + i), c, simd::Sqrt{}));
  }
  for (; i < n; ++i) p[i] = p[i] - step * math::lamb_direction(p[i], m[i], v[i], c, simd::Sqrt{});
}

template <class T>
void novograd(const math::NovoGradConsts<T>& c, T* p, const T* g, T* m, int64_t n) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    prefetch_ahead(i, p, g, m);
    V pv = load(p + i), mv = load(m + i);
    math::novograd_step(pv, load(g + i), mv, c);
    store(p + i, pv);
    store(m + i, mv);
  }
  for (; i < n; ++i) math::novograd_step(p[i], g[i], m[i], c);
}

template <class T>
void lookahead(T alpha, T* fast, T* slow, int64_t n) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    prefetch_ahead(i, fast, slow);
    V f = load(fast + i), s = load(slow + i);
    math::lookahead_sync(f, s, alpha);
    store(fast + i, f);
    store(slow + i, s);
  }
  for (; i < n; ++i) math::lookahead_sync(fast[i], slow[i], alpha);
}

// A bfloat16 is float32's upper 16 bits. Plain loops over the bits: the compiler vectorises them at
// each instruction set.
void widen_bf16(const uint16_t* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = uint32_t(in[i]) << 16;
    std::memcpy(out + i, &bits, sizeof bits);
  }
}

void narrow_bf16(const float* in, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, in + i, sizeof bits);
    const uint16_t rounded = uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);  // to nearest even
    out[i] = (bits & 0x7FFFFFFFu) > 0x7F800000u ? uint16_t(0x7FC0) : rounded;
  }
}

// The same conversions on vectors, two at a time: 2L bfloat16 values (one vector register of 16-bit
// lanes) to and from two float vectors. Where the instruction set packs 32-bit lanes to 16 with
// unsigned saturation (AVX2, AVX-512), the two are the low and high halves of each 128-bit lane,
// as unpack instructions make them: one shuffle per float vector to widen (the value lands in the
// upper half of a zeroed 32-bit lane, the float's bits), one per two to narrow, where converting a
// vector in element order costs several (on AVX2 the shuffle port bounded bfloat16 Adam). Elementwise
// kernels that narrow with store_bf16x2 what they widened with load_bf16x2 never see the order.
// Narrowing rounds to nearest even and writes NaN as 0x7FC0.
typedef uint32_t vuint32 __attribute__((vector_size(HK_VEC_BYTES)));

// The bfloat16 bits of x, in the low half of each 32-bit lane.
inline vuint32 round_bf16(simd::vfloat x) {
  const vuint32 bits = (vuint32)x;
  const vuint32 rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return x != x ? vuint32{} + 0x7FC0u : rounded;
}

#if (defined(__AVX512BW__) && HK_VEC_BYTES == 64) || (defined(__AVX2__) && HK_VEC_BYTES == 32)
#if HK_VEC_BYTES == 64
using vbits = __m512i;
inline vbits unpack_lo(vbits a, vbits b) { return _mm512_unpacklo_epi16(a, b); }
inline vbits unpack_hi(vbits a, vbits b) { return _mm512_unpackhi_epi16(a, b); }
inline vbits pack_u16(vbits a, vbits b) { return _mm512_packus_epi32(a, b); }
#else
using vbits = __m256i;
inline vbits unpack_lo(vbits a, vbits b) { return _mm256_unpacklo_epi16(a, b); }
inline vbits unpack_hi(vbits a, vbits b) { return _mm256_unpackhi_epi16(a, b); }
inline vbits pack_u16(vbits a, vbits b) { return _mm256_packus_epi32(a, b); }
#endif

inline void load_bf16x2(const uint16_t* p, simd::vfloat& a, simd::vfloat& b) {
  vbits h;
  std::memcpy(&h, p, sizeof h);
  a = (simd::vfloat)unpack_lo(vbits{}, h);
  b = (simd::vfloat)unpack_hi(vbits{}, h);
}

inline void store_bf16x2(uint16_t* p, simd::vfloat a, simd::vfloat b) {
  const vbits h = pack_u16((vbits)round_bf16(a), (vbits)round_bf16(b));  // values below 2^16: exact
  std::memcpy(p, &h, sizeof h);
}
#else
typedef uint16_t vbf16 __attribute__((vector_size(HK_VEC_BYTES / 2)));

inline simd::vfloat load_bf16(const uint16_t* p) {
  vbf16 h;
  std::memcpy(&h, p, sizeof h);
  return (simd::vfloat)(__builtin_convertvector(h, vuint32) << 16);
}

inline void load_bf16x2(const uint16_t* p, simd::vfloat& a, simd::vfloat& b) {
  a = load_bf16(p);
  b = load_bf16(p + simd::kLanes<float>);
}

inline void store_bf16x2(uint16_t* p, simd::vfloat a, simd::vfloat b) {
  const vbf16 lo = __builtin_convertvector(round_bf16(a), vbf16), hi = __builtin_convertvector(round_bf16(b), vbf16);
  std::memcpy(p, &lo, sizeof lo);
  std::memcpy(p + simd::kLanes<float>, &hi, sizeof hi);
}
#endif

template <bool kAdaptive>
void adam_bf16_span(const math::AdamConsts<float>& c, uint16_t* p, const uint16_t* g, uint16_t* m, uint16_t* v,
                    int64_t n) {
  using V = simd::vfloat;
  constexpr int64_t L = 2 * simd::kLanes<float>;  // two vectors per iteration
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    prefetch_ahead(i, p, g, m, v);
    V pv[2], gv[2], mv[2], vv[2], unused{};
    load_bf16x2(p + i, pv[0], pv[1]);
    load_bf16x2(g + i, gv[0], gv[1]);
    load_bf16x2(m + i, mv[0], mv[1]);
    load_bf16x2(v + i, vv[0], vv[1]);
    for (int k = 0; k < 2; ++k) math::adam_step<false, kAdaptive>(pv[k], gv[k], mv[k], vv[k], unused, c, simd::Sqrt{});
    store_bf16x2(p + i, pv[0], pv[1]);
    store_bf16x2(m + i, mv[0], mv[1]);
    store_bf16x2(v + i, vv[0], vv[1]);
  }
  if (i == n) return;
  // The tail (under two vectors) as a widened span's: widened, stepped by the float kernel, narrowed.
  float buf[4][L];
  uint16_t* ops[4] = {p + i, const_cast<uint16_t*>(g + i), m + i, v + i};
  for (int k = 0; k < 4; ++k) widen_bf16(ops[k], buf[k], n - i);
  adam_span<float, false, kAdaptive>(c, buf[0], buf[1], buf[2], buf[3], nullptr, n - i);
  for (int k : {0, 2, 3}) narrow_bf16(buf[k], ops[k], n - i);
}

void adam_bf16(const math::AdamConsts<float>& c, bool adaptive, uint16_t* p, const uint16_t* g, uint16_t* m,
               uint16_t* v, int64_t n) {
  return adaptive ? adam_bf16_span<true>(c, p, g, m, v, n) : adam_bf16_span<false>(c, p, g, m, v, n);
}

template <class T>
constexpr OptimKernel<T> table() {
  return {&adam<T>, &sq_norm<T>, &lamb_moments<T>, &lamb_apply<T>, &novograd<T>, &lookahead<T>};
}

}  // namespace

extern const OptimKernels optim_kernels = {table<float>(), table<double>()};
extern const Bf16Kernels bf16_kernels = {&widen_bf16, &narrow_bf16, &adam_bf16};

}  // namespace hotkernels::cpu::HK_ISA
