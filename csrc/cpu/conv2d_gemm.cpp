// conv2d on the CPU, the general path: an implicit GEMM without an im2col matrix. The input is
// copied once, zero-padded and split by stride phase: xs[n][c][a][b][y][x] =
// x[n][c][y·sh + a − pt][x·sw + b − pl] (zero outside x), each phase plane Hs × Ws. Output pixel
// (oy, ox) then reads, for tap (i, j) with i·dh = sh·qi + ai and j·dw = sw·qj + bj, the value at
// (oy + qi, ox + qj) of phase (ai, bj): for the "virtual" pixel index v = oy·Ws + ox, that is
// xs_plane[v + offset(c, i, j)]. So consecutive virtual pixels read consecutive memory for every
// (channel, tap), and the micro-kernel (csrc/cpu/simd/gemm.cpp) can stream B straight from xs
// (run_pass_virtual). Virtual pixels with ox ≥ OW are computed and thrown away: a few percent at
// 56×56, but a quarter of the work at 7×7 and 14×14 once tiles are rounded. So passes with many
// output rows (≥ 64 channels) or a wasteful grid gather B instead, per tile of real pixels of the
// whole batch and per reduction chunk, into an aligned [step][pixel] buffer (run_pass_packed: an
// im2col of one tile and one chunk, at most 128 KiB of float). A (the weights) is packed for the
// micro-kernel once ahead, or, where each block of it serves a single task (few pixels: the deep
// layers), by that task just before use, in cache (run_pass). On small maps the packed tiles go
// row by row and leave out, for the first and last rows, the taps that read only padding (RowBands).
// The workspace is the padded copy (about the input's size) plus per-thread tiles.
//
// Input gradient: the transposed convolution, split by stride phase into stride-1 correlations of
// grad_output (backward_input_gemm); each goes through the same passes.
// Weight gradient: a GEMM reducing over the real pixels of the whole batch, grad_output against
// the taps of the same phase-split input, gathered per chunk of pixels (weight_gradient_gemm).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "cpu/conv2d_passes.h"
#include "cpu/gemm/gemm.h"

namespace hotkernels::cpu::conv {

using gemm::Aligned;
using gemm::ceil_div;
using gemm::max_nr;
using gemm::reduction_chunk;

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
// (a 1×1 stride-2 convolution needs one of four). Layout [planes][phase][hs][ws], phases in the
// order of `phases`; `slot` maps phase a·sw + b to its place there (−1: not stored).
struct PhaseLayout {
  int64_t sh, sw, hs, ws;
  std::vector<std::pair<int64_t, int64_t>> phases;
  std::vector<int64_t> slot;
  int64_t plane() const { return static_cast<int64_t>(phases.size()) * hs * ws; }
};

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

// One task per source plane and phase, its rows in order, so that a row costs its copy and little
// else: with a task per output row (its plane, phase and row from three divisions, its column range
// from two more) the rows of a strided layer's phases, 14-28 values long, cost more in index
// arithmetic than in copying. Measured on Zen 4 (AVX-512), splitting (8, 64, 56, 56) at stride 2:
// 0.74-1.14 ms before, 0.39-0.45 ms now.
template <class T>
void phase_split(const Source<T>& src, const PhaseLayout& p, T* dst) {
  const int64_t np = static_cast<int64_t>(p.phases.size()), phase = p.hs * p.ws;
  const auto take_columns = kernels<T>().take_columns;
  at::parallel_for(0, src.planes * np, grain(phase), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const T* in_plane = src.data + u / np * src.h * src.w;
      const auto [a, b] = p.phases[u % np];
      T* out = dst + u * phase;
      // Column x of a row reads source column x·sw + off: columns [lo, hi) lie inside the source
      // row, the others in the padding.
      const int64_t off = b - src.pl;
      const int64_t lo = std::clamp<int64_t>(ceil_div(-off, p.sw), 0, p.ws);
      const int64_t hi = std::clamp<int64_t>(ceil_div(src.w - off, p.sw), lo, p.ws);
      for (int64_t y = 0; y < p.hs; ++y, out += p.ws) {
        const int64_t yy = y * p.sh + a - src.pt;  // the source row
        if (yy < 0 || yy >= src.h) {
          std::fill(out, out + p.ws, T(0));
          continue;
        }
        const T* in = in_plane + yy * src.w + (lo * p.sw + off);  // column lo's source (index ≥ 0)
        std::fill(out, out + lo, T(0));
        if (p.sw == 1) {
          std::memcpy(out + lo, in, (hi - lo) * sizeof(T));
        } else {
          take_columns(in, p.sw, out + lo, hi - lo);
        }
        std::fill(out + hi, out + p.ws, T(0));
      }
    }
  });
}

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
  if (a.t_offset == nullptr) {
    gemm::interleave_kernel<T>()(src + t0, row_at.data(), rows, dst, mr, steps);
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
      gemm::interleave_kernel<T>()(src + at, row_at.data(), rows, dst + t * mr, mr, run);
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
  std::vector<int64_t> off(channels * g.kh * g.kw);
  const int64_t np = static_cast<int64_t>(p.phases.size());
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t ai = i * g.dh % g.sh, qi = i * g.dh / g.sh, bj = j * g.dw % g.sw, qj = j * g.dw / g.sw;
        off[(c * g.kh + i) * g.kw + j] = ((c * np + p.slot[ai * g.sw + bj]) * p.hs + qi) * p.ws + qj;
      }
    }
  }
  return off;
}

PhaseLayout phase_layout(const Conv2dGeometry& g) {
  PhaseLayout p{g.sh, g.sw, g.oh + (g.kh - 1) * g.dh / g.sh, g.ow + (g.kw - 1) * g.dw / g.sw, {},
                std::vector<int64_t>(g.sh * g.sw, -1)};
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t a = i * g.dh % g.sh, b = j * g.dw % g.sw;
      if (p.slot[a * g.sw + b] < 0) {
        p.slot[a * g.sw + b] = static_cast<int64_t>(p.phases.size());
        p.phases.emplace_back(a, b);
      }
    }
  }
  return p;
}

// One implicit-GEMM pass: for every image n and group gi, output rows r < m (channels gi·m + r) at
// the virtual pixels v = Y·ws + X (Y < rows, X < cols) are Σ_t A[r][t] · src[v + offsets[t]], with
// src = xs + n·img_stride + gi·group_stride. Real pixels (X < cols) land at output pixel
// (y0 + Y·ystep, x0 + X·xstep) of an [*, out_h, out_w] plane; bias is added if given. `kern` is
// the micro-kernel shape A is packed for: `a` in pack_a's layout, or null where each task packs
// its blocks of `weight` itself (run_pass). Step t reads real values (not padding) for the pixel
// rows Y in [row_lo[t], row_hi[t]) (kd values each; row_bands).
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
  int64_t ws, rows, cols;
  T* out;
  int64_t out_h, out_w, y0, ystep, x0, xstep;
  const T* bias;
  const int64_t *row_lo, *row_hi;
};

// Pixel rows grouped into bands whose rows read real values at the same steps: band b is rows
// [start[b], start[b + 1]), and steps[b][c] its steps in reduction chunk c, less the chunk's start.
// A 3×3 layer's first and last output rows read padding at a third of the steps (tap row 0 or 2):
// run_pass_packed runs each band's micro-kernels over its own steps only (indexed), which leaves
// out 1/3 · 2/7 of the work at 7×7, 1/3 · 2/4 at 4×4.
struct RowBands {
  std::vector<int64_t> start;
  std::vector<std::vector<std::vector<int64_t>>> steps;
};

// The bands of a pass, or none (no start) where they would leave out too little of its work to pay
// for the indexed steps (a load and an address per step) and the narrower micro-kernel calls: 3%
// for shapes of 24 FMAs a step (AVX-512's), 15% for fewer (AVX2's 12), whose steps cost relatively
// more besides their FMAs. Measured on Zen 4 (2 threads, N = 8, paired, bands against none, forward /
// input gradient): AVX-512 at 14×14 (4.8% left out) 1.03x / 1.02x, 7×7 (9.5%) 1.04x / 1.02x, 4×4
// (16.7%) 1.06x / 1.05x; AVX2 at 14×14 0.99x / 0.99x, 7×7 1.01x / 0.98x, a stride-2 layer's 7×7
// 0.98x / 0.96x, 4×4 1.05x / 1.03x.
template <class T>
double min_left_out(const GemmKernel<T>& kern) {
  return kern.mr * kern.nr / kern.lanes >= 24 ? 0.03 : 0.15;
}
template <class T>
RowBands row_bands(const GemmPass<T>& p, int64_t chunk) {
  // The rows where some step starts or stops reading real values: a few (a tap row's two ends each).
  std::vector<int64_t> cuts{0, p.rows};
  for (int64_t t = 0; t < p.kd; ++t) {
    for (const int64_t cut : {p.row_lo[t], p.row_hi[t]}) {
      const int64_t row = std::clamp<int64_t>(cut, 0, p.rows);
      if (std::find(cuts.begin(), cuts.end(), row) == cuts.end()) cuts.push_back(row);
    }
  }
  std::sort(cuts.begin(), cuts.end());
  RowBands bands;
  int64_t left_out = 0;
  for (size_t b = 0; b + 1 < cuts.size(); ++b) {
    // A step reads real values for the whole band or for none of it (the cuts include its ends).
    std::vector<std::vector<int64_t>> per_chunk(ceil_div(p.kd, chunk));
    for (int64_t t = 0; t < p.kd; ++t) {
      if (p.row_lo[t] <= cuts[b] && cuts[b + 1] <= p.row_hi[t]) {
        per_chunk[t / chunk].push_back(t % chunk);
      } else {
        left_out += cuts[b + 1] - cuts[b];
      }
    }
    bands.start.push_back(cuts[b]);
    bands.steps.push_back(std::move(per_chunk));
  }
  bands.start.push_back(p.rows);
  if (static_cast<double>(left_out) < min_left_out(*p.kern) * static_cast<double>(p.kd * p.rows)) return {};
  return bands;
}

// Real pixels of a rows × cols grid of each of `batch` images, numbered q = (n·rows + Y)·cols + X
// over the whole batch, or, by_rows, q = (Y·batch + n)·cols + X (row Y of every image, then the
// next row), walked in runs that stay in one row of one image: f(q, len, n, Y, X) for each run of
// [q0, q0 + count).
template <class F>
void for_each_run(int64_t batch, int64_t rows, int64_t cols, bool by_rows, int64_t q0, int64_t count, F&& f) {
  for (int64_t q = q0; q < q0 + count;) {
    const int64_t row = q / cols, X = q % cols;
    const int64_t n = by_rows ? row % batch : row / rows, Y = by_rows ? row / batch : row % rows;
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

// Virtual-pixel tiles: B read in place from the phase-split source. Pays for the Ws − OW columns
// of every row and for rounding each image's virtual pixels up to whole tiles.
template <class T>
void run_pass_virtual(const GemmPass<T>& p, int64_t batch, int64_t groups) {
  const GemmKernel<T>& kern = *p.kern;
  const int64_t chunk = reduction_chunk(p.kd, kReductionChunk), mr = kern.mr;
  const int64_t virt = (p.rows - 1) * p.ws + p.cols;  // virtual pixels up to the last real one
  const int64_t tile = std::min(tile_columns(kern.nr), ceil_div(virt, kern.nr) * kern.nr), tiles = ceil_div(virt, tile);
  const int64_t m = p.m, channels = groups * m;
  // Small images give few tiles: then a task takes several images, so that each block of weights
  // (mr rows × one reduction chunk, in L1) serves all of them before the next is loaded — the weights
  // of a 512-channel layer (9 MiB) would otherwise stream from memory once per image.
  const int64_t threads = at::get_num_threads();
  const int64_t per_task = tiles * groups < 2 * threads ? ceil_div(batch, threads) : 1;
  const int64_t batches = ceil_div(batch, per_task);
  at::parallel_for(0, batches * groups * tiles, grain(per_task * m * tile * p.kd), [&](int64_t begin, int64_t end) {
    const std::unique_ptr<T[]> ct(new T[per_task * m * tile]);  // the tiles' C, each written whole before it is read
    for (int64_t task = begin; task < end; ++task) {
      const int64_t ti = task % tiles, gi = task / tiles % groups, n0 = task / tiles / groups * per_task;
      const int64_t nn = std::min(per_task, batch - n0);
      const int64_t v0 = ti * tile, vn = std::min(tile, virt - v0);
      for (int64_t k0 = 0; k0 < p.kd; k0 += chunk) {
        const int64_t r = std::min(chunk, p.kd - k0);
        for (int64_t i = 0; i < m; i += mr) {
          const T* a = p.a + ((gi * ceil_div(m, mr) + i / mr) * p.kd + k0) * mr;
          for (int64_t b = 0; b < nn; ++b) {
            const T* xb = p.xs + (n0 + b) * p.img_stride + gi * p.group_stride + v0;
            kern.run(a, p.kd * mr, xb, 0, p.offsets + k0, nullptr, ct.get() + (b * m + i) * tile, tile, std::min(mr, m - i), vn,
                     r, k0 > 0, nullptr);
          }
        }
      }
      // Scatter the real pixels of the tile, row segment by row segment.
      for (int64_t b = 0; b < nn; ++b) {
        for (int64_t v = v0; v < v0 + vn;) {
          const int64_t y = v / p.ws, x = v % p.ws, len = std::min(v0 + vn, (y + 1) * p.ws) - v;
          const int64_t real = std::max<int64_t>(0, std::min(len, p.cols - x));
          if (real > 0) scatter(p, gi, channels, 0, m, ct.get() + b * m * tile + (v - v0), tile, n0 + b, y, x, real);
          v += len;
        }
      }
    }
  });
}

// Packed tiles over the real pixels of the whole batch: per reduction chunk, B (chunk steps × tile
// pixels, in L2: at most 128 KiB of float, or half of L2 for one tile of every pixel) is gathered
// from the phase-split source into [step][pixel] rows (the instruction set's gather_runs), then
// every row block of A runs over it, into the output itself or into a tile buffer scattered there
// (below). For small maps (7×7, 14×14) this wastes almost nothing where the virtual grid wastes
// ~25%; the gather (one copy per B value) is amortised over the rows. Without a packed A (p.a null,
// run_pass) there is one tile of every pixel and the rows are split across threads: each task packs
// each of its A blocks just before the micro-kernel runs it.
template <class T>
void run_pass_packed(const GemmPass<T>& p, int64_t batch, int64_t groups) {
  const GemmKernel<T>& kern = *p.kern;
  const int64_t chunk = reduction_chunk(p.kd, kReductionChunk), mr = kern.mr, blocks = ceil_div(p.m, mr);
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
  const bool plane_is_grid = p.ystep == 1 && p.xstep == 1 && p.y0 == 0 && p.x0 == 0 && p.out_w == p.cols &&
                             p.out_h == p.rows;
  // With row bands the pixels go row by row (by_rows): each band is then one range of columns.
  const RowBands bands = p.row_lo != nullptr ? row_bands(p, chunk) : RowBands{};
  const bool by_rows = !bands.start.empty();
  // A band's columns start on a whole vector of the tile (at `pos`: the micro-kernels' B loads of a
  // band starting mid-vector would each straddle two cache lines); the tile is wider by the gaps.
  struct Segment {
    int64_t col, len, band, pos;
    bool written;
  };
  const int64_t width = tile + (by_rows ? static_cast<int64_t>(bands.start.size() - 1) * kern.lanes : 0);
  at::parallel_for(0, tasks, grain(rows * tile * p.kd), [&](int64_t begin, int64_t end) {
    Aligned<T> bt(kReductionChunk * width + kGatherSlackBytes / static_cast<int64_t>(sizeof(T)));
    Aligned<T> ablock(a_in_task ? kReductionChunk * mr : 0);
    std::unique_ptr<T[]> ct;  // the tile buffer, for tiles not written in place (each written whole before it is read)
    std::vector<GatherRun> runs;
    std::vector<Segment> segments;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t ti = task % tiles, gi = task / tiles % groups, r0 = task / tiles / groups * rows;
      const int64_t q0 = gemm::slice(ti, col_blocks, tiles) * kern.nr;
      const int64_t qn = std::min(gemm::slice(ti + 1, col_blocks, tiles) * kern.nr, pixels) - q0;
      const int64_t nr = std::min(rows, p.m - r0);
      if (qn <= 0 || nr <= 0) continue;
      const int64_t img = q0 / image;
      const bool direct = plane_is_grid && !by_rows && (q0 + qn - 1) / image == img;
      if (!direct && !ct) ct.reset(new T[rows * width]);
      T* const c = direct ? p.out + (img * channels + gi * p.m + r0) * plane + (q0 - img * image) : ct.get();
      const int64_t ldc = direct ? plane : width;
      // The tile's columns by band (the whole tile, all steps, without bands).
      segments.clear();
      if (!by_rows) segments.push_back({0, qn, -1, 0, false});
      for (size_t b = 0, pos = 0; by_rows && b + 1 < bands.start.size(); ++b) {
        const int64_t lo = std::max(q0, bands.start[b] * batch * p.cols);
        const int64_t hi = std::min(q0 + qn, bands.start[b + 1] * batch * p.cols);
        if (lo >= hi) continue;
        segments.push_back({lo - q0, hi - lo, static_cast<int64_t>(b), static_cast<int64_t>(pos), false});
        pos = ceil_div(pos + hi - lo, kern.lanes) * kern.lanes;
      }
      // Tile column of the pixel q0 + col (runs do not cross bands: a band is whole rows).
      auto column = [&](int64_t col) {
        size_t i = 0;
        while (i + 1 < segments.size() && segments[i + 1].col <= col) ++i;
        return segments[i].pos + col - segments[i].col;
      };
      runs.clear();
      for_each_run(batch, p.rows, p.cols, by_rows, q0, qn, [&](int64_t q, int64_t len, int64_t n, int64_t Y, int64_t X) {
        runs.push_back({column(q - q0), len, gi * p.group_stride + n * p.img_stride + Y * p.ws + X});
      });
      const int64_t used = segments.back().pos + segments.back().len;
      for (int64_t k0 = 0; k0 < p.kd; k0 += chunk) {
        const int64_t r = std::min(chunk, p.kd - k0);
        kernels<T>().gather_runs(p.xs, p.offsets + k0, r, runs.data(), static_cast<int64_t>(runs.size()), bt.data(),
                                 used, width);
        for (int64_t i = r0; i < r0 + nr; i += mr) {
          const int64_t mc = std::min(mr, r0 + nr - i);
          const T* a = a_in_task ? ablock.data() : p.a + ((gi * blocks + i / mr) * p.kd + k0) * mr;
          if (a_in_task) pack_block(p.weight, gi, i, mc, mr, k0, r, ablock.data());
          for (Segment& s : segments) {
            // The band's steps of this chunk (all of them: the plain kernel); none: nothing to add.
            const std::vector<int64_t>* steps = s.band < 0 ? nullptr : &bands.steps[s.band][k0 / chunk];
            if (steps != nullptr && steps->empty()) continue;
            const bool all = steps == nullptr || static_cast<int64_t>(steps->size()) == r;
            kern.run(a, p.kd * mr, bt.data() + s.pos, width, nullptr, all ? nullptr : steps->data(),
                     c + (i - r0) * ldc + s.pos, ldc, mc, s.len, all ? r : static_cast<int64_t>(steps->size()),
                     s.written, nullptr);
          }
        }
        for (Segment& s : segments) s.written = s.written || s.band < 0 || !bands.steps[s.band][k0 / chunk].empty();
      }
      for (const Segment& s : segments) {  // a band that reads only padding: its sums are 0
        for (int64_t u = 0; u < nr && !s.written; ++u) std::fill_n(c + u * ldc + s.pos, s.len, T(0));
      }
      if (direct) {
        for (int64_t u = 0; u < nr && p.bias != nullptr; ++u) {
          const T bias = p.bias[gi * p.m + r0 + u];
          for (T* y = c + u * ldc; y < c + u * ldc + qn; ++y) *y += bias;
        }
        continue;
      }
      for_each_run(batch, p.rows, p.cols, by_rows, q0, qn, [&](int64_t q, int64_t len, int64_t n, int64_t Y, int64_t X) {
        scatter(p, gi, channels, r0, nr, ct.get() + column(q - q0), width, n, Y, X, len);
      });
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

// Packed tiles once there are enough rows to amortise the gather, or when the virtual grid wastes
// too much. A gathered B value costs a copy; the rows computed with it take time in proportion to
// rows / lanes, so the gather's share grows with the vector width: packed from 8 vectors' worth of
// rows, 64 with AVX2's 8 floats (each gathered B run then serves 11 row blocks of 6), 128 with
// AVX-512's 16. Measured on Zen 3 (AVX2, 512 KiB L2; N = 8, paired in one process, packed against
// virtual at 64 rows): 3×3 64 -> 64 @56 forward 1.46x, forward+backward 1.13x; dilated 2 1.35x /
// 1.21x; N = 1 1.18x / 1.05x; ResNet's conv1 (147 steps) 1.25x / 1.04x. (On Zen 1, with an earlier
// packed path, 64 rows had lost ~10% on conv1; with 3 rows, conv1's input gradient, packing loses
// 30%.) On Zen 4 (AVX-512, 2 threads, paired, virtual against packed at 64 rows, forward / input
// gradient): 64 @56 1.045x / 1.057x, dilated 2 1.00x / 1.03x, N = 1 0.98x / 1.00x, 64 -> 128 /s2
// @56 1.02x / 1.05x, 64 @28 1.01x / 1.00x; at 128 rows (128 @28) packed stays ahead, 1.03x / 1.01x;
// capped at AVX2 there, 64 rows: 64 @56 1.00x / 0.99x, 64 @28 0.97x / 1.00x (packed kept).
// A is packed ahead unless the tasks pack it (packs_a_in_task).
template <class T>
void run_pass(GemmPass<T> p, int64_t batch, int64_t groups) {
  if (packs_a_in_task(p, batch)) {
    run_pass_packed(p, batch, groups);
    return;
  }
  const auto a = pack_a(p.weight, groups, p.m, p.kern->mr, p.kd);
  p.a = a.get();
  if (p.m >= 8 * p.kern->lanes || virtual_efficiency(p) < 0.85) {
    run_pass_packed(p, batch, groups);
  } else {
    run_pass_virtual(p, batch, groups);
  }
}

template <class T>
void forward_gemm(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const PhaseLayout p = phase_layout(g);
  const auto xs = workspace<T>(g.n * g.c * p.plane(), source_slack<T>());
  phase_split(Source<T>{x, g.n * g.c, g.h, g.w, g.pt, g.pl}, p, xs.get());
  const std::vector<int64_t> off = tap_offsets(g, g.cin_g(), p);
  const int64_t kd = g.kdim(), m = g.cout_g();
  const GemmKernel<T>& kern = gemm::best_shape<T>(m, g.oh * g.ow);
  // Tap row i reads input row Y·sh + i·dh − pt for output row Y: real for Y·sh in [pt − i·dh, h + pt − i·dh).
  std::vector<int64_t> row_lo(kd), row_hi(kd);
  for (int64_t t = 0; t < kd; ++t) {
    const int64_t e = g.pt - t / g.kw % g.kh * g.dh;
    row_lo[t] = e <= 0 ? 0 : ceil_div(e, g.sh);
    row_hi[t] = g.h + e <= 0 ? 0 : ceil_div(g.h + e, g.sh);
  }
  const GemmPass<T> pass{&kern, xs.get(), g.c * p.plane(), g.cin_g() * p.plane(), off.data(), kd,
                         WeightSource<T>{w, m * kd, kd, nullptr}, nullptr, m, p.ws, g.oh, g.ow, y, g.oh, g.ow, 0, 1,
                         0, 1, bias, row_lo.data(), row_hi.data()};
  run_pass(pass, g.n, g.groups);
}

// Whether each input row phase a < sh (and column phase) is reached by some tap: a + pt − i·dh ≡ 0
// (mod sh) for some i < kh (columns alike).
bool every_phase_has_taps(const Conv2dGeometry& g) {
  auto covered = [](int64_t size, int64_t s, int64_t pad, int64_t k, int64_t d) {
    for (int64_t a = 0; a < s && a < size; ++a) {
      bool any = false;
      for (int64_t i = 0; i < k && !any; ++i) any = (a + pad - i * d) % s == 0;
      if (!any) return false;
    }
    return true;
  };
  return covered(g.h, g.sh, g.pt, g.kh, g.dh) && covered(g.w, g.sw, g.pl, g.kw, g.dw);
}

// Input gradient, split by output phase: input pixel (a + sh·Y, b + sw·X) receives tap i only when
// sh divides e = a + pt − i·dh, and then reads grad_output row Y + e/sh (columns alike). So each of
// the sh·sw phases is a stride-1 correlation of grad_output (padded once, for all phases) with its
// own subset of taps, flipped and channel-transposed weights: no multiplications by inserted zeros.
template <class T>
void backward_input_gemm(const T* gy, const T* w, T* gx, const Conv2dGeometry& g) {
  // Per phase, the quotients e/sh of its taps; over all phases, their range [lo, hi].
  auto taps = [](int64_t phase, int64_t pad, int64_t k, int64_t d, int64_t s) {
    std::vector<std::pair<int64_t, int64_t>> out;  // (tap, quotient)
    for (int64_t i = 0; i < k; ++i) {
      const int64_t e = phase + pad - i * d;
      if (e % s == 0) out.emplace_back(i, e / s);  // exact division, negative e too
    }
    return out;
  };
  int64_t ylo = 0, yhi = 0, xlo = 0, xhi = 0;
  for (int64_t a = 0; a < g.sh; ++a) {
    for (auto [i, e] : taps(a, g.pt, g.kh, g.dh, g.sh)) ylo = std::min(ylo, e), yhi = std::max(yhi, e);
  }
  for (int64_t b = 0; b < g.sw; ++b) {
    for (auto [j, e] : taps(b, g.pl, g.kw, g.dw, g.sw)) xlo = std::min(xlo, e), xhi = std::max(xhi, e);
  }
  // grad_output padded by −lo in front; rows/columns up to the largest phase extent + hi behind.
  const int64_t hq = ceil_div(g.h, g.sh) - ylo + yhi, wq = ceil_div(g.w, g.sw) - xlo + xhi;
  const PhaseLayout p{1, 1, hq, wq, {{0, 0}}, {0}};
  const auto gp = workspace<T>(g.n * g.k * p.plane(), source_slack<T>());
  phase_split(Source<T>{gy, g.n * g.k, g.oh, g.ow, -ylo, -xlo}, p, gp.get());

  const int64_t cin = g.cin_g(), cout = g.cout_g();
  for (int64_t a = 0; a < g.sh && a < g.h; ++a) {
    for (int64_t b = 0; b < g.sw && b < g.w; ++b) {
      const auto ti = taps(a, g.pt, g.kh, g.dh, g.sh), tj = taps(b, g.pl, g.kw, g.dw, g.sw);
      if (ti.empty() || tj.empty()) continue;  // no tap reaches these pixels: their gradient stays 0
      const int64_t nt = static_cast<int64_t>(ti.size() * tj.size()), kd = cout * nt;
      std::vector<int64_t> off(kd);
      std::vector<int64_t> w_off(kd);  // weight[co][ci][i][j] of step t, relative to ci's row
      std::vector<int64_t> row_lo(kd), row_hi(kd);  // step t reads grad_output row Y + e: real for Y in [−e, oh − e)
      for (int64_t co = 0; co < cout; ++co) {
        for (size_t u = 0; u < ti.size(); ++u) {
          for (size_t v = 0; v < tj.size(); ++v) {
            const int64_t t = co * nt + u * tj.size() + v;
            off[t] = co * p.plane() + (ti[u].second - ylo) * wq + (tj[v].second - xlo);
            w_off[t] = co * cin * g.taps() + ti[u].first * g.kw + tj[v].first;
            row_lo[t] = -ti[u].second, row_hi[t] = g.oh - ti[u].second;
          }
        }
      }
      const int64_t rows = ceil_div(g.h - a, g.sh), cols = ceil_div(g.w - b, g.sw);
      const GemmKernel<T>& kern = gemm::best_shape<T>(cin, rows * cols);
      const GemmPass<T> pass{&kern, gp.get(), g.k * p.plane(), cout * p.plane(), off.data(), kd,
                             WeightSource<T>{w, cout * cin * g.taps(), g.taps(), w_off.data()}, nullptr, cin, wq,
                             rows, cols, gx, g.h, g.w, a, g.sh, b, g.sw, static_cast<const T*>(nullptr),
                             row_lo.data(), row_hi.data()};
      run_pass(pass, g.n, g.groups);
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
void weight_gradient_gemm(const T* gy, const T* xsp, const std::vector<int64_t>& off, const PhaseLayout& p, T* gw,
                          const Conv2dGeometry& g) {
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
          for_each_run(g.n, g.oh, g.ow, false, q0, qn, [&](int64_t q, int64_t len, int64_t n, int64_t Y, int64_t X) {
            runs.push_back({q - q0, len, (n * g.c + gi * g.cin_g()) * p.plane() + Y * p.ws + X,
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
              kern.run(ab.data() + b * chunk * mr, 0, bt.data(), nr, nullptr, nullptr, sum + (gi * m + b * mr) * kd + j * nr,
                       kd, std::min(mr, m - b * mr), cols, qn, q0 > q_begin, nullptr);
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

template <class T>
void weight_gradient(const T* gy, const T* x, T* gw, const Conv2dGeometry& g) {
  const PhaseLayout p = phase_layout(g);
  const auto xs = workspace<T>(g.n * g.c * p.plane(), 0);
  phase_split(Source<T>{x, g.n * g.c, g.h, g.w, g.pt, g.pl}, p, xs.get());
  weight_gradient_gemm(gy, xs.get(), tap_offsets(g, g.cin_g(), p), p, gw, g);
}

template void forward_gemm(const float*, const float*, const float*, float*, const Conv2dGeometry&);
template void forward_gemm(const double*, const double*, const double*, double*, const Conv2dGeometry&);
template void backward_input_gemm(const float*, const float*, float*, const Conv2dGeometry&);
template void backward_input_gemm(const double*, const double*, double*, const Conv2dGeometry&);
template void weight_gradient(const float*, const float*, float*, const Conv2dGeometry&);
template void weight_gradient(const double*, const double*, double*, const Conv2dGeometry&);

}  // namespace hotkernels::cpu::conv
