// conv2d on the CPU, the general path: an implicit GEMM without an im2col matrix. The input is
// copied (where a pass needs the copy: below), zero-padded and split by stride phase:
// xs[n][c][a][b][y][x] = x[n][c][y·sh + a − pt][x·sw + b − pl] (zero outside x), each phase plane
// Hs × Ws (neighbouring rows sharing padding columns: PhaseLayout). Output pixel (oy, ox) then
// reads, for tap (i, j) with i·dh = sh·qi + ai and j·dw = sw·qj + bj, the value at (oy + qi, ox + qj)
// of phase (ai, bj): for the "virtual" pixel index v = oy·Ws + ox, that is
// xs_plane[v + offset(c, i, j)]. So consecutive virtual pixels read consecutive memory for every
// (channel, tap), and the micro-kernel (csrc/cpu/simd/gemm.cpp) can stream B straight from xs
// (run_pass_virtual). Virtual pixels with ox ≥ OW are computed and thrown away: a few percent at
// 56×56, but a quarter of the work at 7×7 and 14×14 once tiles are rounded.
// So passes with many output rows (8 vectors' worth, 64 with AVX2's float; 16, 256, with
// AVX-512's), a wasteful grid or a short reduction gather B instead, per tile of real pixels of the
// whole batch and per reduction chunk, into an aligned [step][pixel] buffer (run_pass_packed: an
// im2col of one tile and one chunk, at most 128 KiB of float). A (the weights) is packed for the
// micro-kernel once ahead, or, where each block of it serves a single task (few pixels: the deep
// layers), by that task just before use, in cache (run_pass). On small maps, where the taps that
// read only padding are a large share of the work, the direct pass instead takes pixels as A's
// rows, read in place, and leaves those taps out (run_pass_direct); reading only real values, it
// reads x itself, without the padded copy (run_pass says where it still takes it).
// The workspace is the padded copy (about the input's size; mostly none for the direct pass) plus
// per-thread tiles. The tiles of a forward or a stride-1 input gradient, and the weight gradient
// (with one group), split the copy on use where the threads have images enough: each thread copies
// the images it computes (a task's, or a ring of those its tiles or chunks reach, or one) as it
// reaches them.
//
// Input gradient: the transposed convolution, split by stride phase into stride-1 correlations of
// grad_output (backward_input_gemm); each goes through the same passes, the two column phases of a
// stride-2 row phase together where they take the same tiles (pairs_columns).
// Weight gradient: a GEMM reducing over the real pixels of the whole batch, grad_output against
// the taps of the same phase-split input, gathered per chunk of pixels (weight_gradient_gemm), or,
// where the taps outnumber the output channels, its transpose with the taps read in place
// (weight_gradient_tap_rows).
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "cpu/conv2d_passes.h"
#include "cpu/gemm/gemm.h"

namespace hotkernels::cpu::conv {

using gemm::Aligned;
using gemm::ceil_div;
using gemm::max_nr;
using gemm::reduction_chunk;

// n rounded up so that `outer` × n tasks share out evenly among `threads`: to a multiple of
// threads / gcd(outer, threads).
inline int64_t shared_evenly(int64_t n, int64_t outer, int64_t threads) {
  const int64_t step = threads / std::gcd(outer, threads);
  return ceil_div(n, step) * step;
}

// Columns per task tile (rounded up to whole blocks of the micro-kernel): with kReductionChunk
// reduction steps, a packed B tile of 128 KiB (float) stays in L2.
constexpr int64_t kTileColumns = 128;
// Reduction steps per micro-kernel call at most (reduction_chunk evens the chunks out): the B runs
// and the A block stay in cache.
constexpr int64_t kReductionChunk = 256;

// Columns of a task tile for a micro-kernel nr columns wide.
int64_t tile_columns(int64_t nr) { return ceil_div(kTileColumns, nr) * nr; }

// Planes [planes][h][w], placed at (pt, pl) in the padded frame (negative to crop).
template <class T>
struct Source {
  const T* data;
  int64_t planes, h, w;
  int64_t pt, pl;
};

// The phase-split padded copy described at the top, keeping only the phases that some tap reads
// (a 1×1 stride-2 convolution needs one of four). Layout [planes][phase][hs][ws], phases (row
// phase a, column phase b) in the order of `phases`: at most one per tap, however large sh·sw.
// A row of a phase's padded frame is ws + shared columns wide, but only its last ws are stored:
// its first `shared` are padding (zeros) in every phase, as are the last `shared` of the row before
// (of the same phase, or the last row of the phase or plane before), which lie at the same
// addresses (share_padding). So column x of row y lies at y·ws + x − shared, `shared` zeros ahead
// of the copy serving its first row. A 3×3 layer with padding 1 at 28×28 computes 29 virtual
// pixels per output row (run_pass_virtual) rather than 30.
struct PhaseLayout {
  int64_t sh, sw, hs, ws, shared;
  std::vector<std::pair<int64_t, int64_t>> phases;
  int64_t plane() const { return static_cast<int64_t>(phases.size()) * hs * ws; }
  // The place of phase (a, b) among `phases`, or phases.size() where it is not stored.
  int64_t slot(int64_t a, int64_t b) const {
    return std::find(phases.begin(), phases.end(), std::pair{a, b}) - phases.begin();
  }
};

// The columns [lo, hi) of a padded frame row `width` columns wide, column phase b, that lie inside a
// source row of w values placed at column pl: column x holds source column x·sw + b − pl.
inline std::pair<int64_t, int64_t> inside_columns(int64_t w, int64_t pl, int64_t b, int64_t sw, int64_t width) {
  const int64_t off = b - pl;
  const int64_t lo = std::clamp<int64_t>(ceil_div(-off, sw), 0, width);
  return {lo, std::clamp<int64_t>(ceil_div(w - off, sw), lo, width)};
}

// Shares between neighbouring rows (PhaseLayout::shared) the most padding columns that every phase
// has both in front of a row and behind it (a source row of w values placed at column pl), keeping
// a stored row at least `cols` long: a pass's virtual pixels X < cols of a row must not reach the
// next.
// Measured on Zen 4 (AVX-512, 2 threads, N = 8, paired in one process against unshared rows): 3×3
// 64 -> 64 @28 forward 1.04x, input gradient 1.04x; forward+backward @56 1.03x, @28 1.01x, N = 1
// 1.02x, dilated 2 1.02x; strided and packed passes (AVX2's 64 channels) unchanged.
inline void share_padding(PhaseLayout& p, int64_t w, int64_t pl, int64_t cols) {
  int64_t shared = p.ws - cols;
  for (const auto& phase : p.phases) {
    const auto [lo, hi] = inside_columns(w, pl, phase.second, p.sw, p.ws);
    shared = std::min({shared, lo, p.ws - hi});
  }
  p.ws -= shared, p.shared = shared;
}

// Uninitialised storage for n values plus `slack` zeros behind them; every value before is written
// by its producer.
template <class T>
std::unique_ptr<T[]> workspace(int64_t n, int64_t slack) {
  std::unique_ptr<T[]> buf(new T[n + slack]);
  std::fill(buf.get() + n, buf.get() + n + slack, T(0));
  return buf;
}

// The slack behind a phase-split source that the passes read B from: the micro-kernels' partial
// column blocks read less than a vector past the last real value (run_pass_virtual), the gather up
// to a vector (run_pass_packed). Two of the widest blocks are kept: more than either needs.
template <class T>
int64_t source_slack() {
  return std::max<int64_t>(2 * max_nr<T>(), kGatherSlackBytes / static_cast<int64_t>(sizeof(T)));
}

// A phase-split copy (phase_split) and where its data begin.
template <class T>
struct PhaseCopy {
  std::unique_ptr<T[]> buffer;
  const T* data = nullptr;  // plane 0's first stored value, p.shared zeros ahead of it
};

// Unit u (source plane u / phases, phase u % phases) of the phase-split copy of `src`, whose plane
// 0 starts at dst (p.shared zeros ahead of it, written by the caller): its rows in order.
template <class T>
void split_unit(const Source<T>& src, const PhaseLayout& p, int64_t u, T* dst) {
  const int64_t np = static_cast<int64_t>(p.phases.size());
  const T* in_plane = src.data + u / np * src.h * src.w;
  const auto [a, b] = p.phases[u % np];
  // A row's stored columns, from column `shared` of the frame on: [lo, hi) inside the source row
  // (lo ≥ shared: share_padding), the others in the padding.
  T* out = dst + u * p.hs * p.ws - p.shared;
  const auto [lo, hi] = inside_columns(src.w, src.pl, b, p.sw, p.ws + p.shared);
  const auto take_columns = kernels<T>().take_columns;
  for (int64_t y = 0; y < p.hs; ++y, out += p.ws) {
    const int64_t yy = y * p.sh + a - src.pt;  // the source row
    if (yy < 0 || yy >= src.h) {
      std::fill(out + p.shared, out + p.shared + p.ws, T(0));
      continue;
    }
    const T* in = in_plane + yy * src.w + (lo * p.sw + b - src.pl);  // column lo's source (index ≥ 0)
    std::fill(out + p.shared, out + lo, T(0));
    if (p.sw == 1) {
      std::memcpy(out + lo, in, (hi - lo) * sizeof(T));
    } else {
      take_columns(in, p.sw, out + lo, hi - lo);
    }
    std::fill(out + hi, out + p.shared + p.ws, T(0));
  }
}

// One task per source plane and phase, its rows in order, so that a row costs its copy and little
// else: with a task per output row (its plane, phase and row from three divisions, its column range
// from two more) the rows of a strided layer's phases, 14-28 values long, cost more in index
// arithmetic than in copying. Measured on Zen 4 (AVX-512), splitting (8, 64, 56, 56) at stride 2:
// 0.74-1.14 ms before, 0.39-0.45 ms now. The copy is allocated here, `slack` zeros behind it.
template <class T>
PhaseCopy<T> phase_split(const Source<T>& src, const PhaseLayout& p, int64_t slack) {
  const int64_t np = static_cast<int64_t>(p.phases.size());
  PhaseCopy<T> copy{workspace<T>(p.shared + src.planes * p.plane(), slack)};
  T* const dst = copy.buffer.get() + p.shared;
  std::fill(copy.buffer.get(), dst, T(0));
  at::parallel_for(0, src.planes * np, grain(p.hs * p.ws), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) split_unit(src, p, u, dst);
  });
  copy.data = dst;
  return copy;
}

// A phase-split copy not made yet: the images of `src` (each of `planes` source planes), split by
// whoever reads them (the tile passes and the weight gradient split them on use).
template <class T>
struct PhaseSplit {
  Source<T> src;  // every image's planes
  int64_t planes;  // per image
  PhaseLayout layout;
  int64_t slack;
  // Images [n0, n0 + count) into dst: layout.shared zeros, then image after image as phase_split
  // places them, then `slack` zeros (in a buffer for more images, where the micro-kernels read past
  // the last one's end: values they throw away, but not uninitialised ones).
  void images(int64_t n0, int64_t count, T* dst) const {
    std::fill(dst, dst + layout.shared, T(0));
    const int64_t np = static_cast<int64_t>(layout.phases.size());
    const Source<T> part{src.data + n0 * planes * src.h * src.w, count * planes, src.h, src.w, src.pt, src.pl};
    T* const first = dst + layout.shared;
    for (int64_t u = 0; u < count * planes * np; ++u) split_unit(part, layout, u, first);
    std::fill_n(first + count * planes * layout.plane(), slack, T(0));
  }
  PhaseCopy<T> whole() const { return phase_split(src, layout, slack); }
};

// One thread's copies of a deferred split's images, made as it reaches them: `slots` slots of
// `per_slot` images each (`image` values apart), the images from n0 on in slot n0 / per_slot mod
// slots, so that a ring of slots holds the images a tile or a chunk of pixels can span.
template <class T>
class SplitImages {
 public:
  SplitImages(const PhaseSplit<T>& split, int64_t slots, int64_t per_slot, int64_t image)
      : split_(split), per_slot_(per_slot),
        slot_(split.layout.shared + per_slot * image + split.slack),
        data_(new T[slots * slot_]), held_(slots, -1) {}

  // Images [n0, n0 + count) (n0 a multiple of per_slot, count ≤ per_slot), split into their slot
  // unless it holds them already: image n0's first value.
  const T* images(int64_t n0, int64_t count) {
    const int64_t s = n0 / per_slot_ % static_cast<int64_t>(held_.size());
    T* const at = data_.get() + s * slot_;
    if (held_[s] != n0) {
      split_.images(n0, count, at);
      held_[s] = n0;
    }
    return at + split_.layout.shared;
  }
  // Where the slots begin (for offsets from one base).
  const T* data() const { return data_.get(); }

 private:
  const PhaseSplit<T>& split_;
  int64_t per_slot_, slot_;
  std::unique_ptr<T[]> data_;
  std::vector<int64_t> held_;  // the first image in each slot, or -1
};

// A(g, row, t) = w[g·group_stride + row·row_stride + t_offset[t]]: the GEMM's A, read from the
// weight. Offsets precomputed per t keep the gather a plain load, whatever order the reduction
// walks the weight's axes in. Without offsets (t_offset null: t_offset[t] = t, the forward's weight,
// rows contiguous along t) the packing is the GEMM core's SIMD transpose.
template <class T>
struct WeightSource {
  const T* w;
  int64_t group_stride, row_stride;
  const int64_t* t_offset;
};

// Steps [t0, t0 + steps) of A's rows [r0, r0 + rows) of group g into dst[(t − t0)·mr + u], zeros
// for rows ≤ u < mr (a block's padding).
template <class T>
void pack_block(const WeightSource<T>& a, int64_t g, int64_t r0, int64_t rows, int64_t mr, int64_t t0,
                int64_t steps, T* dst) {
  const T* src = a.w + g * a.group_stride + r0 * a.row_stride;
  const auto row_at = gemm::strided_rows(rows, a.row_stride);
  const Interleave<T> interleave = gemm::interleave_kernel<T>();
  if (a.t_offset == nullptr) {
    interleave(src + t0, row_at.data(), rows, dst, mr, steps);
    return;
  }
  // Steps whose offsets run on by one (an input gradient's taps of one output channel: 9 for a 3×3
  // at stride 1) are contiguous in every row: runs of at least 4 go through the SIMD transpose too,
  // rather than a value at a time (which took a tenth of the input gradient of a 512 -> 512 3×3
  // layer at 7×7: now 1.02-1.08x faster on the Xeon); shorter ones (a strided input gradient's
  // phases: 1-2 taps a row) a value at a time, as the transpose's setup would cost more there.
  constexpr int64_t kMinRun = 4;
  for (int64_t t = 0; t < steps;) {
    const int64_t at = a.t_offset[t0 + t];
    int64_t run = 1;
    while (t + run < steps && a.t_offset[t0 + t + run] == at + run) ++run;
    if (run >= kMinRun) {
      interleave(src + at, row_at.data(), rows, dst + t * mr, mr, run);
    } else {
      for (int64_t s = t; s < t + run; ++s) {
        int64_t u = 0;
        for (; u < rows; ++u) dst[s * mr + u] = src[u * a.row_stride + a.t_offset[t0 + s]];
        for (; u < mr; ++u) dst[s * mr + u] = T(0);
      }
    }
    t += run;
  }
}

// Packs all of A (rows < m, t < kd) into [groups][ceil(m / mr)][kd][mr].
template <class T>
std::unique_ptr<T[]> pack_a(const WeightSource<T>& a, int64_t groups, int64_t m, int64_t mr, int64_t kd) {
  const int64_t blocks = ceil_div(m, mr);
  auto out = workspace<T>(groups * blocks * kd * mr, 0);
  // Steps in chunks, blocks inside: the input-gradient offsets jump a whole output channel of
  // weights (C_in · taps values) every few steps, and a chunk keeps those jumps to a few pages.
  constexpr int64_t kSteps = 64;
  at::parallel_for(0, groups * blocks, grain(kd * mr), [&](int64_t begin, int64_t end) {
    for (int64_t t0 = 0; t0 < kd; t0 += kSteps) {
      for (int64_t gb = begin; gb < end; ++gb) {
        const int64_t r0 = gb % blocks * mr;
        pack_block(a, gb / blocks, r0, std::min(mr, m - r0), mr, t0, std::min(kSteps, kd - t0),
                   out.get() + (gb * kd + t0) * mr);
      }
    }
  });
  return out;
}

// Offset of (channel, tap) inside a group's phase-split planes, for the reduction index
// t = (channel · kh + i) · kw + j.
std::vector<int64_t> tap_offsets(const Conv2dGeometry& g, int64_t channels, const PhaseLayout& p) {
  // Tap (i, j)'s offset in channel 0's planes; channel c's lie c planes on.
  std::vector<int64_t> tap(g.taps());
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t ai = i * g.dh % g.sh, qi = i * g.dh / g.sh, bj = j * g.dw % g.sw, qj = j * g.dw / g.sw;
      const int64_t slot = p.slot(ai, bj);
      TORCH_INTERNAL_ASSERT(slot < static_cast<int64_t>(p.phases.size()), "tap_offsets: a phase the layout lacks");
      tap[i * g.kw + j] = (slot * p.hs + qi) * p.ws + qj - p.shared;
    }
  }
  std::vector<int64_t> off(channels * g.taps());
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t t = 0; t < g.taps(); ++t) off[c * g.taps() + t] = c * p.plane() + tap[t];
  }
  return off;
}

PhaseLayout phase_layout(const Conv2dGeometry& g) {
  PhaseLayout p{g.sh, g.sw, g.oh + (g.kh - 1) * g.dh / g.sh, g.ow + (g.kw - 1) * g.dw / g.sw, 0, {}};
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t a = i * g.dh % g.sh, b = j * g.dw % g.sw;
      if (p.slot(a, b) == static_cast<int64_t>(p.phases.size())) p.phases.emplace_back(a, b);
    }
  }
  share_padding(p, g.w, g.pl, g.ow);
  return p;
}

// One implicit-GEMM pass: for every image n and group gi, output rows r < m (channels gi·m + r) at
// the virtual pixels v = Y·ws + X (Y < rows, X < cols) are Σ_t A[r][t] · src[v + offsets[t]], with
// src = xs + n·img_stride + gi·group_stride: xs the phase-split copy (col_step 1), the only source
// of the tile passes (virtual, packed; null where the copy is deferred: `split`). The direct pass
// reads only real values and so also takes the unpadded source itself, each pixel's reads from
// Y·ws + X·col_step on (the forward's x: ws = sh·W, col_step = sw, offsets from the window's
// corner, negative for taps in the padding before it; an input gradient's grad_output: ws = its
// width, col_step 1). Real pixels (X < cols) land at output pixel (y0 + Y·ystep, x0 + X·xstep) of
// an [*, out_h, out_w] plane; bias is added if given. `kern` is the micro-kernel shape A is packed
// for: `a` in pack_a's layout, or null where each task packs its blocks of `weight` itself
// (run_pass). Step t reads real values (not padding) for the pixels of rows [row_lo[t], row_hi[t])
// and columns [col_lo[t], col_hi[t]) (kd values each: plan_direct).
template <class T>
struct GemmPass {
  const GemmKernel<T>* kern;
  const T* xs;
  int64_t img_stride, group_stride;
  const int64_t* offsets;
  int64_t kd;
  WeightSource<T> weight;
  const T* a;
  int64_t m;
  int64_t ws, col_step, rows, cols;
  T* out;
  int64_t out_h, out_w, y0, ystep, x0, xstep;
  const T* bias;
  const int64_t *row_lo, *row_hi, *col_lo, *col_hi;
  // Where xs is not made yet (null): the copy to make, by the tile passes (split on use, or whole
  // where the threads would share images) or by made_copy (whole) for the direct pass.
  const PhaseSplit<T>* split = nullptr;
};

// Real pixels of a rows × cols grid, numbered q = (n·rows + Y)·cols + X over the whole batch,
// walked in runs that stay in one row of one image: f(q, len, n, Y, X) for each run of
// [q0, q0 + count).
template <class F>
void for_each_run(int64_t rows, int64_t cols, int64_t q0, int64_t count, F&& f) {
  for (int64_t q = q0; q < q0 + count;) {
    const int64_t n = q / (rows * cols), Y = q / cols % rows, X = q % cols;
    const int64_t len = std::min(q0 + count - q, cols - X);
    f(q, len, n, Y, X);
    q += len;
  }
}

// C[r][v] (row stride ldc) of group gi, pixel v of a tile (−> output pixel (Y, X) of image n),
// written to the output with the bias.
template <class T>
void scatter(const GemmPass<T>& p, int64_t gi, int64_t channels, int64_t r0, int64_t nr, const T* c, int64_t ldc,
             int64_t n, int64_t Y, int64_t X, int64_t len) {
  const int64_t plane = p.out_h * p.out_w;
  for (int64_t r = r0; r < r0 + nr; ++r) {
    const T* src = c + (r - r0) * ldc;
    T* dst = p.out + (n * channels + gi * p.m + r) * plane + (p.y0 + Y * p.ystep) * p.out_w + p.x0 + X * p.xstep;
    const T bias = p.bias ? p.bias[gi * p.m + r] : T(0);
    for (int64_t q = 0; q < len; ++q) dst[q * p.xstep] = src[q] + bias;
  }
}

// Rows [r0, r0 + nr) of the stride-2 column phases 0 and 1 of an input gradient's row phase (c0 and
// c1: C[r − r0][v] of the same tile pixels, row stride ldc; p is phase 0's pass) written together,
// each output row segment in whole vectors (zip_columns). A phase at a time, every value was a scalar
// store, and every line of the gradient was fetched by both phases' passes.
template <class T>
void scatter_pair(const GemmPass<T>& p, int64_t gi, int64_t channels, int64_t r0, int64_t nr, const T* c0,
                  const T* c1, int64_t ldc, int64_t n, int64_t Y, int64_t X, int64_t len) {
  const int64_t plane = p.out_h * p.out_w;
  const auto zip_columns = kernels<T>().zip_columns;
  for (int64_t r = r0; r < r0 + nr; ++r) {
    T* dst = p.out + (n * channels + gi * p.m + r) * plane + (p.y0 + Y * p.ystep) * p.out_w + 2 * X;
    zip_columns(c0 + (r - r0) * ldc, c1 + (r - r0) * ldc, dst, len);
  }
}

// The reduction steps of all of `passes` (one, or a pair: pairs_columns), for the parallel grain.
template <class T>
int64_t total_steps(std::span<const GemmPass<T>> passes) {
  int64_t kd = 0;
  for (const GemmPass<T>& q : passes) kd += q.kd;
  return kd;
}

// Virtual-pixel tiles: B read in place from the phase-split source. Pays for the Ws − OW columns
// of every row and for rounding each image's virtual pixels up to whole tiles. `passes` is one pass,
// or the pair of a stride-2 input gradient's column phases (pairs_columns), which differ only in
// their weights, steps and column phase: each task then computes both for its tile before writing
// them together (scatter_pair).
template <class T>
void run_pass_virtual(std::span<const GemmPass<T>> passes, int64_t batch, int64_t groups) {
  const GemmPass<T>& p = passes.front();
  const GemmKernel<T>& kern = *p.kern;
  const int64_t mr = kern.mr, np = static_cast<int64_t>(passes.size());
  const int64_t virt = (p.rows - 1) * p.ws + p.cols;  // virtual pixels up to the last real one
  const int64_t col_blocks = ceil_div(virt, kern.nr);
  const int64_t m = p.m, channels = groups * m;
  const int64_t kd = total_steps(passes);
  // Small images give few tiles: then a task takes several images, so that each block of weights
  // (mr rows × one reduction chunk, in L1) serves all of them before the next is loaded — the weights
  // of a 512-channel layer (9 MiB) would otherwise stream from memory once per image. At most as
  // many as keep the task's C (m rows of a tile per image and pass, rewritten every reduction chunk)
  // in half of L2: with many threads and up to 255 rows (packed_rows), a batch's share of images
  // would otherwise put megabytes of C through memory on every chunk. (A bound from the cache sizes,
  // not a measured gain: in the timings here, 2 threads and at most 128 rows, it never bound.)
  const int64_t threads = at::get_num_threads();
  const int64_t tile_blocks = tile_columns(kern.nr) / kern.nr;
  int64_t tiles = ceil_div(col_blocks, tile_blocks);
  const int64_t image_c_bytes = np * m * tile_columns(kern.nr) * static_cast<int64_t>(sizeof(T));
  const int64_t images_in_l2 = std::max<int64_t>(1, gemm::l2_bytes() / 2 / image_c_bytes);
  const int64_t per_task = tiles * groups < 2 * threads ? std::min(images_in_l2, ceil_div(batch, threads)) : 1;
  const int64_t batches = ceil_div(batch, per_task);
  // Tiles of tile_blocks column blocks each, unless the tasks would not share out evenly among the
  // threads: then as many more tiles as that takes, of near-equal numbers of blocks. One image of a
  // 64 -> 64 3×3 layer @56 (3246 virtual pixels, 68 blocks of 48 at AVX-512) took 23 tiles, 12 on one
  // thread and 11 on the other; in 24 the threads finish together. Measured on Zen 4 (AVX-512, 2
  // threads, N = 1, paired in one process): forward 1.03-1.04x, input gradient 1.04-1.05x,
  // forward+backward 1.03-1.04x. (Narrower tiles everywhere had cost N = 8 1%.)
  const int64_t shared = shared_evenly(tiles, batches * groups, threads);
  const bool even = shared == tiles;
  if (!even) tiles = std::min(col_blocks, shared);
  const auto first_block = [&](int64_t ti) {
    return even ? std::min(ti * tile_blocks, col_blocks) : gemm::slice(ti, col_blocks, tiles);
  };
  // the widest tile
  const int64_t tile = (even ? std::min(tile_blocks, col_blocks) : ceil_div(col_blocks, tiles)) * kern.nr;
  const int64_t task_c = per_task * m * tile;  // C values of a task, a pass
  // A copy not made yet (p.split: a forward's, a stride-1 input gradient's) is split by the tasks:
  // each thread splits the images of its tasks, a task's images at a time, into a buffer of its own
  // that their tiles then read, in cache. Made whole ahead, the copy went out to memory (the size of
  // the input) and came back, in a fresh workspace. Where the threads would share images (fewer
  // tasks' images than threads) it is still made whole: each would split all of an image. Measured
  // on Zen 4 (AVX-512, 2 threads, N = 8, paired in one process, split on use against whole),
  // forward: 64 -> 128 3×3/s2 @56 1.04-1.05x (1.08-1.10x with no copy at all: the bound), 64 @56
  // 1.01-1.05x, dilated 2 1.03x, 64 @28 1.00x; input gradient 64 @56 1.01-1.03x; forward+backward
  // 64 @56 1.00-1.02x, /s2 1.01-1.03x, dilated 2 1.04x; the ResNet-18-style step 1.02x; capped at
  // AVX2 (64 channels take the packed tiles there), 32 @56 forward+backward 1.03x.
  TORCH_INTERNAL_ASSERT(!p.split || np == 1);
  const bool split_on_use = p.split && batches >= threads;
  const PhaseCopy<T> whole = p.split && !split_on_use ? p.split->whole() : PhaseCopy<T>{};
  at::parallel_for(0, batches * groups * tiles, grain(task_c * kd), [&](int64_t begin, int64_t end) {
    const std::unique_ptr<T[]> ct(new T[np * task_c]);  // the tiles' C, each written whole before it is read
    std::optional<SplitImages<T>> own;  // this thread's copy of a task's images
    if (split_on_use) own.emplace(*p.split, 1, per_task, p.img_stride);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t ti = task % tiles, gi = task / tiles % groups, n0 = task / tiles / groups * per_task;
      const int64_t nn = std::min(per_task, batch - n0);
      const int64_t v0 = first_block(ti) * kern.nr, vn = std::min(first_block(ti + 1) * kern.nr, virt) - v0;
      const T* const mine = split_on_use ? own->images(n0, nn) : nullptr;
      for (int64_t ip = 0; ip < np; ++ip) {
        const GemmPass<T>& q = passes[ip];
        // image n0's copy
        const T* xs = split_on_use ? mine : (p.split ? whole.data : q.xs) + n0 * q.img_stride;
        const int64_t chunk = reduction_chunk(q.kd, kReductionChunk);
        T* const c = ct.get() + ip * task_c;
        for (int64_t k0 = 0; k0 < q.kd; k0 += chunk) {
          const int64_t r = std::min(chunk, q.kd - k0);
          for (int64_t i = 0; i < m; i += mr) {
            const T* a = q.a + ((gi * ceil_div(m, mr) + i / mr) * q.kd + k0) * mr;
            for (int64_t b = 0; b < nn; ++b) {
              const T* xb = xs + b * q.img_stride + gi * q.group_stride + v0;
              kern.run(a, nullptr, q.kd * mr, xb, 0, q.offsets + k0, nullptr, c + (b * m + i) * tile, tile,
                       std::min(mr, m - i), vn, r, k0 > 0, nullptr);
            }
          }
        }
      }
      // Scatter the real pixels of the tile, row segment by row segment.
      for (int64_t b = 0; b < nn; ++b) {
        for (int64_t v = v0; v < v0 + vn;) {
          const int64_t y = v / p.ws, x = v % p.ws, len = std::min(v0 + vn, (y + 1) * p.ws) - v;
          const int64_t real = std::max<int64_t>(0, std::min(len, p.cols - x));
          const T* c = ct.get() + b * m * tile + (v - v0);
          if (real > 0 && np == 1) {
            scatter(p, gi, channels, 0, m, c, tile, n0 + b, y, x, real);
          } else if (real > 0) {
            scatter_pair(p, gi, channels, 0, m, c, c + task_c, tile, n0 + b, y, x, real);
          }
          v += len;
        }
      }
    }
  });
}

// Whether the output plane is the pass's grid of pixels, unit steps from its corner (the forward, a
// stride-1 input gradient; not a strided input gradient's phase): run_pass_packed then writes the
// tiles inside one image into the output itself.
template <class T>
bool plane_is_grid(const GemmPass<T>& p) {
  return p.ystep == 1 && p.xstep == 1 && p.y0 == 0 && p.x0 == 0 && p.out_w == p.cols && p.out_h == p.rows;
}

// Packed tiles over the real pixels of the whole batch: per reduction chunk, B (chunk steps × tile
// pixels, in L2: at most 128 KiB of float, or half of L2 for one tile of every pixel) is gathered
// from the phase-split source into [step][pixel] rows (the instruction set's gather_runs), then
// every row block of A runs over it, into the output itself or into a tile buffer scattered there
// (below). For small maps (7×7, 14×14) this wastes almost nothing where the virtual grid wastes
// ~25%; the gather (one copy per B value) is amortised over the rows. Without a packed A (p.a null,
// run_pass) there is one tile of every pixel and the rows are split across threads: each task packs
// each of its A blocks just before the micro-kernel runs it. `passes`: as for run_pass_virtual.
template <class T>
void run_pass_packed(std::span<const GemmPass<T>> passes, int64_t batch, int64_t groups) {
  const GemmPass<T>& p = passes.front();
  const GemmKernel<T>& kern = *p.kern;
  const int64_t mr = kern.mr, blocks = ceil_div(p.m, mr), np = static_cast<int64_t>(passes.size());
  const int64_t threads = at::get_num_threads(), pixels = batch * p.rows * p.cols, channels = groups * p.m;
  // Tiles in a multiple of the thread count, of near-equal numbers of whole column blocks (1568
  // pixels in 14 tiles of 32-column blocks: 3 or 4 blocks each, where tiles of 4 left the second
  // thread a quarter less work: 128@14 forward 1.12x on the Xeon); when there are too few of them
  // to balance, the rows (output channels) are split across threads as well, rows outermost so that
  // each thread's contiguous range of tasks is one row slice.
  const bool a_in_task = p.a == nullptr;
  const int64_t tiles = a_in_task ? 1 : ceil_div(ceil_div(pixels, tile_columns(kern.nr)), threads) * threads;
  const int64_t col_blocks = ceil_div(pixels, kern.nr);
  const int64_t tile = ceil_div(col_blocks, tiles) * kern.nr;  // the widest
  const int64_t splits = a_in_task || (groups * tiles < 4 * threads && p.m >= 64 * threads) ? threads : 1;
  const int64_t rows = ceil_div(ceil_div(p.m, splits), mr) * mr;
  const int64_t tasks = splits * groups * tiles;
  // Where the output plane is the pass's grid of pixels (unit steps from its corner: the forward, a
  // stride-1 input gradient), a tile of pixels of one image is, for each output channel, one run of
  // that channel's plane: the micro-kernel then writes C there itself, the plane a row of C apart,
  // rather than into a buffer that a scatter copies out (8% of a 64 -> 64 3×3 forward at 56×56).
  // Tiles that cross an image boundary still go through the buffer.
  // Measured on the Xeon (paired, one process, N = 8): forward 64 -> 64 3×3 @56 1.09x faster (AVX2:
  // 1.05x), ResNet's conv1 1.40x (AVX2: 1.28x), dilated 2 1.08x, 128 @28 1.06x, N = 1 1.07x;
  // forward+backward 64 @56 1.05x, conv1 1.18x; 256 @14 and 512 @7 (tiles of several images)
  // unchanged.
  const int64_t image = p.rows * p.cols, plane = p.out_h * p.out_w;
  const bool in_place = np == 1 && plane_is_grid(p);
  const int64_t kd = total_steps(passes);
  // A copy not made yet (p.split) is split on use, as run_pass_virtual does, where the threads
  // take different pixels (the rows not split) and have images enough, and there is one group (the
  // tasks run group by group, which would split each image again per group): each thread splits the
  // images its tiles reach, as it reaches them, into a ring of as many as a tile can span, and
  // gathers B from there, in cache. Measured on Zen 4 capped at AVX2 (2 threads, N = 8, paired in
  // one process, on use against whole; 64 channels take these tiles there): 64 @56 3×3 forward
  // 1.02x, 64 -> 128 /s2 forward 1.07x, 64 @56 input gradient 1.09x, forward+backward 64 @56 1.05x
  // and /s2 1.03x, the ResNet-18-style step 1.03x; at AVX-512 (the stem, 1×1 layers, 128 @28)
  // 0.97-1.01x, within noise.
  TORCH_INTERNAL_ASSERT(!p.split || np == 1);
  const bool split_on_use = p.split && splits == 1 && groups == 1 && batch >= threads;
  const PhaseCopy<T> whole = p.split && !split_on_use ? p.split->whole() : PhaseCopy<T>{};
  const int64_t slots = ceil_div(tile - 1, image) + 1;  // images a tile can span
  at::parallel_for(0, tasks, grain(rows * tile * kd), [&](int64_t begin, int64_t end) {
    std::optional<SplitImages<T>> own;  // this thread's ring of images
    if (split_on_use) own.emplace(*p.split, slots, 1, p.img_stride);
    const T* const xs = split_on_use ? own->data() : p.split ? whole.data : p.xs;
    Aligned<T> bt(kReductionChunk * tile + kGatherSlackBytes / static_cast<int64_t>(sizeof(T)));
    Aligned<T> ablock(a_in_task ? kReductionChunk * mr : 0);
    std::unique_ptr<T[]> ct;  // the tile buffer, for tiles not written in place (each written whole before it is read)
    std::vector<GatherRun> runs;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t ti = task % tiles, gi = task / tiles % groups, r0 = task / tiles / groups * rows;
      const int64_t q0 = gemm::slice(ti, col_blocks, tiles) * kern.nr;
      const int64_t qn = std::min(gemm::slice(ti + 1, col_blocks, tiles) * kern.nr, pixels) - q0;
      const int64_t nr = std::min(rows, p.m - r0);
      if (qn <= 0 || nr <= 0) continue;
      const int64_t img = q0 / image;
      const bool direct = in_place && (q0 + qn - 1) / image == img;
      if (!direct && !ct) ct.reset(new T[np * rows * tile]);
      T* const c = direct ? p.out + (img * channels + gi * p.m + r0) * plane + (q0 - img * image) : ct.get();
      const int64_t ldc = direct ? plane : tile;
      runs.clear();
      for_each_run(p.rows, p.cols, q0, qn, [&](int64_t q, int64_t len, int64_t n, int64_t Y, int64_t X) {
        const int64_t at = split_on_use ? own->images(n, 1) - xs : n * p.img_stride;  // image n in xs
        runs.push_back({q - q0, len, gi * p.group_stride + at + Y * p.ws + X});
      });
      for (int64_t ip = 0; ip < np; ++ip) {
        const GemmPass<T>& q = passes[ip];
        const int64_t chunk = reduction_chunk(q.kd, kReductionChunk);
        T* const cq = c + ip * rows * tile;  // pass ip's C (a pair's is never written in place)
        for (int64_t k0 = 0; k0 < q.kd; k0 += chunk) {
          const int64_t r = std::min(chunk, q.kd - k0);
          kernels<T>().gather_runs(np == 1 ? xs : q.xs, q.offsets + k0, r, runs.data(),
                                   static_cast<int64_t>(runs.size()), bt.data(), qn, tile);
          for (int64_t i = r0; i < r0 + nr; i += mr) {
            const int64_t mc = std::min(mr, r0 + nr - i);
            const T* a = a_in_task ? ablock.data() : q.a + ((gi * blocks + i / mr) * q.kd + k0) * mr;
            if (a_in_task) pack_block(q.weight, gi, i, mc, mr, k0, r, ablock.data());
            kern.run(a, nullptr, q.kd * mr, bt.data(), tile, nullptr, nullptr, cq + (i - r0) * ldc, ldc, mc, qn, r,
                     k0 > 0, nullptr);
          }
        }
      }
      if (direct) {
        for (int64_t u = 0; u < nr && p.bias != nullptr; ++u) {
          const T bias = p.bias[gi * p.m + r0 + u];
          for (T* y = c + u * ldc; y < c + u * ldc + qn; ++y) *y += bias;
        }
        continue;
      }
      for_each_run(p.rows, p.cols, q0, qn, [&](int64_t q, int64_t len, int64_t n, int64_t Y, int64_t X) {
        const T* run = ct.get() + (q - q0);
        if (np == 1) {
          scatter(p, gi, channels, r0, nr, run, tile, n, Y, X, len);
        } else {
          scatter_pair(p, gi, channels, r0, nr, run, run + rows * tile, tile, n, Y, X, len);
        }
      });
    }
  });
}

// The cuts of [0, size) where some step starts or stops reading real values (lo, hi per step).
inline std::vector<int64_t> cuts_of(const int64_t* lo, const int64_t* hi, int64_t kd, int64_t size) {
  std::vector<int64_t> cuts{0, size};
  for (int64_t t = 0; t < kd; ++t) {
    for (const int64_t cut : {lo[t], hi[t]}) {
      const int64_t at = std::clamp<int64_t>(cut, 0, size);
      if (std::find(cuts.begin(), cuts.end(), at) == cuts.end()) cuts.push_back(at);
    }
  }
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

// The direct pass (run_pass_direct): pixels as the micro-kernel's rows, each read where it lies in
// its source (gathered: a row of A per pixel, step t at its offsets[t]; GemmPass), the output
// channels as its vector columns (the weights, B, packed a panel chunk at a time in cache). Pixels
// are grouped by the steps that read real values for them (a band of rows × a band of columns: the
// first and last rows and columns of a 3×3 layer read padding at a third or more of the taps), and
// each group runs over its own steps only: at 7×7 that leaves out 18% of the work, at 4×4 31%,
// where the packed pass's row bands leave out 9.5% and 17%. C comes out pixel by channel and is
// written to the output transposed. The plan: the groups (per chunk of kDirectChunk steps, their
// steps less the chunk's start and the source offsets of those steps) and the share of steps ×
// pixels left out, which decide whether the pass is taken (direct_pays) before its blocks of pixels
// are listed (a 56×56 map's 25,000 pixels, for nothing).
constexpr int64_t kDirectChunk = 256;
template <class T>
struct DirectPlan {
  struct Group {
    std::vector<std::vector<int64_t>> steps, offsets;
    int64_t y0, y1, x0, x1;  // its pixels: rows [y0, y1) × columns [x0, x1) of every image
  };
  const GemmKernel<T>* kern;
  std::vector<Group> groups;
  double left_out;
};

template <class T>
DirectPlan<T> plan_direct(const GemmPass<T>& p, int64_t batch) {
  DirectPlan<T> plan{&gemm::best_shape<T>(batch * p.rows * p.cols, p.m), {}, 0.0};
  const int64_t chunks = ceil_div(p.kd, kDirectChunk);
  const std::vector<int64_t> ycuts = cuts_of(p.row_lo, p.row_hi, p.kd, p.rows);
  const std::vector<int64_t> xcuts = cuts_of(p.col_lo, p.col_hi, p.kd, p.cols);
  int64_t left_out = 0;
  for (size_t i = 0; i + 1 < ycuts.size(); ++i) {
    for (size_t j = 0; j + 1 < xcuts.size(); ++j) {
      typename DirectPlan<T>::Group grp{std::vector<std::vector<int64_t>>(chunks),
                                        std::vector<std::vector<int64_t>>(chunks), ycuts[i], ycuts[i + 1], xcuts[j],
                                        xcuts[j + 1]};
      int64_t steps = 0;
      for (int64_t t = 0; t < p.kd; ++t) {
        if (p.row_lo[t] <= grp.y0 && grp.y1 <= p.row_hi[t] && p.col_lo[t] <= grp.x0 && grp.x1 <= p.col_hi[t]) {
          grp.steps[t / kDirectChunk].push_back(t % kDirectChunk);
          grp.offsets[t / kDirectChunk].push_back(p.offsets[t]);
          ++steps;
        }
      }
      left_out += (p.kd - steps) * batch * (grp.y1 - grp.y0) * (grp.x1 - grp.x0);
      plan.groups.push_back(std::move(grp));
    }
  }
  plan.left_out = static_cast<double>(left_out) / static_cast<double>(p.kd * batch * p.rows * p.cols);
  return plan;
}

// Whether the direct pass pays for its gathered rows and transposed output: where it leaves out at
// least 15% of the work (7×7 maps and smaller, for a 3×3 layer), or 7% (14×14) with 64 channels or
// more on shapes of 24 FMAs a step (AVX-512's). Measured on Zen 4 (2 threads, N = 8, paired, 15-25
// pairs, against the packed and virtual passes, forward / input gradient): AVX-512 3×3 512 @7 1.11x
// / 1.08x, 256 @7 1.08x / 1.09x, 512 @4 1.25x / 1.14x, 256 @14 1.09x / 1.07x, 128 @14 1.10x /
// 1.11x, 256 -> 512 /s2 @14 1.09x / 1.14x, 128 -> 256 /s2 @28 (its input gradient's 14×14 phases)
// 0.97x; capped at AVX2: 512 @7 1.04x / 1.17x, 512 @4 1.05x / 1.09x, 256 @7 1.03x / 0.93x (wide
// IQRs), 256 @14 (no direct pass there) 0.98x / 1.00x. Where it is not taken (an earlier build, B's
// row stride a run-time value): 32 @7 1.23x / 1.15x and 48 @7 1.17x / 1.17x, but 32 @14 0.88x /
// 1.00x, 16 @14 0.91x / 0.86x, 128 @28 0.96x / 0.95x, 64 @56 0.86x / 0.82x, and a 27-step reduction
// (3 -> 64 @14) 0.58x forward. The ResNet-18-style training step (N = 8, 112×112), paired, with the
// direct pass against without: AVX-512 1.057x [IQR 1.018-1.088], AVX2 1.038x [1.004-1.067].
template <class T>
bool direct_pays(const GemmPass<T>& p, const DirectPlan<T>& plan) {
  const GemmKernel<T>& k = *plan.kern;
  const bool wide = k.mr * k.nr / k.lanes >= 24;
  return p.kd >= 64 && (plan.left_out >= 0.15 || (wide && p.m >= 64 && plan.left_out >= 0.07));
}

template <class T>
void run_pass_direct(const GemmPass<T>& p, const DirectPlan<T>& plan, int64_t batch, int64_t groups) {
  const GemmKernel<T>& kern = *plan.kern;
  const int64_t mr = kern.mr, nr = kern.nr, panels = ceil_div(p.m, nr), chunks = ceil_div(p.kd, kDirectChunk);
  using Group = typename DirectPlan<T>::Group;
  // Blocks of at most mr pixels of one group: pixels [first, first + count) of the group, numbered
  // (n, Y, X) in its rectangle.
  struct Block {
    int64_t group, first, count;
  };
  std::vector<Block> blocks;
  for (size_t gp = 0; gp < plan.groups.size(); ++gp) {
    const Group& grp = plan.groups[gp];
    const int64_t count = batch * (grp.y1 - grp.y0) * (grp.x1 - grp.x0);
    for (int64_t q = 0; q < count; q += mr) blocks.push_back({static_cast<int64_t>(gp), q, std::min(mr, count - q)});
  }
  auto pixel = [&](const Block& blk, int64_t u) {
    const Group& grp = plan.groups[blk.group];
    const int64_t w = grp.x1 - grp.x0, h = grp.y1 - grp.y0, q = blk.first + u;
    return std::array<int64_t, 3>{q / (w * h), grp.y0 + q / w % h, grp.x0 + q % w};
  };
  // The threads split the (panel, block) units in equal shares of vectors computed (a partial last
  // panel's units cost less). Per chunk of steps a thread packs the chunk of each of its panels (in
  // L2), then runs block by block over them: a block's pixels (A, read where they lie) stay in L1
  // across the panels, and the panels stream from L2 as the micro-kernels prefetch them.
  const int64_t nb = static_cast<int64_t>(blocks.size()), channels = groups * p.m, plane = p.out_h * p.out_w;
  auto vectors = [&](int64_t pn) { return ceil_div(std::min(nr, p.m - pn * nr), kern.lanes); };
  int64_t per_group = 0;
  for (int64_t pn = 0; pn < panels; ++pn) per_group += vectors(pn) * nb;
  const int64_t threads = at::get_num_threads(), total = groups * per_group, ldc = panels * nr;
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    Aligned<T> bchunks(panels * kDirectChunk * nr), ct(nb * mr * ldc);  // C: [block][pixel][channel]
    std::vector<const T*> rows(nb * mr);
    std::vector<int64_t> bb0(panels), bb1(panels);  // the thread's blocks of each panel
    std::vector<bool> written(nb * panels);
    for (int64_t th = begin; th < end; ++th) {
      const int64_t lo = gemm::slice(th, total, threads), hi = gemm::slice(th + 1, total, threads);
      for (int64_t gi = 0; gi < groups; ++gi) {
        // Block bi of panel pn is the thread's where its cost c0 + bi·v falls in [lo, hi).
        bool any = false;
        for (int64_t pn = 0, c0 = gi * per_group; pn < panels; c0 += vectors(pn) * nb, ++pn) {
          const int64_t v = vectors(pn);
          bb0[pn] = std::clamp<int64_t>(ceil_div(std::max<int64_t>(lo - c0, 0), v), 0, nb);
          bb1[pn] = std::clamp<int64_t>(ceil_div(std::max<int64_t>(hi - c0, 0), v), 0, nb);
          any = any || bb0[pn] < bb1[pn];
        }
        if (!any) continue;
        for (int64_t bi = 0; bi < nb; ++bi) {
          for (int64_t u = 0; u < blocks[bi].count; ++u) {
            const auto [n, Y, X] = pixel(blocks[bi], u);
            rows[bi * mr + u] = p.xs + n * p.img_stride + gi * p.group_stride + Y * p.ws + X * p.col_step;
          }
        }
        std::fill(written.begin(), written.end(), false);
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t k0 = c * kDirectChunk, r = std::min(kDirectChunk, p.kd - k0);
          for (int64_t pn = 0; pn < panels; ++pn) {
            if (bb0[pn] < bb1[pn]) {
              pack_block(p.weight, gi, pn * nr, std::min(nr, p.m - pn * nr), nr, k0, r,
                         bchunks.data() + pn * kDirectChunk * nr);
            }
          }
          for (int64_t bi = 0; bi < nb; ++bi) {
            const Group& grp = plan.groups[blocks[bi].group];
            const int64_t len = static_cast<int64_t>(grp.steps[c].size());
            for (int64_t pn = 0; pn < panels && len > 0; ++pn) {
              if (bi < bb0[pn] || bi >= bb1[pn]) continue;
              kern.run(nullptr, rows.data() + bi * mr, 0, bchunks.data() + pn * kDirectChunk * nr, nr,
                       grp.offsets[c].data(), grp.steps[c].data(), ct.data() + bi * mr * ldc + pn * nr, ldc,
                       blocks[bi].count, std::min(nr, p.m - pn * nr), len, written[bi * panels + pn], nullptr);
              written[bi * panels + pn] = true;
            }
          }
        }
        for (int64_t pn = 0; pn < panels; ++pn) {  // C transposed into the output, with the bias (0 + bias
          const int64_t nc = std::min(nr, p.m - pn * nr);  // where every step reads padding)
          for (int64_t bi = bb0[pn]; bi < bb1[pn]; ++bi) {
            const Block& blk = blocks[bi];
            for (int64_t u = 0; u < blk.count; ++u) {
              const auto [n, Y, X] = pixel(blk, u);
              const T* src = ct.data() + (bi * mr + u) * ldc + pn * nr;
              T* dst = p.out + (n * channels + gi * p.m + pn * nr) * plane + (p.y0 + Y * p.ystep) * p.out_w + p.x0 +
                       X * p.xstep;
              const bool w = written[bi * panels + pn];
              for (int64_t k = 0; k < nc; ++k) {
                dst[k * plane] = (w ? src[k] : T(0)) + (p.bias ? p.bias[gi * p.m + pn * nr + k] : T(0));
              }
            }
          }
        }
      }
    }
  });
}

// Fraction of the virtual path's columns that are real pixels, per image.
template <class T>
double virtual_efficiency(const GemmPass<T>& p) {
  const int64_t nr = p.kern->nr;
  const int64_t virt = (p.rows - 1) * p.ws + p.cols, tile = std::min(tile_columns(nr), ceil_div(virt, nr) * nr);
  return static_cast<double>(p.rows * p.cols) / static_cast<double>(ceil_div(virt, tile) * tile);
}

// Whether each task of run_pass_packed packs its own blocks of A: where B's chunk for every pixel
// of the batch fits in half of L2 (one tile) and the rows split across threads, each A block serves
// one task, and packing it there, in cache, saves writing the whole of A out and reading it back
// (a 512-channel 3×3 layer's weights: 9.4 MB). Measured on the Xeon (N = 8, paired with packing
// ahead): 3×3 forward 512@4 1.15x (AVX2 1.12x), 512@7 1.09x, 256→512/s2 1.11x, 256@7 1.04x.
template <class T>
bool packs_a_in_task(const GemmPass<T>& p, int64_t batch) {
  const int64_t columns = ceil_div(batch * p.rows * p.cols, p.kern->nr) * p.kern->nr;
  const int64_t chunk = reduction_chunk(p.kd, kReductionChunk);
  return p.m >= std::max<int64_t>(128, 64 * at::get_num_threads()) &&
         columns * chunk * static_cast<int64_t>(sizeof(T)) <= gemm::l2_bytes() / 2;
}

// Packed tiles once there are enough rows to amortise the gather, when the virtual grid wastes too
// much, or for a short reduction (below). A gathered B value costs a copy; the rows computed with
// it take time in proportion to rows / lanes, so the gather's share grows with the vector width:
// packed from 8 vectors' worth of rows, 64 with AVX2's 8 floats (each gathered B run then serves 11
// row blocks of 6), 128 with AVX-512's 16 (now 256: below). Measured on Zen 3 (AVX2, 512 KiB L2;
// N = 8, paired in one process, packed against virtual at 64 rows): 3×3 64 -> 64 @56 forward 1.46x,
// forward+backward 1.13x; dilated 2 1.35x / 1.21x; N = 1 1.18x / 1.05x; ResNet's conv1 (147 steps)
// 1.25x / 1.04x. (On Zen 1, with an earlier packed path, 64 rows had lost ~10% on conv1; with 3
// rows, conv1's input gradient, packing loses 30%.) On Zen 4 (AVX-512, 2 threads, paired, virtual
// against packed at 64 rows, forward / input gradient): 64 @56 1.045x / 1.057x, dilated 2 1.00x /
// 1.03x, N = 1 0.98x / 1.00x, 64 -> 128 /s2 @56 1.02x / 1.05x, 64 @28 1.01x / 1.00x; at 128 rows
// (128 @28) packed stays ahead, 1.03x / 1.01x; capped at AVX2 there, 64 rows: 64 @56 1.00x / 0.99x,
// 64 @28 0.97x / 1.00x (packed kept). Since the virtual rows share their padding columns
// (PhaseLayout: W + 1 virtual pixels per output row of a 3×3 layer, not W + 2), AVX-512's float
// kernels take the packed tiles from 16 vectors' worth of rows (256) instead: measured on Zen 4 (2
// threads, N = 8, paired in one process, virtual against packed at 128 rows, forward / input
// gradient): 128 @56 1.04x / 1.05x, 128 @28 1.01-1.03x / 1.04x (forward+backward 1.03x), 128 @14
// 1.00-1.02x / 1.00x, 64 -> 128 /s2 @56 1.00-1.03x (forward+backward 1.01-1.03x). Capped at AVX2
// there, virtual tiles still lost at 64 rows (64 @56 0.99x / 0.97x, @28 0.98x / 0.99x, dilated 2
// 0.95x) and on the strided forward at 128 (0.89x): 8 vectors there, and for double (no measurement
// moved it). Only 128 rows were measured; 129-255 take the virtual tiles by the same reasoning
// (more rows share each B value the virtual tiles read in place, as they share each gathered one).
// A short reduction takes the packed tiles too, from any number of rows: where kd ≤
// kShortReduction·m (m the pass's rows: output channels a group, input channels for the input
// gradient) and the output plane is the pass's grid (plane_is_grid). The virtual pass copies each
// tile's C out to the output after it (the scatter: one copy per output value, in a burst after the
// tile), where the packed pass's micro-kernel then writes the tiles inside an image into the output
// itself and pays instead for its gather: one copy per B value, shared by the m rows, so kd / m
// copies per output value. A strided input gradient's phases, whose planes are not the grid, would
// pay for both and keep the virtual pass (packed, the input gradient of 1×1/s2 64 -> 128 @56 ran
// 0.90x, of 3×3/s2 1.00x, AVX2 0.95x). ResNet's conv1 (147 steps, 64 rows): the scatter was 12% of
// perf's samples, the micro-kernel 50%. Measured on Zen 4 (2 threads, N = 8, 56×56 unless said,
// paired in one process, packed against virtual), AVX-512 forward: 3 -> 64 7×7/s2 @112 1.06-1.08x
// (forward+backward 1.04x; @224 1.03x), 3 -> 32 3×3/s2 @112 1.14-1.15x, 1×1 64 -> 64 1.14-1.19x
// (its input gradient 1.16x), 1×1 32 -> 64 1.40x, 1×1 64 -> 32 1.05-1.12x, 1×1 16 -> 16 1.14x, 1×1
// 32 -> 16 1.02x, 16 -> 64 3×3 1.05-1.07x; AVX2 (packed from 64 rows already): 3 -> 32 /s2
// 1.15-1.22x, 1×1 64 -> 32 1.10-1.16x, 1×1 32 -> 16 1.09x, 1×1 16 -> 16 1.07x. Above the ratio,
// packed tiles lost or broke even: at 3.0 1×1 96 -> 32 0.86x, 16 -> 48 and 32 -> 96 3×3 1.01-1.02x;
// at 4.0 1×1 256 -> 64 0.97x, 1×1 64 -> 16 0.89x (AVX2 0.97x); at 4.5 the input gradient of 32 ->
// 16 3×3 0.95x; at 9.0 16 -> 16 3×3 0.89x (AVX2 0.91x).
constexpr double kShortReduction = 2.5;

// The rows (a pass's m) from which the packed tiles pay, whatever the grid's waste: above.
template <class T>
int64_t packed_rows(const GemmKernel<T>& kern) {
  return (kern.lanes >= 16 ? 16 : 8) * kern.lanes;
}

// Whether the tiles with A packed ahead are the packed ones (else the virtual ones): the rules above.
template <class T>
bool takes_packed(const GemmPass<T>& p) {
  const bool short_reduction = p.kd <= kShortReduction * static_cast<double>(p.m) && plane_is_grid(p);
  return p.m >= packed_rows(*p.kern) || virtual_efficiency(p) < 0.85 || short_reduction;
}

// p with its deferred copy (GemmPass::split) made whole, into `copy`, for the direct pass (the tile
// passes split it on use, or make it whole themselves). Only a single pass defers its copy (a
// forward's, a stride-1 input gradient's), never a pair.
template <class T>
GemmPass<T> made_copy(GemmPass<T> p, PhaseCopy<T>& copy) {
  if (p.split) {
    TORCH_INTERNAL_ASSERT(!copy.data);
    copy = p.split->whole();
    p.xs = copy.data, p.split = nullptr;
  }
  return p;
}

// `passes` (one, or a pair of column phases: pairs_columns) on the tiles of takes_packed, A packed
// ahead.
template <class T>
void run_tiles(std::span<GemmPass<T>> passes, int64_t batch, int64_t groups) {
  std::vector<std::unique_ptr<T[]>> a;
  for (GemmPass<T>& p : passes) {
    a.push_back(pack_a(p.weight, groups, p.m, p.kern->mr, p.kd));
    p.a = a.back().get();
  }
  if (takes_packed(passes.front())) {
    run_pass_packed<T>(passes, batch, groups);
  } else {
    run_pass_virtual<T>(passes, batch, groups);
  }
}

// Whether run_pass takes run_tiles for p: neither the direct pass nor packed tiles whose tasks pack A.
template <class T>
bool takes_tiles(const GemmPass<T>& p, int64_t batch) {
  return !direct_pays(p, plan_direct(p, batch)) && !packs_a_in_task(p, batch);
}

// One pass on the direct pass, the packed tiles with A packed by the tasks, or run_tiles. The
// direct pass reads only real values, so it reads its source where it lies (`in_place`: x or
// grad_output itself, unpadded), where every pixel's reads start inside its source plane
// (`starts_inside`: a forward's padding wider than the window's reach, or an input gradient's phase
// with more pixels a row or column than grad_output, can place them past it). The others, and the
// direct pass where its reads would not start inside, take `padded()`: the same pass on the
// phase-split copy, made only then (or deferred: GemmPass::split). In place saves the copy, a pass
// over memory into a fresh workspace. Measured on Zen 4 (2 threads, N = 8, paired in one process,
// in place against the copy), 3×3 forward+backward: AVX-512 128 @14 1.02-1.08x, 256 @14 1.07-1.09x,
// 256 @7 1.05-1.07x, 512 @7 1.06x, 512 @4 1.07x, 128 -> 256 /s2 @28 1.02x, 256 -> 512 /s2 @14
// 1.06x; AVX2 1.01-1.12x; the ops alone (AVX-512, forward and input gradient of 128 @14, 256 @14,
// 512 @7) 1.05-1.10x, 1.3x where the copy's workspace was fresh memory (page faults). The
// ResNet-18-style training step 1.03-1.07x (AVX-512) and 1.03x (AVX2). Taking the direct pass more
// often now that it saves the copy did not pay: 64 @28 and @56, 128 @28, forward and input
// gradient, 0.99-1.00x.
template <class T, class Padded>
void run_pass(const GemmPass<T>& in_place, bool starts_inside, int64_t batch, int64_t groups, const Padded& padded) {
  // Whether the direct pass pays depends on where steps read real values, the same on either source.
  const DirectPlan<T> plan = plan_direct(in_place, batch);
  const bool direct = direct_pays(in_place, plan);
  if (direct && starts_inside) {
    run_pass_direct(in_place, plan, batch, groups);
    return;
  }
  GemmPass<T> p = padded();
  PhaseCopy<T> copy;
  if (direct) {
    p = made_copy(p, copy);
    run_pass_direct(p, plan_direct(p, batch), batch, groups);  // the plan's offsets are the copy's
  } else if (packs_a_in_task(p, batch)) {
    run_pass_packed<T>({&p, 1}, batch, groups);
  } else {
    run_tiles<T>({&p, 1}, batch, groups);
  }
}

// Whether the column phases 0 and 1 of a stride-2 input gradient's row phase (p0, p1) run on the
// same tiles (run_tiles), each task computing both before it writes them together (scatter_pair):
// where they have as many columns and each would take those tiles alone (the same ones, no bias).
// Measured on Zen 4 (2 threads, N = 8, paired in one process, together against apart), the input
// gradient of 64 -> 128 3×3/s2 @56 1.12-1.18x (AVX2, on packed tiles there: 1.19x), its
// forward+backward 1.05x (AVX2 1.09x); of 128 -> 256 3×3/s2 @28 1.05x (AVX2 1.04x) and 64 -> 128
// /s2 @28 0.98-1.01x (in both, one row phase paired, the other's phase (1, 1) on the direct pass);
// of 128 -> 256 /s2 @14 (no pair: the direct pass, or A packed by the tasks) 0.98-0.99x.
template <class T>
bool pairs_columns(const GemmPass<T>& p0, const GemmPass<T>& p1, int64_t batch) {
  return p0.xstep == 2 && p0.x0 == 0 && p1.x0 == 1 && p0.cols == p1.cols && p0.kern == p1.kern && !p0.bias &&
         !p1.bias && takes_tiles(p0, batch) && takes_tiles(p1, batch) && takes_packed(p0) == takes_packed(p1);
}

template <class T>
void forward_gemm(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const int64_t kd = g.kdim(), m = g.cout_g(), plane = g.h * g.w;
  const GemmKernel<T>& kern = gemm::best_shape<T>(m, g.oh * g.ow);
  // Tap row i reads input row Y·sh + i·dh − pt for output row Y: real for Y·sh in [pt − i·dh, h + pt − i·dh).
  // Tap column j likewise, for output column X. In place, step t = (channel, i, j) reads
  // channel·plane + (i·dh − pt)·w + j·dw − pl on from the window's corner (Y·sh, X·sw).
  std::vector<int64_t> row_lo(kd), row_hi(kd), col_lo(kd), col_hi(kd), in_place(kd);
  for (int64_t t = 0; t < kd; ++t) {
    const int64_t e = g.pt - t / g.kw % g.kh * g.dh, f = g.pl - t % g.kw * g.dw;
    row_lo[t] = e <= 0 ? 0 : ceil_div(e, g.sh);
    row_hi[t] = g.h + e <= 0 ? 0 : ceil_div(g.h + e, g.sh);
    col_lo[t] = f <= 0 ? 0 : ceil_div(f, g.sw);
    col_hi[t] = g.w + f <= 0 ? 0 : ceil_div(g.w + f, g.sw);
    in_place[t] = t / g.taps() * plane - e * g.w - f;
  }
  const GemmPass<T> pass{&kern, x, g.c * plane, g.cin_g() * plane, in_place.data(), kd,
                         WeightSource<T>{w, m * kd, kd, nullptr}, nullptr, m, g.sh * g.w, g.sw, g.oh, g.ow, y, g.oh,
                         g.ow, 0, 1, 0, 1, bias, row_lo.data(), row_hi.data(), col_lo.data(), col_hi.data()};
  const bool starts_inside = (g.oh - 1) * g.sh < g.h && (g.ow - 1) * g.sw < g.w;
  std::optional<PhaseSplit<T>> split;
  std::vector<int64_t> off;
  run_pass(pass, starts_inside, g.n, g.groups, [&] {
    const PhaseLayout p = phase_layout(g);
    split = PhaseSplit<T>{Source<T>{x, g.n * g.c, g.h, g.w, g.pt, g.pl}, g.c, p, source_slack<T>()};
    off = tap_offsets(g, g.cin_g(), p);
    GemmPass<T> padded = pass;
    padded.xs = nullptr, padded.split = &*split;
    padded.img_stride = g.c * p.plane(), padded.group_stride = g.cin_g() * p.plane();
    padded.offsets = off.data(), padded.ws = p.ws, padded.col_step = 1;
    return padded;
  });
}

// The taps of the input gradient's phase a along one dimension (input pixels a + s·Y, Y < the
// phase's ceil((size − a) / s) pixels): (tap i, quotient q) where s divides e = a + pad − i·d, q = e/s,
// and pixel Y reads grad_output Y + q. Taps whose q leaves every such read outside the output
// ([0, out)) read only its padding, and are left out: they add nothing, and with a padding far
// beyond the kernel they would pad grad_output as far.
std::vector<std::pair<int64_t, int64_t>> phase_taps(int64_t a, int64_t size, int64_t pad, int64_t k, int64_t d,
                                                    int64_t s, int64_t out) {
  std::vector<std::pair<int64_t, int64_t>> taps;
  const int64_t pixels = ceil_div(size - a, s);
  for (int64_t i = 0; i < k; ++i) {
    const int64_t e = a + pad - i * d;
    if (e % s == 0 && e / s < out && e / s > -pixels) taps.emplace_back(i, e / s);  // exact division, negative e too
  }
  return taps;
}

// Whether each input row phase a < sh (and column phase) has a tap (phase_taps).
bool every_phase_has_taps(const Conv2dGeometry& g) {
  auto covered = [](int64_t size, int64_t s, int64_t pad, int64_t k, int64_t d, int64_t out) {
    for (int64_t a = 0; a < s && a < size; ++a) {
      if (phase_taps(a, size, pad, k, d, s, out).empty()) return false;
    }
    return true;
  };
  return covered(g.h, g.sh, g.pt, g.kh, g.dh, g.oh) && covered(g.w, g.sw, g.pl, g.kw, g.dw, g.ow);
}

// Input gradient, split by output phase: input pixel (a + sh·Y, b + sw·X) receives tap i only when
// sh divides e = a + pt − i·dh, and then reads grad_output row Y + e/sh (columns alike). So each of
// the phases that hold input pixels is a stride-1 correlation of grad_output (padded once for all
// phases, where a pass needs the copy) with its own subset of taps (phase_taps), flipped and
// channel-transposed weights: no multiplications by inserted zeros.
template <class T>
void backward_input_gemm(const T* gy, const T* w, T* gx, const Conv2dGeometry& g) {
  auto row_taps = [&](int64_t a) { return phase_taps(a, g.h, g.pt, g.kh, g.dh, g.sh, g.oh); };
  auto col_taps = [&](int64_t b) { return phase_taps(b, g.w, g.pl, g.kw, g.dw, g.sw, g.ow); };
  // Over all phases, the range [lo, hi] of their taps' quotients.
  int64_t ylo = 0, yhi = 0, xlo = 0, xhi = 0;
  for (int64_t a = 0; a < g.sh && a < g.h; ++a) {
    for (auto [i, e] : row_taps(a)) ylo = std::min(ylo, e), yhi = std::max(yhi, e);
  }
  for (int64_t b = 0; b < g.sw && b < g.w; ++b) {
    for (auto [j, e] : col_taps(b)) xlo = std::min(xlo, e), xhi = std::max(xhi, e);
  }
  // grad_output padded by −lo in front; rows/columns up to the largest phase extent + hi behind: made
  // when a pass first needs it (the direct pass reads grad_output in place).
  const int64_t hq = ceil_div(g.h, g.sh) - ylo + yhi, wq = ceil_div(g.w, g.sw) - xlo + xhi;
  PhaseLayout p{1, 1, hq, wq, 0, {{0, 0}}};
  share_padding(p, g.ow, -xlo, ceil_div(g.w, g.sw));
  // At stride 1, the one phase's pass takes the copy deferred (GemmPass::split: split on use by the
  // tiles, else made whole); a strided layer's phases share one copy, made once.
  const PhaseSplit<T> split{Source<T>{gy, g.n * g.k, g.oh, g.ow, -ylo, -xlo}, g.k, p, source_slack<T>()};
  PhaseCopy<T> gp;
  const auto padded_source = [&] {
    if (!gp.data) gp = split.whole();
    return gp.data;
  };

  const int64_t cin = g.cin_g(), cout = g.cout_g(), plane = g.oh * g.ow;
  // Phase (a, b)'s steps: their offsets in grad_output (in place) and in gp, in the weight, and where
  // each reads real values.
  struct Steps {
    std::vector<int64_t> off, padded_off, w_off, row_lo, row_hi, col_lo, col_hi;
  };
  // The pass of phase (a, b), reading grad_output in place.
  const auto phase_pass = [&](int64_t a, int64_t b, Steps& s) {
    const auto ti = row_taps(a), tj = col_taps(b);
    const int64_t nt = static_cast<int64_t>(ti.size() * tj.size()), kd = cout * nt;
    for (std::vector<int64_t>* v : {&s.off, &s.padded_off, &s.w_off, &s.row_lo, &s.row_hi, &s.col_lo, &s.col_hi}) {
      v->resize(kd);
    }
    // Step t reads grad_output row Y + e: real for Y in [−e, oh − e); columns likewise. Its weight,
    // weight[co][ci][i][j], lies w_off[t] on from ci's row.
    for (int64_t co = 0; co < cout; ++co) {
      for (size_t u = 0; u < ti.size(); ++u) {
        for (size_t v = 0; v < tj.size(); ++v) {
          const int64_t t = co * nt + u * tj.size() + v;
          s.off[t] = co * plane + ti[u].second * g.ow + tj[v].second;
          s.padded_off[t] = co * p.plane() + (ti[u].second - ylo) * p.ws + (tj[v].second - xlo) - p.shared;
          s.w_off[t] = co * cin * g.taps() + ti[u].first * g.kw + tj[v].first;
          s.row_lo[t] = -ti[u].second, s.row_hi[t] = g.oh - ti[u].second;
          s.col_lo[t] = -tj[v].second, s.col_hi[t] = g.ow - tj[v].second;
        }
      }
    }
    const int64_t rows = ceil_div(g.h - a, g.sh), cols = ceil_div(g.w - b, g.sw);
    return GemmPass<T>{&gemm::best_shape<T>(cin, rows * cols), gy, g.k * plane, cout * plane, s.off.data(), kd,
                       WeightSource<T>{w, cout * cin * g.taps(), g.taps(), s.w_off.data()}, nullptr, cin, g.ow, 1,
                       rows, cols, gx, g.h, g.w, a, g.sh, b, g.sw, static_cast<const T*>(nullptr), s.row_lo.data(),
                       s.row_hi.data(), s.col_lo.data(), s.col_hi.data()};
  };
  // The same pass on gp (deferred at stride 1).
  const auto padded = [&](GemmPass<T> pass, const Steps& s) {
    if (g.sh == 1 && g.sw == 1) {
      pass.xs = nullptr, pass.split = &split;
    } else {
      pass.xs = padded_source();
    }
    pass.img_stride = g.k * p.plane(), pass.group_stride = cout * p.plane();
    pass.offsets = s.padded_off.data(), pass.ws = p.ws;
    return pass;
  };
  for (int64_t a = 0; a < g.sh && a < g.h; ++a) {
    if (row_taps(a).empty()) continue;  // no tap reaches these pixels: their gradient stays 0
    std::vector<Steps> steps(std::min(g.sw, g.w));
    std::vector<GemmPass<T>> passes;  // of the column phases that some tap reaches
    for (int64_t b = 0; b < g.sw && b < g.w; ++b) {
      if (!col_taps(b).empty()) passes.push_back(phase_pass(a, b, steps[b]));
    }
    if (passes.size() == 2 && pairs_columns(passes[0], passes[1], g.n)) {
      for (int64_t b = 0; b < 2; ++b) passes[b] = padded(passes[b], steps[b]);
      run_tiles<T>(passes, g.n, g.groups);
      continue;
    }
    for (const GemmPass<T>& pass : passes) {
      // Pixel (Y, X) of the phase starts at grad_output (Y, X): inside it for Y < oh and X < ow.
      const bool starts_inside = pass.rows <= g.oh && pass.cols <= g.ow;
      run_pass(pass, starts_inside, g.n, g.groups, [&] { return padded(pass, steps[pass.x0]); });
    }
  }
}

// Weight gradient as a GEMM over the real pixels of the whole batch: gw[k][t] = Σ_q gy[k][q] · x(q, t)
// for pixel q = (n, oy, ox) and reduction index t = (channel, tap). Output channels are the
// micro-kernel's broadcast rows (A: grad_output, packed per chunk of pixels into [block][q][mr])
// and the taps its vector columns (B: each tap's input pixels, gathered from the phase-split input
// by the SIMD interleave into a [q][nr] panel per chunk, then reused by every row block). The
// pixels are split across the threads, in chunks of equal size and as many per thread, each
// thread summing into its own copy of gw (C_out × C_in·taps: small next to the inputs), and the
// copies are added at the end: every thread streams a different part of x and grad_output. With
// fewer chunks than threads (the deep layers of a small batch: 512 channels of 4 × 4 pixels, one
// chunk, a 9 MB gw), or where gw is much larger than grad_output, the threads split the tap panels
// instead, disjoint columns of gw (below).
template <class T>
void weight_gradient_gemm(const T* gy, const PhaseSplit<T>& split, const std::vector<int64_t>& off, T* gw,
                          const Conv2dGeometry& g) {
  const PhaseLayout& p = split.layout;
  const int64_t m = g.cout_g(), kd = g.kdim(), plane = g.oh * g.ow, pixels = g.n * plane;
  const GemmKernel<T>& kern = gemm::best_shape<T>(m, kd);
  const int64_t mr = kern.mr, nr = kern.nr, blocks = ceil_div(m, mr), panels = ceil_div(kd, nr);
  const int64_t threads = at::get_num_threads();
  // Pixels per chunk: grad_output's packed chunk (every row block) takes at most half of L2, where
  // it stays while each tap panel runs past it; at most 256 (a panel chunk of 256 × 48 floats, 48
  // KiB, is reused by every row block from L2).
  const int64_t max_chunk = std::clamp<int64_t>(
      gemm::l2_bytes() / (2 * blocks * mr * static_cast<int64_t>(sizeof(T))), 16, 256);
  int64_t chunks = ceil_div(pixels, max_chunk);
  if (chunks >= threads) chunks = ceil_div(chunks, threads) * threads;  // as many per thread
  const int64_t chunk = ceil_div(pixels, chunks);
  chunks = ceil_div(pixels, chunk);  // none empty, so that every part writes all of its copy
  // Each further pixel part costs a copy of gw (m × kd per group) written, read back and added; each
  // further panel part packs all of grad_output (m × pixels) again. So the panels are split where gw
  // is at least twice grad_output's size. Measured on the Xeon (AVX-512, 2 threads, N = 8, paired,
  // panels against pixels): 512 -> 512 3×3 @7 (kd = 11.8 × pixels) 1.10-1.14x faster (AVX2:
  // 1.05x), 256 -> 512 3×3/s2 @14 (kd = 5.9 × pixels) 1.04-1.08x (AVX2: 1.02x); 256 -> 256 3×3 @14
  // (kd = 1.5 × pixels, left to the pixel parts) 0.98-0.99x.
  const int64_t pixel_parts = kd >= 2 * pixels ? 1 : std::min(chunks, threads);
  const int64_t panel_parts = std::clamp<int64_t>(threads / pixel_parts, 1, panels);
  const int64_t parts = pixel_parts * panel_parts;
  const int64_t size = g.groups * m * kd;
  std::vector<Aligned<T>> copies;  // pixel parts 1.. sum into their own copy; part 0 into gw
  for (int64_t part = 1; part < pixel_parts; ++part) copies.emplace_back(size);
  // The phase-split input: split on use, as the tap rows do, where each thread sums pixels of its
  // own (one panel part), there is one group, at least as many images as pixel parts, and an image
  // holds a chunk of pixels at least: a part walks its chunks' pixels in order, and its thread
  // splits each image they reach into a ring of as many images as a chunk can span (two, so),
  // where the gather reads it in cache. Else whole, ahead: on small maps the ring of several
  // images crowded L2 (the weight gradient of 128 -> 256 3×3/s2 @14, 7 images: 0.98-0.99x). Measured
  // on Zen 4 (AVX-512, 2 threads, N = 8, paired in one process, on use against whole): the weight
  // gradient of 1×1 64 -> 64 @56 1.08-1.12x, 1×1/s2 64 -> 128 1.04x; forward+backward of 1×1
  // 64 -> 64 1.12x (AVX2 1.08x), of 1×1/s2 64 -> 128 0.99x [0.97-1.06].
  const bool on_use = panel_parts == 1 && g.groups == 1 && g.n >= pixel_parts && plane >= chunk;
  const int64_t image = g.c * p.plane();
  const PhaseCopy<T> whole = on_use ? PhaseCopy<T>{} : split.whole();
  const Interleave<T> interleave = gemm::interleave_kernel<T>();
  const auto row_at = gemm::strided_rows(mr, plane);  // a block of fewer rows reads the first ones
  // A run of pixels along one output row: tile columns [col, col + len), read in place from the
  // phase-split input at x + off[t] and from grad_output at gy.
  struct PixelRun {
    int64_t col, len, x, gy;
  };
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    Aligned<T> ab(blocks * chunk * mr), bt(chunk * nr);
    std::vector<PixelRun> runs;
    std::optional<SplitImages<T>> own;  // this thread's ring of images: those a chunk can span
    if (on_use) own.emplace(split, ceil_div(chunk - 1, plane) + 1, 1, image);
    const T* const xsp = on_use ? own->data() : whole.data;
    for (int64_t part = begin; part < end; ++part) {
      const int64_t pp = part / panel_parts, jp = part % panel_parts;
      T* sum = pp == 0 ? gw : copies[pp - 1].data();
      const int64_t q_begin = gemm::slice(pp, chunks, pixel_parts) * chunk;
      const int64_t q_end = std::min(pixels, gemm::slice(pp + 1, chunks, pixel_parts) * chunk);
      const int64_t j_begin = gemm::slice(jp, panels, panel_parts), j_end = gemm::slice(jp + 1, panels, panel_parts);
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        for (int64_t q0 = q_begin; q0 < q_end; q0 += chunk) {
          const int64_t qn = std::min(chunk, q_end - q0);
          runs.clear();
          for_each_run(g.oh, g.ow, q0, qn, [&](int64_t q, int64_t len, int64_t n, int64_t Y, int64_t X) {
            const int64_t at = on_use ? own->images(n, 1) - xsp : n * image;  // x's image n in the copy
            runs.push_back({q - q0, len, at + gi * g.cin_g() * p.plane() + Y * p.ws + X,
                            (n * g.k + gi * m) * plane + Y * g.ow + X});
          });
          for (int64_t b = 0; b < blocks; ++b) {  // A: ab[b][q][u] = gy[n][gi·m + b·mr + u][pixel q]
            const int64_t rows = std::min(mr, m - b * mr);
            for (const PixelRun& run : runs) {
              interleave(gy + run.gy + b * mr * plane, row_at.data(), rows,
                                           ab.data() + (b * chunk + run.col) * mr, mr, run.len);
            }
          }
          for (int64_t j = j_begin; j < j_end; ++j) {  // B: bt[q][v] = x(pixel q, tap j·nr + v)
            const int64_t cols = std::min(nr, kd - j * nr);
            for (const PixelRun& run : runs) {
              interleave(xsp + run.x, off.data() + j * nr, cols, bt.data() + run.col * nr, nr,
                                           run.len);
            }
            for (int64_t b = 0; b < blocks; ++b) {
              kern.run(ab.data() + b * chunk * mr, nullptr, 0, bt.data(), nr, nullptr, nullptr,
                       sum + (gi * m + b * mr) * kd + j * nr, kd, std::min(mr, m - b * mr), cols, qn, q0 > q_begin,
                       nullptr);
            }
          }
        }
      }
    }
  });
  at::parallel_for(0, size, grain(parts), [&](int64_t begin, int64_t end) {
    for (const Aligned<T>& copy : copies) {
      for (int64_t i = begin; i < end; ++i) gw[i] += copy.data()[i];
    }
  });
}

// How weight_gradient_tap_rows cuts the pixels: each image into `per_image` chunks of near-equal
// size, at most 256 pixels (B's panels of a chunk, m × 256 values, stay in L2 while every tap block
// runs over them), and more where the (group, image, chunk) items would not share out evenly among
// the threads (one image on two threads: an even number of chunks).
struct TapRowsPlan {
  int64_t per_image, chunk;
};

inline TapRowsPlan plan_tap_rows(const Conv2dGeometry& g) {
  const int64_t plane = g.oh * g.ow;
  const int64_t per_image = shared_evenly(ceil_div(plane, 256), g.groups * g.n, at::get_num_threads());
  return {per_image, ceil_div(plane, per_image)};
}

// Weight gradient with the taps as the micro-kernel's rows and the output channels as its vector
// columns: gwᵀ[t][k] = Σ_q x(q, t) · gy[k][q], the transpose of weight_gradient_gemm's product. A is
// read where it lies (the micro-kernel's gathered rows, csrc/cpu/simd/gemm.h): tap t's row is the
// phase-split input at off[t], step q at the pixel's place in the phase plane. B is grad_output
// transposed by the SIMD interleave into [q][nr] panels, once per chunk of an image's pixels, and
// reused by every block of taps (kd / mr of them), where in weight_gradient_gemm the gather of each
// tap's input, once per chunk, serves the blocks of output channels (m / mr). The threads take equal
// shares of the (group, image, chunk) items (plan_tap_rows), each summing into its own copy of gwᵀ;
// the copies are added, and gwᵀ is transposed into gw by the interleave.
template <class T>
void weight_gradient_tap_rows(const T* gy, const PhaseSplit<T>& split, const std::vector<int64_t>& off, T* gw,
                              const Conv2dGeometry& g) {
  const PhaseLayout& p = split.layout;
  const int64_t m = g.cout_g(), kd = g.kdim(), plane = g.oh * g.ow;
  const GemmKernel<T>& kern = gemm::best_shape<T>(kd, m);
  const int64_t mr = kern.mr, nr = kern.nr, blocks = ceil_div(kd, mr), panels = ceil_div(m, nr), ldc = panels * nr;
  const auto [per_image, chunk] = plan_tap_rows(g);
  const int64_t items = g.groups * g.n * per_image, parts = std::min<int64_t>(at::get_num_threads(), items);
  const int64_t size = g.groups * kd * ldc;  // one copy of gwᵀ, its rows padded to whole panels
  const std::unique_ptr<T[]> gwt(new T[parts * size]);
  const Interleave<T> interleave = gemm::interleave_kernel<T>();
  const auto channel_at = gemm::strided_rows(nr, plane);
  // The phase-split input: split on use where there is one group and at least as many images as
  // threads: each thread splits each image of its items, as it reaches it, into a buffer of its
  // own, as run_pass_virtual does (an image whose chunks fall to two threads is split by both).
  // Else whole, ahead: with groups each image would be split once per group, and with fewer images
  // than threads the threads would share them. Measured on Zen 4 (AVX-512, 2 threads, N = 8, paired
  // in one process, on use against whole): the weight gradient of 64 -> 128 3×3/s2 @56 1.02-1.03x,
  // of 64 @28 and 128 -> 256 /s2 @14 1.00x. Forward+backward: 128 -> 256 /s2 @28 1.06x; 64 -> 128
  // /s2 @56 1.03x capped at AVX2, and 1.15-1.33x at AVX-512 in processes where the whole copy left
  // glibc trimming its heap, so that the next call page-faulted (3,380 faults, 8.5 ms of system time
  // a call; none on use); the ResNet-18-style step 1.02x.
  const bool on_use = g.groups == 1 && g.n >= parts;
  const PhaseCopy<T> whole = on_use ? PhaseCopy<T>{} : split.whole();
  std::vector<int64_t> steps(chunk);  // B's rows in order
  std::iota(steps.begin(), steps.end(), int64_t{0});
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    Aligned<T> bt(panels * chunk * nr);
    std::optional<SplitImages<T>> own;  // this thread's copy of an image
    if (on_use) own.emplace(split, 1, 1, g.c * p.plane());
    std::vector<int64_t> at(chunk);  // step q's place in the phase plane
    std::array<const T*, 128> a_rows{};
    for (int64_t part = begin; part < end; ++part) {
      T* const sum = gwt.get() + part * size;
      std::vector<char> written(g.groups, 0);  // whether a group's rows of `sum` hold a product yet
      for (int64_t item = gemm::slice(part, items, parts); item < gemm::slice(part + 1, items, parts); ++item) {
        const int64_t gi = item / (g.n * per_image), n = item / per_image % g.n;
        const int64_t q0 = gemm::slice(item % per_image, plane, per_image);
        const int64_t qn = gemm::slice(item % per_image + 1, plane, per_image) - q0;
        for_each_run(g.oh, g.ow, q0, qn, [&](int64_t q, int64_t len, int64_t, int64_t Y, int64_t X) {
          for (int64_t j = 0; j < panels; ++j) {  // bt[j][q][v] = gy[n][gi·m + j·nr + v][pixel q]
            interleave(gy + (n * g.k + gi * m + j * nr) * plane + Y * g.ow + X, channel_at.data(),
                       std::min(nr, m - j * nr), bt.data() + (j * chunk + q - q0) * nr, nr, len);
          }
          for (int64_t i = 0; i < len; ++i) at[q - q0 + i] = Y * p.ws + X + i;
        });
        const T* x = (on_use ? own->images(n, 1) : whole.data + n * g.c * p.plane()) + gi * g.cin_g() * p.plane();
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t rows = std::min(mr, kd - b * mr);
          for (int64_t u = 0; u < rows; ++u) a_rows[u] = x + off[b * mr + u];
          for (int64_t j = 0; j < panels; ++j) {
            kern.run(nullptr, a_rows.data(), 0, bt.data() + j * chunk * nr, nr, at.data(), steps.data(),
                     sum + (gi * kd + b * mr) * ldc + j * nr, ldc, rows, std::min(nr, m - j * nr), qn, written[gi],
                     nullptr);
          }
        }
        written[gi] = 1;
      }
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        if (!written[gi]) std::fill(sum + gi * kd * ldc, sum + (gi + 1) * kd * ldc, T(0));
      }
    }
  });
  at::parallel_for(0, g.groups * kd, grain(m * parts), [&](int64_t begin, int64_t end) {
    for (int64_t part = 1; part < parts; ++part) {  // the m columns of each row that hold values
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t k = 0; k < m; ++k) gwt[r * ldc + k] += gwt[part * size + r * ldc + k];
      }
    }
  });
  std::vector<int64_t> tap_at(kd);  // gwᵀ's rows
  for (int64_t t = 0; t < kd; ++t) tap_at[t] = t * ldc;
  at::parallel_for(0, g.groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t gi = begin; gi < end; ++gi) {
      interleave(gwt.get() + gi * kd * ldc, tap_at.data(), kd, gw + gi * m * kd, kd, m);
    }
  });
}

// Whether the weight gradient takes the taps as rows (weight_gradient_tap_rows): where there are at
// least twice as many taps (kd) as output channels (m), so that grad_output's transpose serves at
// least twice the blocks that each tap's gather serves in weight_gradient_gemm; where its chunks
// have at least 128 pixels, so that a chunk's products outweigh re-reading gwᵀ's tiles once per
// chunk; and where each thread has at least 512 pixels, so that they outweigh its copy of gwᵀ
// (added to the others, then transposed). Measured on Zen 4 (2 threads, N = 8, 56×56 unless said,
// paired in one process, tap rows against weight_gradient_gemm), the weight gradient at AVX-512:
// 3×3 64 -> 64 1.08-1.13x, @28 1.04-1.08x, 32 -> 32 1.07-1.12x, 64 -> 128 /s2 1.07-1.08x,
// 128 -> 128 @28 1.02-1.05x, @14 1.00-1.01x, 256 -> 256 @14 1.02-1.03x, N = 1 1.08x, 1×1 256 -> 64
// 1.23x, ResNet's conv1 (7×7/s2, 3 -> 64) 1.13x; at AVX2 64 -> 64 1.08x, @28 1.09x, 32 -> 32 1.17x,
// 64 -> 128 /s2 1.05x, 128 @14 0.95-1.05x, 256 @14 1.04-1.05x; a layer's forward+backward at
// AVX-512: 64 -> 64 1.10x [IQR 1.06-1.19] and 1.02x [0.97-1.06], N = 1 1.07x, @28 1.01x, dilated 2
// 1.01x, 256 @14 0.99x [0.97-1.01], conv1 0.99x [0.91-1.01]; the ResNet-18-style step 1.04x
// [1.02-1.05] and 1.01x [0.98-1.05] (AVX2 1.04x [1.01-1.08]). Outside the rule they lost: 3×3
// 256 -> 256 @7 and 512 -> 512 @7 0.79x (49 pixels an image), 128 -> 256 /s2 @14 0.91x, 1×1
// 64 -> 64 0.97x (kd = m), N = 1 128 -> 128 @14 0.85x and 64 -> 64 @28 0.95x (98 and 392 pixels a
// thread).
inline bool takes_tap_rows(const Conv2dGeometry& g) {
  return g.kdim() >= 2 * g.cout_g() && plan_tap_rows(g).chunk >= 128 &&
         g.n * g.oh * g.ow >= 512 * at::get_num_threads();
}

template <class T>
void weight_gradient(const T* gy, const T* x, T* gw, const Conv2dGeometry& g) {
  const PhaseLayout p = phase_layout(g);
  const PhaseSplit<T> split{Source<T>{x, g.n * g.c, g.h, g.w, g.pt, g.pl}, g.c, p, 0};
  if (takes_tap_rows(g)) {
    weight_gradient_tap_rows(gy, split, tap_offsets(g, g.cin_g(), p), gw, g);
  } else {
    weight_gradient_gemm(gy, split, tap_offsets(g, g.cin_g(), p), gw, g);
  }
}

template void forward_gemm(const float*, const float*, const float*, float*, const Conv2dGeometry&);
template void forward_gemm(const double*, const double*, const double*, double*, const Conv2dGeometry&);
template void backward_input_gemm(const float*, const float*, float*, const Conv2dGeometry&);
template void backward_input_gemm(const double*, const double*, double*, const Conv2dGeometry&);
template void weight_gradient(const float*, const float*, float*, const Conv2dGeometry&);
template void weight_gradient(const double*, const double*, double*, const Conv2dGeometry&);

}  // namespace hotkernels::cpu::conv
