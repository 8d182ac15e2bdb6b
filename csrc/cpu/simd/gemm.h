// The register-blocked GEMM micro-kernels (csrc/cpu/simd/gemm.cpp), one table per instruction
// set. Everything around them (packing, cache blocking, threading, epilogues) is the GEMM core in
// csrc/cpu/gemm/gemm.h; conv2d's implicit GEMM and the LSTM both run on these.
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "cpu/simd/per_dtype.h"

namespace hotkernels::cpu {

// At most this many micro-kernel shapes per instruction set and type.
constexpr int kMaxGemmShapes = 5;

// Values of T in a 64-byte cache line, the unit the micro-kernels prefetch in.
template <class T>
constexpr int64_t kLineValues = 64 / static_cast<int64_t>(sizeof(T));

// Values of `next` the micro-kernels fetch for r steps of a panel nr wide: whole lines per step.
template <class T>
constexpr int64_t next_fetch_values(int64_t nr, int64_t r) {
  return (nr + kLineValues<T> - 1) / kLineValues<T> * kLineValues<T> * r;
}

// The rows a micro-kernel of mr-row blocks computes for a last block of mc ≤ mr rows: 2 or 4 where
// that covers them (with two sets of accumulators where its FMAs are too few to cover their
// latency, so 2 rows cost what 2 rows of a whole block do), else a whole block. A batch of 32 on
// AVX2's 6-row blocks then costs 32 rows, not 36.
constexpr int64_t computed_rows(int64_t mc, int64_t mr) {
  return mc <= 2 && mr > 2 ? 2 : mc <= 4 && mr > 4 ? 4 : mr;
}

// C[m × n] (row stride ldc) = A·B, or += when `accumulate`, reducing over t < r, in blocks of mr
// rows (A broadcast from memory) × nr columns (nr / lanes vectors of B), rows outside, columns
// inside: one A block stays in L1 while the B columns stream past it.
// A is packed in blocks of mr rows, zero-padded: block i starts at a + i·a_stride and holds
// element (row, t) at [t·mr + row].
// B's rows lie ldb apart, element (t, col) = b[t·ldb + col] (a packed panel [t][nr]: ldb = nr), or,
// where `offsets` is given, wherever it says: b[offsets[t] + col] (conv2d's implicit GEMM points
// them into the phase-split input; ldb is then unused). Where `a_rows` is given (with `steps` and
// `offsets`), the sum runs over r of B's rows, steps[0..r) (a packed panel: ldb = nr), and A is
// gathered where it lies, a row of its own per u: A's row u of step t is a_rows[u][offsets[t]] (`a`
// and a_stride unused). So conv2d's direct pass takes pixels as rows, each step a tap of the input
// around each, and leaves out the taps that read only padding.
// A partial block of columns (n not a multiple of nr) loads and computes the vectors that cover
// it: up to lanes − 1 values past column n must be readable (the result for them is dropped).
// `next` (or nullptr) is the caller's next B panel, contiguous ([t][nr]) with next_fetch_values(nr,
// r) values readable from it: it is prefetched into L2 while this product computes.
template <class T>
struct GemmKernel {
  void (*run)(const T* a, const T* const* a_rows, int64_t a_stride, const T* b, int64_t ldb, const int64_t* offsets,
              const int64_t* steps, T* c, int64_t ldc, int64_t m, int64_t n, int64_t r, bool accumulate,
              const T* next);
  int64_t mr, nr;
  int64_t lanes;  // values of T in one vector
  // Its FMA rate relative to the first shape's on products whose operands stream from L2: the
  // padding it saves must pay for a slower kernel (csrc/cpu/gemm/gemm.h, best_shape).
  double speed;
};

// Shapes [0, shapes) are valid, in order of preference (csrc/cpu/gemm/gemm.h picks the one that
// costs a product least, its padded size over the shape's speed, the earlier one unless a later
// costs clearly less). 16-register instruction sets (SSE2, AVX2) have 12 accumulators per shape,
// AVX-512 (32 registers) 24, or 16 where narrower blocks pad less: each shape leaves room for its B
// vectors and one broadcast. The last shape of each has one row (a matrix-vector
// product: a batch of one), for products of a single row only.
// Packing: dst[t·width + u] = src[row_at[u] + t] for u < rows, t < steps, and 0 for rows ≤ u <
// width: `rows` rows, each contiguous along t from its own offset, interleaved into rows of `width`
// (a transpose). This is how A (mr rows) and a transposed B (nr columns of Wᵀ, rows of W) are
// packed for the micro-kernels (row_at[u] = u·ld), and how conv2d's weight gradient gathers its
// taps (row_at: each tap's offset into the input).
template <class T>
using Interleave = void (*)(const T* src, const int64_t* row_at, int64_t rows, T* dst, int64_t width, int64_t steps);

// Rows of A in one call of a Dot kernel, at most.
constexpr int64_t kDotRows = 4;

// C[i, j] = Σ_t A[i, t]·W[j, t] for i < m ≤ kDotRows, j < n, t < k: a few rows of A (lda apart)
// against the rows of W (ldw apart), both contiguous along t, each sum accumulated in vector lanes
// and then across them. The product A·Wᵀ where B = Wᵀ is read as it lies (a Linear's weight), with
// no packing: for a few rows of A, packing would read and write all of W to use it a few times.
template <class T>
using Dot = void (*)(const T* a, int64_t lda, int64_t m, const T* w, int64_t ldw, int64_t n, int64_t k, T* c,
                     int64_t ldc);

// One compute type's micro-kernels: shapes [0, GemmKernels::shapes) valid, the packing transpose,
// and the unpacked product of a few rows.
template <class T>
struct GemmTyped {
  GemmKernel<T> shapes[kMaxGemmShapes];
  Interleave<T> interleave;
  Dot<T> dot;
};

struct GemmKernels {
  PerDtype<GemmTyped> typed;
  int shapes;
  // The machine's floor for these kernels: `iterations` rounds of float32 FMAs on as many
  // independent vector accumulators as the shapes use, registers only (no loads). Returns the
  // floating-point operations done (2 per lane per FMA) and keeps the result observable.
  int64_t (*fma_loop)(int64_t iterations);
};

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(GemmKernels, gemm_kernels)
