// 2-D max and average pooling on SIMD vectors; window geometry in csrc/math/pool.h.
//
// NCHW planes are pooled separably: each input row is first reduced horizontally (vectors along the
// output width; a window column of stride 1 is a plain load, of stride 2 the even lanes of two loads,
// of other strides a lane-by-lane gather) into a scratch row, then output rows reduce kH scratch rows
// vertically. Each input row is reduced once even when overlapping windows (kH > sH) share it.
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

// ---------------------------------------------------------------------------------------------------
// NCHW planes. Each input row needed is copied into a buffer whose element j is input column j − pW,
// with the padding value (`pad`, set once per plane) around it, so every output column — border or
// not, up to the vector-padded width — is reduced by the same vector code.

template <class T>
T* init_row_buffer(T* buf, const Pool2d& p, T pad) {
  std::fill(buf, buf + pool_row_buffer(p), pad);
  return buf;
}

template <class T>
const T* load_row(T* buf, const T* row, const Pool2d& p) {
  std::memcpy(buf + p.pW, row, p.W * sizeof(T));
  return buf;
}

template <class T>
void store_values(T* dst, Vec<T> v, int64_t n) {
  if (n >= L<T>) {
    simd::store(dst, v);
  } else {
    simd::store_partial(dst, v, n);
  }
}

template <class T>
void store_index_values(int64_t* dst, IxVec<T> v, int64_t n) {
  if (n >= L<T>) {
    store_indices<T>(dst, v);
  } else {
    const I64Vec<T> w = __builtin_convertvector(v, I64Vec<T>);
    std::memcpy(dst, &w, n * sizeof(int64_t));
  }
}

// Max, NCHW. Padding is −inf, which `takes` never picks, so it cannot change a value; the index
// starts at each lane's first tap inside the row, as torch's scan does.

// Horizontal max of one buffered row: hv[ow] and its input column hc[ow] (if kIdx), whole vectors up to
// the padded output width.
template <class T, bool kIdx, int S>
void max_row(const T* buf, T* hv, Ix<T>* hc, const Pool2d& p) {
  const IxVec<T> lane_col = iota<T>() * static_cast<Ix<T>>(p.sW);
  for (int64_t ow = 0; ow < p.OW; ow += L<T>) {
    const T* base = buf + ow * p.sW;
    const int64_t start = ow * p.sW - p.pW;
    const IxVec<T> col0 = lane_col + static_cast<Ix<T>>(start);
    IxVec<T> col = col0;
    if constexpr (kIdx) {
      if (start < 0) {
        for (int64_t j = 0; j < L<T>; ++j) {
          if (col[j] < 0) col[j] += (-col[j] + p.dW - 1) / p.dW * p.dW;
        }
      }
    }
    Vec<T> m = simd::broadcast(-std::numeric_limits<T>::infinity());
    for (int64_t k = 0; k < p.kW; ++k) {
      const Vec<T> v = load_strided<T, S>(base + k * p.dW, p.sW);
      const auto take = takes_mask(v, m);
      m = take ? v : m;
      if constexpr (kIdx) col = take ? col0 + static_cast<Ix<T>>(k * p.dW) : col;
    }
    simd::store(hv + ow, m);
    if constexpr (kIdx) std::memcpy(hc + ow, &col, sizeof(col));
  }
}

template <class T, bool kIdx, int S>
void max_plane_impl(const T* in, T* out, int64_t* indices, const Pool2d& p, void* scratch) {
  const int64_t OWp = pool_padded_width(p);
  T* hv = static_cast<T*>(scratch);
  Ix<T>* hc = reinterpret_cast<Ix<T>*>(hv + p.H * OWp);
  T* buf = init_row_buffer(reinterpret_cast<T*>(hc + p.H * OWp), p, -std::numeric_limits<T>::infinity());
  uint8_t* done = reinterpret_cast<uint8_t*>(buf + pool_row_buffer(p));
  std::memset(done, 0, p.H);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const int64_t start = oh * p.sH - p.pH;
    const math::Taps t = math::window_taps(start, p.kH, p.dH, p.H);
    for (int64_t k = t.k0; k < t.k1; ++k) {
      const int64_t ih = start + k * p.dH;
      if (!done[ih]) {
        max_row<T, kIdx, S>(load_row(buf, in + ih * p.W, p), hv + ih * OWp, hc + ih * OWp, p);
        done[ih] = 1;
      }
    }
    const int64_t ih0 = start + t.k0 * p.dH;
    if (t.k0 == t.k1) {
      // Every tap of this output row lies in the padding (dilation can do that): −inf, at torch's
      // starting index, its first tap at or past row and column 0.
      for (int64_t ow = 0; ow < p.OW; ++ow) {
        const int64_t ws = ow * p.sW - p.pW;
        out[oh * p.OW + ow] = -std::numeric_limits<T>::infinity();
        if constexpr (kIdx) indices[oh * p.OW + ow] = ih0 * p.W + ws + math::window_taps(ws, p.kW, p.dW, p.W).k0 * p.dW;
      }
      continue;
    }
    for (int64_t ow = 0; ow < p.OW; ow += L<T>) {
      Vec<T> m = simd::load(hv + ih0 * OWp + ow);
      IxVec<T> idx{};
      if constexpr (kIdx) idx = load_ix<T>(hc + ih0 * OWp + ow) + static_cast<Ix<T>>(ih0 * p.W);
      for (int64_t k = t.k0 + 1; k < t.k1; ++k) {
        const int64_t ih = start + k * p.dH;
        const Vec<T> v = simd::load(hv + ih * OWp + ow);
        const auto take = takes_mask(v, m);
        m = take ? v : m;
        if constexpr (kIdx) idx = take ? load_ix<T>(hc + ih * OWp + ow) + static_cast<Ix<T>>(ih * p.W) : idx;
      }
      store_values<T>(out + oh * p.OW + ow, m, p.OW - ow);
      if constexpr (kIdx) store_index_values<T>(indices + oh * p.OW + ow, idx, p.OW - ow);
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

// Average, NCHW (no dilation: p.dH == p.dW == 1). Padding is 0, so adding it changes nothing; the
// divisor is math::avg_divisor, a product of a row and a column factor unless overridden.

template <class T, int S>
void sum_row(const T* buf, T* hv, const Pool2d& p) {
  for (int64_t ow = 0; ow < p.OW; ow += L<T>) {
    const T* base = buf + ow * p.sW;
    Vec<T> s = load_strided<T, S>(base, p.sW);
    for (int64_t k = 1; k < p.kW; ++k) s += load_strided<T, S>(base + k, p.sW);
    simd::store(hv + ow, s);
  }
}

// The column factor of the divisor for every output column (1 under divisor_override, and for the
// vector padding past OW).
template <class T>
void column_divisors(T* cw, const Pool2d& p, const AvgMode& mode) {
  const int64_t OWp = pool_padded_width(p);
  for (int64_t ow = 0; ow < OWp; ++ow) {
    const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
    const bool one = mode.has_divisor_override || ow >= p.OW;
    cw[ow] = one ? T(1) : mode.count_include_pad ? T(w.padded) : T(w.hi - w.lo);
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
  const int64_t OWp = pool_padded_width(p);
  T* hv = static_cast<T*>(scratch);
  T* cw = hv + p.H * OWp;
  T* buf = init_row_buffer(cw + OWp, p, T(0));
  uint8_t* done = reinterpret_cast<uint8_t*>(buf + pool_row_buffer(p));
  std::memset(done, 0, p.H);
  column_divisors(cw, p, mode);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
    for (int64_t ih = h.lo; ih < h.hi; ++ih) {
      if (!done[ih]) {
        sum_row<T, S>(load_row(buf, in + ih * p.W, p), hv + ih * OWp, p);
        done[ih] = 1;
      }
    }
    const T dh = row_divisor<T>(oh, p, mode);
    // torch divides the sum by the integer divisor (exact in T for any realistic window).
    for (int64_t ow = 0; ow < p.OW; ow += L<T>) {
      Vec<T> s = simd::load(hv + h.lo * OWp + ow);
      for (int64_t ih = h.lo + 1; ih < h.hi; ++ih) s += simd::load(hv + ih * OWp + ow);
      store_values<T>(out + oh * p.OW + ow, s / (simd::load(cw + ow) * dh), p.OW - ow);
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
  T* r = cw + pool_padded_width(p);
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

// Runs block(c, std::integral_constant<int, U>) over the channels in blocks of U vectors — four at a
// time (independent accumulators, so the taps' dependent chains overlap), then one — and returns
// where the scalar tail starts.
template <class T, class Block>
inline int64_t for_channel_blocks(int64_t C, const Block& block) {
  int64_t c = 0;
  for (; c + 4 * L<T> <= C; c += 4 * L<T>) block(c, std::integral_constant<int, 4>{});
  for (; c + L<T> <= C; c += L<T>) block(c, std::integral_constant<int, 1>{});
  return c;
}

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
    const int64_t c = for_channel_blocks<T>(C, [&](int64_t c, auto unroll) {
      constexpr int U = decltype(unroll)::value;
      Vec<T> m[U];
      IxVec<T> idx[U];
      for (int j = 0; j < U; ++j) {
        m[j] = simd::broadcast(-std::numeric_limits<T>::infinity());
        idx[j] = IxVec<T>{} + static_cast<Ix<T>>(first);
      }
      for (int64_t kh = th.k0; kh < th.k1; ++kh) {
        const int64_t ih = hs + kh * p.dH;
        for (int64_t kw = tw.k0; kw < tw.k1; ++kw) {
          const int64_t pos = ih * p.W + ws + kw * p.dW;
          const T* src = in + pos * C + c;
          for (int j = 0; j < U; ++j) {
            const Vec<T> v = simd::load(src + j * L<T>);
            const auto take = takes_mask(v, m[j]);
            m[j] = take ? v : m[j];
            if constexpr (kIdx) idx[j] = take ? IxVec<T>{} + static_cast<Ix<T>>(pos) : idx[j];
          }
        }
      }
      for (int j = 0; j < U; ++j) {
        simd::store(o + c + j * L<T>, m[j]);
        if constexpr (kIdx) store_indices<T>(oi + c + j * L<T>, idx[j]);
      }
    });
    for (int64_t c1 = c; c1 < C; ++c1) {
      const int64_t c = c1;
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
    const int64_t c = for_channel_blocks<T>(C, [&](int64_t c, auto unroll) {
      constexpr int U = decltype(unroll)::value;
      Vec<T> s[U] = {};
      for (int64_t ih = h.lo; ih < h.hi; ++ih) {
        for (int64_t iw = w.lo; iw < w.hi; ++iw) {
          const T* src = in + (ih * p.W + iw) * C + c;
          for (int j = 0; j < U; ++j) s[j] += simd::load(src + j * L<T>);
        }
      }
      for (int j = 0; j < U; ++j) simd::store(o + c + j * L<T>, s[j] / div);
    });
    for (int64_t c1 = c; c1 < C; ++c1) {
      const int64_t c = c1;
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
