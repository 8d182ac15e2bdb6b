// Vectorised conv2d kernels (csrc/cpu/simd/conv2d.cpp), one table per instruction set: the
// depthwise kernels (one input and one output channel per group), direct over one zero-padded
// channel plane, the bias gradient's sum, the strided column copy of the phase splits and its
// inverse, and the gather of the implicit GEMM's B tiles. The general convolution is an implicit
// GEMM on the GEMM core's micro-kernels instead (csrc/cpu/conv2d_gemm.cpp).
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "cpu/simd/per_dtype.h"
#include "math/conv2d.h"

namespace hotkernels::cpu {

// A run of `len` consecutive real pixels of the implicit GEMM's B tile: tile columns [col, col + len)
// read source values [src, src + len) (csrc/cpu/conv2d_gemm.cpp, run_pass_packed).
struct GatherRun {
  int64_t col, len, src;
};

// Bytes that gather_runs may write past a row of its destination and read past a run of its
// source: the widest vector.
constexpr int64_t kGatherSlackBytes = 64;

// The kernels of one compute type. The depthwise ones work over one channel plane: `xp` is the
// input plane zero-padded by (pt, pl) in front and enough behind that every tap of every output
// pixel is inside it, written xp[y][x] below. depthwise_forward and depthwise_backward_weight read it
// split by column phase: phase b < sw holds the padded columns b, b + sw, b + 2·sw, … of every row
// (row stride xp_w). Tap (i, j) of output pixel (oy, ox) is then at phase (j·dw) mod sw, row
// oy·sh + i·dh, column ox + (j·dw) div sw: consecutive output columns read consecutive values,
// whatever the stride. offsets[i·kw + j] is the place of tap (i, j) for output pixel (0, 0); row oy
// adds oy·sh·xp_w. depthwise_backward_input writes a plain padded plane (row stride xp_w).
template <class T>
struct Conv2dKernel {
  // out[oy][ox] = bias + Σ_ij w[i][j] · xp[oy·sh + i·dh][ox·sw + j·dw]
  void (*depthwise_forward)(const T* xp, int64_t xp_w, const int64_t* offsets, const T* w, T bias, T* out,
                            const math::Conv2dGeometry& g);
  // gxp[oy·sh + i·dh][ox·sw + j·dw] += w[i][j] · gy[oy][ox]   (the transpose of forward)
  void (*depthwise_backward_input)(const T* gy, const T* w, T* gxp, int64_t xp_w, const math::Conv2dGeometry& g);
  // gw[i][j] += Σ_{oy,ox} gy[oy][ox] · xp[oy·sh + i·dh][ox·sw + j·dw]
  void (*depthwise_backward_weight)(const T* gy, const T* xp, int64_t xp_w, const int64_t* offsets, T* gw,
                                    const math::Conv2dGeometry& g);
  // Σ x[0..n) (for the bias gradient)
  double (*sum)(const T* x, int64_t n);
  // dst[q] = src[q·step] for q < n: one column phase of a row, as the phase splits of both the
  // implicit GEMM and the depthwise kernels copy it (stride 2 in vectors).
  void (*take_columns)(const T* src, int64_t step, T* dst, int64_t n);
  // dst[2q] = even[q], dst[2q + 1] = odd[q] for q < n, nothing written past dst[2n) (another task may
  // be writing there): a row from its two column phases, the inverse of take_columns at stride 2 (the
  // implicit GEMM's stride-2 input gradient).
  void (*zip_columns)(const T* even, const T* odd, T* dst, int64_t n);
  // dst[t·width + run.col + u] = src[offsets[t] + run.src + u] for t < steps, each run (in increasing
  // column order) and u < run.len, then zeros in columns [count, width) of each row. Runs are copied
  // in whole vectors (runs of 7 or 14 pixels would otherwise cost a library call each): a vector may
  // write less than a vector past its run, which the next run, the zero fill or the next row
  // overwrites, so dst needs kGatherSlackBytes of slack past its last row, and the source as much
  // past its last run.
  void (*gather_runs)(const T* src, const int64_t* offsets, int64_t steps, const GatherRun* runs, int64_t n_runs,
                      T* dst, int64_t count, int64_t width);
};
using Conv2dKernels = PerDtype<Conv2dKernel>;

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(Conv2dKernels, conv2d_kernels)
