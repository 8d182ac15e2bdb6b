// `stream_pass` (schema in csrc/schemas.cpp): the memory floor of the benchmarks' memory-bound cases
// (python/hotkernels/bench copy_floor), as `fma_peak_loop` (csrc/cpu/gemm.cpp) is the compute one.
// One pass that reads `reads`, copies each of `sources` into its `copies` and adds 1 to each of
// `updates` in place, with no other work: a fused kernel's traffic (an optimizer step reads g and
// updates p, m and v in one pass) at no compute, which separate torch passes (a sum, then an add_
// per tensor) do not reach. All tensors advance in lockstep, chunk c of each together, as a fused
// kernel walks its operands, and the chunks are split over the intra-op threads. A copy may be
// shorter than its source: each chunk of the source is then read whole, its head copied, as a
// reduction (pooling: 4 values read per value written) streams its input once while it writes its
// output; a separate source and read-only tensor would be two read streams, a slower floor. A copy
// may also be longer than its source: each chunk of the source then goes to the head of the copy's
// chunk (all of it, but for a few values that the chunks' rounding leaves read only) and the rest
// is filled with zeros, as a pass that writes more than it reads (max pooling's backward: a float
// and a byte read per four floats written) stores values it computes. The loops are the
// instruction set's (csrc/cpu/simd/stream.cpp), so `HOTKERNELS_CPU_ISA` caps them too.
// With `prefetch`, they fetch ahead in software as the kernels' streaming loops do; without, they
// leave it to the hardware prefetchers, which on a Zen 4 streamed 12-16% faster alone (reads, and
// reads with in-place updates; copies even), where on a Xeon the kernels' software prefetch had paid.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cpu/simd/stream.h"

namespace hotkernels::cpu {
namespace {

void check_stream(const char* arg, const at::Tensor& t) {
  TORCH_CHECK(t.is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), "hotkernels.stream_pass: expected '",
              arg, "' to hold contiguous float32 CPU tensors, but got a ", t.scalar_type(), " tensor on ", t.device(),
              t.is_contiguous() ? "" : " (not contiguous)");
}

// The bits of every value read, OR-ed: a result that depends on all reads, so that none is elided.
int64_t stream_pass(at::TensorList reads, at::TensorList sources, at::TensorList copies, at::TensorList updates,
                    bool prefetch) {
  TORCH_CHECK(sources.size() == copies.size(), "hotkernels.stream_pass: expected as many 'copies' as 'sources', got ",
              copies.size(), " and ", sources.size());
  int64_t most = 0;
  for (auto [arg, list] : {std::pair{"reads", reads}, {"sources", sources}, {"copies", copies}, {"updates", updates}}) {
    for (const at::Tensor& t : list) {
      check_stream(arg, t);
      most = std::max(most, t.numel());
    }
  }
  constexpr int64_t kChunk = 4096;  // floats of the largest tensor per chunk (16 KiB; 1 KiB ran slower)
  const int64_t chunks = std::max<int64_t>(1, (most + kChunk - 1) / kChunk);
  const StreamKernels& kernel = HK_ISA_TABLE(stream_kernels);
  std::atomic<uint32_t> seen{0};
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    uint32_t bits = 0;
    for (int64_t c = begin; c < end; ++c) {
      // Chunk c of a tensor of n values: [c·n / chunks, (c + 1)·n / chunks), the bounds rounded down
      // to 16 floats (a cache line; the last chunk ends at n), so that every chunk but the last runs
      // whole vectors from a line boundary, as a fused kernel's elementwise loop does.
      auto bound = [&](int64_t n, int64_t at) { return at == chunks ? n : at * n / chunks / 16 * 16; };
      auto chunk = [&](const at::Tensor& t) { return std::pair{bound(t.numel(), c), bound(t.numel(), c + 1)}; };
      for (const at::Tensor& t : reads) {
        const auto [lo, hi] = chunk(t);
        bits |= kernel.read(static_cast<const uint32_t*>(t.const_data_ptr()) + lo, hi - lo, prefetch);
      }
      for (size_t k = 0; k < sources.size(); ++k) {
        const int64_t n = sources[k].numel(), m = copies[k].numel();
        const auto [to, end] = chunk(copies[k]);
        const auto* src = static_cast<const uint32_t*>(sources[k].const_data_ptr());
        float* dst = copies[k].mutable_data_ptr<float>();
        if (m > n) {  // the source's chunk to the head of the copy's, zeros after it
          const auto [lo, hi] = chunk(sources[k]);
          const int64_t copied = std::min(hi - lo, end - to);  // the source's chunk, unless rounding made it longer
          kernel.copy(dst + to, reinterpret_cast<const float*>(src) + lo, copied, prefetch);
          bits |= kernel.read(src + lo + copied, hi - lo - copied, prefetch);
          kernel.fill(dst + to + copied, end - to - copied, prefetch);
          continue;
        }
        // The copy's chunk, and the source's chunk it is the head of: the copy's bounds scaled by
        // n / m, rounded up (so each source chunk holds its copy chunk whole, and a source as long
        // as its copy is chunked alike).
        const auto [lo, hi] = m == 0 ? chunk(sources[k]) : std::pair{(to * n + m - 1) / m, (end * n + m - 1) / m};
        kernel.copy(dst + to, reinterpret_cast<const float*>(src) + lo, end - to, prefetch);
        bits |= kernel.read(src + lo + (end - to), hi - lo - (end - to), prefetch);
      }
      for (const at::Tensor& t : updates) {
        const auto [lo, hi] = chunk(t);
        kernel.add_one(t.mutable_data_ptr<float>() + lo, hi - lo, prefetch);
      }
    }
    seen.fetch_or(bits);
  });
  return seen.load();
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) { m.impl("stream_pass", &stream_pass); }

}  // namespace hotkernels::cpu
