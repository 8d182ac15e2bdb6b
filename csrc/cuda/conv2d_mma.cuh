// Tensor-core implicit GEMM for conv2d (sm_80+ mma.sync): TF32 m16n8k8 for float32, f16/bf16
// m16n8k16 for the half types, float accumulators in every case.
//
// A GEMM C[M × N] = A[M × K] · B[K × N]^T is described by a Problem (see conv2d_mma_problems.cuh)
// that never materialises A or B: every element of an operand is a gather from an NHWC (or plain
// row-major) tensor, addressed as
//   value(row, k) = in_bounds(row.y + k.y, row.x + k.x) ? ptr[row.base + k.off] : 0,
// i.e. a 64-bit offset split into a part that depends only on the row (output pixel, say) and a part
// that depends only on k (kernel tap and channel), plus the 2-D coordinate used for the padding
// test. Row parts are computed once per block, k parts once per k-tile by BK threads (tile t + 2
// while tile t is in the tensor cores), so the inner load loop has no division at all. Rows or ks past
// the end get y = kInvalid, which fails every bounds test: edges need no other guard.
//
// Block: BM × BN output tile, K in BK slices; warps of WM × WN each hold (WM/16) × (WN/8) mma
// accumulators. Operands are staged global → registers → shared memory (two buffers: the loads of
// slice t + 1 are in flight while slice t is multiplied), stored K-contiguous ([row][k], padded by
// 4 words so the fragment reads are bank-conflict free). A thread loads either along k (lanes =
// consecutive k: for NHWC channel runs; 16-byte chunks of 4 floats / 8 halves when the channels of a
// group come in such chunks and the tensors are aligned, else single elements) or along rows
// (lanes = consecutive rows: for the weight gradient, whose rows are channels).
//
// Epilogue: C(m, n) goes to out[out_row(m) + out_col(n)] (so NCHW and NHWC outputs are both one
// addition), plus bias[col] when the problem has one; or, for split-K, is atomically added into a
// float buffer (the bias by split 0 only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace hotkernels::cuda::mma {

// Offset and coordinate parts of a gathered element; the two parts add (see above).
struct Part {
  int64_t off;
  int y, x;
};

// Far enough below zero that invalid + any valid coordinate (|c| < 2^28, checked by the caller)
// stays negative, and invalid + invalid does not overflow.
constexpr int kInvalid = -(1 << 29);
__device__ __forceinline__ Part invalid_part() { return {0, kInvalid, 0}; }

// Per element type: the MMA's K and the staging slice depth (BK = 16 floats or 32 halves: 64 bytes
// per row either way).
template <class T> struct Traits;
template <> struct Traits<float> {
  static constexpr int kBK = 16, kMmaK = 8, kPad = 4;
};
template <> struct Traits<__half> {
  static constexpr int kBK = 32, kMmaK = 16, kPad = 8;
};
template <> struct Traits<__nv_bfloat16> {
  static constexpr int kBK = 32, kMmaK = 16, kPad = 8;
};

template <class T> __device__ __forceinline__ T zero() { return T(0.0f); }

// float32 enters the tensor cores as TF32: round to nearest (ties away), as cuBLAS/cuDNN do, rather
// than letting the hardware drop the low 13 mantissa bits.
template <class T> __device__ __forceinline__ T to_mma(T v) { return v; }
template <> __device__ __forceinline__ float to_mma(float v) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
  return __uint_as_float(r);
}

// One m16n8kK mma: a[4], b[2] hold the fragments (TF32: one value per register; halves: two).
template <class T> __device__ __forceinline__ void mma_op(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
template <> __device__ __forceinline__ void mma_op<float>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma_op<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma_op<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Fragment registers from a K-contiguous shared tile s[row][k] (row stride LD elements), for the
// 16-row (A) or 8-row (B) block starting at `row0` and the mma's k slice starting at k0; g = lane / 4,
// t = lane % 4 (PTX ISA, "Matrix fragments for mma.m16n8k8 / m16n8k16").
//   TF32 A: (g, t) (g+8, t) (g, t+4) (g+8, t+4); B: (n=g, k=t) (g, t+4).
//   f16  A: (g, 2t..2t+1) (g+8, 2t..) (g, 2t+8..) (g+8, 2t+8..); B: (n=g, k=2t..2t+1) (g, 2t+8..).
template <class T, int LD>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const T* s, int row0, int k0, int g, int t) {
  if constexpr (std::is_same_v<T, float>) {
    const uint32_t* u = reinterpret_cast<const uint32_t*>(s);
    a[0] = u[(row0 + g) * LD + k0 + t];
    a[1] = u[(row0 + g + 8) * LD + k0 + t];
    a[2] = u[(row0 + g) * LD + k0 + t + 4];
    a[3] = u[(row0 + g + 8) * LD + k0 + t + 4];
  } else {
    a[0] = *reinterpret_cast<const uint32_t*>(s + (row0 + g) * LD + k0 + 2 * t);
    a[1] = *reinterpret_cast<const uint32_t*>(s + (row0 + g + 8) * LD + k0 + 2 * t);
    a[2] = *reinterpret_cast<const uint32_t*>(s + (row0 + g) * LD + k0 + 2 * t + 8);
    a[3] = *reinterpret_cast<const uint32_t*>(s + (row0 + g + 8) * LD + k0 + 2 * t + 8);
  }
}
template <class T, int LD>
__device__ __forceinline__ void load_b(uint32_t (&b)[2], const T* s, int row0, int k0, int g, int t) {
  if constexpr (std::is_same_v<T, float>) {
    const uint32_t* u = reinterpret_cast<const uint32_t*>(s);
    b[0] = u[(row0 + g) * LD + k0 + t];
    b[1] = u[(row0 + g) * LD + k0 + t + 4];
  } else {
    b[0] = *reinterpret_cast<const uint32_t*>(s + (row0 + g) * LD + k0 + 2 * t);
    b[1] = *reinterpret_cast<const uint32_t*>(s + (row0 + g) * LD + k0 + 2 * t + 8);
  }
}

// Block shapes: 128 × 128 (8 warps of 64 × 32) for large GEMMs, 128 × 64 and 64 × 128 (8 warps of
// 32 × 32) when one side has at most 64 rows (64 output channels: no half-empty tiles), and 64 × 64
// (4 warps of 32 × 32) when the larger ones would leave SMs idle (then with K splits).
template <int BM_, int BN_, int WM_, int WN_, int kMinBlocks_> struct Tile {
  static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_;
  static constexpr int kMinBlocks = kMinBlocks_;  // per SM: caps registers at 128 a thread
  static constexpr int kWarpsM = BM / WM, kWarpsN = BN / WN, kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int MF = WM / 16, NF = WN / 8;  // mma tiles per warp
};
using Tile128x128 = Tile<128, 128, 64, 32, 2>;
using Tile128x64 = Tile<128, 64, 32, 32, 2>;
using Tile64x128 = Tile<64, 128, 32, 32, 2>;
using Tile64x64 = Tile<64, 64, 32, 32, 4>;

// Where a thread's staged chunks of one operand tile (ROWS × BK) come from. A chunk is VEC
// consecutive k of one row (VEC > 1 only along k, for channel runs that allow 16-byte loads). Along
// k: the thread's k is fixed and its rows step by kStep; along rows: its row is fixed and its k steps.
template <int ROWS, int BK, int THREADS, bool kAlongK, int VEC> struct Stager {
  static_assert(kAlongK || VEC == 1, "vector chunks run along k");
  static constexpr int kLanes = kAlongK ? BK / VEC : ROWS;  // threads that share a row (k) step
  static_assert(THREADS % kLanes == 0 && (ROWS * BK / VEC) % THREADS == 0, "a thread's k or row must stay fixed");
  static constexpr int kCount = ROWS * BK / VEC / THREADS;
  static constexpr int kStep = THREADS / kLanes;
  __device__ static int row(int tid, int e) { return kAlongK ? tid / kLanes + kStep * e : tid % ROWS; }
  __device__ static int k(int tid, int e) { return kAlongK ? tid % kLanes * VEC : tid / ROWS + kStep * e; }
};

template <class T, int VEC> struct alignas(sizeof(T) * VEC) Chunk {
  T v[VEC];
};

// One operand chunk (see the top of the file); unsigned compares test 0 <= c < limit at once. With
// VEC > 1 the host guarantees the VEC values share the coordinate (one tap) and are 16-byte aligned.
template <class T, int VEC>
__device__ __forceinline__ Chunk<T, VEC> gather(const T* ptr, const Part& r, const Part& k, int h, int w) {
  const int y = r.y + k.y, x = r.x + k.x;
  Chunk<T, VEC> c;
  if (static_cast<unsigned>(y) < static_cast<unsigned>(h) && static_cast<unsigned>(x) < static_cast<unsigned>(w)) {
    c = *reinterpret_cast<const Chunk<T, VEC>*>(ptr + r.off + k.off);
#pragma unroll
    for (int e = 0; e < VEC; ++e) c.v[e] = to_mma(c.v[e]);
  } else {
#pragma unroll
    for (int e = 0; e < VEC; ++e) c.v[e] = zero<T>();
  }
  return c;
}

// The GEMM. Problem P provides (all indices int32, within one group `gi`; see conv2d_mma_problems.cuh):
//   using T;  static constexpr bool kAAlongK, kBAlongK;
//   int M, N, K, a_h, a_w, b_h, b_w;  const T* a_ptr, b_ptr;  const T* bias (or nullptr);
//   Part a_row(gi, m), a_k(gi, k), b_row(gi, n), b_k(gi, k);  int64_t out_row(gi, m), out_col(gi, n).
// Out is T (store) or float (kAtomic: split-K partial sums added into a zeroed buffer). kVec: both
// operands load 16-byte chunks along k (host rule: conv2d.cu, vector_loads).
template <class Cfg, bool kAtomic, bool kVec, class P>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks) igemm_mma_kernel(const P p, std::conditional_t<kAtomic, float, typename P::T>* out,
                                                                  int splits) {
  using T = typename P::T;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Traits<T>::kBK, LD = BK + Traits<T>::kPad;
  constexpr int kThreads = Cfg::kThreads;
  constexpr int VEC = kVec ? 16 / static_cast<int>(sizeof(T)) : 1;
  using SA = Stager<BM, BK, kThreads, P::kAAlongK, VEC>;
  using SB = Stager<BN, BK, kThreads, P::kBAlongK, VEC>;
  using C = Chunk<T, VEC>;
  static_assert(kThreads >= BM && kThreads >= BN && kThreads >= BK, "row and k parts are one per thread");

  __shared__ __align__(16) T as[2][BM * LD];
  __shared__ __align__(16) T bs[2][BN * LD];
  __shared__ Part arow[BM], brow[BN];
  __shared__ Part ak[2][BK], bk[2][BK];

  const int tid = threadIdx.x;
  const int gi = blockIdx.z / splits, split = blockIdx.z % splits;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int tiles = (p.K + BK - 1) / BK, per = (tiles + splits - 1) / splits;
  const int t_begin = min(tiles, split * per), t_end = min(tiles, t_begin + per);
  const int count = t_end - t_begin;

  if (tid < BM) arow[tid] = m0 + tid < p.M ? p.a_row(gi, m0 + tid) : invalid_part();
  if (tid < BN) brow[tid] = n0 + tid < p.N ? p.b_row(gi, n0 + tid) : invalid_part();
  auto k_parts = [&](int slot, int tile) {
    if (tid < BK) {
      const int k = (t_begin + tile) * BK + tid;
      ak[slot][tid] = k < p.K ? p.a_k(gi, k) : invalid_part();
      bk[slot][tid] = k < p.K ? p.b_k(gi, k) : invalid_part();
    }
  };
  if (count > 0) k_parts(0, 0);
  if (count > 1) k_parts(1, 1);
  __syncthreads();

  C ra[SA::kCount], rb[SB::kCount];
  auto load = [&](int slot) {
#pragma unroll
    for (int e = 0; e < SA::kCount; ++e) ra[e] = gather<T, VEC>(p.a_ptr, arow[SA::row(tid, e)], ak[slot][SA::k(tid, e)], p.a_h, p.a_w);
#pragma unroll
    for (int e = 0; e < SB::kCount; ++e) rb[e] = gather<T, VEC>(p.b_ptr, brow[SB::row(tid, e)], bk[slot][SB::k(tid, e)], p.b_h, p.b_w);
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int e = 0; e < SA::kCount; ++e) *reinterpret_cast<C*>(&as[buf][SA::row(tid, e) * LD + SA::k(tid, e)]) = ra[e];
#pragma unroll
    for (int e = 0; e < SB::kCount; ++e) *reinterpret_cast<C*>(&bs[buf][SB::row(tid, e) * LD + SB::k(tid, e)]) = rb[e];
  };

  const int lane = tid % 32, warp = tid / 32, g = lane / 4, t4 = lane % 4;
  const int wm0 = warp / Cfg::kWarpsN * Cfg::WM, wn0 = warp % Cfg::kWarpsN * Cfg::WN;
  float acc[Cfg::MF][Cfg::NF][4] = {};

  if (count > 0) {
    load(0);
    store(0);
  }
  __syncthreads();
  for (int t = 0; t < count; ++t) {
    const int cur = t & 1;
    if (t + 1 < count) load((t + 1) & 1);  // in flight during the mmas below
#pragma unroll
    for (int kk = 0; kk < BK; kk += Traits<T>::kMmaK) {
      uint32_t af[Cfg::MF][4], bf[Cfg::NF][2];
#pragma unroll
      for (int i = 0; i < Cfg::MF; ++i) load_a<T, LD>(af[i], as[cur], wm0 + 16 * i, kk, g, t4);
#pragma unroll
      for (int j = 0; j < Cfg::NF; ++j) load_b<T, LD>(bf[j], bs[cur], wn0 + 8 * j, kk, g, t4);
#pragma unroll
      for (int i = 0; i < Cfg::MF; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::NF; ++j) mma_op<T>(acc[i][j], af[i], bf[j]);
    }
    if (t + 1 < count) store(cur ^ 1);
    if (t + 2 < count) k_parts(cur, t + 2);  // slot `cur` was last read by the loads of tile t
    __syncthreads();
  }

  // Epilogue: accumulator (i, j, r) is C(wm0 + 16i + g + 8·(r / 2), wn0 + 8j + 2·t4 + r % 2).
  int64_t col_off[Cfg::NF][2];
  float col_bias[Cfg::NF][2];
#pragma unroll
  for (int j = 0; j < Cfg::NF; ++j) {
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int n = n0 + wn0 + 8 * j + 2 * t4 + c;
      col_off[j][c] = n < p.N ? p.out_col(gi, n) : -1;
      col_bias[j][c] = n < p.N && p.bias != nullptr && split == 0 ? static_cast<float>(p.bias[p.bias_index(gi, n)]) : 0.0f;
    }
  }
#pragma unroll
  for (int i = 0; i < Cfg::MF; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + wm0 + 16 * i + g + 8 * h;
      if (m >= p.M) continue;
      const int64_t row_off = p.out_row(gi, m);
#pragma unroll
      for (int j = 0; j < Cfg::NF; ++j) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          if (col_off[j][c] < 0) continue;
          const float v = acc[i][j][2 * h + c] + col_bias[j][c];
          if constexpr (kAtomic) {
            atomicAdd(out + row_off + col_off[j][c], v);
          } else {
            out[row_off + col_off[j][c]] = static_cast<T>(v);
          }
        }
      }
    }
  }
}

}  // namespace hotkernels::cuda::mma
