// Geometry of a 2-D convolution, shared by the CPU kernels, the CPU/CUDA ops and the CUDA kernels.
//
// Input [n, c, h, w], weight [k, c/groups, kh, kw], output [n, k, oh, ow] (all NCHW-contiguous in the
// kernels). Output pixel (oy, ox) reads input pixel (oy·sh − pt + i·dh, ox·sw − pl + j·dw) for kernel
// tap (i, j); taps outside the input read zero. Padding may differ at the two ends (padding='same'
// with an even extent pads one more at the end, as torch does): pt/pl are the leading pads, and the
// trailing pads only enter through oh/ow:
//   oh = (h + pt + pb − dh·(kh − 1) − 1) / sh + 1.
#pragma once

#include <cstdint>

#include "math/common.h"

namespace hotkernels::math {

struct Conv2dGeometry {
  int64_t n, c, h, w;  // input
  int64_t k, oh, ow;   // output channels and size
  int64_t kh, kw;      // kernel size
  int64_t sh, sw;      // stride
  int64_t pt, pl;      // leading padding (top, left)
  int64_t dh, dw;      // dilation
  int64_t groups;

  HK_HOST_DEVICE int64_t cin_g() const { return c / groups; }
  HK_HOST_DEVICE int64_t cout_g() const { return k / groups; }
  HK_HOST_DEVICE int64_t taps() const { return kh * kw; }
  // Reduction length of the forward GEMM: input channels of a group × kernel taps.
  HK_HOST_DEVICE int64_t kdim() const { return cin_g() * kh * kw; }
  // One input and one output channel per group: the depthwise kernels' case on either device.
  HK_HOST_DEVICE bool depthwise() const { return cin_g() == 1 && cout_g() == 1; }
};

// Output extent along one dimension (torch's formula); 0, never negative, when the dilated kernel
// exceeds the padded input (a negative span: the ops reject it before they get here).
HK_HOST_DEVICE int64_t conv_out_size(int64_t in, int64_t pad_begin, int64_t pad_end, int64_t k, int64_t s, int64_t d) {
  const int64_t span = in + pad_begin + pad_end - d * (k - 1) - 1;
  return span < 0 ? 0 : span / s + 1;
}

}  // namespace hotkernels::math
