// GEMM micro-kernels on SIMD vectors (the table's contract: csrc/cpu/simd/gemm.h).
#include "cpu/simd/gemm.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "cpu/simd/simd.h"
#include "cpu/simd/vmath.h"
#include "static_switch.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

// Independent FMA chains that keep the FMA units busy: a result is ready 4 cycles after issue and
// two units issue each cycle (Zen 1-5, Intel's AVX2 and AVX-512 cores alike).
constexpr int64_t kFmaChains = 8;

// Whether `sets` sets of MC × NV accumulators, a step's NV B vectors and a broadcast of A leave a
// vector register free: where they take all of them (AVX2's 4 × 3: 12 + 3 + 1 = 16), GCC keeps
// accumulators on the stack inside the loop once it overlaps two steps or two sets.
constexpr int64_t kRegisters = HK_VEC_BYTES == 64 ? 32 : 16;
constexpr bool leaves_a_register(int64_t sets, int64_t MC, int64_t NV) {
  return sets * MC * NV + NV + 1 < kRegisters;
}

// One MR × NV·L block of C in MR·NV vector registers: per step t, NV vector loads of B and MR
// broadcasts of A feed MR·NV FMAs. With kNext it also fetches a line of `next` into L2 per step.
// Rows::offsets: B's rows through `offsets`, else ldb apart. A row at a fixed stride saves a load
// and an address computation per step: on the Xeon (paired with offsets t·ldb), the LSTM's products
// ran 3-7% faster and conv2d's 3×3 layers 1-5%, on AVX-512 and on AVX2. Rows::gathered: step t is
// B's row steps[t] (a subset of the steps) and A's row u of step t lies at a_rows[u][offsets[t]]
// (a row of its own per u: conv2d's direct pass, pixels as A's rows; csrc/cpu/simd/gemm.h).
// A step's own work besides its FMAs (its B row's address, its prefetches, the loop's test) is
// paid per U steps on shapes of fewer than 24 FMAs a step (the 16-register shapes' 12): the loop
// issues fewer instructions per FMA. On the Xeon capped at AVX2, U = 2 ran a 2048² product 6% and conv2d's
// deep 3×3 layers 10-13% faster (U = 4 no better); AVX-512's 24-FMA shapes gain nothing from it.
// Not where the registers are full (leaves_a_register): AVX2's 4 × 3 kept two accumulators on the
// stack in its loop at U = 2, and ran 1.1-1.4x faster at U = 1 (Zen 3, one thread, the kernel
// alone); paired ops: conv2d 3 -> 64 7×7/s2 forward+backward 1.03x (its 3-row input gradient),
// 3 × 512 × 2048 1.04-1.08x, 256 × 512 × 24 1.12x, nn.LSTM of batch 4 forward+backward 1.09x.
// A block's rows are MR apart in A's packing (its step t at a + t·MR); the kernel computes the first
// MC of them (MC ≤ MR: a partial last block, below) in S sets of accumulators, step t adding into
// set t mod S (S = 2 where MC·NV chains are fewer than kFmaChains and two sets leave a register).
enum class Rows { strided, offsets, gathered };
// NRB: B's row stride where it is known at compile time (gathered: a packed panel of the shape's
// width, whatever NV a partial block computes), else 0 (ldb).
template <class T, int64_t MR, int64_t MC, int64_t S, int64_t NV, bool kNext, Rows R, int64_t NRB>
inline void micro_kernel(const T* __restrict__ a, const T* const* __restrict__ a_rows, const T* __restrict__ b,
                         int64_t ldb, const int64_t* __restrict__ offsets, const int64_t* __restrict__ steps,
                         T* __restrict__ c, int64_t ldc, int64_t mc, int64_t nc, int64_t r, bool accumulate,
                         const T* next) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  V acc[S][MC][NV];
#pragma GCC unroll 2
  for (int64_t s = 0; s < S; ++s)
#pragma GCC unroll 12
    for (int64_t u = 0; u < MC; ++u)
#pragma GCC unroll 8
      for (int64_t v = 0; v < NV; ++v) acc[s][u][v] = V{};
  // The C block is read (accumulate) and written after the loop: fetch its lines now, while the
  // FMAs run, rather than stall on rows that lie a page apart.
  for (int64_t u = 0; u < mc; ++u) {
    for (int64_t v = 0; v < NV * L; v += kLineValues<T>) __builtin_prefetch(c + u * ldc + v, 1);
  }
  // The B run and A values D steps ahead are fetched while this step computes: with B streaming
  // from L2 the loads otherwise stall the FMAs (measured on Zen 5: ~60% → ~68% of the FMA peak).
  // The last D steps have nothing left to fetch: a loop of their own, without the prefetches.
  constexpr int64_t D = 16, U = S == 2 || (MC * NV < 24 && leaves_a_register(1, MC, NV)) ? 2 : 1;
  constexpr int64_t kALines = (U * MR * static_cast<int64_t>(sizeof(T)) + 63) / 64;  // A lines per U steps
  auto step_of = [&](int64_t t) __attribute__((always_inline)) {
    return R == Rows::gathered ? steps[t] : t;
  };
  const T* base[MC];  // gathered: each row's own A (a row past mc reads the first: its sums are dropped)
  for (int64_t u = 0; u < MC && R == Rows::gathered; ++u) base[u] = a_rows[u < mc ? u : 0];
  auto row = [&](int64_t t) __attribute__((always_inline)) {
    return R == Rows::offsets ? b + offsets[t] : b + step_of(t) * (NRB > 0 ? NRB : ldb);
  };
  auto step = [&](int64_t t, int64_t set) __attribute__((always_inline)) {
    const T* bt = row(t);
    const T* at = R == Rows::gathered ? nullptr : a + step_of(t) * MR;  // gathered: A through base[]
    if constexpr (kNext) __builtin_prefetch(next + t * kLineValues<T>, 0, 2);  // into L2
    V bv[NV];
#pragma GCC unroll 8
    for (int64_t v = 0; v < NV; ++v) bv[v] = simd::load(bt + v * L);
#pragma GCC unroll 12
    for (int64_t u = 0; u < MC; ++u) {
      const V av = simd::broadcast(R == Rows::gathered ? base[u][offsets[t]] : at[u]);
#pragma GCC unroll 8
      for (int64_t v = 0; v < NV; ++v) acc[set][u][v] += av * bv[v];
    }
  };
  int64_t t = 0;
  for (; t + D + U <= r; t += U) {
#pragma GCC unroll 2
    for (int64_t s = 0; s < U; ++s) {
      const T* bp = row(t + D + s);
      for (int64_t v = 0; v < NV * L; v += kLineValues<T>) __builtin_prefetch(bp + v);
    }
    for (int64_t i = 0; i < kALines && R != Rows::gathered; ++i) {
      __builtin_prefetch(a + step_of(t + D) * MR + i * kLineValues<T>);  // (gathered A lies scattered)
    }
#pragma GCC unroll 2
    for (int64_t s = 0; s < U; ++s) step(t + s, s % S);
  }
  for (; t < r; ++t) step(t, 0);
  if constexpr (S == 2) {
#pragma GCC unroll 12
    for (int64_t u = 0; u < MC; ++u)
#pragma GCC unroll 8
      for (int64_t v = 0; v < NV; ++v) acc[0][u][v] += acc[1][u][v];
  }
  // The rows written are the first mc, but the loops run over the compile-time MC and stop at mc: an
  // accumulator indexed by a run-time row made GCC keep them all in memory (~1,100 stack accesses in
  // AVX2's float 6 × 2 kernel, 1 now), stored at entry and reloaded at exit on every call. Measured on
  // Zen 3 (AVX2, one thread, kernel alone): 10 row blocks × 16 panels of 64 steps 80 -> 89 GFLOP/s, of
  // 256 steps 95 -> 98, of 1024 steps 99 -> 100; paired ops (2 threads, one process): LSTMCell(256, 512)
  // of batch 64 forward+backward 1.05x faster, LSTMCell(1024, 1024) batch 256 1.03x, conv2d 3×3 64 @56
  // and 256 @14 forward+backward 1.02-1.03x, nn.LSTM and 2048² unchanged (long reductions).
  if (nc == NV * L) {
#pragma GCC unroll 12
    for (int64_t u = 0; u < MC; ++u) {
      if (u == mc) break;
      T* cu = c + u * ldc;
#pragma GCC unroll 8
      for (int64_t v = 0; v < NV; ++v) {
        simd::store(cu + v * L, accumulate ? simd::load(cu + v * L) + acc[0][u][v] : acc[0][u][v]);
      }
    }
    return;
  }
#pragma GCC unroll 12
  for (int64_t u = 0; u < MC; ++u) {  // a partial block of columns: through a buffer
    if (u == mc) break;
    T row[NV * L];
    for (int64_t v = 0; v < NV; ++v) simd::store(row + v * L, acc[0][u][v]);
    T* cu = c + u * ldc;
    for (int64_t v = 0; v < nc; ++v) cu[v] = accumulate ? cu[v] + row[v] : row[v];
  }
}

// f.template operator()<V>() for V = v, one of 1..N.
template <int64_t N, class F>
void with_vectors(int64_t v, F&& f) {
  [&]<int64_t... I>(std::integer_sequence<int64_t, I...>) { static_switch<(I + 1)...>(v, f); }(
      std::make_integer_sequence<int64_t, N>{});
}

template <class T, int64_t MR, int64_t NV, Rows R>
void gemm_blocks(const T* a, const T* const* a_rows, int64_t a_stride, const T* b, int64_t ldb, const int64_t* offsets,
                 const int64_t* steps, T* c, int64_t ldc, int64_t m, int64_t n, int64_t r, bool accumulate,
                 const T* next) {
  // `next` (the caller's next panel: r steps of NR values) is fetched a line per step by the calls
  // of the last row blocks, as many as it has lines per step: it arrives just before it is used,
  // rather than displace this call's operands from L2 long before (fetched from the first row
  // block on, 2048² and 1600 × 256 × 2048 ran 1-3% slower than without it).
  constexpr int64_t NR = NV * simd::kLanes<T>, kLine = kLineValues<T>, kLinesPerStep = (NR + kLine - 1) / kLine;
  constexpr int64_t kNrb = R == Rows::gathered ? NR : 0;
  auto rows_of = [&](int64_t i) { return R == Rows::gathered ? a_rows + i : nullptr; };
  const int64_t lead = std::max<int64_t>(0, (m + MR - 1) / MR - kLinesPerStep);
  for (int64_t i = 0; i < m; i += MR) {
    const int64_t blk = i / MR;
    for (int64_t j = 0; j < n; j += NR) {
      const T *ai = a + blk * a_stride, *bj = b + j;
      T* cij = c + i * ldc + j;
      const int64_t mc = std::min(MR, m - i), nc = std::min(NR, n - j);
      // A partial last block of columns loads and computes only the vectors that cover it: the last
      // 8 of 392 columns (a 3×3 conv2d at 7×7, batch 8) one vector of 12 × 2's two, the last 32 of
      // 512 (an LSTM's gate, hidden 512) two of 8 × 3's three. Measured on Zen 4 (AVX-512, 2
      // threads, paired in one process, against whole blocks): 512 × 4608 × 392 1.06-1.08x, 2048 ×
      // 1600 × 512 1.03x, 1600 × 256 × 2048 1.02x, conv2d 512 -> 512 3×3 @7 forward 1.03-1.04x,
      // nn.LSTM(256, 512, 2) B32 T50 inference 1.01-1.02x; products without a partial block unchanged.
      const int64_t nv = (nc + simd::kLanes<T> - 1) / simd::kLanes<T>;
      auto run = [&]<int64_t MC>() {
        with_vectors<NV>(nv, [&]<int64_t NC>() {
          constexpr int64_t S = MC * NC < kFmaChains && leaves_a_register(2, MC, NC) ? 2 : 1;
          if (next == nullptr || blk < lead) {  // a loop without the prefetch, not one that tests for it
            micro_kernel<T, MR, MC, S, NC, false, R, kNrb>(ai, rows_of(i), bj, ldb, offsets, steps, cij, ldc, mc, nc,
                                                           r, accumulate, nullptr);
          } else {
            micro_kernel<T, MR, MC, S, NC, true, R, kNrb>(ai, rows_of(i), bj, ldb, offsets, steps, cij, ldc, mc, nc,
                                                          r, accumulate, next + (blk - lead) * r * kLine);
          }
        });
      };
      // A partial last block computes only the rows that cover it (computed_rows).
      const int64_t rows = computed_rows(mc, MR);
      if constexpr (MR > 2) {
        if (rows == 2) {
          run.template operator()<2>();
          continue;
        }
      }
      if constexpr (MR > 4) {
        if (rows == 4) {
          run.template operator()<4>();
          continue;
        }
      }
      run.template operator()<MR>();
    }
  }
}

template <class T, int64_t MR, int64_t NV>
void gemm(const T* a, const T* const* a_rows, int64_t a_stride, const T* b, int64_t ldb, const int64_t* offsets,
          const int64_t* steps, T* c, int64_t ldc, int64_t m, int64_t n, int64_t r, bool accumulate, const T* next) {
  const Rows rows = a_rows != nullptr ? Rows::gathered : offsets != nullptr ? Rows::offsets : Rows::strided;
  static_switch<Rows::strided, Rows::offsets, Rows::gathered>(rows, [&]<Rows R>() {
    gemm_blocks<T, MR, NV, R>(a, a_rows, a_stride, b, ldb, offsets, steps, c, ldc, m, n, r, accumulate, next);
  });
}

template <class T, int64_t MR, int64_t NV>
constexpr GemmKernel<T> shape(double speed = 1.0) {
  return {&gemm<T, MR, NV>, MR, NV * simd::kLanes<T>, simd::kLanes<T>, speed};
}

// The integer vector whose lanes index a vector of T (for __builtin_shuffle's masks).
typedef int64_t vint64 __attribute__((vector_size(HK_VEC_BYTES)));
template <class T> struct IndexOf;
template <> struct IndexOf<float> { using vec = simd::vint32; using lane = int32_t; };
template <> struct IndexOf<double> { using vec = vint64; using lane = int64_t; };

// Shuffle masks of one transpose stage (below), over the 2L lanes of (a, b): lanes j with bit s set
// take the other row's lanes, those without keep their own.
template <class T, int64_t S, size_t... J>
constexpr typename IndexOf<T>::vec upper_mask(std::index_sequence<J...>) {  // row p: a[j], or b[j − s] where j has bit s
  using I = typename IndexOf<T>::lane;
  constexpr int64_t L = simd::kLanes<T>;
  return typename IndexOf<T>::vec{static_cast<I>((J & S) ? L + J - S : J)...};
}
template <class T, int64_t S, size_t... J>
constexpr typename IndexOf<T>::vec lower_mask(std::index_sequence<J...>) {  // row p + s: a[j + s], or b[j] where j has bit s
  using I = typename IndexOf<T>::lane;
  constexpr int64_t L = simd::kLanes<T>;
  return typename IndexOf<T>::vec{static_cast<I>((J & S) ? L + J : J + S)...};
}

// r[i][j] → r[j][i] within each W-lane group of W vectors (W a power of two, at most L): for each
// bit s < W of the lane index, rows p and p + s (p without bit s) swap the s-wide blocks where row
// and column bits differ. The swaps of different bits commute and together exchange the row index
// with the lane index's low bits: afterwards r[p][W·h + l] holds what r[l][W·h + p] held.
// log2(W) stages of W two-source shuffles; W = L is the whole L × L transpose.
template <class T, int64_t W, int64_t S = 1>
inline void transpose(simd::Vec<T>* r) {
  if constexpr (S < W) {
    constexpr auto seq = std::make_index_sequence<simd::kLanes<T>>{};
    constexpr typename IndexOf<T>::vec upper = upper_mask<T, S>(seq), lower = lower_mask<T, S>(seq);
    for (int64_t p = 0; p < W; ++p) {
      if (p & S) continue;
      const simd::Vec<T> a = r[p], b = r[p + S];
      r[p] = __builtin_shuffle(a, b, upper);
      r[p + S] = __builtin_shuffle(a, b, lower);
    }
    transpose<T, W, 2 * S>(r);
  }
}

// W consecutive values of destination rows `width` apart (W a power of two below L): W source rows
// (zero past `rows`) × L steps loaded as W vectors, transposed within W-lane groups, and step
// W·h + p written from group h of vector p. So 8 rows of floats on AVX-512 take 3 shuffle stages
// and 16 half-vector stores per 16 steps, where a value at a time took 128 loads and stores (A's
// packing was ~12% of an nn.LSTM's forward+backward on a Xeon).
template <class T, int64_t W>
void interleave_narrow(const T* src, const int64_t* row_at, int64_t rows, T* dst, int64_t width, int64_t steps) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  const T* row[W];
  for (int64_t u = 0; u < W; ++u) row[u] = u < rows ? src + row_at[u] : nullptr;
  for (int64_t t0 = 0; t0 < steps; t0 += L) {
    const int64_t tn = std::min(L, steps - t0);
    V r[W];
#pragma GCC unroll 16
    for (int64_t u = 0; u < W; ++u) {
      r[u] = row[u] == nullptr ? V{} : tn == L ? simd::load(row[u] + t0) : simd::load_partial(row[u] + t0, tn);
    }
    transpose<T, W>(r);
#pragma GCC unroll 16
    for (int64_t h = 0; h < L / W; ++h) {
#pragma GCC unroll 16
      for (int64_t p = 0; p < W; ++p) {
        const int64_t t = W * h + p;
        if (t < tn) std::memcpy(dst + (t0 + t) * width, reinterpret_cast<const T*>(&r[p]) + W * h, W * sizeof(T));
      }
    }
  }
}

// The packing transpose (the table's contract: csrc/cpu/simd/gemm.h). Destination rows of whole
// vectors (B's panels, nr a multiple of L) go in L × L blocks: L rows (zero past `rows`) × L steps
// loaded as vectors, transposed in registers, stored as L vectors of destination rows. Narrower
// rows (A's mr) go 8 and then 4 values at a time through interleave_narrow (12 = 8 + 4: measured
// on AVX-512, a 16-row transpose with a quarter of it zeros packed a conv2d weight slower than a
// value at a time), and what remains a value at a time.
template <class T>
void interleave(const T* src, const int64_t* row_at, int64_t rows, T* dst, int64_t width, int64_t steps) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>;
  if (width % L != 0) {
    int64_t u0 = 0;
    auto narrow = [&]<int64_t W>() {
      interleave_narrow<T, W>(src, row_at + u0, std::max<int64_t>(0, rows - u0), dst + u0, width, steps);
      u0 += W;
    };
    if constexpr (L >= 16) {
      while (width - u0 >= 8) narrow.template operator()<8>();
    }
    if constexpr (L >= 8) {
      while (width - u0 >= 4) narrow.template operator()<4>();
    }
    for (int64_t u = u0; u < width; ++u) {
      const T* row = u < rows ? src + row_at[u] : nullptr;
      for (int64_t t = 0; t < steps; ++t) dst[t * width + u] = row ? row[t] : T(0);
    }
    return;
  }
  for (int64_t u0 = 0; u0 < width; u0 += L) {
    const int64_t present = std::clamp<int64_t>(rows - u0, 0, L);  // source rows; zeros past them
    const T* row[L];
    for (int64_t u = 0; u < L; ++u) row[u] = u < present ? src + row_at[u0 + u] : nullptr;
    for (int64_t t0 = 0; t0 < steps; t0 += L) {
      const int64_t tn = std::min(L, steps - t0);
      V r[L];
#pragma GCC unroll 16
      for (int64_t u = 0; u < L; ++u) {
        r[u] = u >= present ? V{} : tn == L ? simd::load(row[u] + t0) : simd::load_partial(row[u] + t0, tn);
      }
      transpose<T, L>(r);
#pragma GCC unroll 16
      for (int64_t t = 0; t < L; ++t) {
        if (t < tn) simd::store(dst + (t0 + t) * width + u0, r[t]);
      }
    }
  }
}

// M rows of A against J rows of W at a time (Dot in csrc/cpu/simd/gemm.h): per vector of steps, M
// loads of A, J of W and M·J FMAs into M·J accumulators, as many as leave registers for the loads
// (at most kFmaChains' worth of columns: the sums are memory-bound on W, which is read once).
template <int64_t M>
constexpr int64_t kDotColumns = std::min<int64_t>(kFmaChains, (kRegisters - 1 - M) / (M + 1));

template <class T, int64_t M>
void dot_rows(const T* a, int64_t lda, const T* w, int64_t ldw, int64_t n, int64_t k, T* c, int64_t ldc) {
  using V = simd::Vec<T>;
  constexpr int64_t L = simd::kLanes<T>, J = kDotColumns<M>;
  for (int64_t j0 = 0; j0 < n; j0 += J) {
    const T* row[J];  // past n, the last row again (its sums are dropped)
    for (int64_t j = 0; j < J; ++j) row[j] = w + std::min(j0 + j, n - 1) * ldw;
    V acc[M][J] = {};
    const auto step = [&](auto load) {
      V x[M];
      for (int64_t i = 0; i < M; ++i) x[i] = load(a + i * lda);
      for (int64_t j = 0; j < J; ++j) {
        const V y = load(row[j]);
        for (int64_t i = 0; i < M; ++i) acc[i][j] += x[i] * y;
      }
    };
    int64_t t = 0;
    for (; t + L <= k; t += L) step([&](const T* p) { return simd::load(p + t); });
    if (t < k) step([&](const T* p) { return simd::load_partial(p + t, k - t); });
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < std::min(J, n - j0); ++j) {
        c[i * ldc + j0 + j] = static_cast<T>(simd::reduce_add(acc[i][j]));
      }
    }
  }
}

template <class T>
void dot(const T* a, int64_t lda, int64_t m, const T* w, int64_t ldw, int64_t n, int64_t k, T* c, int64_t ldc) {
  with_vectors<kDotRows>(m, [&]<int64_t M>() { dot_rows<T, M>(a, lda, w, ldw, n, k, c, ldc); });
}

// A accumulator chains of FMAs: acc = acc·x + y, A independent vectors so that the FMA units never
// wait on a result (at least kFmaChains; A is the micro-kernels' accumulator count).
// x slightly below 1 and y small keep every value finite and normal for any iteration count; the
// sum is stored through a volatile, so the chains must run (without -ffast-math the compiler may
// not reassociate them into a closed form). The chains start from a value read through a volatile:
// from known starts the compiler may prove a chain constant, and did: 1 is a fixed point of
// 1·0.999 + 0.001 in float, so GCC dropped the first of AVX2's 12 chains and the probe, counting
// 12 FMAs an iteration for 11, read 250-255 GFLOP/s on Zen 4 where the FMA units do 234 (as
// AVX-512's 24 chains, whose starts GCC computed at run time, measured).
template <int A>
int64_t fma_loop(int64_t iterations) {
  using V = simd::Vec<float>;
  volatile float start = 1.0f;
  V acc[A];
  for (int i = 0; i < A; ++i) acc[i] = simd::broadcast(start + 0.001f * static_cast<float>(i));
  const V x = simd::broadcast(0.999f), y = simd::broadcast(0.001f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < A; ++i) acc[i] = acc[i] * x + y;
  }
  V sum{};
  for (int i = 0; i < A; ++i) sum += acc[i];
  volatile float sink = sum[0];
  (void)sink;
  return iterations * A * simd::kLanes<float> * 2;
}

}  // namespace

#if HK_VEC_BYTES == 64
// AVX-512, 32 registers: 24 accumulators. 8 × 3 vectors divides the usual channel counts and
// batches (multiples of 8); 12 × 2 is narrower for short rows; 8 × 2 (16 accumulators: two FMAs
// per broadcast of A, not three) for few rows of 256 columns, which 48-column panels pad by 12.5%
// and 12-row blocks pad at 64 rows (on the Xeon: 64 × 2048 × 256, an LSTMCell's input gradient,
// 14% faster); its speed, 0.94, is from 2048 × 1600 × 512 (0.91x of 8 × 3 with 3% less padding),
// which it therefore leaves to 8 × 3; 4 × 6 serves 2–4 rows (an RGB input's gradient) without
// padding them to 8; 1 × 8 a single row (an LSTM step of batch one: memory-bound, so B is read
// once and unpadded, 512 columns being 4 whole panels).
extern const GemmKernels gemm_kernels = {
    {{{shape<float, 8, 3>(), shape<float, 12, 2>(), shape<float, 8, 2>(0.94), shape<float, 4, 6>(), shape<float, 1, 8>()},
      &interleave<float>, &dot<float>},
     {{shape<double, 8, 3>(), shape<double, 12, 2>(), shape<double, 8, 2>(0.94), shape<double, 4, 6>(),
       shape<double, 1, 8>()},
      &interleave<double>, &dot<double>}},
    5,
    &fma_loop<24>,
};
#else
// SSE2 and AVX2, 16 registers: 12 accumulators. 6 × 2 and 4 × 3 vectors, so that a GEMM can take
// the one that pads it least: 2-4 rows are one block of 4 but a padded one of 6; past 6 rows, 6 × 2's
// last block computes 2, 4 or 6 rows (computed_rows), so its rows pad by one at most, and 4 × 3 is
// left the products whose columns 24-wide panels pad less (24 columns: 16-wide panels pad them to
// 32); 1 × 8 for a single row (8 accumulators: enough to cover the FMA latency). 4 × 3 loads three
// B vectors per four rows, not two per six, and its panel's row is 1.5 cache lines: where the
// panels stream from L2 it ran slower, so its speed, 0.85, leaves it the products that 6 × 2 pads
// by a fifth or more (measured while its loop kept two accumulators on the stack; now, on the kernel
// alone, it runs at 0.95-0.98 of 6 × 2 there, a speed not yet re-tuned). Measured on Zen 3 (paired,
// one process, 6 × 2 against 4 × 3, before last blocks computed fewer rows): nn.LSTM inference 1.18x
// and forward+backward 1.14x faster (32-row steps: 36 rows padded against 32), 32 × 512 × 2048
// 1.33x, conv2d 128 -> 128 3×3 @28 forward+backward 1.12x, 64 -> 128 3×3/s2 1.08x, 64-row products
// and LSTMCell(256, 512) of batch 64 within noise.
extern const GemmKernels gemm_kernels = {
    {{{shape<float, 6, 2>(), shape<float, 4, 3>(0.85), shape<float, 1, 8>()}, &interleave<float>, &dot<float>},
     {{shape<double, 6, 2>(), shape<double, 4, 3>(0.85), shape<double, 1, 8>()}, &interleave<double>,
      &dot<double>}},
    3,
    &fma_loop<12>,
};
#endif

}  // namespace hotkernels::cpu::HK_ISA
