// Square root on SIMD vectors for the per-instruction-set kernels (the vector extensions have no
// sqrt of their own; a lane loop through libm would keep errno handling and not vectorise).
#pragma once

#include "cpu/simd/simd.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace hotkernels::cpu::HK_ISA::simd {

#if defined(__x86_64__) || defined(_M_X64)
#if HK_VEC_BYTES == 64
inline vfloat sqrt(vfloat x) { return (vfloat)_mm512_sqrt_ps((__m512)x); }
inline vdouble sqrt(vdouble x) { return (vdouble)_mm512_sqrt_pd((__m512d)x); }
#elif HK_VEC_BYTES == 32
inline vfloat sqrt(vfloat x) { return (vfloat)_mm256_sqrt_ps((__m256)x); }
inline vdouble sqrt(vdouble x) { return (vdouble)_mm256_sqrt_pd((__m256d)x); }
#else
inline vfloat sqrt(vfloat x) { return (vfloat)_mm_sqrt_ps((__m128)x); }
inline vdouble sqrt(vdouble x) { return (vdouble)_mm_sqrt_pd((__m128d)x); }
#endif
#else
template <class V> inline V sqrt(V x) {
  for (int64_t i = 0; i < int64_t(sizeof(V) / sizeof(x[0])); ++i) x[i] = __builtin_sqrt(x[i]);
  return x;
}
#endif

// For vectors and for the scalar tails alike.
struct Sqrt {
  template <class V> V operator()(V x) const { return simd::sqrt(x); }
  float operator()(float x) const { return std::sqrt(x); }
  double operator()(double x) const { return std::sqrt(x); }
};

// Σ of the lanes, in double.
template <class V> inline double reduce_add(V x) {
  double s = 0;
  for (int64_t i = 0; i < int64_t(sizeof(V) / sizeof(x[0])); ++i) s += x[i];
  return s;
}

}  // namespace hotkernels::cpu::HK_ISA::simd
