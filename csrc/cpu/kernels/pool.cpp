// 2-D max and average pooling on SIMD vectors; window geometry in csrc/math/pool.h.
//
// NCHW planes are pooled separably: each input row is first reduced horizontally (vectors along the
// output width; a window column of stride 1 is a plain load, of stride 2 the even lanes of two loads)
// into a scratch row, then output rows reduce kH scratch rows vertically. Each input row is reduced
// once even when overlapping windows (kH > sH) share it.
//
// Max follows torch's scan exactly: taps in row-major order, `v > m || isnan(v)` replaces (value,
// index), starting from (−inf, first tap inside). So a NaN wins (the last one scanned), else the first
// maximum. Reducing each row with that rule and then the rows with it again picks the same tap: the
// last row holding a NaN holds the last NaN overall; without NaNs, the first row reaching the maximum
// holds its first occurrence.
//
// channels_last rows are reduced with vectors along C (contiguous), taps in torch's order.
#include "cpu/kernels/pool.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "cpu/kernels/simd.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

using math::AvgMode;
using math::Pool2d;
using simd::Vec;

template <class T> constexpr int64_t L = simd::kLanes<T>;

// Index lanes as wide as T's lanes, so a comparison mask selects them directly: int32 for float
// (a plane must then hold fewer than 2^31 elements: checked by the op), int64 for double.
typedef int64_t vint64 __attribute__((vector_size(HK_VEC_BYTES)));
typedef int64_t vint64x2 __attribute__((vector_size(HK_VEC_BYTES * 2)));
template <class T> using Ix = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
template <class T> using IxVec = std::conditional_t<sizeof(T) == 4, simd::vint32, vint64>;
// int64 vectors with as many lanes as Vec<T>, for storing indices.
template <class T> using I64Vec = std::conditional_t<sizeof(T) == 4, vint64x2, vint64>;

template <class T> inline IxVec<T> iota() {
  IxVec<T> v;
  for (int64_t j = 0; j < L<T>; ++j) v[j] = static_cast<Ix<T>>(j);
  return v;
}

template <class T> inline IxVec<T> load_ix(const Ix<T>* p) {
  IxVec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <class T> inline void store_indices(int64_t* dst, IxVec<T> v) {
  const I64Vec<T> w = __builtin_convertvector(v, I64Vec<T>);
  std::memcpy(dst, &w, sizeof(w));
}

template <class T> inline bool takes(T v, T m) { return v > m || v != v; }
template <class V> inline auto takes_mask(V v, V m) { return (v > m) | (v != v); }

template <class T, size_t... I>
inline Vec<T> even_lanes(Vec<T> a, Vec<T> b, std::index_sequence<I...>) {
  return __builtin_shufflevector(a, b, static_cast<int>(2 * I)...);
}

// Lanes p[0], p[s], ..., p[(L−1)s]; S is the stride when known at compile time (1, 2), else 0.
template <class T, int S>
inline Vec<T> load_strided(const T* p, int64_t s) {
  if constexpr (S == 1) {
    return simd::load(p);
  } else if constexpr (S == 2) {
    return even_lanes<T>(simd::load(p), simd::load(p + L<T>), std::make_index_sequence<L<T>>{});
  } else {
    Vec<T> v;
    for (int64_t j = 0; j < L<T>; ++j) v[j] = p[j * s];
    return v;
  }
}

// Elements a load_strided<S> touches from p (the even-lane load reads one past its last lane).
template <class T, int S>
inline int64_t strided_span(int64_t s) {
  return S == 2 ? 2 * L<T> : (L<T> - 1) * s + 1;
}

// Output columns whose whole window lies inside the row: [begin, end) (begin may exceed end).
struct Interior {
  int64_t begin, end;
};
inline Interior interior(int64_t size, int64_t out, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t begin = std::min((p + s - 1) / s, out);
  const int64_t room = size - 1 + p - (k - 1) * d;  // o·s <= room
  const int64_t end = room < 0 ? 0 : std::min(room / s + 1, out);
  return {begin, std::max(begin, end)};
}

// ---------------------------------------------------------------------------------------------------
// Max, NCHW.

// Horizontal max of one input row: hv[ow] and its column hc[ow] (if kIdx) for every output column.
template <class T, bool kIdx, int S>
void max_row(const T* row, T* hv, Ix<T>* hc, const Pool2d& p) {
  const Interior in = interior(p.W, p.OW, p.kW, p.sW, p.pW, p.dW);
  auto scalar = [&](int64_t ow) {
    const int64_t start = ow * p.sW - p.pW;
    const math::Taps t = math::window_taps(start, p.kW, p.dW, p.W);
    T m = -std::numeric_limits<T>::infinity();
    int64_t col = start + t.k0 * p.dW;
    for (int64_t k = t.k0; k < t.k1; ++k) {
      const int64_t iw = start + k * p.dW;
      if (takes(row[iw], m)) {
        m = row[iw];
        col = iw;
      }
    }
    hv[ow] = m;
    if constexpr (kIdx) hc[ow] = static_cast<Ix<T>>(col);
  };
  int64_t ow = 0;
  for (; ow < in.begin; ++ow) scalar(ow);
  const int64_t span = strided_span<T, S>(p.sW);
  const IxVec<T> lane_col = iota<T>() * static_cast<Ix<T>>(p.sW);
  for (; ow + L<T> <= in.end && ow * p.sW - p.pW + (p.kW - 1) * p.dW + span <= p.W; ow += L<T>) {
    const int64_t start = ow * p.sW - p.pW;
    const T* base = row + start;
    Vec<T> m = load_strided<T, S>(base, p.sW);
    IxVec<T> col = lane_col + static_cast<Ix<T>>(start);
    const IxVec<T> col0 = col;
    for (int64_t k = 1; k < p.kW; ++k) {
      const Vec<T> v = load_strided<T, S>(base + k * p.dW, p.sW);
      const auto take = takes_mask(v, m);
      m = take ? v : m;
      if constexpr (kIdx) col = take ? col0 + static_cast<Ix<T>>(k * p.dW) : col;
    }
    simd::store(hv + ow, m);
    if constexpr (kIdx) std::memcpy(hc + ow, &col, sizeof(col));
  }
  for (; ow < p.OW; ++ow) scalar(ow);
}

template <class T, bool kIdx, int S>
void max_plane_impl(const T* in, T* out, int64_t* indices, const Pool2d& p, void* scratch) {
  T* hv = static_cast<T*>(scratch);
  Ix<T>* hc = reinterpret_cast<Ix<T>*>(hv + p.H * p.OW);
  uint8_t* done = reinterpret_cast<uint8_t*>(hc + p.H * p.OW);
  std::memset(done, 0, p.H);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const int64_t start = oh * p.sH - p.pH;
    const math::Taps t = math::window_taps(start, p.kH, p.dH, p.H);
    for (int64_t k = t.k0; k < t.k1; ++k) {
      const int64_t ih = start + k * p.dH;
      if (!done[ih]) {
        max_row<T, kIdx, S>(in + ih * p.W, hv + ih * p.OW, hc + ih * p.OW, p);
        done[ih] = 1;
      }
    }
    T* o = out + oh * p.OW;
    int64_t* oi = kIdx ? indices + oh * p.OW : nullptr;
    const int64_t ih0 = start + t.k0 * p.dH;
    int64_t ow = 0;
    for (; ow + L<T> <= p.OW; ow += L<T>) {
      Vec<T> m = simd::load(hv + ih0 * p.OW + ow);
      IxVec<T> idx{};
      if constexpr (kIdx) idx = load_ix<T>(hc + ih0 * p.OW + ow) + static_cast<Ix<T>>(ih0 * p.W);
      for (int64_t k = t.k0 + 1; k < t.k1; ++k) {
        const int64_t ih = start + k * p.dH;
        const Vec<T> v = simd::load(hv + ih * p.OW + ow);
        const auto take = takes_mask(v, m);
        m = take ? v : m;
        if constexpr (kIdx) idx = take ? load_ix<T>(hc + ih * p.OW + ow) + static_cast<Ix<T>>(ih * p.W) : idx;
      }
      simd::store(o + ow, m);
      if constexpr (kIdx) store_indices<T>(oi + ow, idx);
    }
    for (; ow < p.OW; ++ow) {
      T m = hv[ih0 * p.OW + ow];
      int64_t idx = 0;
      if constexpr (kIdx) idx = ih0 * p.W + hc[ih0 * p.OW + ow];
      for (int64_t k = t.k0 + 1; k < t.k1; ++k) {
        const int64_t ih = start + k * p.dH;
        if (takes(hv[ih * p.OW + ow], m)) {
          m = hv[ih * p.OW + ow];
          if constexpr (kIdx) idx = ih * p.W + hc[ih * p.OW + ow];
        }
      }
      o[ow] = m;
      if constexpr (kIdx) oi[ow] = idx;
    }
  }
}

template <class T, bool kIdx>
void max_plane_stride(const T* in, T* out, int64_t* indices, const Pool2d& p, void* scratch) {
  switch (p.sW) {
    case 1: return max_plane_impl<T, kIdx, 1>(in, out, indices, p, scratch);
    case 2: return max_plane_impl<T, kIdx, 2>(in, out, indices, p, scratch);
    default: return max_plane_impl<T, kIdx, 0>(in, out, indices, p, scratch);
  }
}

template <class T>
void max_plane(const T* in, T* out, int64_t* indices, const Pool2d& p, void* scratch) {
  if (indices != nullptr) {
    max_plane_stride<T, true>(in, out, indices, p, scratch);
  } else {
    max_plane_stride<T, false>(in, out, nullptr, p, scratch);
  }
}

// ---------------------------------------------------------------------------------------------------
// Average, NCHW (no dilation: p.dH == p.dW == 1). Sums over the taps inside; the divisor is
// math::avg_divisor, a product of a row and a column factor unless overridden.

template <class T, int S>
void sum_row(const T* row, T* hv, const Pool2d& p) {
  const Interior in = interior(p.W, p.OW, p.kW, p.sW, p.pW, 1);
  auto scalar = [&](int64_t ow) {
    const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
    T s = 0;
    for (int64_t iw = w.lo; iw < w.hi; ++iw) s += row[iw];
    hv[ow] = s;
  };
  int64_t ow = 0;
  for (; ow < in.begin; ++ow) scalar(ow);
  const int64_t span = strided_span<T, S>(p.sW);
  for (; ow + L<T> <= in.end && ow * p.sW - p.pW + (p.kW - 1) + span <= p.W; ow += L<T>) {
    const T* base = row + ow * p.sW - p.pW;
    Vec<T> s = load_strided<T, S>(base, p.sW);
    for (int64_t k = 1; k < p.kW; ++k) s += load_strided<T, S>(base + k, p.sW);
    simd::store(hv + ow, s);
  }
  for (; ow < p.OW; ++ow) scalar(ow);
}

// The column factor of the divisor for every output column (1 under divisor_override).
template <class T>
void column_divisors(T* cw, const Pool2d& p, const AvgMode& mode) {
  for (int64_t ow = 0; ow < p.OW; ++ow) {
    const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
    cw[ow] = mode.has_divisor_override ? T(1) : mode.count_include_pad ? T(w.padded) : T(w.hi - w.lo);
  }
}

template <class T>
T row_divisor(int64_t oh, const Pool2d& p, const AvgMode& mode) {
  const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
  if (mode.has_divisor_override) return T(mode.divisor_override);
  return mode.count_include_pad ? T(h.padded) : T(h.hi - h.lo);
}

template <class T, int S>
void avg_plane_impl(const T* in, T* out, const Pool2d& p, const AvgMode& mode, void* scratch) {
  T* hv = static_cast<T*>(scratch);
  T* cw = hv + p.H * p.OW;
  uint8_t* done = reinterpret_cast<uint8_t*>(cw + p.OW);
  std::memset(done, 0, p.H);
  column_divisors(cw, p, mode);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
    for (int64_t ih = h.lo; ih < h.hi; ++ih) {
      if (!done[ih]) {
        sum_row<T, S>(in + ih * p.W, hv + ih * p.OW, p);
        done[ih] = 1;
      }
    }
    const T dh = row_divisor<T>(oh, p, mode);
    T* o = out + oh * p.OW;
    int64_t ow = 0;
    // torch divides the sum by the integer divisor (exact in T for any realistic window).
    for (; ow + L<T> <= p.OW; ow += L<T>) {
      Vec<T> s = simd::load(hv + h.lo * p.OW + ow);
      for (int64_t ih = h.lo + 1; ih < h.hi; ++ih) s += simd::load(hv + ih * p.OW + ow);
      simd::store(o + ow, s / (simd::load(cw + ow) * dh));
    }
    for (; ow < p.OW; ++ow) {
      T s = hv[h.lo * p.OW + ow];
      for (int64_t ih = h.lo + 1; ih < h.hi; ++ih) s += hv[ih * p.OW + ow];
      o[ow] = s / (cw[ow] * dh);
    }
  }
}

template <class T>
void avg_plane(const T* in, T* out, const Pool2d& p, const AvgMode& mode, void* scratch) {
  switch (p.sW) {
    case 1: return avg_plane_impl<T, 1>(in, out, p, mode, scratch);
    case 2: return avg_plane_impl<T, 2>(in, out, p, mode, scratch);
    default: return avg_plane_impl<T, 0>(in, out, p, mode, scratch);
  }
}

// grad_in[ih, iw] = Σ over the windows (oh, ow) covering it of grad_out[oh, ow] / divisor(oh, ow).
// Per output row: its scaled gradients spread along the columns they cover (r), then r is added to
// each input row the window covers. One plane, one thread: a fixed summation order.
template <class T>
void avg_backward_plane(const T* grad_out, T* grad_in, const Pool2d& p, const AvgMode& mode, void* scratch) {
  T* cw = static_cast<T*>(scratch);
  T* r = cw + p.OW;
  column_divisors(cw, p, mode);
  std::fill(grad_in, grad_in + p.H * p.W, T(0));
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
    const T dh = row_divisor<T>(oh, p, mode);
    std::fill(r, r + p.W, T(0));
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
      const T g = grad_out[oh * p.OW + ow] / (cw[ow] * dh);
      for (int64_t iw = w.lo; iw < w.hi; ++iw) r[iw] += g;
    }
    for (int64_t ih = h.lo; ih < h.hi; ++ih) {
      T* gi = grad_in + ih * p.W;
      for (int64_t iw = 0; iw < p.W; ++iw) gi[iw] += r[iw];
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// channels_last: vectors along C, one output row (oh) of one image per call.

template <class T, bool kIdx>
void max_row_cl_impl(const T* in, T* out, int64_t* indices, const Pool2d& p, int64_t C, int64_t oh) {
  const int64_t hs = oh * p.sH - p.pH;
  const math::Taps th = math::window_taps(hs, p.kH, p.dH, p.H);
  for (int64_t ow = 0; ow < p.OW; ++ow) {
    const int64_t ws = ow * p.sW - p.pW;
    const math::Taps tw = math::window_taps(ws, p.kW, p.dW, p.W);
    const int64_t first = (hs + th.k0 * p.dH) * p.W + ws + tw.k0 * p.dW;
    T* o = out + ow * C;
    int64_t* oi = kIdx ? indices + ow * C : nullptr;
    int64_t c = 0;
    for (; c + L<T> <= C; c += L<T>) {
      Vec<T> m = simd::broadcast(-std::numeric_limits<T>::infinity());
      IxVec<T> idx = IxVec<T>{} + static_cast<Ix<T>>(first);
      for (int64_t kh = th.k0; kh < th.k1; ++kh) {
        const int64_t ih = hs + kh * p.dH;
        for (int64_t kw = tw.k0; kw < tw.k1; ++kw) {
          const int64_t pos = ih * p.W + ws + kw * p.dW;
          const Vec<T> v = simd::load(in + pos * C + c);
          const auto take = takes_mask(v, m);
          m = take ? v : m;
          if constexpr (kIdx) idx = take ? IxVec<T>{} + static_cast<Ix<T>>(pos) : idx;
        }
      }
      simd::store(o + c, m);
      if constexpr (kIdx) store_indices<T>(oi + c, idx);
    }
    for (; c < C; ++c) {
      T m = -std::numeric_limits<T>::infinity();
      int64_t idx = first;
      for (int64_t kh = th.k0; kh < th.k1; ++kh) {
        const int64_t ih = hs + kh * p.dH;
        for (int64_t kw = tw.k0; kw < tw.k1; ++kw) {
          const int64_t pos = ih * p.W + ws + kw * p.dW;
          if (takes(in[pos * C + c], m)) {
            m = in[pos * C + c];
            idx = pos;
          }
        }
      }
      o[c] = m;
      if constexpr (kIdx) oi[c] = idx;
    }
  }
}

template <class T>
void max_row_cl(const T* in, T* out, int64_t* indices, const Pool2d& p, int64_t C, int64_t oh) {
  if (indices != nullptr) {
    max_row_cl_impl<T, true>(in, out, indices, p, C, oh);
  } else {
    max_row_cl_impl<T, false>(in, out, nullptr, p, C, oh);
  }
}

template <class T>
void avg_row_cl(const T* in, T* out, const Pool2d& p, const AvgMode& mode, int64_t C, int64_t oh) {
  const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
  for (int64_t ow = 0; ow < p.OW; ++ow) {
    const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
    const T div = T(math::avg_divisor(mode, h, w));
    T* o = out + ow * C;
    int64_t c = 0;
    for (; c + L<T> <= C; c += L<T>) {
      Vec<T> s{};
      for (int64_t ih = h.lo; ih < h.hi; ++ih) {
        for (int64_t iw = w.lo; iw < w.hi; ++iw) s += simd::load(in + (ih * p.W + iw) * C + c);
      }
      simd::store(o + c, s / div);
    }
    for (; c < C; ++c) {
      T s = 0;
      for (int64_t ih = h.lo; ih < h.hi; ++ih) {
        for (int64_t iw = w.lo; iw < w.hi; ++iw) s += in[(ih * p.W + iw) * C + c];
      }
      o[c] = s / div;
    }
  }
}

template <class T>
void avg_backward_row_cl(const T* grad_out, T* grad_in, const Pool2d& p, const AvgMode& mode, int64_t C, int64_t ih) {
  const math::Cover ch = math::covering_outputs(ih, p.kH, p.sH, p.pH, p.OH);
  for (int64_t iw = 0; iw < p.W; ++iw) {
    const math::Cover cw = math::covering_outputs(iw, p.kW, p.sW, p.pW, p.OW);
    T* gi = grad_in + iw * C;
    int64_t c = 0;
    for (; c + L<T> <= C; c += L<T>) {
      Vec<T> s{};
      for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
        const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
        for (int64_t ow = cw.o0; ow < cw.o1; ++ow) {
          const T div = T(math::avg_divisor(mode, h, math::avg_span(ow, p.kW, p.sW, p.pW, p.W)));
          s += simd::load(grad_out + (oh * p.OW + ow) * C + c) / div;
        }
      }
      simd::store(gi + c, s);
    }
    for (; c < C; ++c) {
      T s = 0;
      for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
        const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
        for (int64_t ow = cw.o0; ow < cw.o1; ++ow) {
          const T div = T(math::avg_divisor(mode, h, math::avg_span(ow, p.kW, p.sW, p.pW, p.W)));
          s += grad_out[(oh * p.OW + ow) * C + c] / div;
        }
      }
      gi[c] = s;
    }
  }
}

template <class T>
constexpr PoolKernelsOf<T> table() {
  return {&max_plane<T>, &avg_plane<T>, &avg_backward_plane<T>, &max_row_cl<T>, &avg_row_cl<T>,
          &avg_backward_row_cl<T>};
}

}  // namespace

extern const PoolKernels pool_kernels = {table<float>(), table<double>()};

}  // namespace hotkernels::cpu::HK_ISA
