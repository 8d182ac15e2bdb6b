// LSTM pointwise passes on SIMD vectors; the formulas are shared with CUDA (csrc/math/lstm.h).
#include "cpu/simd/lstm.h"

#include <algorithm>

#include "cpu/simd/simd.h"
#include "math/lstm.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

// Calls f(row, j, n) for the vectors of rows [r0, r1) × units [u0, u1): n = kLanes except at the
// end of a row's range, where n < kLanes lanes are valid. Both it and the passes' f are forced
// inline: GCC left f (five exponentials, ~150 instructions) an out-of-line call per vector, with
// its constants reloaded each time (measured on a Xeon, AVX-512, one thread, the forward pass
// over 32 × 512 units: 67 µs as a call, 42 µs inline).
template <class T, class F>
[[gnu::always_inline]] inline void for_each_vector(int64_t r0, int64_t r1, int64_t u0, int64_t u1, F f) {
  constexpr int64_t L = simd::kLanes<T>;
  for (int64_t row = r0; row < r1; ++row) {
    for (int64_t j = u0; j < u1; j += L) f(row, j, std::min(L, u1 - j));
  }
}

template <class T>
inline simd::Vec<T> load(const T* p, int64_t n) {
  return n == simd::kLanes<T> ? simd::load(p) : simd::load_partial(p, n);
}
template <class T>
inline void store(T* p, simd::Vec<T> v, int64_t n) {
  if (n == simd::kLanes<T>) {
    simd::store(p, v);
  } else {
    simd::store_partial(p, v, n);
  }
}

template <class T>
void forward(const LstmForwardArgs<T>& a, int64_t r0, int64_t r1, int64_t u0, int64_t u1) {
  const int64_t H = a.hidden;
  for_each_vector<T>(r0, r1, u0, u1, [&](int64_t row, int64_t j, int64_t n) [[gnu::always_inline]] {
    T* g = a.gates + row * 4 * H + j;
    auto vi = load(g, n), vf = load(g + H, n), vg = load(g + 2 * H, n), vo = load(g + 3 * H, n);
    if (a.bias != nullptr) {
      vi += load(a.bias + j, n);
      vf += load(a.bias + H + j, n);
      vg += load(a.bias + 2 * H + j, n);
      vo += load(a.bias + 3 * H + j, n);
    }
    const int64_t s = row * H + j;
    simd::Vec<T> c, h;
    math::lstm_forward(vi, vf, vg, vo, load(a.c_prev + s, n), c, h, simd::Exp{});
    store(g, vi, n);
    store(g + H, vf, n);
    store(g + 2 * H, vg, n);
    store(g + 3 * H, vo, n);
    store(a.c + s, c, n);
    store(a.h + s, h, n);
  });
}

template <class T>
void backward(const LstmBackwardArgs<T>& a, int64_t r0, int64_t r1, int64_t u0, int64_t u1) {
  const int64_t H = a.hidden;
  for_each_vector<T>(r0, r1, u0, u1, [&](int64_t row, int64_t j, int64_t n) [[gnu::always_inline]] {
    const T* g = a.gates + row * 4 * H + j;
    T* dg = a.dgates + row * 4 * H + j;
    const int64_t s = row * H + j;
    auto dc = load(a.dc + s, n);
    if (a.dc_extra != nullptr) dc += load(a.dc_extra + s, n);
    simd::Vec<T> di, df, dgg, d_o;
    math::lstm_backward(load(g, n), load(g + H, n), load(g + 2 * H, n), load(g + 3 * H, n), load(a.c_prev + s, n),
                        load(a.c + s, n), load(a.dh + s, n), dc, di, df, dgg, d_o, simd::Exp{});
    store(dg, di, n);
    store(dg + H, df, n);
    store(dg + 2 * H, dgg, n);
    store(dg + 3 * H, d_o, n);
    store(a.dc_prev + s, dc, n);
  });
}

}  // namespace

extern const LstmKernels lstm_kernels = {
    {&forward<float>, &forward<double>},
    {&backward<float>, &backward<double>},
};

}  // namespace hotkernels::cpu::HK_ISA
