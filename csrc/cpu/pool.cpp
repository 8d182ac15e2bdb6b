// 2-D max and average pooling on the CPU: the SIMD kernels of csrc/cpu/simd/pool.cpp over
// threads, and the scatter of max pooling's backward from indices. The op is csrc/pool.cpp.
//
// Work splits into independent units — an (n, c) plane for NCHW, an (n, oh) output row for
// channels_last forward, an image (backward scatter by indices) or (n, ih) input row (the gathers:
// average, max from offsets) for channels_last backward — so every output element has one writer and
// results do not depend on the thread count.
// float16/bfloat16 are computed in float: the input is widened once, the result rounded once (max is
// exact either way; average rounds its float sum once, as torch's opmath accumulation does).
#include "pool.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <cpuinfo.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/simd/pool.h"
#include "huge_pages.h"

namespace hotkernels::cpu {
namespace {

using math::MaxArg;

// Runs f(kernels, in, out) in the compute type T, the accumulation type of the tensors' dtype: `in`
// is input's data (float16/bfloat16 widened to float, same layout), `out` the data that ends up in
// `out` (for float16/bfloat16 a float tensor of its layout, rounded into it once f is done),
// `kernels` the table's entry for T.
template <class F>
void in_compute_type(const at::Tensor& out, const at::Tensor& input, const F& f) {
  const at::ScalarType compute = at::toOpMathType(input.scalar_type());
  const at::Tensor x = input.to(compute);
  const at::Tensor y =
      out.scalar_type() == compute ? out : huge_pages(at::empty_like(out, out.options().dtype(compute)));
  dispatch_compute(compute, [&]<class T>() {
    f(HK_ISA_TABLE(pool_kernels).of<T>(), x.const_data_ptr<T>(), y.mutable_data_ptr<T>());
  });
  if (!y.is_same(out)) out.copy_(y);
}

// fn(unit, scratch) for every unit in [0, n), across threads; each thread gets `scratch_bytes` of
// scratch. `unit_elements` (elements one unit touches) sets the grain so small problems stay serial.
template <class F>
void parallel_units(int64_t n, int64_t unit_elements, size_t scratch_bytes, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(unit_elements, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<char[]> scratch(scratch_bytes > 0 ? new char[scratch_bytes] : nullptr);
    for (int64_t q = begin; q < end; ++q) fn(q, scratch.get());
  });
}

// Whether a forward's input (of `element` bytes each) is larger than half the last-level cache, and
// so streams from memory: the channels_last row kernels then fetch each next output row's new input
// rows ahead (prefetch_next_rows in csrc/cpu/simd/pool.cpp), which the hardware prefetchers, stopping
// at each 4 KiB page, do not. A smaller input is likely still cached by the layer that wrote it, and
// there the prefetches only cost instructions. Measured on Zen 5 (AVX-512, 2 threads, paired in one
// process), (N, 64, 112, 112) in channels_last: 3x3/s2/p1 max pooling with offsets at N = 32 1.93-2.37x
// faster (AVX2 2.19x), values only 1.51x (AVX2 2.01x), N = 8 1.44-1.46x; average pooling 2x2 at N = 32
// 1.17-1.47x (AVX2 1.43x), N = 8 0.75-1.28x; in cache, N = 1, 0.91x and 0.75x, where it is left off.
bool streams_from_memory(const PoolProblem& g, size_t element) {
  // The L3 from cpuinfo, else the L2; 32 MiB where it says nothing (so that prefetching stays off in
  // the small cases where it costs).
  static const int64_t last_level = [] {
    const bool known = cpuinfo_initialize();
    const cpuinfo_cache* cache = known ? cpuinfo_get_l3_cache(0) : nullptr;
    if (cache == nullptr && known) cache = cpuinfo_get_l2_cache(0);
    return cache != nullptr && cache->size > 0 ? static_cast<int64_t>(cache->size) : int64_t{32} << 20;
  }();
  return g.N * g.C * g.p.H * g.p.W * static_cast<int64_t>(element) > last_level / 2;
}

// The units of a pass of the table's kernels, from src planes (src_h × src_w) to dst planes
// (dst_h × dst_w): input to output planes forward, output to input planes backward. NCHW:
// plane(src, dst, scratch) for each (n, c) plane, src and dst the offsets of its planes, with
// `scratch_bytes` of scratch. channels_last: row(src, dst, r) for each dst row r of each image, src
// the offset of the image's src plane, dst that of the row; the grain counts the kH·kW taps that
// reach each of the row's elements.
template <class PlaneFn, class RowFn>
void for_each_unit(const PoolProblem& g, int64_t src_h, int64_t src_w, int64_t dst_h, int64_t dst_w,
                   size_t scratch_bytes, const PlaneFn& plane, const RowFn& row) {
  const math::Pool2d& p = g.p;
  const int64_t src_plane = src_h * src_w;
  if (!g.channels_last) {
    parallel_units(g.N * g.C, p.H * p.W, scratch_bytes,
                   [&](int64_t q, void* scratch) { plane(q * src_plane, q * dst_h * dst_w, scratch); });
  } else {
    const int64_t dst_row = dst_w * g.C;
    parallel_units(g.N * dst_h, dst_row * p.kH * p.kW, 0,
                   [&](int64_t r, void*) { row(r / dst_h * src_plane * g.C, r * dst_row, r % dst_h); });
  }
}

void max_pool2d(const at::Tensor& out, const at::Tensor& argmax, const at::Tensor& input, const PoolProblem& g,
                MaxArg arg) {
  const math::Pool2d& p = g.p;
  int64_t* ix = arg == MaxArg::indices ? argmax.mutable_data_ptr<int64_t>() : nullptr;
  uint8_t* off = arg == MaxArg::offsets ? argmax.mutable_data_ptr<uint8_t>() : nullptr;
  // The argmax from output `at` on, or null where this call writes none.
  const auto at_ = [](auto* a, int64_t at) { return a ? a + at : nullptr; };
  in_compute_type(out, input, [&]<class T>(const PoolKernel<T>& k, const T* in, T* o) {
    const bool ahead = streams_from_memory(g, sizeof(T));
    for_each_unit(
        g, p.H, p.W, p.OH, p.OW, pool_plane_scratch_bytes(p),
        [&](int64_t src, int64_t dst, void* scratch) {
          k.max_plane(in + src, o + dst, at_(ix, dst), at_(off, dst), p, scratch);
        },
        [&](int64_t src, int64_t dst, int64_t oh) {
          k.max_row_cl(in + src, o + dst, at_(ix, dst), at_(off, dst), p, g.C, oh, ahead);
        });
  });
}

// grad_input[n, c, indices[o]] += grad_output[o]: a scatter, each plane (NCHW) or image
// (channels_last) by one thread in output order, so overlapping windows sum deterministically.
void max_pool2d_backward(const at::Tensor& grad_input, const at::Tensor& grad_output, const at::Tensor& indices,
                         const PoolProblem& g) {
  const math::Pool2d& p = g.p;
  const int64_t H = p.H, W = p.W, C = g.C;
  const int64_t planes = g.N * C, plane = H * W, out_plane = p.OH * p.OW;
  const int64_t* idx = indices.const_data_ptr<int64_t>();
  in_compute_type(grad_input, grad_output, [&]<class T>(const PoolKernel<T>&, const T* gout, T* gi) {
    // An index outside the plane would write out of bounds: flag it in the loop, raise after.
    auto check_in_plane = [&](bool bad) {
      TORCH_CHECK(!bad, "hotkernels.max_pool2d_backward: 'indices' holds an index outside the ", H, "x", W,
                  " input plane");
    };
    // A window made only of padding (dilation allows it) holds no input element and passes no
    // gradient, whatever its index says (the forward gives it its first tap's position, as torch
    // does, which may lie outside the plane or alias another element).
    std::vector<uint8_t> empty_row(p.OH), empty_col(p.OW);
    bool any_empty = false;
    for (int64_t oh = 0; oh < p.OH; ++oh) {
      const math::Taps t = math::window_taps(oh * p.sH - p.pH, p.kH, p.dH, H);
      any_empty |= empty_row[oh] = t.k0 == t.k1;
    }
    for (int64_t ow = 0; ow < p.OW; ++ow) {
      const math::Taps t = math::window_taps(ow * p.sW - p.pW, p.kW, p.dW, W);
      any_empty |= empty_col[ow] = t.k0 == t.k1;
    }
    const auto skip = [&](int64_t o) { return any_empty && (empty_row[o / p.OW] || empty_col[o % p.OW]); };
    if (!g.channels_last) {
      parallel_units(planes, plane + out_plane, 0, [&](int64_t q, void*) {
        T* dst = gi + q * plane;
        std::fill(dst, dst + plane, T(0));
        const int64_t* iq = idx + q * out_plane;
        const T* gq = gout + q * out_plane;
        bool bad = false;
        for (int64_t o = 0; o < out_plane; ++o) {
          if (skip(o)) continue;
          const int64_t i = iq[o];
          bad |= static_cast<uint64_t>(i) >= static_cast<uint64_t>(plane);
          dst[bad ? 0 : i] += gq[o];
        }
        check_in_plane(bad);
      });
    } else {
      // An image is larger than the caches: zero its rows just ahead of the output rows that scatter
      // into them (rows up to the window's reach), so they are still cached when the scatter comes.
      // An index beyond the rows zeroed so far (not one a forward pass makes) redoes the image plainly.
      const int64_t row = W * C;
      parallel_units(planes / C, (plane + out_plane) * C, 0, [&](int64_t n, void*) {
        T* dst = gi + n * plane * C;
        const int64_t* in_ = idx + n * out_plane * C;
        const T* gn = gout + n * out_plane * C;
        int64_t zeroed = 0;
        bool outside = false;
        for (int64_t oh = 0; oh < p.OH && !outside; ++oh) {
          const int64_t reach = std::min(H, oh * p.sH - p.pH + (p.kH - 1) * p.dH + 1);
          if (reach > zeroed) {
            std::fill(dst + zeroed * row, dst + reach * row, T(0));
            zeroed = reach;
          }
          const int64_t limit = zeroed * W;
          for (int64_t o = oh * p.OW * C; o < (oh + 1) * p.OW * C; o += C) {
            if (skip(o / C)) continue;
            for (int64_t c = 0; c < C; ++c) {
              const int64_t i = in_[o + c];
              outside |= static_cast<uint64_t>(i) >= static_cast<uint64_t>(limit);
              dst[(outside ? 0 : i) * C + c] += gn[o + c];
            }
          }
        }
        std::fill(dst + zeroed * row, dst + plane * C, T(0));
        if (!outside) return;
        std::fill(dst, dst + plane * C, T(0));
        bool bad = false;
        for (int64_t o = 0; o < out_plane * C; o += C) {
          if (skip(o / C)) continue;
          for (int64_t c = 0; c < C; ++c) {
            const int64_t i = in_[o + c];
            bad |= static_cast<uint64_t>(i) >= static_cast<uint64_t>(plane);
            dst[(bad ? 0 : i) * C + c] += gn[o + c];
          }
        }
        check_in_plane(bad);
      });
    }
  });
}

// grad_input[n, c, h, w] = Σ grad_output[n, c, oh, ow] over the windows covering (h, w) whose offset
// names the tap landing on it, each input gradient written once (no zero fill of grad_input, no
// scatter into it): an NCHW plane by a gather, or where windows overlap by a scatter into a plane in
// cache (csrc/cpu/simd/pool.h); channels_last rows by a gather. An offset no forward pass writes
// (>= kH·kW) names no tap and passes nothing.
void max_pool2d_offsets_backward(const at::Tensor& grad_input, const at::Tensor& grad_output,
                                 const at::Tensor& offsets, const PoolProblem& g) {
  const math::Pool2d& p = g.p;
  const uint8_t* o = offsets.const_data_ptr<uint8_t>();
  in_compute_type(grad_input, grad_output, [&]<class T>(const PoolKernel<T>& k, const T* gout, T* gi) {
    for_each_unit(
        g, p.OH, p.OW, p.H, p.W, pool_max_backward_scratch_bytes(p),
        [&](int64_t src, int64_t dst, void* scratch) {
          k.max_backward_plane(gout + src, o + src, gi + dst, p, scratch);
        },
        [&](int64_t src, int64_t dst, int64_t ih) {
          k.max_backward_row_cl(gout + src, o + src, gi + dst, p, g.C, ih);
        });
  });
}

void avg_pool2d(const at::Tensor& out, const at::Tensor& input, const PoolProblem& g, const math::AvgMode& mode) {
  const math::Pool2d& p = g.p;
  in_compute_type(out, input, [&]<class T>(const PoolKernel<T>& k, const T* in, T* o) {
    const bool ahead = streams_from_memory(g, sizeof(T));
    for_each_unit(
        g, p.H, p.W, p.OH, p.OW, pool_plane_scratch_bytes(p),
        [&](int64_t src, int64_t dst, void* scratch) { k.avg_plane(in + src, o + dst, p, mode, scratch); },
        [&](int64_t src, int64_t dst, int64_t oh) { k.avg_row_cl(in + src, o + dst, p, mode, g.C, oh, ahead); });
  });
}

// The adjoint of avg_pool2d: each input element gathers grad_output / divisor over the windows that
// cover it.
void avg_pool2d_backward(const at::Tensor& grad_input, const at::Tensor& grad_output, const PoolProblem& g,
                         const math::AvgMode& mode) {
  const math::Pool2d& p = g.p;
  in_compute_type(grad_input, grad_output, [&]<class T>(const PoolKernel<T>& k, const T* gout, T* gi) {
    for_each_unit(
        g, p.OH, p.OW, p.H, p.W, pool_plane_scratch_bytes(p),
        [&](int64_t src, int64_t dst, void* scratch) { k.avg_backward_plane(gout + src, gi + dst, p, mode, scratch); },
        [&](int64_t src, int64_t dst, int64_t ih) { k.avg_backward_row_cl(gout + src, gi + dst, p, mode, g.C, ih); });
  });
}

}  // namespace

HK_REGISTER_STUB(max_pool2d_stub, cpu, &max_pool2d);
HK_REGISTER_STUB(max_pool2d_backward_stub, cpu, &max_pool2d_backward);
HK_REGISTER_STUB(max_pool2d_offsets_backward_stub, cpu, &max_pool2d_offsets_backward);
HK_REGISTER_STUB(avg_pool2d_stub, cpu, &avg_pool2d);
HK_REGISTER_STUB(avg_pool2d_backward_stub, cpu, &avg_pool2d_backward);

}  // namespace hotkernels::cpu
