// conv2d on the CPU: the passes behind the kernels of csrc/cpu/conv2d.cpp, by role. The implicit GEMM
// on the GEMM core's micro-kernels (csrc/cpu/conv2d_gemm.cpp) and the direct depthwise kernels
// (csrc/cpu/conv2d_depthwise.cpp). Each computes in T = float or double on contiguous NCHW arrays
// (x: input, w: weight, y: output, gy/gx/gw: their gradients) of geometry g.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/simd/conv2d.h"
#include "math/conv2d.h"

namespace hotkernels::cpu::conv {

using math::Conv2dGeometry;

// The SIMD kernels of this machine's instruction set (csrc/cpu/simd/conv2d.h).
template <class T>
const Conv2dKernel<T>& kernels() {
  return HK_ISA_TABLE(conv2d_kernels).of<T>();
}

// at::parallel_for grain for items of `work` operations each: a thread gets at least ~64k operations
// (tens of microseconds), so small convolutions run inline instead of paying for a parallel region.
inline int64_t grain(int64_t work) { return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, work)); }

// ---- implicit GEMM (conv2d_gemm.cpp) ----
// y = conv(x, w) + bias (bias may be null).
template <class T>
void forward_gemm(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g);
// gx = the input gradient; pixels that no tap reaches are not written (every_phase_has_taps says
// whether there are any: the caller zeroes gx first if so).
template <class T>
void backward_input_gemm(const T* gy, const T* w, T* gx, const Conv2dGeometry& g);
bool every_phase_has_taps(const Conv2dGeometry& g);
// gw = the weight gradient (every value written).
template <class T>
void weight_gradient(const T* gy, const T* x, T* gw, const Conv2dGeometry& g);

// ---- depthwise: one input and one output channel per group (conv2d_depthwise.cpp) ----
// Whether the depthwise kernels' zero-padded plane (a thread's, every tap of every output and the
// input) stays within a few times the input and output planes; a padding far beyond the kernel
// would make it as large, and such convolutions take the implicit GEMM, which pads only what its
// taps read.
bool depthwise_planes_fit(const Conv2dGeometry& g);
template <class T>
void depthwise_forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g);
// Writes every value of gx.
template <class T>
void depthwise_backward_input(const T* gy, const T* w, T* gx, const Conv2dGeometry& g);
template <class T>
void depthwise_backward_weight(const T* gy, const T* x, T* gw, const Conv2dGeometry& g);

}  // namespace hotkernels::cpu::conv
