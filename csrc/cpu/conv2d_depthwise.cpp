// conv2d on the CPU, depthwise (one input and one output channel per group): direct kernels
// (csrc/cpu/simd/conv2d.h) over one zero-padded channel plane at a time, split by column phase
// for strides, so that consecutive output columns read consecutive values.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "cpu/conv2d_passes.h"
#include "cpu/gemm/gemm.h"

namespace hotkernels::cpu::conv {

using gemm::ceil_div;

// Rows and columns of a zero-padded plane holding every tap of every output pixel and the input.
std::pair<int64_t, int64_t> padded_plane(const Conv2dGeometry& g) {
  const int64_t hp = std::max((g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1, g.pt + g.h);
  const int64_t wp = std::max((g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1, g.pl + g.w);
  return {hp, wp};
}

// The column-phase planes the depthwise forward and weight-gradient kernels read
// (csrc/cpu/simd/conv2d.h): `phases` (= sw) planes of rows × cols.
struct PhasePlanes {
  int64_t rows, cols, phases;
  int64_t phase() const { return rows * cols; }
  int64_t size() const { return phases * rows * cols; }
};

PhasePlanes phase_planes(const Conv2dGeometry& g) {
  const auto [hp, wp] = padded_plane(g);
  return {hp, ceil_div(wp, g.sw), g.sw};
}

bool depthwise_planes_fit(const Conv2dGeometry& g) {
  const auto [hp, wp] = padded_plane(g);
  int64_t area = 0;
  return !__builtin_mul_overflow(hp, wp, &area) && area <= 4 * (g.h * g.w + g.oh * g.ow) + 4096;
}

// Where tap (i, j) of output pixel (0, 0) sits in the planes, for t = i·kw + j.
std::vector<int64_t> plane_offsets(const Conv2dGeometry& g, const PhasePlanes& p) {
  std::vector<int64_t> off(g.taps());
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      off[i * g.kw + j] = j * g.dw % g.sw * p.phase() + i * g.dh * p.cols + j * g.dw / g.sw;
    }
  }
  return off;
}

// Input plane x into its place in the planes: padded column pl + x goes to phase (pl + x) mod sw,
// column (pl + x) div sw. The padding is left as it is: zeros from the caller's first fill, never
// written after.
template <class T>
void fill_planes(const T* x, const Conv2dGeometry& g, const PhasePlanes& p, T* xp) {
  for (int64_t y = 0; y < g.h; ++y) {
    const T* src = x + y * g.w;
    T* row = xp + (y + g.pt) * p.cols;
    if (p.phases == 1) {
      std::memcpy(row + g.pl, src, g.w * sizeof(T));
      continue;
    }
    for (int64_t x0 = 0; x0 < std::min(p.phases, g.w); ++x0) {  // input columns x0, x0 + sw, …: one phase
      const int64_t col = g.pl + x0;
      kernels<T>().take_columns(src + x0, p.phases, row + col % p.phases * p.phase() + col / p.phases,
                                ceil_div(g.w - x0, p.phases));
    }
  }
}

template <class T>
void depthwise_forward(const T* x, const T* w, const T* bias, T* y, const Conv2dGeometry& g) {
  const PhasePlanes p = phase_planes(g);
  const std::vector<int64_t> off = plane_offsets(g, p);
  at::parallel_for(0, g.n * g.c, grain(g.oh * g.ow * g.taps()), [&](int64_t begin, int64_t end) {
    std::vector<T> xp(p.size(), T(0));
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t c = nc % g.c;
      fill_planes(x + nc * g.h * g.w, g, p, xp.data());
      kernels<T>().depthwise_forward(xp.data(), p.cols, off.data(), w + c * g.taps(), bias ? bias[c] : T(0),
                                     y + nc * g.oh * g.ow, g);
    }
  });
}

// With stride 1 the input gradient is a correlation of grad_output with the kernel flipped, which
// the forward kernel computes (every value written once, from registers): gx[y][x] =
// Σ_ij w[i][j] · gy[y + pt − i·dh][x + pl − j·dw] = Σ_ij w[kh−1−i][kw−1−j] · gy'[y + i·dh][x + j·dw],
// gy' being grad_output padded by (kh−1)·dh − pt in front (columns alike). Otherwise (strides, or
// padding beyond the dilated kernel) each output pixel's taps are added into a padded plane.
template <class T>
void depthwise_backward_input(const T* gy, const T* w, T* gx, const Conv2dGeometry& g) {
  const int64_t pt = (g.kh - 1) * g.dh - g.pt, pl = (g.kw - 1) * g.dw - g.pl;
  if (g.sh == 1 && g.sw == 1 && pt >= 0 && pl >= 0) {
    std::vector<T> flipped(g.c * g.taps());  // reversing the flat tap index reverses both axes
    for (int64_t c = 0; c < g.c; ++c) {
      std::reverse_copy(w + c * g.taps(), w + (c + 1) * g.taps(), flipped.begin() + c * g.taps());
    }
    Conv2dGeometry t = g;
    t.h = g.oh, t.w = g.ow, t.oh = g.h, t.ow = g.w, t.pt = pt, t.pl = pl;
    depthwise_forward(gy, flipped.data(), static_cast<const T*>(nullptr), gx, t);
    return;
  }
  const auto [hp, wp] = padded_plane(g);
  at::parallel_for(0, g.n * g.c, grain(g.oh * g.ow * g.taps()), [&](int64_t begin, int64_t end) {
    std::vector<T> gxp(hp * wp);
    for (int64_t nc = begin; nc < end; ++nc) {
      std::fill(gxp.begin(), gxp.end(), T(0));
      kernels<T>().depthwise_backward_input(gy + nc * g.oh * g.ow, w + nc % g.c * g.taps(), gxp.data(), wp, g);
      for (int64_t y = 0; y < g.h; ++y) {
        std::memcpy(gx + (nc * g.h + y) * g.w, gxp.data() + (y + g.pt) * wp + g.pl, g.w * sizeof(T));
      }
    }
  });
}

template <class T>
void depthwise_backward_weight(const T* gy, const T* x, T* gw, const Conv2dGeometry& g) {
  const PhasePlanes p = phase_planes(g);
  const std::vector<int64_t> off = plane_offsets(g, p);
  at::parallel_for(0, g.c, grain(g.n * g.oh * g.ow * g.taps()), [&](int64_t begin, int64_t end) {
    std::vector<T> xp(p.size(), T(0));
    for (int64_t c = begin; c < end; ++c) {
      std::fill(gw + c * g.taps(), gw + (c + 1) * g.taps(), T(0));
      for (int64_t n = 0; n < g.n; ++n) {
        fill_planes(x + (n * g.c + c) * g.h * g.w, g, p, xp.data());
        kernels<T>().depthwise_backward_weight(gy + (n * g.c + c) * g.oh * g.ow, xp.data(), p.cols, off.data(),
                                               gw + c * g.taps(), g);
      }
    }
  });
}

template void depthwise_forward(const float*, const float*, const float*, float*, const Conv2dGeometry&);
template void depthwise_forward(const double*, const double*, const double*, double*, const Conv2dGeometry&);
template void depthwise_backward_input(const float*, const float*, float*, const Conv2dGeometry&);
template void depthwise_backward_input(const double*, const double*, double*, const Conv2dGeometry&);
template void depthwise_backward_weight(const float*, const float*, float*, const Conv2dGeometry&);
template void depthwise_backward_weight(const double*, const double*, double*, const Conv2dGeometry&);

}  // namespace hotkernels::cpu::conv
