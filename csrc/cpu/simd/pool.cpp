// 2-D max and average pooling on SIMD vectors; window geometry in csrc/math/pool.h.
//
// NCHW planes are pooled separably: each input row is first reduced horizontally (vectors along the
// output width; a window column of stride 1 is a plain load, of stride 2 the even lanes of two loads,
// of other strides a lane-by-lane gather) into a scratch row, then output rows reduce kH scratch rows
// vertically. Each input row is reduced once even when overlapping windows (kH > sH) share it.
// Max without an argmax goes the other way round, vertically first (max_plane_values).
//
// Max follows torch's scan exactly: taps in row-major order, `v > m || isnan(v)` replaces (value,
// index), starting from (−inf, first tap inside). So a NaN wins (the last one scanned), else the first
// maximum. Reducing each row with that rule and then the rows with it again picks the same tap: the
// last row holding a NaN holds the last NaN overall; without NaNs, the first row reaching the maximum
// holds its first occurrence.
//
// channels_last rows are reduced with vectors along C (contiguous), taps in torch's order.
//
// The argmax is written as torch's int64 indices (flat h·W + w in the plane) or as offsets (the tap's
// position kh·kW + kw in its window, a byte: csrc/math/pool.h); both come from the same scan. The
// backward kernels from offsets write each input gradient once, the sum in a fixed order of the
// output gradients of the windows covering it whose offset names the tap landing on it: gathers, or
// for NCHW planes of overlapping windows a scatter into a plane in cache (max_backward_plane_scatter).
#include "cpu/simd/pool.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "cpu/prefetch.h"
#include "cpu/simd/simd.h"
#include "static_switch.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

using math::AvgMode;
using math::MaxArg;
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

// uint8 vectors with as many lanes as Vec<T>, for offsets.
typedef uint8_t vu8_f32 __attribute__((vector_size(HK_VEC_BYTES / 4)));
typedef uint8_t vu8_f64 __attribute__((vector_size(HK_VEC_BYTES / 8)));
template <class T> using U8Vec = std::conditional_t<sizeof(T) == 4, vu8_f32, vu8_f64>;

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

// Offsets (each below 256) narrowed from index lanes to bytes: packing or narrowing instructions
// where the instruction set has them (GCC compiles the generic conversion lane by lane, ~30
// instructions a vector).
template <class T> inline U8Vec<T> narrow_offsets(IxVec<T> v) {
  U8Vec<T> w;
#if defined(__AVX512F__) && HK_VEC_BYTES == 64
  __m128i b;
  if constexpr (sizeof(T) == 4) {
    b = _mm512_cvtepi32_epi8((__m512i)v);
  } else {
    b = _mm512_cvtepi64_epi8((__m512i)v);
  }
  std::memcpy(&w, &b, sizeof(w));
#elif defined(__AVX2__) && HK_VEC_BYTES == 32
  const __m128i lo = _mm256_castsi256_si128((__m256i)v), hi = _mm256_extracti128_si256((__m256i)v, 1);
  __m128i b;
  if constexpr (sizeof(T) == 4) {
    const __m128i w16 = _mm_packus_epi32(lo, hi);  // lanes 0-7 as uint16
    b = _mm_packus_epi16(w16, w16);
  } else {
    // Each 128-bit half holds two int64: byte 0 and byte 8 are its two offsets.
    const __m128i pick = _mm_setr_epi8(0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    b = _mm_unpacklo_epi16(_mm_shuffle_epi8(lo, pick), _mm_shuffle_epi8(hi, pick));
  }
  std::memcpy(&w, &b, sizeof(w));
#else
  w = __builtin_convertvector(v, U8Vec<T>);
#endif
  return w;
}

template <class T> inline void store_offsets(uint8_t* dst, IxVec<T> v) {
  const U8Vec<T> w = narrow_offsets<T>(v);
  std::memcpy(dst, &w, sizeof(w));
}

// L<T> offsets widened to index lanes: one zero-extending load where the instruction set has it
// (GCC compiles the generic conversion lane by lane).
template <class T> inline IxVec<T> load_offsets(const uint8_t* p) {
#if (defined(__AVX512F__) && HK_VEC_BYTES == 64) || (defined(__AVX2__) && HK_VEC_BYTES == 32)
  __m128i w = _mm_setzero_si128();  // the L<T> bytes in its low lanes
  std::memcpy(&w, p, sizeof(U8Vec<T>));
#if HK_VEC_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    return (IxVec<T>)_mm512_cvtepu8_epi32(w);
  } else {
    return (IxVec<T>)_mm512_cvtepu8_epi64(w);
  }
#else
  if constexpr (sizeof(T) == 4) {
    return (IxVec<T>)_mm256_cvtepu8_epi32(w);
  } else {
    return (IxVec<T>)_mm256_cvtepu8_epi64(w);
  }
#endif
#else
  U8Vec<T> w;
  std::memcpy(&w, p, sizeof(w));
  return __builtin_convertvector(w, IxVec<T>);
#endif
}

// Runs f.template operator()<S>() with S the column stride where it has its own loads (1, 2), else 0
// (load_strided's gather at run-time stride).
template <class F>
void column_stride_switch(int64_t stride, F&& f) {
  static_switch<1, 2, 0>(stride == 1 || stride == 2 ? stride : 0, f);
}

template <class T> inline bool takes(T v, T m) { return v > m || v != v; }
template <class V> inline auto takes_mask(V v, V m) { return (v > m) | (v != v); }
// The value `takes` leaves: the same choice, written as x86's max (v > m ? v : m, one instruction)
// and a NaN test, rather than two comparisons, their union and a select.
template <class T> inline Vec<T> scan_max(Vec<T> v, Vec<T> m) { return v != v ? v : simd::max<T>(v, m); }

// Lanes p[0], p[s], ..., p[(L−1)s]; S is the stride when known at compile time (1, 2), else 0.
template <class T, int S>
inline Vec<T> load_strided(const T* p, int64_t s) {
  if constexpr (S == 1) {
    return simd::load(p);
  } else if constexpr (S == 2) {
    return simd::even_lanes<T>(simd::load(p), simd::load(p + L<T>));
  } else {
    Vec<T> v;
    for (int64_t j = 0; j < L<T>; ++j) v[j] = p[j * s];
    return v;
  }
}

// ---------------------------------------------------------------------------------------------------
// NCHW planes. Each input row needed is copied into a row buffer whose element j is input column j − pW,
// with the padding value (`pad`, set once per plane) around it, so every output column — border or
// not, up to the vector-padded width — is reduced by the same vector code.

template <class T>
T* init_row_buffer(T* buf, const Pool2d& p, T pad) {
  std::fill(buf, buf + pool_row_buffer(p), pad);
  return buf;
}

// dst[i] = src[i] for i < n, a row of a plane: in vector moves, not a library call of run-time length
// per row (max pooling's forward with offsets ran 1.03-1.05x faster, its forward+backward 1.04x;
// paired, Zen 3 AVX2, 32x64x112x112; the values-only forward 1.01-1.02x, the Xeon, AVX-512).
template <class T>
void copy_row(T* dst, const T* src, int64_t n) {
  int64_t i = 0;
  for (; i + L<T> <= n; i += L<T>) simd::store(dst + i, simd::load(src + i));
  if (i < n) simd::store_partial(dst + i, simd::load_partial(src + i, n - i), n - i);
}

template <class T>
const T* load_row(T* buf, const T* row, const Pool2d& p) {
  copy_row(buf + p.pW, row, p.W);
  return buf;
}

// Two row buffers side by side at `at` (2 · pool_row_buffer(p) values), their padding set to `pad`.
template <class T>
std::array<T*, 2> two_row_buffers(T* at, const Pool2d& p, T pad) {
  return {init_row_buffer(at, p, pad), init_row_buffer(at + pool_row_buffer(p), p, pad)};
}

// A plane's input rows in row buffers: two used in turn, row ih + 1 copied as row ih is handed out
// (a row handed out is read before the next is asked for). The reduction loads its row at other
// alignments than the copy stored it (the padding's pW on, a stride's even lanes), and a load that
// straddles stores still in flight cannot take its data from them (store-to-load forwarding): it
// waits until they reach the cache. Copied a row early, they have. Rows asked for out of order (a
// dilation above the stride) or skipped (a stride above the window) cost a copy more. Measured on Zen 5
// (AVX-512, 2 threads, paired in one process, float32), (1, 64, 112, 112) in cache and (32, 64, 112,
// 112): max pooling 3x3/s2/p1 forward with offsets 1.11-1.28x and 1.11-1.24x faster, average
// pooling 2x2/s2 1.40x and 1.19x, 3x3/s2/p1 1.32x and 1.46x; capped at AVX2 0.93-1.10x (batch 1, noisy)
// and 1.00-1.04x (batch 32).
template <class T>
class RowsAhead {
 public:
  // The buffers at `buffers` (two_row_buffers).
  RowsAhead(T* buffers, const T* in, const Pool2d& p, T pad)
      : in_(in), p_(p), buf_(two_row_buffers(buffers, p, pad)) {}

  const T* row(int64_t ih) {
    if (copied_ != ih) load_row(buf_[ih & 1], in_ + ih * p_.W, p_);
    if (ih + 1 < p_.H) load_row(buf_[(ih + 1) & 1], in_ + (ih + 1) * p_.W, p_);
    copied_ = ih + 1;
    return buf_[ih & 1];
  }

  // Past the buffers: the caller's scratch after them.
  void* end() const { return buf_[1] + pool_row_buffer(p_); }

 private:
  const T* in_;
  const Pool2d& p_;
  std::array<T*, 2> buf_;
  int64_t copied_ = -1;  // the row in buf_[copied_ & 1] ahead of its turn
};

template <class T>
void store_values(T* dst, Vec<T> v, int64_t n) {
  if (n >= L<T>) {
    simd::store(dst, v);
  } else {
    simd::store_partial(dst, v, n);
  }
}

// The first n lanes of an argmax vector, as int64 indices or uint8 offsets.
template <class T, class Dst>
void store_arg_values(Dst* dst, IxVec<T> v, int64_t n) {
  using W = std::conditional_t<std::is_same_v<Dst, int64_t>, I64Vec<T>, U8Vec<T>>;
  W w;
  if constexpr (std::is_same_v<Dst, int64_t>) {
    w = __builtin_convertvector(v, W);
  } else {
    w = narrow_offsets<T>(v);
  }
  // A whole vector in one store; only a row's last, partial one costs a copy of run-time length.
  if (n >= L<T>) {
    std::memcpy(dst, &w, sizeof(w));
  } else {
    std::memcpy(dst, &w, n * sizeof(Dst));
  }
}

// Max, NCHW. Padding is −inf, which `takes` never picks, so it cannot change a value; the index
// starts at each lane's first tap inside the row, as torch's scan does.

// Horizontal max of one buffered row: hv[ow] and, unless A is none, hc[ow]: the maximum's input
// column (indices) or its tap kw (offsets); whole vectors up to the padded output width.
template <class T, MaxArg A, int S>
void max_row(const T* buf, T* hv, Ix<T>* hc, const Pool2d& p) {
  const IxVec<T> lane_col = iota<T>() * static_cast<Ix<T>>(p.sW);
  for (int64_t ow = 0; ow < p.OW; ow += L<T>) {
    const T* base = buf + ow * p.sW;
    const int64_t start = ow * p.sW - p.pW;
    const IxVec<T> col0 = lane_col + static_cast<Ix<T>>(start);
    // Each lane starts at its first tap inside the row (kept while every tap is −inf, as torch's).
    IxVec<T> first{};
    if constexpr (A != MaxArg::none) {
      if (start < 0) {
        // ⌈−col / dW⌉, without a division (tens of cycles, on every row) where dW is 1.
        for (int64_t j = 0; j < L<T> && col0[j] < 0; ++j) {
          first[j] = p.dW == 1 ? -col0[j] : (-col0[j] + p.dW - 1) / p.dW;
        }
      }
    }
    const auto arg_of = [&](auto k) -> IxVec<T> {
      if constexpr (A == MaxArg::indices) return col0 + k * static_cast<Ix<T>>(p.dW);
      return IxVec<T>{} + k;
    };
    IxVec<T> arg = arg_of(first);
    Vec<T> m = simd::broadcast(-std::numeric_limits<T>::infinity());
    int64_t k = 0;
    if (start >= 0) {
      // Every lane's first tap is inside the row: the scan's first step takes it (or keeps −inf,
      // the same value, at the same tap), so it starts from it (max pooling forward 1.05-1.10x
      // values only, 1.08x with offsets; paired, Zen 3 AVX2, 3x3/s2 of 112x112 planes).
      m = load_strided<T, S>(base, p.sW);
      k = 1;
    }
    for (; k < p.kW; ++k) {
      const Vec<T> v = load_strided<T, S>(base + k * p.dW, p.sW);
      if constexpr (A == MaxArg::none) {
        m = scan_max<T>(v, m);
      } else {
        const auto take = takes_mask(v, m);
        m = take ? v : m;
        arg = take ? arg_of(static_cast<Ix<T>>(k)) : arg;
      }
    }
    simd::store(hv + ow, m);
    if constexpr (A != MaxArg::none) std::memcpy(hc + ow, &arg, sizeof(arg));
  }
}

// The argmax of tap kh (input row ih) from its row's hc: the flat index (indices) or kh·kW + kw.
template <class T, MaxArg A>
IxVec<T> window_arg(IxVec<T> hc, int64_t kh, int64_t ih, const Pool2d& p) {
  return hc + static_cast<Ix<T>>(A == MaxArg::indices ? ih * p.W : kh * p.kW);
}

// The plane kernels fetch the row kRowsAhead rows on while they work on one (csrc/cpu/prefetch.h):
// for reading, or for writing the gradient rows of the backward kernels. 4 to 16 rows ahead
// measured alike. Near a plane's end that row lies in the next plane (this thread's next unit of
// work), or, for the tensor's last plane, past the tensor: n values from row `row` of the `width`
// wide rows at `plane`, its address computed as an integer.
constexpr int64_t kRowsAhead = 8;
template <Access A = Access::read, class T>
[[gnu::always_inline]] inline void prefetch_row(const T* plane, int64_t row, int64_t width, int64_t n) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(plane) + static_cast<uintptr_t>(row * width) * sizeof(T);
  prefetch_range<A>(at, n * static_cast<int64_t>(sizeof(T)));
}

// ArgT: int64_t (indices) or uint8_t (offsets); ignored for values only.
template <class T, MaxArg A, int S, class ArgT>
void max_plane_impl(const T* in, T* out, ArgT* arg, const Pool2d& p, void* scratch) {
  const int64_t OWp = pool_padded_width(p);
  T* hv = static_cast<T*>(scratch);
  Ix<T>* hc = reinterpret_cast<Ix<T>*>(hv + p.H * OWp);
  RowsAhead<T> rows(reinterpret_cast<T*>(hc + p.H * OWp), in, p, -std::numeric_limits<T>::infinity());
  uint8_t* done = static_cast<uint8_t*>(rows.end());
  std::memset(done, 0, p.H);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const int64_t start = oh * p.sH - p.pH;
    const math::Taps t = math::window_taps(start, p.kH, p.dH, p.H);
    for (int64_t k = t.k0; k < t.k1; ++k) {
      const int64_t ih = start + k * p.dH;
      if (!done[ih]) {
        prefetch_row(in, ih + kRowsAhead, p.W, p.W);
        max_row<T, A, S>(rows.row(ih), hv + ih * OWp, hc + ih * OWp, p);
        done[ih] = 1;
      }
    }
    const int64_t ih0 = start + t.k0 * p.dH;
    if (t.k0 == t.k1) {
      // Every tap of this output row lies in the padding (dilation can do that): −inf, at torch's
      // starting index, its first tap at or past row and column 0.
      for (int64_t ow = 0; ow < p.OW; ++ow) {
        const int64_t ws = ow * p.sW - p.pW;
        const int64_t kw0 = math::window_taps(ws, p.kW, p.dW, p.W).k0;
        out[oh * p.OW + ow] = -std::numeric_limits<T>::infinity();
        if constexpr (A == MaxArg::indices) arg[oh * p.OW + ow] = ih0 * p.W + ws + kw0 * p.dW;
        if constexpr (A == MaxArg::offsets) arg[oh * p.OW + ow] = static_cast<uint8_t>(t.k0 * p.kW + kw0);
      }
      continue;
    }
    for (int64_t ow = 0; ow < p.OW; ow += L<T>) {
      Vec<T> m = simd::load(hv + ih0 * OWp + ow);
      IxVec<T> idx{};
      if constexpr (A != MaxArg::none) idx = window_arg<T, A>(load_ix<T>(hc + ih0 * OWp + ow), t.k0, ih0, p);
      for (int64_t k = t.k0 + 1; k < t.k1; ++k) {
        const int64_t ih = start + k * p.dH;
        const Vec<T> v = simd::load(hv + ih * OWp + ow);
        const auto take = takes_mask(v, m);
        m = take ? v : m;
        if constexpr (A != MaxArg::none) idx = take ? window_arg<T, A>(load_ix<T>(hc + ih * OWp + ow), k, ih, p) : idx;
      }
      store_values<T>(out + oh * p.OW + ow, m, p.OW - ow);
      if constexpr (A != MaxArg::none) store_arg_values<T>(arg + oh * p.OW + ow, idx, p.OW - ow);
    }
  }
}

// Max, NCHW, values only (no argmax to follow torch's scan): each output row reduces its window's
// input rows vertically into a row buffer, whole rows with stride-1 vectors, and then the buffer
// horizontally as max_row does. That reduces half as many rows horizontally (with strided loads) as
// the separable order above, which reduces every input row once (a row shared by two windows is
// loaded twice here, plainly), and copies no row. The maximum does not depend on the order of the
// scan, and a window holding a NaN still gives a NaN; only which of two equal values is taken (+0
// or −0) or which NaN (where several) may differ from torch's, never the value compared.
template <class T, int S>
void max_plane_values(const T* in, T* out, const Pool2d& p, void* scratch) {
  // Two row buffers used in turn, the next output row's reduced a row ahead (RowsAhead says why;
  // measured as there: in cache 1.12x faster, (32, 64, 112, 112) 1.02x, capped at AVX2 1.00x).
  const std::array<T*, 2> buf = two_row_buffers(static_cast<T*>(scratch), p, -std::numeric_limits<T>::infinity());
  T* hv = buf[1] + pool_row_buffer(p);  // one output row, whole vectors
  // Output row oh's window rows reduced vertically into buf[oh % 2]; false where every tap lies in
  // the padding (dilation can do that).
  const auto vertical = [&](int64_t oh) {
    const int64_t start = oh * p.sH - p.pH;
    const math::Taps t = math::window_taps(start, p.kH, p.dH, p.H);
    prefetch_row(in, start + kRowsAhead, p.W, p.sH * p.W);
    if (t.k0 == t.k1) return false;
    const T* row0 = in + (start + t.k0 * p.dH) * p.W;
    for (int64_t w = 0; w < p.W; w += L<T>) {
      const int64_t n = std::min(L<T>, p.W - w);
      const auto load = [&](const T* r) { return n == L<T> ? simd::load(r + w) : simd::load_partial(r + w, n); };
      Vec<T> m = load(row0);
      for (int64_t k = t.k0 + 1; k < t.k1; ++k) {
        const Vec<T> v = load(row0 + (k - t.k0) * p.dH * p.W);
        m = scan_max<T>(v, m);
      }
      store_values<T>(buf[oh % 2] + p.pW + w, m, n);  // the padding around the row stays −inf
    }
    return true;
  };
  bool inside = vertical(0);  // a plane has at least one output row (csrc/pool.h checks)
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const bool next_inside = oh + 1 < p.OH && vertical(oh + 1);
    if (inside) {
      max_row<T, MaxArg::none, S>(buf[oh % 2], hv, nullptr, p);
      copy_row(out + oh * p.OW, hv, p.OW);
    } else {
      std::fill(out + oh * p.OW, out + (oh + 1) * p.OW, -std::numeric_limits<T>::infinity());
    }
    inside = next_inside;
  }
}

template <class T, MaxArg A, class ArgT>
void max_plane_stride(const T* in, T* out, ArgT* arg, const Pool2d& p, void* scratch) {
  column_stride_switch(p.sW, [&]<int S>() {
    if constexpr (A == MaxArg::none) {
      max_plane_values<T, S>(in, out, p, scratch);
    } else {
      max_plane_impl<T, A, S>(in, out, arg, p, scratch);
    }
  });
}

template <class T>
void max_plane(const T* in, T* out, int64_t* indices, uint8_t* offsets, const Pool2d& p, void* scratch) {
  if (indices != nullptr) {
    max_plane_stride<T, MaxArg::indices>(in, out, indices, p, scratch);
  } else if (offsets != nullptr) {
    max_plane_stride<T, MaxArg::offsets>(in, out, offsets, p, scratch);
  } else {
    max_plane_stride<T, MaxArg::none>(in, out, offsets, p, scratch);
  }
}

// Max backward, NCHW, from offsets. Input row ih gathers from the output rows oh whose window has a
// row tap kh landing on it (math::tap_landing_on), in phases along the row (PoolGatherRow,
// csrc/cpu/simd/pool.h): phase r sums, over those rows and the taps kw of that phase (its
// "terms"), the output gradient at column m − shift(kw) where the offset there is kh·kW + kw. Phases
// of stride 2 interleave into the row with shuffles; other strides > 1 go a lane at a time.
template <class T>
inline void interleave2(T* dst, Vec<T> even, Vec<T> odd, int64_t n) {
  store_values<T>(dst, simd::zip<T, 0>(even, odd), n);
  if (n > L<T>) store_values<T>(dst + L<T>, simd::zip<T, 1>(even, odd), n - L<T>);
}

template <class T>
struct GatherTerm {
  const T* grad;         // the output row's gradients, shifted: lane m reads output column m − shift
  const uint8_t* taps;   // its offsets, shifted alike
  Ix<T> code;            // kh·kW + kw
  int64_t phase;
};

template <class T>
inline Vec<T> gather_terms(const GatherTerm<T>* t, int64_t n, int64_t m) {
  Vec<T> s{};
  for (int64_t i = 0; i < n; ++i) {
    const auto hit = load_offsets<T>(t[i].taps + m) == t[i].code;
    s += hit ? simd::load(t[i].grad + m) : Vec<T>{};
  }
  return s;
}

template <class T, int S>
void max_backward_plane_impl(const T* grad_out, const uint8_t* offsets, T* grad_in, const Pool2d& p, void* scratch) {
  const PoolGatherRow gr = pool_gather_row(p);
  const int64_t sW = S > 0 ? S : p.sW;
  // The output plane in gather layout: zero gradients around each row (their offsets: any).
  T* gs = static_cast<T*>(scratch);
  uint8_t* os = reinterpret_cast<uint8_t*>(gs + p.OH * gr.row);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    prefetch_row(grad_out, oh + kRowsAhead, p.OW, p.OW);
    T* g = gs + oh * gr.row;
    std::fill(g, g + gr.pad, T(0));
    std::copy(grad_out + oh * p.OW, grad_out + (oh + 1) * p.OW, g + gr.pad);
    std::fill(g + gr.pad + p.OW, g + gr.row, T(0));
    std::memcpy(os + oh * gr.row + gr.pad, offsets + oh * p.OW, p.OW);
  }
  // Per input row, the output rows with a tap on it: (oh, kh) for oh ascending, at most kH of them.
  struct RowTap {
    int64_t oh, kh;
  };
  const size_t plane_bytes = static_cast<size_t>(p.OH * gr.row) * (sizeof(T) + 1);
  RowTap* row_taps = reinterpret_cast<RowTap*>(static_cast<char*>(scratch) + (plane_bytes + 7) / 8 * 8);
  int64_t* row_count = reinterpret_cast<int64_t*>(row_taps + p.H * p.kH);
  std::fill(row_count, row_count + p.H, 0);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    for (int64_t kh = 0; kh < p.kH; ++kh) {
      const int64_t ih = oh * p.sH - p.pH + kh * p.dH;
      if (ih >= 0 && ih < p.H) row_taps[ih * p.kH + row_count[ih]++] = {oh, kh};
    }
  }
  // The column taps kw by phase (stably: kw ascending within one), with their shifts.
  struct ColTap {
    int64_t kw, shift, phase;
  };
  ColTap col_taps[math::kMaxOffsetTaps];  // kW <= kH·kW <= 256
  for (int64_t kw = 0; kw < p.kW; ++kw) {
    const int64_t q = kw * p.dW - p.pW, shift = pool_floor_div(q, sW);
    col_taps[kw] = {kw, shift, q - shift * sW};
  }
  std::stable_sort(col_taps, col_taps + p.kW, [](const ColTap& a, const ColTap& b) { return a.phase < b.phase; });
  const int64_t even_taps = std::find_if(col_taps, col_taps + p.kW, [](const ColTap& t) { return t.phase != 0; }) -
                            col_taps;
  // An input row's terms: phase by phase, each tap kw over its rows (a fixed summation order).
  GatherTerm<T> terms[math::kMaxOffsetTaps];
  for (int64_t ih = 0; ih < p.H; ++ih) {
    T* gi = grad_in + ih * p.W;
    prefetch_row<Access::write>(grad_in, ih + kRowsAhead, p.W, p.W);
    const RowTap* rows = row_taps + ih * p.kH;
    const int64_t nr = row_count[ih], n = nr * p.kW;
    if (n == 0) {  // no window reaches this row
      std::fill(gi, gi + p.W, T(0));
      continue;
    }
    for (int64_t j = 0; j < p.kW; ++j) {
      const ColTap& c = col_taps[j];
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t at = rows[i].oh * gr.row + gr.pad - c.shift;
        terms[j * nr + i] = {gs + at, os + at, static_cast<Ix<T>>(rows[i].kh * p.kW + c.kw), c.phase};
      }
    }
    const int64_t even = even_taps * nr;  // phase 0's terms come first
    for (int64_t m = 0; m * sW < p.W; m += L<T>) {
      if constexpr (S == 1) {
        store_values<T>(gi + m, gather_terms(terms, n, m), p.W - m);
      } else if constexpr (S == 2) {
        interleave2<T>(gi + 2 * m, gather_terms(terms, even, m), gather_terms(terms + even, n - even, m),
                       p.W - 2 * m);
      } else {
        for (int64_t i = 0, r = 0; r < sW; ++r) {
          int64_t j = i;
          while (j < n && terms[j].phase == r) ++j;
          const Vec<T> s = gather_terms(terms + i, j - i, m);
          for (int64_t lane = 0; lane < L<T> && (m + lane) * sW + r < p.W; ++lane) gi[(m + lane) * sW + r] = s[lane];
          i = j;
        }
      }
    }
  }
}

// Max backward, NCHW, from offsets, where windows overlap: a scatter into the zeroed padded plane
// (csrc/cpu/simd/pool.h), output rows in order, each plane row copied out once no later window
// reaches it. Each output is a few scalar operations, where the gather spends a vector's terms on
// every covering window: measured on Zen 3 (AVX2, paired, one process) against the gather, 3×3/s2
// 1.13-1.19x faster (float32 and float64), 3×3/s1 1.38x, 5×5/s3 2.3x; 2×2/s2 (no overlap) 0.78x,
// which therefore gathers.
template <class T>
void max_backward_plane_scatter(const T* grad_out, const uint8_t* offsets, T* grad_in, const Pool2d& p,
                                void* scratch) {
  const PoolScatterPlane s = pool_scatter_plane(p);
  T* plane = static_cast<T*>(scratch);
  std::fill(plane, plane + s.rows * s.cols, T(0));
  const int64_t taps = p.kH * p.kW;
  int64_t at[math::kMaxOffsetTaps];  // offset kh·kW + kw -> its place from the window's start
  for (int64_t o = 0; o < taps; ++o) at[o] = (o / p.kW) * p.dH * s.cols + (o % p.kW) * p.dW;
  // Windows `passes` apart along a row do not overlap (passes·sW reaches a window's span), so the
  // row's windows are added in that many interleaved passes: consecutive adds then (but for a
  // pass's last and the next one's first, in rows of few windows) go to different places. An add
  // into the place the previous one wrote has its load wait on that store, or, where the CPU ran
  // the load ahead of the store, redone: a cost in time only (3×3/s2 on (32, 64, 112, 112), the
  // Xeon: the backward 1.03x faster). The order of the adds into one place changes within a row,
  // as any order of a sum may.
  const int64_t passes = ((p.kW - 1) * p.dW + p.sW) / p.sW;
  // Each plane row is copied out once no later window reaches it (windows of output row oh + 1 start
  // at row (oh + 1)·sH), so the stores to the input gradient go out between the adds, rather than
  // in one burst after them that the adds of the next plane waited behind. Paired, one process,
  // 3×3/s2/p1 on (32, 64, 112, 112) and (8, 64, 112, 112) on the Zen 4 VM: 1.03-1.07x and 0.99-1.17x
  // (1.10-1.17x in three runs of four) faster at AVX-512, 1.06x and 1.08-1.17x at AVX2; into reused
  // rather than fresh memory 1.09-1.23x.
  int64_t copied = p.pH;  // plane rows before this one are copied out (the padding's need not be)
  auto copy_out = [&](int64_t end) {
    for (; copied < std::min(end, p.H + p.pH); ++copied) {
      copy_row(grad_in + (copied - p.pH) * p.W, plane + copied * s.cols + p.pW, p.W);
    }
  };
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    T* window_row = plane + oh * p.sH * s.cols;
    const T* g = grad_out + oh * p.OW;
    const uint8_t* off = offsets + oh * p.OW;
    for (int64_t first = 0; first < passes; ++first) {
      for (int64_t ow = first; ow < p.OW; ow += passes) {
        if (off[ow] < taps) window_row[ow * p.sW + at[off[ow]]] += g[ow];
      }
    }
    copy_out((oh + 1) * p.sH);
  }
  copy_out(p.H + p.pH);
}

template <class T>
void max_backward_plane(const T* grad_out, const uint8_t* offsets, T* grad_in, const Pool2d& p, void* scratch) {
  if (pool_backward_scatters(p)) {
    max_backward_plane_scatter<T>(grad_out, offsets, grad_in, p, scratch);
    return;
  }
  column_stride_switch(p.sW, [&]<int S>() { max_backward_plane_impl<T, S>(grad_out, offsets, grad_in, p, scratch); });
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
  RowsAhead<T> rows(cw + OWp, in, p, T(0));
  uint8_t* done = static_cast<uint8_t*>(rows.end());
  std::memset(done, 0, p.H);
  column_divisors(cw, p, mode);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
    for (int64_t ih = h.lo; ih < h.hi; ++ih) {
      if (!done[ih]) {
        prefetch_row(in, ih + kRowsAhead, p.W, p.W);
        sum_row<T, S>(rows.row(ih), hv + ih * OWp, p);
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
  column_stride_switch(p.sW, [&]<int S>() { avg_plane_impl<T, S>(in, out, p, mode, scratch); });
}

// grad_in[ih, iw] = Σ over the windows (oh, ow) covering it of grad_out[oh, ow] / divisor(oh, ow).
// Separably: each output row's scaled gradients spread along the columns they cover (r_oh, in
// scratch), then each input row gathers the rows r_oh of the windows covering it and is written once.
// One plane, one thread: a fixed summation order.
template <class T>
void avg_backward_plane(const T* grad_out, T* grad_in, const Pool2d& p, const AvgMode& mode, void* scratch) {
  const int64_t OWp = pool_padded_width(p);
  T* cw = static_cast<T*>(scratch);
  T* gs = cw + OWp;          // one output row's scaled gradients
  T* rows = gs + OWp;        // r_oh: OH rows of W
  column_divisors(cw, p, mode);
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    const T dh = row_divisor<T>(oh, p, mode);
    for (int64_t ow = 0; ow < p.OW; ow += L<T>) {
      const int64_t n = std::min(L<T>, p.OW - ow);
      simd::store(gs + ow, simd::load_partial(grad_out + oh * p.OW + ow, n) / (simd::load(cw + ow) * dh));
    }
    T* r = rows + oh * p.W;
    std::fill(r, r + p.W, T(0));
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
      for (int64_t iw = w.lo; iw < w.hi; ++iw) r[iw] += gs[ow];
    }
  }
  for (int64_t ih = 0; ih < p.H; ++ih) {
    const math::Cover ch = math::covering_outputs(ih, p.kH, p.sH, p.pH, p.OH);
    T* gi = grad_in + ih * p.W;
    for (int64_t iw = 0; iw < p.W; iw += L<T>) {
      const int64_t n = std::min(L<T>, p.W - iw);
      Vec<T> s{};
      for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
        s += n == L<T> ? simd::load(rows + oh * p.W + iw) : simd::load_partial(rows + oh * p.W + iw, n);
      }
      store_values<T>(gi + iw, s, n);
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

// For the channels_last row kernels, as they reduce window ow of output row oh (its rows from hs, its
// columns from ws): the sH input rows after oh's window, which row oh + 1 reads and row oh did not
// (with a dilation, or a stride beyond the window, also rows between taps that no window reads: a
// wasted fetch, never a wrong value), their pixels [ws, ws + sW), so that the next row's input
// streams in while this one computes; window after window, the rows are fetched but for the last
// window's tail. Where: csrc/cpu/pool.cpp, streams_from_memory. Always inlined (csrc/cpu/prefetch.h
// says why).
template <class T>
[[gnu::always_inline]] inline void prefetch_next_rows(const T* in, const Pool2d& p, int64_t C, int64_t hs,
                                                      int64_t ws) {
  const int64_t r0 = hs + std::max((p.kH - 1) * p.dH + 1, p.sH);
  for (int64_t r = std::max<int64_t>(r0, 0); r < std::min(r0 + p.sH, p.H); ++r) {
    prefetch_range(in + (r * p.W + std::max<int64_t>(ws, 0)) * C, p.sW * C * static_cast<int64_t>(sizeof(T)));
  }
}

template <class T, MaxArg A, class ArgT>
void max_row_cl_impl(const T* in, T* out, ArgT* arg, const Pool2d& p, int64_t C, int64_t oh, bool ahead) {
  const int64_t hs = oh * p.sH - p.pH;
  const math::Taps th = math::window_taps(hs, p.kH, p.dH, p.H);
  // The argmax of tap (kh, kw): its flat index in the plane, or its offset in the window.
  const auto arg_of = [&](int64_t kh, int64_t kw, int64_t ws) {
    return A == MaxArg::indices ? (hs + kh * p.dH) * p.W + ws + kw * p.dW : kh * p.kW + kw;
  };
  for (int64_t ow = 0; ow < p.OW; ++ow) {
    const int64_t ws = ow * p.sW - p.pW;
    const math::Taps tw = math::window_taps(ws, p.kW, p.dW, p.W);
    const int64_t first = arg_of(th.k0, tw.k0, ws);
    if (ahead) prefetch_next_rows(in, p, C, hs, ws);
    T* o = out + ow * C;
    ArgT* oi = A != MaxArg::none ? arg + ow * C : nullptr;
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
          const T* src = in + (ih * p.W + ws + kw * p.dW) * C + c;
          const Ix<T> a = static_cast<Ix<T>>(arg_of(kh, kw, ws));
          for (int j = 0; j < U; ++j) {
            const Vec<T> v = simd::load(src + j * L<T>);
            const auto take = takes_mask(v, m[j]);
            m[j] = take ? v : m[j];
            if constexpr (A != MaxArg::none) idx[j] = take ? IxVec<T>{} + a : idx[j];
          }
        }
      }
      for (int j = 0; j < U; ++j) {
        simd::store(o + c + j * L<T>, m[j]);
        if constexpr (A == MaxArg::indices) store_indices<T>(oi + c + j * L<T>, idx[j]);
        if constexpr (A == MaxArg::offsets) store_offsets<T>(oi + c + j * L<T>, idx[j]);
      }
    });
    for (int64_t c1 = c; c1 < C; ++c1) {
      const int64_t c = c1;
      T m = -std::numeric_limits<T>::infinity();
      int64_t idx = first;
      for (int64_t kh = th.k0; kh < th.k1; ++kh) {
        const int64_t ih = hs + kh * p.dH;
        for (int64_t kw = tw.k0; kw < tw.k1; ++kw) {
          const T v = in[(ih * p.W + ws + kw * p.dW) * C + c];
          if (takes(v, m)) {
            m = v;
            idx = arg_of(kh, kw, ws);
          }
        }
      }
      o[c] = m;
      if constexpr (A != MaxArg::none) oi[c] = static_cast<ArgT>(idx);
    }
  }
}

template <class T>
void max_row_cl(const T* in, T* out, int64_t* indices, uint8_t* offsets, const Pool2d& p, int64_t C, int64_t oh,
                bool ahead) {
  if (indices != nullptr) {
    max_row_cl_impl<T, MaxArg::indices>(in, out, indices, p, C, oh, ahead);
  } else if (offsets != nullptr) {
    max_row_cl_impl<T, MaxArg::offsets>(in, out, offsets, p, C, oh, ahead);
  } else {
    max_row_cl_impl<T, MaxArg::none>(in, out, offsets, p, C, oh, ahead);
  }
}

// Max backward, channels_last, from offsets: input row ih of one image, vectors along C. Pixel
// (ih, iw) sums over the windows (oh, ow) with taps (kh, kw) landing on it, oh then ow ascending, the
// output gradients whose offset is kh·kW + kw.
template <class T>
void max_backward_row_cl(const T* grad_out, const uint8_t* offsets, T* grad_in, const Pool2d& p, int64_t C,
                         int64_t ih) {
  struct Tap {
    int64_t o, k;  // the output row (column) and its window's tap landing on ih (iw)
  };
  Tap rows[math::kMaxOffsetTaps], cols[math::kMaxOffsetTaps];  // kH, kW <= 256 (offsets are bytes)
  int64_t nr = 0;
  const math::Cover ch = math::covering_outputs(ih, (p.kH - 1) * p.dH + 1, p.sH, p.pH, p.OH);
  for (int64_t oh = ch.o0; oh < ch.o1; ++oh) {
    const int64_t kh = math::tap_landing_on(ih, oh, p.kH, p.sH, p.pH, p.dH);
    if (kh >= 0) rows[nr++] = {oh, kh};
  }
  for (int64_t iw = 0; iw < p.W; ++iw) {
    int64_t nc = 0;
    const math::Cover cw = math::covering_outputs(iw, (p.kW - 1) * p.dW + 1, p.sW, p.pW, p.OW);
    for (int64_t ow = cw.o0; ow < cw.o1; ++ow) {
      const int64_t kw = math::tap_landing_on(iw, ow, p.kW, p.sW, p.pW, p.dW);
      if (kw >= 0) cols[nc++] = {ow, kw};
    }
    T* gi = grad_in + iw * C;
    const int64_t c = for_channel_blocks<T>(C, [&](int64_t c, auto unroll) {
      constexpr int U = decltype(unroll)::value;
      Vec<T> s[U] = {};
      for (int64_t i = 0; i < nr; ++i) {
        for (int64_t j = 0; j < nc; ++j) {
          const int64_t at = (rows[i].o * p.OW + cols[j].o) * C + c;
          const Ix<T> code = static_cast<Ix<T>>(rows[i].k * p.kW + cols[j].k);
          for (int u = 0; u < U; ++u) {
            const auto hit = load_offsets<T>(offsets + at + u * L<T>) == code;
            s[u] += hit ? simd::load(grad_out + at + u * L<T>) : Vec<T>{};
          }
        }
      }
      for (int u = 0; u < U; ++u) simd::store(gi + c + u * L<T>, s[u]);
    });
    for (int64_t c1 = c; c1 < C; ++c1) {
      T s = 0;
      for (int64_t i = 0; i < nr; ++i) {
        for (int64_t j = 0; j < nc; ++j) {
          const int64_t at = (rows[i].o * p.OW + cols[j].o) * C + c1;
          if (offsets[at] == rows[i].k * p.kW + cols[j].k) s += grad_out[at];
        }
      }
      gi[c1] = s;
    }
  }
}

template <class T>
void avg_row_cl(const T* in, T* out, const Pool2d& p, const AvgMode& mode, int64_t C, int64_t oh, bool ahead) {
  const math::AvgSpan h = math::avg_span(oh, p.kH, p.sH, p.pH, p.H);
  for (int64_t ow = 0; ow < p.OW; ++ow) {
    const math::AvgSpan w = math::avg_span(ow, p.kW, p.sW, p.pW, p.W);
    if (ahead) prefetch_next_rows(in, p, C, oh * p.sH - p.pH, ow * p.sW - p.pW);
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
constexpr PoolKernel<T> table() {
  return {&max_plane<T>,  &max_backward_plane<T>,  &avg_plane<T>,  &avg_backward_plane<T>,
          &max_row_cl<T>, &max_backward_row_cl<T>, &avg_row_cl<T>, &avg_backward_row_cl<T>};
}

}  // namespace

extern const PerDtype<PoolKernel> pool_kernels = {table<float>(), table<double>()};

}  // namespace hotkernels::cpu::HK_ISA
