// The CPU GEMM core: C (+)= A·B on the micro-kernels of csrc/cpu/simd/gemm.h, with packing,
// cache blocking, threading over a grid of tiles and an epilogue run on each tile while it is hot.
// conv2d's implicit GEMM (csrc/cpu/conv2d.cpp) uses the shapes and buffers here with its own
// packing of B; the LSTM (csrc/cpu/lstm.cpp) and Linear (csrc/cpu/linear.cpp) use `multiply`.
//
// Blocking. A tile is mc rows × a range of B's nr-column panels; a thread computes a tile's whole
// reduction, kc steps at a time: A's rows of the chunk are packed (mc × kc, at most half of L2),
// then for each panel chunk (kc × nr, at most an eighth of L2) every row block of A runs over it.
// So a panel is read from memory once per tile and from cache by the other row blocks. Packing is
// a SIMD transpose where the source runs along the reduction (row-major A, B = Wᵀ). B is packed
// whole ahead where it is reused (a weight over an LSTM's steps, or by several row tiles), else
// read in place or packed a panel chunk at a time in cache (Packing).
//
// Column groups. B may hold `groups` equal blocks of columns (the LSTM's four gates: W_hh's rows
// i, f, g, o) packed separately; a tile then covers the same column range of every group, so its
// epilogue sees the four gate values of the same hidden units and can finish the cell update.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <cpuinfo.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "cpu/prefetch.h"
#include "cpu/simd/gemm.h"
#include "static_switch.h"

namespace hotkernels::cpu::gemm {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Reduction chunks of equal length, at most `chunk` (576 steps of 512: 2 × 288, not 512 + 64).
inline int64_t reduction_chunk(int64_t k, int64_t chunk) { return ceil_div(k, ceil_div(k, chunk)); }

// The size of one core's L2 cache, from cpuinfo (which torch ships and initialises); 1 MiB where it
// says nothing. The blocking below is derived from it.
inline int64_t l2_bytes() {
  static const int64_t bytes = [] {
    const cpuinfo_cache* l2 = cpuinfo_initialize() ? cpuinfo_get_l2_cache(0) : nullptr;
    return l2 != nullptr && l2->size > 0 ? static_cast<int64_t>(l2->size) : int64_t{1} << 20;
  }();
  return bytes;
}

// The L2 lines that one column of lines of B's rows `row_bytes` apart can occupy. A line's set is
// its line number modulo the sets: rows s lines apart fall into sets / gcd(sets, s) of them, each of
// `ways` lines. Rows that are not whole lines apart spread over all the sets. cpuinfo gives the
// geometry; where it says nothing, l2_bytes as 8 ways (the count differs from the true geometry's
// only at strides of more lines than the sets).
inline int64_t l2_lines_at_stride(int64_t row_bytes) {
  static const std::array<int64_t, 2> sets_ways = [] {
    const cpuinfo_cache* l2 = cpuinfo_initialize() ? cpuinfo_get_l2_cache(0) : nullptr;
    if (l2 != nullptr && l2->sets > 0 && l2->associativity > 0 && l2->line_size == 64) {
      return std::array<int64_t, 2>{l2->sets, l2->associativity};
    }
    return std::array<int64_t, 2>{std::max<int64_t>(1, l2_bytes() / (64 * 8)), 8};
  }();
  const auto [sets, ways] = sets_ways;
  if (row_bytes % 64 != 0) return sets * ways;
  return sets / std::gcd(sets, row_bytes / 64) * ways;
}

// Reduction steps per chunk: a packed B panel chunk (kc × nr) takes at most an eighth of L2, so it
// stays there across the tile's row blocks next to the packed A chunk, and C is read back and
// rewritten once per chunk; at most 1024 steps. Longer chunks measured faster on both machines:
// Zen 5 (1 MiB L2; float, 8 × 48: 682 steps, 128 KiB), for an LSTM step (32 × 512 × 2048) one
// chunk of 512 ran at ~95% of the FMA peak, two of 256 at ~80%; a Xeon with AVX-512 (2 MiB L2:
// 1024 steps, 192 KiB) ran 2048² 4-8% faster in chunks of 1024 than of 512.
template <class T>
int64_t max_chunk(int64_t nr) {
  return std::clamp<int64_t>(l2_bytes() / (8 * nr * static_cast<int64_t>(sizeof(T))), 64, 1024);
}

// Reduction steps per chunk where B's panels are read in place (`multiply` says why).
constexpr int64_t kInPlaceChunk = 256;

// Rows per tile: the packed A chunk (rows × kc) takes at most half of L2 (Zen 5, float, kc 512:
// 256 rows; Zen 1's 512 KiB: 128).
template <class T>
int64_t max_tile_rows(int64_t kc) {
  return std::max<int64_t>(1, l2_bytes() / (2 * kc * static_cast<int64_t>(sizeof(T))));
}

// Reduction steps per chunk of a product of `rows` rows: max_chunk, or as many fewer as let all the
// rows form one tile (max_tile_rows), down to kOneTileChunk steps. B is then read by that one tile
// only, each panel chunk packed in cache just before use (Packing::deferred), rather than packed
// whole ahead through memory and read by each of several row tiles. C is read and rewritten once
// per chunk, more often in short chunks, which is why rows that fit one tile in long chunks (an
// LSTM step) keep them, and chunks stop at 256 steps. Measured on Zen 3 (512 KiB L2, so 1024-step
// chunks and 64-row tiles before; AVX2, paired, one process): 256 × 4096 × 1024 (an LSTMCell's
// input gradient at batch 256) 1.11x faster, 128 rows 1.23x, 192 × 2048 × 2048 1.10x, 256 × 1024 ×
// 2048 1.06x, 256 × 512 × 4096 1.04x, LSTMCell(1024, 1024) forward+backward at batch 256 1.07x;
// one tile of 128-step chunks won 1.05-1.08x on 384 and 512 × 4096 × 1024 but lost on 512 × 1024 ×
// 2048 (0.93x), of 64 steps lost on 1024 × 4096 × 1024 (0.87x).
constexpr int64_t kOneTileChunk = 256;
template <class T>
int64_t chunk_for(int64_t rows, int64_t nr) {
  const int64_t chunk = max_chunk<T>(nr), one_tile = l2_bytes() / (2 * rows * static_cast<int64_t>(sizeof(T)));
  return rows > max_tile_rows<T>(chunk) && one_tile >= kOneTileChunk ? std::min(chunk, one_tile) : chunk;
}

template <class T>
std::span<const GemmKernel<T>> shapes() {
  const GemmKernels& table = HK_ISA_TABLE(gemm_kernels);
  return {table.typed.of<T>().shapes, static_cast<size_t>(table.shapes)};
}

// The packing transpose of this CPU's instruction set (csrc/cpu/simd/gemm.h).
template <class T>
Interleave<T> interleave_kernel() {
  return HK_ISA_TABLE(gemm_kernels).typed.of<T>().interleave;
}

// Row starts u·ld for u < rows: the interleave's row offsets for a strided matrix. At most 128 rows,
// the widest shape's nr (1 × 8 vectors of 16 floats).
inline std::array<int64_t, 128> strided_rows(int64_t rows, int64_t ld) {
  std::array<int64_t, 128> at;  // only the first `rows` are read
  TORCH_INTERNAL_ASSERT(rows <= static_cast<int64_t>(at.size()));
  for (int64_t u = 0; u < rows; ++u) at[u] = u * ld;
  return at;
}

// The rows the micro-kernels compute for m rows in blocks of mr: whole blocks, and a last block's
// computed_rows.
inline int64_t computed_rows_of(int64_t m, int64_t mr) {
  return m / mr * mr + (m % mr > 0 ? computed_rows(m % mr, mr) : 0);
}

// The shape that costs an m × n product least: its padded size (rows to whole blocks of mr, the
// last block's computed_rows after at least one whole block, and columns to whole vectors: a
// partial last block of columns computes only the vectors that cover it) over
// its speed, taking a later shape only where it costs at least 3% less: the first (8 × 3 vectors on
// AVX-512) runs fastest, so 1600 rows stay on it rather than gain 0.2% on 12 × 2. A product of at
// most mr rows is costed at a whole block: the few-row shapes (AVX2's 4 × 3, AVX-512's 4 × 6) keep
// those. One-row shapes serve m = 1 only (they load a B vector per FMA: fine where B streams from
// memory anyway, slow otherwise). Measured on Zen 3 (AVX2, paired, one process): 8 rows, now 6 × 2
// with a 2-row last block rather than 4 × 3, 8 × 512 × 2048 and 8 × 2048 × 512 1.49x and 1.51x faster.
template <class T>
const GemmKernel<T>& best_shape(int64_t m, int64_t n) {
  const auto all = shapes<T>();
  const GemmKernel<T>* best = &all[0];
  auto cost = [&](const GemmKernel<T>& k) {
    const int64_t rows = m <= k.mr ? ceil_div(m, k.mr) * k.mr : computed_rows_of(m, k.mr);
    return static_cast<double>(rows * (ceil_div(n, k.lanes) * k.lanes)) / k.speed;
  };
  for (const GemmKernel<T>& k : all) {
    if ((k.mr > 1 || m == 1) && cost(k) < 0.97 * cost(*best)) best = &k;
  }
  return *best;
}

// The widest block of columns of any shape: a bound on what the micro-kernels read past a run's
// end (less than a vector: a partial block loads only the vectors that cover it), which workspaces
// keep as readable slack.
template <class T>
int64_t max_nr() {
  int64_t nr = 0;
  for (const GemmKernel<T>& k : shapes<T>()) nr = std::max(nr, k.nr);
  return nr;
}

// n values starting on a 64-byte boundary (a cache line), so that vector loads of packed operands
// never straddle two lines. Uninitialised.
template <class T>
class Aligned {
 public:
  explicit Aligned(int64_t n)
      : data_(static_cast<T*>(std::aligned_alloc(64, ceil_div(std::max<int64_t>(n, 1) * sizeof(T), 64) * 64))) {
    if (data_ == nullptr) throw std::bad_alloc();
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
};

// A strided matrix: element (i, j) at data[i·rs + j·cs]. A transpose is a swap of the strides.
template <class T>
struct Matrix {
  const T* data;
  int64_t rows, cols, rs, cs;
  Matrix t() const { return {data, cols, rows, cs, rs}; }
};

// A 2-D tensor of T as an operand, in place (any strides).
template <class T>
Matrix<T> matrix(const at::Tensor& t) {
  return {t.const_data_ptr<T>(), t.size(0), t.size(1), t.stride(0), t.stride(1)};
}

// How far ahead the packers fetch what they copy where their source runs lie a stride apart (B's
// rows, or the steps of an Aᵀ stored row-major): each run is on another page every few steps, where
// the hardware prefetchers do not follow, so every run's copy would wait on memory. So the run
// kPackAheadBytes on is fetched, rounded down to whole strides (at least one: a stride past 64 KiB is
// fetched a step ahead; a stride of 0, an expanded B, fetches the run being copied). The distance is
// in bytes, not steps, because what it must cover is memory latency at the copy's rate, which depends
// on the bytes between runs; it ignores the chunk being packed, so short strides fetch past its end
// (the next chunk's runs, or nothing of use: harmless). Measured on Zen 4 (2 threads, paired, one
// process, against no fetch): B's panels packed deferred, 128 × 2048 × n for n = 64, 128, 256, 512
// and 1024 (B's rows 256 B to 4 KiB apart) 1.17x, 1.13x, 1.13-1.2x, 1.3x and 1.08x faster (AVX2
// 1.3x, 1.1x, 1.08x at n = 256, 512, 1024), 128 × 512 × 2048 (8 KiB) 1.11-1.16x (AVX2 1.13x); against
// 64 KiB, 16 KiB ahead lost up to 0.77x on some of them, 32 KiB less than 64 on some, 128 KiB the
// same. Strides outside 256 B to 8 KiB are not measured.
constexpr int64_t kPackAheadBytes = int64_t{64} << 10;
inline uintptr_t pack_ahead_bytes(int64_t stride_bytes) {
  const int64_t strides = std::max<int64_t>(1, kPackAheadBytes / std::max<int64_t>(1, stride_bytes));
  return static_cast<uintptr_t>(strides * stride_bytes);
}

// How a PackedB holds B's panels for the micro-kernels.
enum class Packing {
  // All panels packed at construction and reused by every multiply with them (an LSTM's W_hh, every
  // step).
  ahead,
  // One group, rows contiguous: whole panels are read from B itself, row by row at B's row stride,
  // and only a last partial panel is packed (the micro-kernels read its last vector whole, past the
  // row's end), as `deferred` packs each panel: by the thread that runs it, a chunk at a time.
  // (Packed ahead, by the calling thread, it was packed before the threads started, and the thread
  // that ran it read it from the packer's cache. Paired on a Zen 4 VM, 2 threads, AVX-512: 32 × 2048
  // × 512 and × 496 1.09-1.24x faster where its two vCPUs shared a cache, 1.82-1.84x where they did
  // not, when the product had run no faster on 2 threads than on 1; LSTMCell(256, 512)
  // forward+backward at batch 16 1.03-1.07x and 1.27x.) For a product with few row blocks, where
  // packing would cost as much as the GEMM, on panels of whole cache lines or by a single row block
  // (`packing_for`).
  in_place,
  // Nothing packed ahead: `multiply` packs each panel's chunk of kc steps just before the tile's row
  // blocks run over it, into a buffer of its thread that stays in cache. For a B used once, by one
  // row tile (`packing_for`), whose panels are not read in place (B = Wᵀ: an LSTMCell's weights; or
  // panels that straddle cache lines, read by several row blocks): packing all of B ahead wrote it
  // out and read it back, ~30% of a 64 × 512 × 2048 product on a Xeon.
  deferred,
};

// B (k × groups·n) for one micro-kernel shape: per group, ceil(n / nr) panels of [k][nr], zero past
// column n, packed as `packing` says.
template <class T>
class PackedB {
 public:
  PackedB(const Matrix<T>& b, int64_t groups, const GemmKernel<T>& kern, Packing packing = Packing::ahead)
      : kern_(&kern), k_(b.rows), n_(b.cols / groups), groups_(groups), panels_(ceil_div(n_, kern.nr)),
        in_place_(packing == Packing::in_place ? n_ / kern.nr : 0),
        on_use_(packing == Packing::ahead ? groups * panels_ : in_place_), b_(b),
        data_(packing == Packing::ahead ? groups * panels_ * k_ * kern.nr : 0) {
    TORCH_INTERNAL_ASSERT(packing != Packing::in_place || (groups == 1 && b.cs == 1));
    if (packing != Packing::ahead) return;
    at::parallel_for(0, groups * panels_,
                     std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, k_ * kern.nr)),
                     [&](int64_t begin, int64_t end) {
      for (int64_t gp = begin; gp < end; ++gp) {
        pack(gp / panels_, gp % panels_, 0, k_, data_.data() + gp * k_ * kern.nr);
      }
    });
  }

  const GemmKernel<T>& kernel() const { return *kern_; }
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }  // columns per group
  int64_t groups() const { return groups_; }
  int64_t panels() const { return panels_; }  // per group
  // Panel p of a group is read in place, packed ahead (both held whole: `panel`), or packed by its
  // user, a chunk at a time (`pack`).
  bool packed_ahead(int64_t group, int64_t p) const {
    return group * panels_ + p >= in_place_ && !packed_on_use(group, p);
  }
  bool packed_on_use(int64_t group, int64_t p) const { return group * panels_ + p >= on_use_; }
  bool any_packed_on_use() const { return on_use_ < groups_ * panels_; }
  // Panel p of a group (its row t at panel + t·stride(p)), and the stride between its rows; not for
  // panels packed on use.
  const T* panel(int64_t group, int64_t p) const {
    const int64_t gp = group * panels_ + p;
    return gp < in_place_ ? b_.data + p * kern_->nr : data_.data() + gp * k_ * kern_->nr;
  }
  int64_t stride(int64_t p) const { return p < in_place_ ? b_.rs : kern_->nr; }
  // Whether a product sweeps the panels last to first: each call flips it, so that the products
  // over this B alternate (`multiply` says why). Like the products, for one caller at a time.
  bool next_sweep_reversed() const { return std::exchange(reversed_, !reversed_); }
  // Values from `from` (a place in a packed panel) to the end of the packed panels.
  int64_t packed_after(const T* from) const {
    return data_.data() + groups_ * panels_ * k_ * kern_->nr - from;
  }

  // Steps [t0, t0 + kc) of panel p of a group into dst ([t][nr]), walking B in its storage order:
  // along a row when rows are contiguous (a copy per row); as a transpose of W's rows when B = Wᵀ
  // (the SIMD interleave); else one value at a time.
  void pack(int64_t group, int64_t p, int64_t t0, int64_t kc, T* dst) const {
    const int64_t nr = kern_->nr, col0 = group * n_ + p * nr, cols = std::min(nr, n_ - p * nr);
    const T* b = b_.data + t0 * b_.rs + col0 * b_.cs;
    if (b_.cs == 1 && cols == nr) {
      // A whole panel's rows in copies of compile-time length (inlined moves), not in a library call
      // of run-time length per row (64 bytes for AVX2's 6 × 2). Its rows are 2, 3, 6 or 8 vectors of
      // 16, 32 or 64 bytes (csrc/cpu/simd/gemm.cpp). Measured on Zen 3 (AVX2, paired, one process):
      // LSTMCell(256, 512) of batch 64 forward+backward 1.04-1.05x faster, 64 × 2048 × 512 (its
      // hidden-state gradient, B = W_hh packed deferred) 1.03-1.08x; nn.LSTM within noise.
      static_switch<32, 48, 64, 96, 128, 192, 256, 384, 512>(nr * static_cast<int64_t>(sizeof(T)), [&]<int Bytes>() {
        const uintptr_t ahead = pack_ahead_bytes(b_.rs * static_cast<int64_t>(sizeof(T)));
        for (int64_t t = 0; t < kc; ++t) {
          prefetch_range(reinterpret_cast<uintptr_t>(b + t * b_.rs) + ahead, Bytes);
          std::memcpy(dst + t * nr, b + t * b_.rs, Bytes);
        }
      });
      return;
    }
    if (b_.cs <= b_.rs) {
      for (int64_t t = 0; t < kc; ++t) {
        const T* src = b + t * b_.rs;
        if (b_.cs == 1) {
          std::copy_n(src, cols, dst + t * nr);
        } else {
          for (int64_t v = 0; v < cols; ++v) dst[t * nr + v] = src[v * b_.cs];
        }
        std::fill(dst + t * nr + cols, dst + (t + 1) * nr, T(0));
      }
    } else if (b_.rs == 1) {
      interleave_kernel<T>()(b, strided_rows(cols, b_.cs).data(), cols, dst, nr, kc);
    } else {
      for (int64_t v = 0; v < nr; ++v) {
        for (int64_t t = 0; t < kc; ++t) dst[t * nr + v] = v < cols ? b[v * b_.cs + t * b_.rs] : T(0);
      }
    }
  }

 private:
  const GemmKernel<T>* kern_;
  int64_t k_, n_, groups_, panels_;
  int64_t in_place_;  // the first panels, read from b_ in place
  int64_t on_use_;    // the panels from this one on (in group-major order) are packed on use
  Matrix<T> b_;
  Aligned<T> data_;
  mutable bool reversed_ = false;
};

// Rows [i0, i0 + rows) and steps [t0, t0 + kc) of A into blocks of mr rows, [block][t][u], zero rows
// past `rows`.
template <class T>
void pack_a(const Matrix<T>& a, int64_t i0, int64_t rows, int64_t t0, int64_t kc, int64_t mr, T* dst) {
  if (a.rs == 1 && a.cs != 1) {
    // Aᵀ stored row-major (an LSTM weight gradient's dgatesᵀ): step t of all the rows is one run, so
    // each step is copied into every block at once, A read once, in its storage order. Block by
    // block, each block's mr values of a step then the next step's a row stride on (a power of two,
    // whose lines share a few cache sets), re-read every line once per block: 2048 × 1600 × 512 and
    // × 256 ran 1.04x faster this way, 2048 × 64 × 512 1.03x, nn.LSTM's backward 1.01x (Zen 3 AVX2,
    // paired). ~410k steps for an LSTM's dgatesᵀ: a memmove call of run-time length per block and
    // step would cost more than the copy, so the shapes' mr (csrc/cpu/simd/gemm.cpp) is a
    // compile-time length (a few vector moves).
    // Each step's run is fetched ahead (pack_ahead_bytes: 8 steps on for a float dgatesᵀ of 2048
    // rows, its steps 8 KiB apart). Measured on Zen 4 (2 threads, paired, one process, 8 steps ahead
    // against no fetch): 2048 × 1600 × 512 with A = dgatesᵀ 1.03-1.14x faster, nn.LSTM(256, 512, 2
    // layers) forward+backward 1.02x, LSTMCell(256, 512) at batch 64 1.07x, the language-model step
    // 1.04x (AVX2: 1.03x, 1.03x, 1.05x); 4, 8 and 16 steps ahead alike.
    const uintptr_t ahead = pack_ahead_bytes(a.cs * static_cast<int64_t>(sizeof(T)));
    const int64_t whole = rows / mr, rest = rows % mr;
    static_switch<int64_t{1}, int64_t{4}, int64_t{6}, int64_t{8}, int64_t{12}>(mr, [&]<int64_t MR>() {
      for (int64_t t = 0; t < kc; ++t) {
        const T* s = a.data + i0 + (t0 + t) * a.cs;
        prefetch_range(reinterpret_cast<uintptr_t>(s) + ahead, rows * static_cast<int64_t>(sizeof(T)));
        for (int64_t blk = 0; blk < whole; ++blk) std::memcpy(dst + (blk * kc + t) * MR, s + blk * MR, MR * sizeof(T));
        if (rest > 0) {
          T* out = dst + (whole * kc + t) * MR;
          std::copy_n(s + whole * MR, rest, out);
          std::fill(out + rest, out + MR, T(0));
        }
      }
    });
    return;
  }
  for (int64_t blk = 0; blk < ceil_div(rows, mr); ++blk) {
    T* out = dst + blk * kc * mr;
    const int64_t r0 = i0 + blk * mr, n = std::min(mr, i0 + rows - r0);
    const T* src = a.data + r0 * a.rs + t0 * a.cs;
    if (a.rs <= a.cs) {  // columns closer than rows (a strided Aᵀ): a value at a time
      for (int64_t t = 0; t < kc; ++t) {
        const T* s = src + t * a.cs;
        for (int64_t u = 0; u < n; ++u) out[t * mr + u] = s[u * a.rs];
        std::fill(out + t * mr + n, out + (t + 1) * mr, T(0));
      }
      continue;
    }
    if (a.cs == 1) {  // rows contiguous: the SIMD interleave
      interleave_kernel<T>()(src, strided_rows(n, a.rs).data(), n, out, mr, kc);
      continue;
    }
    if (n < mr) std::fill_n(out, kc * mr, T(0));
    for (int64_t u = 0; u < n; ++u) {  // one row of A at a time into its lane
      const T* s = src + u * a.rs;
      for (int64_t t = 0; t < kc; ++t) out[t * mr + u] = s[t * a.cs];
    }
  }
}

// How `multiply` cuts the m × (panels) product into tiles: rows in row_tiles slices of whole mr
// blocks, panels in col_tiles ranges.
struct Grid {
  int64_t row_tiles, col_tiles;
};

// Tiles of at most max_tile_rows rows and kTilePanels panels (A is packed once per tile and chunk:
// wide tiles pack it fewer times; measured on 2048², 8 panels ran ~10% slower than 32).
constexpr int64_t kTilePanels = 32;

// The grid whose busiest thread costs least: it runs ceil(tiles / threads) tiles (a contiguous run of
// them), each of row blocks × panels micro-kernel calls (a partial one costing a whole, though it
// computes only the vectors that cover it: splitting the LSTM step's work by vectors instead ran
// 0.94-1.00x on Zen 4), and each call streams its B panel from beyond L1 once per tile and reuses it
// for the tile's other row blocks: with rb blocks a call costs (rb + 1) / rb. A tile also reads its
// rb blocks of A from beyond L2 once (packing them), mr values a step each where a panel is nr:
// rb·mr/nr calls. So an LSTM step of 32 rows (4 blocks) × 11 panels on 2 threads splits its panels, 6
// against 5 (cost 6·5 + 4·8/48 ≈ 30.7), not its rows (11·3 + 2·8/48 ≈ 33.3; measured: a 16-row
// product runs at ~60% of the FMA peak, a 32-row one at ~80–100%); an LSTMCell's weight gradient at
// batch 64 (2048 × 64 × 256: 171 blocks of 12 rows, 8 panels of 32) splits its rows (728 against
// 752): there A (2048 × 64) is large and B (64 × 256) small. Measured on the Xeon (2 threads, paired,
// against the cost without A): 2048 × 64 × 256 1.15x faster (AVX2 1.06x), × 512 1.07x (AVX2 1.06x),
// LSTMCell(256, 512) forward+backward at batch 64 1.01-1.02x; the LSTM's shapes unchanged. On a tie,
// fewer row tiles (each re-reads all of B), then fewer column tiles. The grids tried run from the
// coarsest (tiles of at most tile_rows rows and kTilePanels panels) to 4 tiles a thread, or to the
// first whole number of tiles a thread past the coarsest where that is more: the LSTM's weight
// gradient (2048 × 1600 × 512: 11 tiles of 192 rows at the coarsest) then runs as 12 of 176, 6 a
// thread, not 6 against 5. Measured on Zen 4 (AVX-512, 2 threads, paired, one process), against grids
// of at most 4 tiles a thread or the coarsest: 2048 × 1600 × 512 1.08-1.09x faster (Aᵀ as dgatesᵀ,
// and A row-major), 1600 × 2048 × 512 (the input gradient, 9 tiles before) 1.06x, × 256 1.05-1.07x,
// an nn.LSTM layer's backward (H = 512) 1.04x; with AVX2 (6 × 2: 13 tiles at the coarsest) 1.04-1.08x
// on the same products; 2048², the input projection and the step's product unchanged.
inline Grid plan(int64_t m, int64_t mr, int64_t nr, int64_t panels, int64_t threads, int64_t tile_rows) {
  const int64_t blocks = ceil_div(m, mr);
  Grid best{ceil_div(m, std::max(mr, tile_rows)), ceil_div(panels, kTilePanels)};
  const int64_t finest = std::max(4 * threads, ceil_div(best.row_tiles * best.col_tiles, threads) * threads);
  double best_cost = 1e300;
  for (int64_t r = best.row_tiles; r <= blocks; ++r) {
    for (int64_t c = ceil_div(panels, kTilePanels); c <= panels; ++c) {
      const int64_t tiles = r * c;
      if (tiles > finest) break;  // no finer grid helps
      const int64_t rb = ceil_div(blocks, r);
      const double cost = static_cast<double>(ceil_div(tiles, threads)) *
                          (static_cast<double>(ceil_div(panels, c) * (rb + 1)) + static_cast<double>(rb * mr) / nr);
      if (cost < best_cost * (1 - 1e-9)) best = {r, c}, best_cost = cost;
    }
  }
  return best;
}

// The start of slice s of `total` blocks cut into `parts` near-equal slices.
inline int64_t slice(int64_t s, int64_t total, int64_t parts) { return s * total / parts; }

// C (+)= A·B: A is m × k, B packed (k × groups·n); C's group g, column j of row i is at
// c[i·ldc + g·c_group + j]. With `accumulate` the product is added to C, else it replaces it.
// After a tile's whole reduction, epilogue(i0, rows, j0, cols) runs on the calling thread of that
// tile, for rows [i0, i0 + rows) and columns [j0, j0 + cols) of every group.
template <class T, class Epilogue>
void multiply(const Matrix<T>& a, const PackedB<T>& b, T* c, int64_t ldc, int64_t c_group, bool accumulate,
              const Epilogue& epilogue) {
  const GemmKernel<T>& kern = b.kernel();
  const int64_t m = a.rows, k = b.k(), mr = kern.mr, nr = kern.nr, blocks = ceil_div(m, mr);
  if (m == 0 || b.n() == 0) return;
  if (k == 0) {  // an empty sum: C is 0 (or unchanged)
    for (int64_t i = 0; i < m && !accumulate; ++i) {
      for (int64_t g = 0; g < b.groups(); ++g) std::fill_n(c + i * ldc + g * c_group, b.n(), T(0));
    }
    epilogue(int64_t{0}, m, int64_t{0}, b.n());
    return;
  }
  // Panels read in place lie at B's row stride, which for a weight is often a power of two (2048
  // columns: 8 KiB): their lines then fall into a few cache sets, and a long chunk overflows the
  // L2's ways (measured on a Xeon, 2 MiB 16-way L2, 32 × 512 × 2048 on one thread: 69 GFLOP/s in
  // one chunk of 512, 105 in two of 256). So those chunks stop at kInPlaceChunk steps.
  const int64_t chunk = chunk_for<T>(m, nr);
  const int64_t kc_max = reduction_chunk(k, b.stride(0) != nr ? std::min(kInPlaceChunk, chunk) : chunk);
  // Every thread gets work unless the whole product is tiny, or the caller runs it on one thread of a
  // parallel region already (ATen runs a parallel_for nested in one inline).
  const int64_t work = m * b.n() * b.groups() * k;
  const int64_t threads = work < (int64_t{1} << 18) || at::in_parallel_region() ? 1 : at::get_num_threads();
  const Grid grid = plan(m, mr, nr, b.panels(), threads, max_tile_rows<T>(kc_max));

  // Rows [i0, i0 + rows) × panels [p0, p1): the whole reduction, kc steps at a time, then the
  // epilogue. A's rows of a chunk are read from a_packed where the tile's row blocks are packed
  // already (chunk t0 at t0·blocks·mr, its block i at i·kc·mr), else packed into the thread's buffer
  // ap; bp is the thread's buffer for a panel chunk packed on use. The panels run first to last, or
  // last to first (`reverse`); `alternating`: the thread's next product over this B sweeps back from
  // the panel this one ends on (below).
  auto run_tile = [&](const T* a_packed, T* ap, T* bp, int64_t i0, int64_t rows, int64_t p0, int64_t p1,
                      bool reverse = false, bool alternating = false) {
    for (int64_t t0 = 0; t0 < k; t0 += kc_max) {
      const int64_t kc = std::min(kc_max, k - t0);
      const T* a_chunk = ap;
      if (a_packed != nullptr) {
        a_chunk = a_packed + t0 * blocks * mr + (i0 / mr) * kc * mr;
      } else {
        pack_a(a, i0, rows, t0, kc, mr, ap);
      }
      for (int64_t i = 0; i < p1 - p0; ++i) {
        const int64_t p = reverse ? p1 - 1 - i : p0 + i;
        const int64_t cols = std::min(nr, b.n() - p * nr);
        for (int64_t g = 0; g < b.groups(); ++g) {
          const bool on_use = b.packed_on_use(g, p);
          const T* panel = bp;
          if (on_use) {
            b.pack(g, p, t0, kc, bp);
          } else {
            panel = b.panel(g, p) + t0 * b.stride(p);
          }
          // The panel chunk this tile runs next (the next group, panel, or the next chunk's first
          // panel; after the last, the first again: the next call's, an LSTM's next step, unless
          // that call starts where this one ends: `alternating`), where it is packed ahead: it is
          // fetched into L2 while this one computes, so that its first row block does not wait on
          // L3. Measured on the Xeon (AVX-512, 2 threads, paired in one process): nn.LSTM
          // forward+backward ~3.5% faster, 2048² ~3.5%, 1600 × 256 × 2048 and 2048 × 1600 × 512 ~2%.
          // The micro-kernels fetch whole lines of it for kc steps: none where that would reach past
          // the packed panels (the last of them, where a step is not a whole number of lines).
          const T* next = nullptr;
          int64_t gn = g + 1, pn = p, tn = t0;
          if (gn == b.groups()) gn = 0, pn += reverse ? -1 : 1;
          if (pn == (reverse ? p0 - 1 : p1)) pn = reverse ? p1 - 1 : p0, tn = t0 + kc < k ? t0 + kc : 0;
          const bool wraps = i == p1 - p0 - 1 && g == b.groups() - 1 && t0 + kc >= k;
          if (b.packed_ahead(gn, pn) && !(alternating && wraps)) {
            const T* const ahead = b.panel(gn, pn) + tn * nr;
            if (b.packed_after(ahead) >= next_fetch_values<T>(nr, kc)) next = ahead;
          }
          kern.run(a_chunk, nullptr, kc * mr, panel, on_use ? nr : b.stride(p), nullptr, nullptr,
                   c + i0 * ldc + g * c_group + p * nr, ldc, rows, cols, kc, accumulate || t0 > 0, next);
        }
      }
    }
    epilogue(i0, rows, p0 * nr, std::min(b.n(), p1 * nr) - p0 * nr);
  };

  if (threads > 1 && grid.row_tiles == 1 && grid.col_tiles <= threads) {
    // A small product, one tile per thread: the panels rarely divide evenly (an LSTM step of 4 row
    // blocks × 11 panels on 2 threads: 24 calls against 20). So cut the (panel, row block) units,
    // panel by panel, into equal runs instead: a run is a part of a panel, whole panels and a part
    // of a panel (22 calls each). A thread with whole panels reads all of A, and part of it once
    // more for its partial panel: so it packs the row blocks its run reads, each once, up front.
    // (Packing A once, shared, each thread packing a part, had the threads wait for each other and
    // then read half of the packed A from the other core. Paired on a Zen 4 VM, 2 threads, own
    // blocks against shared, AVX-512: where a cache line takes 65-100 ns between the threads'
    // cores, nn.LSTM forward+backward 1.01-1.06x faster, the language-model step 1.01-1.02x,
    // 64 × 2048 × 512 1.02-1.04x, 64 × 512 × 2048 1.01-1.03x, LSTMCell 1.00x; where it takes
    // 300-360 ns, nn.LSTM 1.04x, the LM step 1.01-1.05x, 64 × 2048 × 512 1.27-1.29x, 64 × 512 × 2048
    // 1.06-1.08x. AVX2, 65-100 ns: 0.997-1.02x.)
    // Each thread runs the same panels at every call (an LSTM's steps: the same W_hh, a few MB):
    // where they about fill its L2, a sweep in one order finds none of them left there by the last
    // one, which evicted each panel before it came round again. So successive products over one B
    // sweep in alternate directions, each starting with the panels the last one used most
    // recently. Measured on the Xeon (2 MiB L2, AVX-512, 2 threads, paired, one process):
    // nn.LSTM(256, 512, 2 layers) forward at batch 1 (T = 200) 1.24x faster (AVX2 1.23x), batch 4
    // 1.21x (AVX2 1.07x), batch 8 1.07x, 16 1.02x; forward+backward at batch 1 1.07x; batch 32 and
    // 64, hidden 256 (W_hh in L2 anyway) and 1024 (far larger) unchanged.
    const int64_t units = b.panels() * blocks;
    const bool reverse = b.next_sweep_reversed();
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      Aligned<T> bp(b.any_packed_on_use() ? kc_max * nr : 0);
      // A packed as run_tile reads it (chunk t0 at t0·blocks·mr, its block rb at rb·kc·mr): only
      // the row blocks of this thread's runs are filled in.
      Aligned<T> a_packed(blocks * mr * k);
      std::vector<bool> packed(blocks);
      for (int64_t th = begin; th < end; ++th) {
        // The thread's run: at most a part of a panel, whole panels, a part of a panel.
        struct Piece {
          int64_t rb0, rb1, p0, p1;
        };
        std::array<Piece, 3> pieces;
        int64_t n = 0;
        for (int64_t q = slice(th, units, threads), q1 = slice(th + 1, units, threads); q < q1;) {
          const int64_t p = q / blocks, rb = q % blocks;
          if (rb > 0 || q1 - q < blocks) {  // row blocks [rb, rb1) of panel p
            const int64_t rb1 = std::min(blocks, rb + (q1 - q));
            pieces[n++] = {rb, rb1, p, p + 1};
            q += rb1 - rb;
          } else {  // whole panels
            const int64_t p1 = p + (q1 - q) / blocks;
            pieces[n++] = {0, blocks, p, p1};
            q = p1 * blocks;
          }
        }
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t rb = pieces[i].rb0; rb < pieces[i].rb1; ++rb) {
            if (packed[rb]) continue;
            for (int64_t t0 = 0; t0 < k; t0 += kc_max) {
              const int64_t kc = std::min(kc_max, k - t0), i0 = rb * mr;
              pack_a(a, i0, std::min(mr, m - i0), t0, kc, mr, a_packed.data() + t0 * blocks * mr + i0 * kc);
            }
            packed[rb] = true;
          }
        }
        for (int64_t i = 0; i < n; ++i) {
          const Piece& c = pieces[reverse ? n - 1 - i : i];
          run_tile(a_packed.data(), nullptr, bp.data(), c.rb0 * mr, std::min(m, c.rb1 * mr) - c.rb0 * mr, c.p0, c.p1,
                   reverse, /*alternating=*/true);
        }
      }
    });
    return;
  }
  at::parallel_for(0, grid.row_tiles * grid.col_tiles, 1, [&](int64_t begin, int64_t end) {
    Aligned<T> ap(ceil_div(blocks, grid.row_tiles) * mr * kc_max), bp(b.any_packed_on_use() ? kc_max * nr : 0);
    for (int64_t tile = begin; tile < end; ++tile) {
      // Column tiles outermost: consecutive tiles of one thread share their panels of B.
      const int64_t ct = tile / grid.row_tiles, rt = tile % grid.row_tiles;
      const int64_t i0 = slice(rt, blocks, grid.row_tiles) * mr;
      run_tile(nullptr, ap.data(), bp.data(), i0, std::min(m, slice(rt + 1, blocks, grid.row_tiles) * mr) - i0,
               slice(ct, b.panels(), grid.col_tiles), slice(ct + 1, b.panels(), grid.col_tiles));
    }
  });
}

// Row blocks of A up to which B is not packed ahead: each of its panels is then used by few
// blocks, and packing all of B (a copy through memory) cost ~40% of a 32 × 512 × 2048 product on a
// Xeon. B with contiguous rows is read in place; another B is packed a chunk at a time, in cache.
constexpr int64_t kInPlaceBlocks = 8;

// Row blocks of A from which a B whose rows lie `row_bytes` apart is packed deferred rather than read
// in place. A panel chunk read in place is kInPlaceChunk runs at that stride, re-read by every row
// block. At strides that are multiples of 2-8 KiB the runs fall into few cache sets: L1 (64 sets)
// holds almost none of them, and the L2 holds the chunk only where its sets at that stride have at
// least kInPlaceChunk lines (l2_lines_at_stride, per line of the panel's rows); otherwise every row
// block reads the chunk from L3 again, and a copy of each chunk into the thread's buffer pays from a
// few row blocks on. Where the L2 holds the chunk just so (as many lines as steps), a copy still paid
// from kInPlaceBlocks blocks on Zen 3 but not on a Xeon; with twice that, reading in place paid on
// both. Measured on Zen 3 (AVX2, 6 × 2, 512 KiB 8-way L2: 1024 sets; 2 threads; paired, one process;
// deferred against in place): B of 8 KiB rows (64 lines at that stride; 2048 floats, an LSTM step's
// W_hhᵀ shape, 32 × 512 × 2048) at 24, 32 and 48 rows 1.11x, 1.36x and 1.37x faster, at 12 and 18
// rows 0.94x and 1.00x; 4 KiB rows (128 lines) at 24 and 32 rows 1.06x and 1.19x; 2 KiB rows (256
// lines) at 18, 24, 32 and 48 rows 0.86x, 0.92x, 1.04x and 1.13x; 1 KiB rows (512 lines) and
// 8256-byte rows (2064 floats: no aliasing) 0.89-0.95x at 32 and 48 rows. On the Xeon (AVX-512, 8 ×
// 3, 2 MiB 16-way L2: 2048 sets; in place against deferred): 8 KiB rows (256 lines) at 32, 48 and
// 64 rows 1.16-1.20x, 1.09x and 1.06x faster (32 × 512 × 2048 on one thread 1.29x), 4 KiB rows (512
// lines) at 32 and 64 rows 1.14x and 1.06x, 16 and 24 rows (already in place) unchanged. So at
// kInPlaceBlocks blocks and as many lines as steps the rule follows Zen 3 (2 KiB rows at 48 rows:
// deferred 1.13x faster) and leaves the Xeon's 64 rows of 8 KiB (in place 1.06x faster) deferred;
// on the Xeon capped at AVX2 (6 × 2), in place at 32 rows ran 0.98x (8 KiB rows) and 0.95x (4 KiB).
inline int64_t aliased_blocks(int64_t row_bytes) {
  const int64_t lines = l2_lines_at_stride(row_bytes);
  return lines >= 2 * kInPlaceChunk ? kInPlaceBlocks + 1 : lines >= kInPlaceChunk ? kInPlaceBlocks : 4;
}

// How a B of `groups` column groups, used once by `rows` rows of A, is best packed for the shape
// `kern`: few row blocks (kInPlaceBlocks) read it in place where they can, that is where a panel's
// row is whole cache lines or a single row block reads each panel once, and B's row stride leaves
// the panel's runs in enough cache sets (aliased_blocks). A panel of AVX2's 4 × 3
// shape (24 floats, 1.5 lines) shares a line with each neighbour, so every row block fetched two
// lines per step at B's row stride, where few cache sets hold them. Measured on Zen 3 (512 KiB
// 8-way L2; paired, one process), 4 × 3 panels packed deferred against read in place: 8 rows (two
// blocks) 1.45x faster, and, while 4 × 3 still served them, 16 rows 1.3x and 32 rows 1.3-1.7x; 3
// and 4 rows (one block) 1.1x slower. 6 × 2's one-line panels stayed as fast in place (12 and 48
// rows: 1.02x and 1.05x, within noise). Rows that fit one row tile pack B deferred, since each
// panel is then used by one tile only and packing it in cache costs no more than packing it ahead
// (an LSTMCell of batch 256, 1024 -> 1024: W_ihᵀ and W_hhᵀ are 16 MB each); more rows pack it
// ahead, once for all their tiles.
template <class T>
Packing packing_for(const Matrix<T>& b, int64_t groups, int64_t rows, const GemmKernel<T>& kern) {
  const int64_t blocks = ceil_div(rows, kern.mr);
  if (blocks <= kInPlaceBlocks) {
    const bool read_in_place = (kern.nr % kLineValues<T> == 0 || rows <= kern.mr) &&
                               blocks < aliased_blocks(b.rs * static_cast<int64_t>(sizeof(T)));
    return b.cs == 1 && groups == 1 && read_in_place ? Packing::in_place : Packing::deferred;
  }
  return rows <= max_tile_rows<T>(chunk_for<T>(rows, kern.nr)) ? Packing::deferred : Packing::ahead;
}

// The unpacked product (Dot) takes products of at most kDotRows rows whose reduction has at least
// kDotStepsPerRow steps per row: each of its outputs ends in a sum across a vector's lanes, which
// shorter reductions do not repay. Measured on Zen 5 (AVX-512, 2 threads, mm(a, Wᵀ), against the
// packed path): 1-4 × 512 × 1000 1.6-2.1x faster, 1-4 × 4096 × 4096 1.8-2.2x (capped at AVX2:
// 1.5-2.4x); at 2048 columns the packed path won below 64 steps for 1 row (0.87x at 32), below 128
// for 2 (0.86x at 64), at 128 for 3 and 4 (0.99x, 0.91x; 1.26x and 1.17x at 256).
constexpr int64_t kDotStepsPerRow = 64;
// FMAs of a thread's run of the unpacked product, at least (its grain: this over k·m columns), so
// that a thread's start is paid by some dozens of columns.
constexpr int64_t kDotGrainFmas = int64_t{1} << 15;

// C (+)= A·B for a plain C (ldc): where C is replaced, A has 1 to kDotRows rows and
// kDotStepsPerRow steps per row, and B = Wᵀ with W's rows contiguous along the reduction, A's rows
// too, the Dot kernel over W as it lies, columns split over the threads (epilogue on each thread's
// columns); else on the shape that pads the product least, B packed as `packing_for` says;
// epilogue(i0, rows, j0, cols) on each tile, as above.
template <class T, class Epilogue>
void multiply(const Matrix<T>& a, const Matrix<T>& b, T* c, int64_t ldc, bool accumulate, const Epilogue& epilogue) {
  if (!accumulate && a.rows > 0 && a.rows <= kDotRows && a.cols >= kDotStepsPerRow * a.rows && a.cs == 1 &&
      b.rs == 1) {
    const Dot<T> dot = HK_ISA_TABLE(gemm_kernels).typed.of<T>().dot;
    const int64_t grain = std::max<int64_t>(1, kDotGrainFmas / (a.rows * a.cols));
    at::parallel_for(0, b.cols, grain, [&](int64_t j0, int64_t j1) {
      dot(a.data, a.rs, a.rows, b.data + j0 * b.cs, b.cs, j1 - j0, a.cols, c + j0, ldc);
      epilogue(int64_t{0}, a.rows, j0, j1 - j0);
    });
    return;
  }
  const GemmKernel<T>& kern = best_shape<T>(a.rows, b.cols);
  const PackedB<T> packed(b, 1, kern, packing_for(b, 1, a.rows, kern));
  multiply(a, packed, c, ldc, 0, accumulate, epilogue);
}

template <class T>
void multiply(const Matrix<T>& a, const Matrix<T>& b, T* c, int64_t ldc, bool accumulate) {
  multiply(a, b, c, ldc, accumulate, [](int64_t, int64_t, int64_t, int64_t) {});
}

}  // namespace hotkernels::cpu::gemm
