// 2-D max and average pooling on the CPU: argument checks, layouts, threads. The SIMD loops are in
// csrc/cpu/kernels/pool.cpp; the geometry in csrc/pool_geometry.h and csrc/math/pool.h.
//
// Work splits into independent units — an (n, c) plane for NCHW, an (n, oh) output row for
// channels_last forward, an image (backward scatter by indices) or (n, ih) input row (the gathers:
// average, max from offsets) for channels_last backward — so every output element has one writer and
// results do not depend on the thread count.
// float16/bfloat16 are computed in float: the input is widened once, the result rounded once (max is
// exact either way; average rounds its float sum once, as torch's opmath accumulation does).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "checks.h"
#include "huge_pages.h"
#include "cpu/kernels/pool.h"
#include "pool_geometry.h"

namespace hotkernels::cpu {
namespace {

bool is_reduced_float(const at::Tensor& t) { return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16; }

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// The layout a pooling op keeps: channels_last for a 4-D input that suggests it, else contiguous.
bool is_channels_last(const at::Tensor& input) {
  return input.dim() == 4 && input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
}

std::vector<int64_t> output_shape(const at::Tensor& input, const math::Pool2d& p) {
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape[shape.size() - 2] = p.OH;
  shape[shape.size() - 1] = p.OW;
  return shape;
}

template <class T>
const PoolKernelsOf<T>& kernels() {
  if constexpr (std::is_same_v<T, float>) {
    return HK_ISA_TABLE(pool_kernels).f32;
  } else {
    return HK_ISA_TABLE(pool_kernels).f64;
  }
}

// fn(unit, scratch) for every unit in [0, n), across threads; each thread gets `scratch_bytes` of
// scratch. `unit_elements` (elements one unit touches) sets the grain so small problems stay serial.
template <class F>
void for_each_unit(int64_t n, int64_t unit_elements, size_t scratch_bytes, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(unit_elements, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    std::unique_ptr<char[]> scratch(scratch_bytes > 0 ? new char[scratch_bytes] : nullptr);
    for (int64_t q = begin; q < end; ++q) fn(q, scratch.get());
  });
}

// What max pooling returns besides the values: nothing (inference), torch's int64 indices, or the
// uint8 window offsets autograd saves (csrc/math/pool.h).
enum class MaxArg { none, indices, offsets };

std::tuple<at::Tensor, at::Tensor> max_pool(const char* op, const at::Tensor& input, at::IntArrayRef kernel_size,
                                            at::IntArrayRef stride, at::IntArrayRef padding,
                                            at::IntArrayRef dilation, bool ceil_mode, MaxArg arg) {
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  const math::Pool2d& p = g.p;
  if (arg == MaxArg::offsets) check_offset_taps(op, p);
  // The float32 kernels keep plane indices in int32 lanes (csrc/cpu/kernels/pool.cpp). float16 and
  // bfloat16 compute in float32: refuse them here, before their float32 copy is made.
  TORCH_CHECK(input.scalar_type() == at::kDouble || p.H * p.W <= INT32_MAX, "hotkernels.", op,
              ": float32, float16 and bfloat16 'input' planes of 2^31 or more elements are not supported "
              "(float64 is), got ", p.H, "x", p.W);
  if (is_reduced_float(input)) {
    auto [out, argmax] = max_pool(op, input.to(at::kFloat), kernel_size, stride, padding, dilation, ceil_mode, arg);
    return {out.to(input.scalar_type()), argmax};
  }
  const auto fmt = format_of(g.channels_last);
  const at::Tensor x = input.contiguous(fmt);
  const auto shape = output_shape(input, p);
  at::Tensor out = huge_pages(at::empty(shape, input.options().memory_format(fmt)));
  at::Tensor argmax;
  if (arg != MaxArg::none) {
    const at::ScalarType type = arg == MaxArg::indices ? at::kLong : at::kByte;
    argmax = huge_pages(at::empty(shape, input.options().dtype(type).memory_format(fmt)));
  }
  if (out.numel() == 0) return {out, argmax};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hotkernels_pool2d", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    int64_t* ix = arg == MaxArg::indices ? argmax.mutable_data_ptr<int64_t>() : nullptr;
    uint8_t* off = arg == MaxArg::offsets ? argmax.mutable_data_ptr<uint8_t>() : nullptr;
    // The argmax from output `at` on, or null where this call writes none.
    const auto at_ = [](auto* a, int64_t at) { return a ? a + at : nullptr; };
    if (!g.channels_last) {
      for_each_unit(g.N * g.C, p.H * p.W, pool_plane_scratch_bytes(p), [&](int64_t q, void* scratch) {
        const int64_t at = q * p.OH * p.OW;
        k.max_plane(in + q * p.H * p.W, o + at, at_(ix, at), at_(off, at), p, scratch);
      });
    } else {
      const int64_t row = p.OW * g.C;
      for_each_unit(g.N * p.OH, row * p.kH * p.kW, 0, [&](int64_t r, void*) {
        k.max_row_cl(in + (r / p.OH) * p.H * p.W * g.C, o + r * row, at_(ix, r * row), at_(off, r * row), p, g.C,
                     r % p.OH);
      });
    }
  });
  return {out, argmax};
}

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(max_pool("max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, MaxArg::none));
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool("max_pool2d_with_indices", input, kernel_size, stride, padding, dilation, ceil_mode,
                  MaxArg::indices);
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_offsets(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode) {
  return max_pool("max_pool2d_with_offsets", input, kernel_size, stride, padding, dilation, ceil_mode,
                  MaxArg::offsets);
}

// Checks shared by the backward ops: grad_output is (..., OH, OW) over input's leading dimensions.
void check_backward(const char* op, const at::Tensor& grad_output, const at::Tensor& input) {
  check_floating(op, "input", input);
  check_same_dtype(op, "grad_output", grad_output, "input", input);
  check_same_device(op, "grad_output", grad_output, "input", input);
  TORCH_CHECK(input.dim() == 3 || input.dim() == 4, "hotkernels.", op,
              ": expected 'input' to be 3-D or 4-D, but got ", input.dim(), " dimensions");
  TORCH_CHECK(grad_output.dim() == input.dim() &&
                  grad_output.sizes().slice(0, input.dim() - 2) == input.sizes().slice(0, input.dim() - 2),
              "hotkernels.", op, ": expected 'grad_output' to have the leading dimensions of 'input' ",
              input.sizes(), ", but got ", grad_output.sizes());
}

// grad_input[n, c, indices[o]] += grad_output[o]: a scatter, each plane (NCHW) or image
// (channels_last) by one thread in output order, so overlapping windows sum deterministically.
at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& indices,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "max_pool2d_backward";
  check_backward(op, grad_output, input);
  const PoolProblem geometry = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  check_output_size(op, grad_output, geometry.p);
  check_same_device(op, "indices", indices, "input", input);
  TORCH_CHECK(indices.scalar_type() == at::kLong, "hotkernels.", op, ": expected 'indices' to be int64, but got ",
              indices.scalar_type());
  check_same_shape(op, "indices", indices, "grad_output", grad_output);
  if (is_reduced_float(grad_output)) {
    return max_pool2d_backward(grad_output.to(at::kFloat), input.to(at::kFloat), indices, kernel_size, stride, padding,
                               dilation, ceil_mode)
        .to(input.scalar_type());
  }
  const bool cl = is_channels_last(input);
  const auto fmt = format_of(cl);
  const at::Tensor go = grad_output.contiguous(fmt);
  const at::Tensor ix = indices.contiguous(fmt);
  at::Tensor grad_input = huge_pages(at::empty(input.sizes(), grad_output.options().memory_format(fmt)));
  if (grad_input.numel() == 0) return grad_input;
  const int64_t H = input.size(-2), W = input.size(-1), C = input.size(-3);
  const int64_t planes = input.numel() / (H * W), plane = H * W;
  const int64_t out_plane = go.size(-2) * go.size(-1);
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "hotkernels_pool2d_backward", [&] {
    const scalar_t* g = go.const_data_ptr<scalar_t>();
    const int64_t* idx = ix.const_data_ptr<int64_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    // An index outside the plane would write out of bounds: flag it in the loop, raise after.
    auto check_indices = [&](bool bad) {
      TORCH_CHECK(!bad, "hotkernels.", op, ": 'indices' holds an index outside the ", H, "x", W, " input plane");
    };
    // A window made only of padding (dilation allows it) holds no input element and passes no
    // gradient, whatever its index says (the forward gives it its first tap's position, as torch
    // does, which may lie outside the plane or alias another element).
    const math::Pool2d& p = geometry.p;
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
    if (!cl) {
      for_each_unit(planes, plane + out_plane, 0, [&](int64_t q, void*) {
        scalar_t* dst = gi + q * plane;
        std::fill(dst, dst + plane, scalar_t(0));
        const int64_t* iq = idx + q * out_plane;
        const scalar_t* gq = g + q * out_plane;
        bool bad = false;
        for (int64_t o = 0; o < out_plane; ++o) {
          if (skip(o)) continue;
          const int64_t i = iq[o];
          bad |= static_cast<uint64_t>(i) >= static_cast<uint64_t>(plane);
          dst[bad ? 0 : i] += gq[o];
        }
        check_indices(bad);
      });
    } else {
      // An image is larger than the caches: zero its rows just ahead of the output rows that scatter
      // into them (rows up to the window's reach), so they are still cached when the scatter comes.
      // An index beyond the rows zeroed so far (not one a forward pass makes) redoes the image plainly.
      const int64_t row = W * C;
      for_each_unit(planes / C, (plane + out_plane) * C, 0, [&](int64_t n, void*) {
        scalar_t* dst = gi + n * plane * C;
        const int64_t* in_ = idx + n * out_plane * C;
        const scalar_t* gn = g + n * out_plane * C;
        int64_t zeroed = 0;
        bool outside = false;
        for (int64_t oh = 0; oh < p.OH && !outside; ++oh) {
          const int64_t reach = std::min(H, oh * p.sH - p.pH + (p.kH - 1) * p.dH + 1);
          if (reach > zeroed) {
            std::fill(dst + zeroed * row, dst + reach * row, scalar_t(0));
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
        std::fill(dst + zeroed * row, dst + plane * C, scalar_t(0));
        if (!outside) return;
        std::fill(dst, dst + plane * C, scalar_t(0));
        bool bad = false;
        for (int64_t o = 0; o < out_plane * C; o += C) {
          if (skip(o / C)) continue;
          for (int64_t c = 0; c < C; ++c) {
            const int64_t i = in_[o + c];
            bad |= static_cast<uint64_t>(i) >= static_cast<uint64_t>(plane);
            dst[(bad ? 0 : i) * C + c] += gn[o + c];
          }
        }
        check_indices(bad);
      });
    }
  });
  return grad_input;
}

// grad_input[n, c, h, w] = Σ grad_output[n, c, oh, ow] over the windows covering (h, w) whose offset
// names the tap landing on it: a gather, each input gradient written once (no zero fill, no
// scatter). An offset no forward pass writes (>= kH·kW) names no tap and passes nothing.
at::Tensor max_pool2d_offsets_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& offsets, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                       at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "max_pool2d_offsets_backward";
  check_backward(op, grad_output, input);
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode);
  const math::Pool2d& p = g.p;
  check_output_size(op, grad_output, p);
  check_offsets(op, offsets, grad_output, input, p);
  if (is_reduced_float(grad_output)) {
    return max_pool2d_offsets_backward(grad_output.to(at::kFloat), input.to(at::kFloat), offsets, kernel_size, stride,
                                       padding, dilation, ceil_mode)
        .to(input.scalar_type());
  }
  const auto fmt = format_of(g.channels_last);
  const at::Tensor go = grad_output.contiguous(fmt);
  const at::Tensor off = offsets.contiguous(fmt);
  at::Tensor grad_input = huge_pages(at::empty(input.sizes(), grad_output.options().memory_format(fmt)));
  if (grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "hotkernels_pool2d_backward", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* gout = go.const_data_ptr<scalar_t>();
    const uint8_t* o = off.const_data_ptr<uint8_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    if (!g.channels_last) {
      for_each_unit(g.N * g.C, p.H * p.W, pool_gather_scratch_bytes(p), [&](int64_t q, void* scratch) {
        const int64_t at = q * p.OH * p.OW;
        k.max_backward_plane(gout + at, o + at, gi + q * p.H * p.W, p, scratch);
      });
    } else {
      const int64_t row = p.W * g.C;
      for_each_unit(g.N * p.H, row * p.kH * p.kW, 0, [&](int64_t r, void*) {
        const int64_t at = (r / p.H) * p.OH * p.OW * g.C;
        k.max_backward_row_cl(gout + at, o + at, gi + r * row, p, g.C, r % p.H);
      });
    }
  });
  return grad_input;
}

at::Tensor avg_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      std::optional<int64_t> divisor_override) {
  constexpr const char* op = "avg_pool2d";
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, {1, 1}, ceil_mode);
  const math::AvgMode mode = avg_mode(count_include_pad, divisor_override);
  if (is_reduced_float(input)) {
    return avg_pool2d(input.to(at::kFloat), kernel_size, stride, padding, ceil_mode, count_include_pad,
                      divisor_override)
        .to(input.scalar_type());
  }
  const math::Pool2d& p = g.p;
  const auto fmt = format_of(g.channels_last);
  const at::Tensor x = input.contiguous(fmt);
  at::Tensor out = huge_pages(at::empty(output_shape(input, p), input.options().memory_format(fmt)));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hotkernels_pool2d", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    if (!g.channels_last) {
      for_each_unit(g.N * g.C, p.H * p.W, pool_plane_scratch_bytes(p), [&](int64_t q, void* scratch) {
        k.avg_plane(in + q * p.H * p.W, o + q * p.OH * p.OW, p, mode, scratch);
      });
    } else {
      const int64_t row = p.OW * g.C;
      for_each_unit(g.N * p.OH, row * p.kH * p.kW, 0, [&](int64_t r, void*) {
        k.avg_row_cl(in + (r / p.OH) * p.H * p.W * g.C, o + r * row, p, mode, g.C, r % p.OH);
      });
    }
  });
  return out;
}

// The adjoint of avg_pool2d: each input element gathers grad_output / divisor over the windows that
// cover it.
at::Tensor avg_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                               bool count_include_pad, std::optional<int64_t> divisor_override) {
  constexpr const char* op = "avg_pool2d_backward";
  check_backward(op, grad_output, input);
  const PoolProblem g = pool2d_geometry(op, input, kernel_size, stride, padding, {1, 1}, ceil_mode);
  const math::AvgMode mode = avg_mode(count_include_pad, divisor_override);
  const math::Pool2d& p = g.p;
  check_output_size(op, grad_output, p);
  if (is_reduced_float(grad_output)) {
    return avg_pool2d_backward(grad_output.to(at::kFloat), input.to(at::kFloat), kernel_size, stride, padding,
                               ceil_mode, count_include_pad, divisor_override)
        .to(input.scalar_type());
  }
  const auto fmt = format_of(g.channels_last);
  const at::Tensor go = grad_output.contiguous(fmt);
  at::Tensor grad_input = huge_pages(at::empty(input.sizes(), grad_output.options().memory_format(fmt)));
  if (grad_input.numel() == 0) return grad_input;
  AT_DISPATCH_FLOATING_TYPES(go.scalar_type(), "hotkernels_pool2d_backward", [&] {
    const auto& k = kernels<scalar_t>();
    const scalar_t* gout = go.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    if (!g.channels_last) {
      for_each_unit(g.N * g.C, p.H * p.W, pool_plane_scratch_bytes(p), [&](int64_t q, void* scratch) {
        k.avg_backward_plane(gout + q * p.OH * p.OW, gi + q * p.H * p.W, p, mode, scratch);
      });
    } else {
      const int64_t row = p.W * g.C;
      for_each_unit(g.N * p.H, row * p.kH * p.kW, 0, [&](int64_t r, void*) {
        k.avg_backward_row_cl(gout + (r / p.H) * p.OH * p.OW * g.C, gi + r * row, p, mode, g.C, r % p.H);
      });
    }
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) {
  m.impl("max_pool2d", &max_pool2d);
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices);
  m.impl("max_pool2d_backward", &max_pool2d_backward);
  m.impl("max_pool2d_with_offsets", &max_pool2d_with_offsets);
  m.impl("max_pool2d_offsets_backward", &max_pool2d_offsets_backward);
  m.impl("avg_pool2d", &avg_pool2d);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward);
}

}  // namespace hotkernels::cpu
