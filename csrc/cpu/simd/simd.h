// Portable SIMD for the per-instruction-set kernel files (csrc/cpu/simd/*.cpp).
//
// Vectors are GCC/Clang vector extensions of HK_VEC_BYTES bytes (16, 32 or 64, set by CMake per
// instruction set), so one source compiles to SSE2, AVX2 or AVX-512. Arithmetic, comparisons and
// `mask ? a : b` work on them directly. Everything here lives in the instruction-set namespace
// HK_ISA, so copies built for different instruction sets never merge at link time.
//
// This header must stay free of torch includes: it is compiled three times.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "cpu/prefetch.h"
#include "cpu/simd/map_kernel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#ifndef HK_ISA
#error "simd.h is only for csrc/cpu/simd/*.cpp, which CMake compiles with HK_ISA set"
#endif

namespace hotkernels::cpu::HK_ISA::simd {

typedef float vfloat __attribute__((vector_size(HK_VEC_BYTES)));
typedef double vdouble __attribute__((vector_size(HK_VEC_BYTES)));
typedef int32_t vint32 __attribute__((vector_size(HK_VEC_BYTES)));

template <class T> struct VecOf;
template <> struct VecOf<float> { using type = vfloat; };
template <> struct VecOf<double> { using type = vdouble; };
template <class T> using Vec = typename VecOf<T>::type;
template <class T> constexpr int64_t kLanes = HK_VEC_BYTES / sizeof(T);

template <class T> inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T> inline void store(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof(v)); }
// All lanes x, written as a braced list of kLanes copies: a single vbroadcastss/sd (a `Vec<T>{} + x`
// costs an extra add).
template <class T, size_t... I> inline Vec<T> broadcast(T x, std::index_sequence<I...>) {
  return Vec<T>{((void)I, x)...};
}
template <class T> inline Vec<T> broadcast(T x) { return broadcast(x, std::make_index_sequence<kLanes<T>>{}); }

// The even lanes of (a, b) as one vector: a stride-2 load from two contiguous ones.
template <class T, size_t... I> inline Vec<T> even_lanes(Vec<T> a, Vec<T> b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>(2 * I)...);
}
template <class T> inline Vec<T> even_lanes(Vec<T> a, Vec<T> b) {
  return even_lanes<T>(a, b, std::make_index_sequence<kLanes<T>>{});
}
// Lanes of a and b alternated from lane h = H·kLanes/2 of each: (a[h], b[h], a[h + 1], b[h + 1], …).
// zip<0> and zip<1> together hold all of both: a store of two stride-2 rows into one.
template <class T, int H, size_t... I> inline Vec<T> zip(Vec<T> a, Vec<T> b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>(H * kLanes<T> / 2 + I / 2 + I % 2 * kLanes<T>)...);
}
template <class T, int H> inline Vec<T> zip(Vec<T> a, Vec<T> b) {
  return zip<T, H>(a, b, std::make_index_sequence<kLanes<T>>{});
}

// Loads the first `n` (< kLanes) elements of p, zero-filling the rest; stores the first n lanes.
// Masked loads and stores where the instruction set has them (lanes past n are never touched, so
// they may lie past the end of an allocation); elsewhere a copy of run-time length, which costs a
// library call and a store-to-load forwarding stall per vector.
#if defined(__AVX512F__) && HK_VEC_BYTES == 64
template <class T> inline Vec<T> load_partial(const T* p, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return (vfloat)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  } else {
    return (vdouble)_mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
  }
}
template <class T> inline void store_partial(T* p, Vec<T> v, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), (__m512)v);
  } else {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), (__m512d)v);
  }
}
#elif defined(__AVX2__) && HK_VEC_BYTES == 32
// Lane i of the mask is all ones where i < n.
template <class T> inline __m256i lanes_below(int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  } else {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
}
template <class T> inline Vec<T> load_partial(const T* p, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return (vfloat)_mm256_maskload_ps(p, lanes_below<T>(n));
  } else {
    return (vdouble)_mm256_maskload_pd(p, lanes_below<T>(n));
  }
}
template <class T> inline void store_partial(T* p, Vec<T> v, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    _mm256_maskstore_ps(p, lanes_below<T>(n), (__m256)v);
  } else {
    _mm256_maskstore_pd(p, lanes_below<T>(n), (__m256d)v);
  }
}
#else
template <class T> inline Vec<T> load_partial(const T* p, int64_t n) {
  Vec<T> v{};
  std::memcpy(&v, p, n * sizeof(T));
  return v;
}
template <class T> inline void store_partial(T* p, Vec<T> v, int64_t n) { std::memcpy(p, &v, n * sizeof(T)); }
#endif

// a > b ? a : b, so b where either is NaN: x86's max, one instruction (GCC compiles the select
// itself to a comparison and a blend).
template <class T> inline Vec<T> max(Vec<T> a, Vec<T> b) {
#if defined(__AVX512F__) && HK_VEC_BYTES == 64
  if constexpr (sizeof(T) == 4) return (Vec<T>)_mm512_max_ps((__m512)a, (__m512)b);
  else return (Vec<T>)_mm512_max_pd((__m512d)a, (__m512d)b);
#elif defined(__AVX__) && HK_VEC_BYTES == 32
  if constexpr (sizeof(T) == 4) return (Vec<T>)_mm256_max_ps((__m256)a, (__m256)b);
  else return (Vec<T>)_mm256_max_pd((__m256d)a, (__m256d)b);
#elif defined(__SSE2__) && HK_VEC_BYTES == 16
  if constexpr (sizeof(T) == 4) return (Vec<T>)_mm_max_ps((__m128)a, (__m128)b);
  else return (Vec<T>)_mm_max_pd((__m128d)a, (__m128d)b);
#else
  return a > b ? a : b;
#endif
}

// min(max(x, lo), hi), with NaN passing through. x86's min/max return their second operand when
// either is NaN, so x goes second; elsewhere, selects (which also keep NaN: comparisons are false).
inline vfloat clamp(vfloat x, float lo, float hi) {
#if defined(__AVX512F__) && HK_VEC_BYTES == 64
  return (vfloat)_mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), (__m512)x));
#elif defined(__AVX__) && HK_VEC_BYTES == 32
  return (vfloat)_mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), (__m256)x));
#elif defined(__SSE__) && HK_VEC_BYTES == 16
  return (vfloat)_mm_min_ps(_mm_set1_ps(hi), _mm_max_ps(_mm_set1_ps(lo), (__m128)x));
#else
  x = x < lo ? broadcast(lo) : x;
  return x > hi ? broadcast(hi) : x;
#endif
}

// exp for float vectors, to about 1 ulp: exp(x) = 2^k · exp(r) with k = round(x / ln 2) and
// r = x − k·ln 2 in [−ln2/2, ln2/2] (ln 2 split in two so r is exact), exp(r) by a degree-6
// polynomial 1 + r·q(r) in Horner's form, six FMAs. Its coefficients were fitted for least relative
// error on that interval (Lawson's iteration) and then rounded to float, which leaves 1.7e-8 (at
// r = −ln2/2; 0.15-0.3 ulp) where the Cephes series it replaced left 1.1e-9: over 6M inputs in
// [−87, 88], at most 1.04 ulp from exp in double, against 1.00. The series took eight operations;
// measured on a Zen 4, Mish of 16K floats in cache on one thread ran 8-9% faster at AVX-512, 10% at
// AVX2 (with the two-half scaling of exp below). k is rounded with the 1.5·2^23 trick (adding it
// leaves round(t) in the low mantissa bits, so t's bits are those of 1.5·2^23 plus k). exp_parts
// computes these; exp scales p by 2^k.
struct ExpParts {
  vfloat t;  // x / ln 2 + 1.5·2^23
  vfloat k;  // k as a float
  vfloat p;  // exp(r)
};
inline ExpParts exp_parts(vfloat x) {
  constexpr float kRound = 12582912.0f;  // 1.5 · 2^23
  const vfloat t = x * 1.44269504088896341f + kRound;
  const vfloat kf = t - kRound;
  vfloat r = x - kf * 0.693359375f;
  r = r - kf * -2.12194440e-4f;
  vfloat p = broadcast(1.3843653723597527e-3f);
  p = p * r + 8.37415549904108e-3f;
  p = p * r + 4.166800156235695e-2f;
  p = p * r + 1.6666431725025177e-1f;
  p = p * r + 4.999999403953552e-1f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return {t, kf, p};
}

// Where |x| is at most this in every lane, exp below AVX-512 takes its short path: there |k| ≤ 124;
// it would stay exact for k in [−125, 127], x in about [−86.9, 88.3].
constexpr float kExpShortPathBound = 86.0f;

// Whether |x| ≤ bound in every lane (a NaN lane is not).
inline bool all_within(vfloat x, float bound) {
  const vint32 magnitude = (vint32)x & 0x7fffffff;
  const vint32 in = (vfloat)magnitude <= bound;
#if defined(__AVX__) && HK_VEC_BYTES == 32
  return _mm256_movemask_ps((__m256)in) == 0xFF;
#elif defined(__SSE__) && HK_VEC_BYTES == 16
  return _mm_movemask_ps((__m128)in) == 0xF;
#else
  for (int64_t i = 0; i < kLanes<float>; ++i) {
    if (!in[i]) return false;
  }
  return true;
#endif
}

// exp(x) in every lane. After clamping x to [−104, 88.8], 2^k (k in [−150, 128]) is applied so that
// the result underflows gradually through the subnormals to 0 and overflows to inf exactly where exp
// does, with no selects; NaN passes the clamp and propagates. AVX-512 scales in one instruction
// (vscalefps: p·2^k, one rounding). Elsewhere that takes two halves 2^(k−h)·2^h with h = floor(k/2),
// each a normal float built from k's bits: the clamp, five integer operations and two products.
// There a vector whose every lane lies within kExpShortPathBound takes a shorter path with the same
// bits: no clamp, and k added to p's exponent field (a shift and an add, behind a test of the
// vector), exact because p·2^k (p in [0.7, 1.42], |k| ≤ 124) is a normal float; a vector with any
// lane beyond it, or NaN, takes the full path. Measured on a Zen 4 at AVX2 (2 threads, paired in one
// process): Mish of 16M floats forward and forward+backward 1.12x faster, of 64K in cache
// 1.17-1.24x. All paths give the same bits: the two scalings over 4.2M inputs (subnormal results,
// ±inf and NaN included); the short path against the full one for every float with
// |x| ≤ kExpShortPathBound (a one-off check at SSE2 and AVX2); tests/test_mish.py checks the two
// against each other through Mish (which uses exp for x ≤ 20 only: k ≤ 29).
inline vfloat exp(vfloat x) {
#if defined(__AVX512F__) && HK_VEC_BYTES == 64
  const ExpParts e = exp_parts(clamp(x, -104.0f, 88.8f));
  return (vfloat)_mm512_scalef_ps((__m512)e.p, (__m512)e.k);
#else
  if (all_within(x, kExpShortPathBound)) [[likely]] {
    const ExpParts e = exp_parts(x);
    // t's bits are 0x4B400000 + k; shifted by 23, 0x4B400000's part leaves the 32 bits.
    return (vfloat)((vint32)e.p + ((vint32)e.t << 23));
  }
  const ExpParts e = exp_parts(clamp(x, -104.0f, 88.8f));
  // t's bits less 0x4B400000 are k; less 254 more, kb = k + 254 (in [104, 382]), whose half hb =
  // floor(k/2) + 127 is the biased exponent of 2^h, and kb − hb = (k − h) + 127 that of 2^(k−h).
  const vint32 kb = (vint32)e.t - (0x4B400000 - 254);
  const vint32 hb = kb >> 1;
  return e.p * (vfloat)(hb << 23) * (vfloat)((kb - hb) << 23);
#endif
}

// exp for double vectors: lane by lane through libm (exact to libm's ulp; double is not the fast
// path, so precision wins over speed here).
inline vdouble exp(vdouble x) {
  for (int64_t i = 0; i < kLanes<double>; ++i) x[i] = std::exp(x[i]);
  return x;
}

// 1/d for finite d with |d| in the normal range, to about 2 ulp, without a division: the CPU's
// reciprocal estimate (12 or 14 bits) refined by one Newton step r' = r(2 − d·r), which squares
// the relative error. Division is the slowest vector instruction (on Zen 1 one ymm divide per
// 6 cycles); this is three fast ones. d = 0 or ±inf gives NaN: callers guarantee neither.
inline vfloat reciprocal(vfloat d) {
#if defined(__AVX512F__) && HK_VEC_BYTES == 64
  const vfloat r = (vfloat)_mm512_rcp14_ps((__m512)d);
#elif defined(__AVX__) && HK_VEC_BYTES == 32
  const vfloat r = (vfloat)_mm256_rcp_ps((__m256)d);
#elif defined(__SSE__) && HK_VEC_BYTES == 16
  const vfloat r = (vfloat)_mm_rcp_ps((__m128)d);
#else
  return 1.0f / d;
#endif
  return r * (2.0f - d * r);
}
inline vdouble reciprocal(vdouble d) { return 1.0 / d; }

// The same function as an object, for the formulas in csrc/math/ that take `exp` as a parameter.
struct Exp {
  template <class V> V operator()(V x) const { return simd::exp(x); }
};
struct Reciprocal {
  template <class V> V operator()(V x) const { return simd::reciprocal(x); }
};

// out[i] = f(in_0[i], in_1[i], ...) for i < n, all arrays contiguous. f maps vectors to a vector;
// the tail is handled with zero-padded partial vectors (so f must be total: no traps on zeros).
// The operands kPrefetchAhead bytes on are prefetched (the output for writing) as each vector is
// computed (csrc/cpu/prefetch.h).
template <class T, class F, class... In>
inline void map(int64_t n, F f, T* out, const In*... in) {
  constexpr int64_t L = kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    prefetch_ahead(i, in...);
    prefetch_ahead<Access::write>(i, out);
    store(out + i, f(load(in + i)...));
  }
  if (i < n) store_partial(out + i, f(load_partial(in + i, n - i)...), n - i);
}

}  // namespace hotkernels::cpu::HK_ISA::simd

namespace hotkernels::cpu::HK_ISA::simd {

// A MapKernel (map_kernel.h) whose entries run the functor F (default-constructible, callable on N
// vectors of float and of double) through simd::map.
template <class F, int N, class T>
void map_span(T* out, const T* const* in, int64_t n) {
  [&]<size_t... I>(std::index_sequence<I...>) { map(n, F{}, out, in[I]...); }(std::make_index_sequence<N>{});
}

template <class F, int N>
constexpr MapKernel map_kernel() {
  return {&map_span<F, N, float>, &map_span<F, N, double>};
}

}  // namespace hotkernels::cpu::HK_ISA::simd
