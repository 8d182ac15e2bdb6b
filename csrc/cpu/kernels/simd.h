// Portable SIMD for the per-instruction-set kernel files (csrc/cpu/kernels/*.cpp).
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
#include <utility>

#ifndef HK_ISA
#error "simd.h is only for csrc/cpu/kernels/*.cpp, which CMake compiles with HK_ISA set"
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
template <class T> inline Vec<T> broadcast(T x) { return Vec<T>{} + x; }

// Loads the first `n` (< kLanes) elements of p, zero-filling the rest; stores the first n lanes.
template <class T> inline Vec<T> load_partial(const T* p, int64_t n) {
  Vec<T> v{};
  std::memcpy(&v, p, n * sizeof(T));
  return v;
}
template <class T> inline void store_partial(T* p, Vec<T> v, int64_t n) { std::memcpy(p, &v, n * sizeof(T)); }

// exp for float vectors, to about 2 ulp (Cephes): exp(x) = 2^k · exp(r) with k = round(x / ln 2),
// r = x − k·ln 2 in [−ln2/2, ln2/2] (ln 2 split in two parts so r is exact), exp(r) by a degree-6
// polynomial. 2^k is applied as two halves 2^(k/2)·2^(k−k/2), each a normal float for k in
// [−150, 128], so results in the subnormal range underflow gradually like libm's; below that they
// are 0, above the float range inf; NaN propagates.
inline vfloat exp(vfloat x) {
  constexpr float kLo = -103.972077f, kHi = 88.72283f;  // ln(2^-150), ln(FLT_MAX)
  const vfloat xc = x < kLo ? broadcast(kLo) : (x > kHi ? broadcast(kHi) : x);
  const vfloat t = xc * 1.44269504088896341f + 0.5f;
  vint32 k = __builtin_convertvector(t, vint32);  // truncates toward zero...
  k += __builtin_convertvector(k, vfloat) > t;     // ...so step down where that rounded up (true = -1)
  const vfloat kf = __builtin_convertvector(k, vfloat);
  vfloat r = xc - kf * 0.693359375f;
  r = r - kf * -2.12194440e-4f;
  vfloat p = broadcast(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const vint32 k1 = k >> 1, k2 = k - k1;
  vfloat s1, s2;
  const vint32 b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
  std::memcpy(&s1, &b1, sizeof(s1));
  std::memcpy(&s2, &b2, sizeof(s2));
  const vfloat y = p * s1 * s2;
  return x > kHi ? broadcast(std::numeric_limits<float>::infinity()) : (x < kLo ? vfloat{} : y);
}

// exp for double vectors: lane by lane through libm (exact to libm's ulp; double is not the fast
// path, so precision wins over speed here).
inline vdouble exp(vdouble x) {
  for (int64_t i = 0; i < kLanes<double>; ++i) x[i] = std::exp(x[i]);
  return x;
}

// The same function as an object, for the formulas in csrc/math/ that take `exp` as a parameter.
struct Exp {
  template <class V> V operator()(V x) const { return simd::exp(x); }
};

// out[i] = f(in_0[i], in_1[i], ...) for i < n, all arrays contiguous. f maps vectors to a vector;
// the tail is handled with zero-padded partial vectors (so f must be total: no traps on zeros).
template <class T, class F, class... In>
inline void map(int64_t n, F f, T* out, const In*... in) {
  constexpr int64_t L = kLanes<T>;
  int64_t i = 0;
  for (; i + L <= n; i += L) store(out + i, f(load(in + i)...));
  if (i < n) store_partial(out + i, f(load_partial(in + i, n - i)...), n - i);
}

}  // namespace hotkernels::cpu::HK_ISA::simd

namespace hotkernels::cpu::HK_ISA::simd {

// A MapKernel<N> (map_kernel.h) whose entries run the functor F (default-constructible, callable on
// N vectors of float and of double) through simd::map.
template <class F, int N>
struct MapEntries {
  template <class T, size_t... I>
  static void run(T* out, const T* const* in, int64_t n, std::index_sequence<I...>) {
    map(n, F{}, out, in[I]...);
  }
  template <class T>
  static void run(T* out, const T* const* in, int64_t n) {
    run(out, in, n, std::make_index_sequence<N>{});
  }
};

template <class F, int N, class Table>
constexpr Table map_kernel() {
  return {&MapEntries<F, N>::template run<float>, &MapEntries<F, N>::template run<double>};
}

}  // namespace hotkernels::cpu::HK_ISA::simd
