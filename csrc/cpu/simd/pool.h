// Vectorised 2-D pooling kernels (csrc/cpu/simd/pool.cpp), one table per instruction set.
// Window geometry and conventions: csrc/math/pool.h. Every kernel handles one independent unit of
// work (an NCHW plane, or a channels_last row), so the op splits work across threads by units and
// each output element is written by exactly one thread, in a fixed order (deterministic).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cpu/isa.h"
#include "cpu/simd/per_dtype.h"
#include "math/pool.h"

namespace hotkernels::cpu {

// The kernels of one compute type.
template <class T>
struct PoolKernel {
  // NCHW plane: in (H×W), out (OH×OW), contiguous; the argmax in indices (OH×OW flat h·W + w indices,
  // as torch's) or in offsets (OH×OW window positions kh·kW + kw, csrc/math/pool.h), at most one of
  // them non-null (neither: values only). scratch: pool_plane_scratch_bytes(p) bytes.
  void (*max_plane)(const T* in, T* out, int64_t* indices, uint8_t* offsets, const math::Pool2d& p, void* scratch);
  // grad_in (H×W) from grad_out and offsets (OH×OW). scratch: pool_max_backward_scratch_bytes(p) bytes.
  void (*max_backward_plane)(const T* grad_out, const uint8_t* offsets, T* grad_in, const math::Pool2d& p,
                             void* scratch);
  void (*avg_plane)(const T* in, T* out, const math::Pool2d& p, const math::AvgMode& mode, void* scratch);
  // grad_in (H×W) from grad_out (OH×OW).
  void (*avg_backward_plane)(const T* grad_out, T* grad_in, const math::Pool2d& p, const math::AvgMode& mode,
                             void* scratch);
  // channels_last, one image: in (H×W×C), out / indices / offsets the output row oh (OW×C); `ahead`:
  // whether to fetch the next output row's new input rows as this one is computed (an input that
  // streams from memory).
  void (*max_row_cl)(const T* in, T* out, int64_t* indices, uint8_t* offsets, const math::Pool2d& p, int64_t C,
                     int64_t oh, bool ahead);
  // channels_last, one image: grad_in's row ih (W×C) from grad_out and offsets (OH×OW×C).
  void (*max_backward_row_cl)(const T* grad_out, const uint8_t* offsets, T* grad_in, const math::Pool2d& p,
                              int64_t C, int64_t ih);
  void (*avg_row_cl)(const T* in, T* out, const math::Pool2d& p, const math::AvgMode& mode, int64_t C, int64_t oh,
                     bool ahead);
  // channels_last, one image: grad_in's row ih (W×C) from grad_out (OH×OW×C).
  void (*avg_backward_row_cl)(const T* grad_out, T* grad_in, const math::Pool2d& p, const math::AvgMode& mode,
                              int64_t C, int64_t ih);
};

// The plane kernels work on whole vectors: rows of output width are padded to a multiple of
// kPoolMaxLanes (the most lanes of any instruction set: 16 floats), and each input row is copied into
// a row buffer with the padding filled in (−inf for max, 0 for average) and room for the last
// vector's taps.
constexpr int64_t kPoolMaxLanes = 16;

inline int64_t pool_padded_width(const math::Pool2d& p) {
  return (p.OW + kPoolMaxLanes - 1) / kPoolMaxLanes * kPoolMaxLanes;
}

// The windows of a row's whole vectors of outputs, or the padded input row where that is longer (a
// single window along the row, whose stride is then 1: csrc/pool.h), plus a vector's slack; in whole
// vectors, so that row buffers side by side share one alignment.
inline int64_t pool_row_buffer(const math::Pool2d& p) {
  const int64_t n = std::max(pool_padded_width(p) * p.sW + (p.kW - 1) * p.dW, p.pW + p.W) + 2 * kPoolMaxLanes;
  return (n + kPoolMaxLanes - 1) / kPoolMaxLanes * kPoolMaxLanes;
}

// Scratch of the plane kernels: per input row its horizontal reduction (values and column indices),
// two row buffers, per-row flags.
inline size_t pool_plane_scratch_bytes(const math::Pool2d& p) {
  const int64_t row = std::max(pool_padded_width(p), p.W);
  return static_cast<size_t>((p.H + 1) * row * 16 + pool_row_buffer(p) * 16 + p.H + 64);
}

// The gather of the max plane backward kernel works along an input row in
// `phases`: tap kw of output ow lands on column ow·sW + q (q = kw·dW − pW); with q = sW·shift + r,
// 0 <= r < sW, column sW·m + r takes it from output m − shift. So each phase r is a row of `cols`
// columns m (a multiple of kPoolMaxLanes, covering every input column) gathered from output rows
// shifted by `shift`, which scratch holds as rows of `row` elements, output column ow at
// `pad` + ow, zeros around it, so that every shifted load stays inside the row.
struct PoolGatherRow {
  int64_t shift_min, shift_max;  // over the taps kw < kW
  int64_t cols, pad, row;
};

inline int64_t pool_floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

inline PoolGatherRow pool_gather_row(const math::Pool2d& p) {
  PoolGatherRow g;
  g.shift_min = pool_floor_div(-p.pW, p.sW);
  g.shift_max = pool_floor_div((p.kW - 1) * p.dW - p.pW, p.sW);
  g.cols = ((p.W + p.sW - 1) / p.sW + kPoolMaxLanes - 1) / kPoolMaxLanes * kPoolMaxLanes;
  g.pad = std::max<int64_t>(0, g.shift_max);
  g.row = g.pad + std::max(p.OW, g.cols - g.shift_min);  // loads reach pad − shift + cols at most
  return g;
}

// Where windows' spans overlap (an input element may be covered by several), max_backward_plane
// scatters instead: each output gradient is added at its maximum's place in a zeroed copy of the
// plane padded by the windows' reach (rows × cols, window (oh, ow) starting at row oh·sH and column
// ow·sW of it), whose rows are copied out as they are completed, each input gradient written once.
// That plane stays in L2 up to kPoolScatterBytes; larger ones, and windows that do not overlap (one
// term per input: the gather is one pass), are gathered.
struct PoolScatterPlane {
  int64_t rows, cols;
};

inline PoolScatterPlane pool_scatter_plane(const math::Pool2d& p) {
  return {std::max(p.H + p.pH, (p.OH - 1) * p.sH + (p.kH - 1) * p.dH + 1),
          std::max(p.W + p.pW, (p.OW - 1) * p.sW + (p.kW - 1) * p.dW + 1)};
}

constexpr int64_t kPoolScatterBytes = int64_t{256} << 10;

inline bool pool_backward_scatters(const math::Pool2d& p) {
  const PoolScatterPlane s = pool_scatter_plane(p);
  const bool overlap = (p.kH - 1) * p.dH + 1 > p.sH || (p.kW - 1) * p.dW + 1 > p.sW;
  return overlap && s.rows * s.cols * 8 <= kPoolScatterBytes;
}

// Scratch of max_backward_plane: the padded plane where it scatters (values of 8 bytes at most); where
// it gathers, the output plane's rows in gather layout (values of 8 bytes at most, offsets of 1), and
// per input row the output rows reaching it (at most kH pairs of int64, and a count).
inline size_t pool_max_backward_scratch_bytes(const math::Pool2d& p) {
  if (pool_backward_scatters(p)) {
    const PoolScatterPlane s = pool_scatter_plane(p);
    return static_cast<size_t>(s.rows * s.cols * 8);
  }
  const PoolGatherRow g = pool_gather_row(p);
  return static_cast<size_t>(p.OH * g.row * 9 + 8 + p.H * (p.kH * 16 + 8));
}

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(hotkernels::cpu::PerDtype<hotkernels::cpu::PoolKernel>, pool_kernels)
