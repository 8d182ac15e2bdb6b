// Software prefetch: the CPU kernels' one idiom for fetching what a loop will touch next.
//
// Why the kernels prefetch at all: on a Xeon (AVX-512, a KVM guest) the hardware prefetchers
// alone fetched too late for streaming loops. Measured there: Mish 16M float32 in place 3.2x -> 3.7x
// torch's, forward+backward 3.4x -> 4.0x (elementwise maps, kPrefetchAhead on); 3x3/s2 max pooling
// of (32, 64, 112, 112) ~0.67 -> ~0.8-0.9 of its copy floor (rows a few rows on); bfloat16 Adam of
// 11.7M params 10.6 -> 9.3 ms (widened blocks two blocks on).
//
// The GEMM micro-kernels (csrc/cpu/simd/gemm.cpp) are the exception: their per-step prefetch of a
// fixed number of lines of B and A is part of the kernel's schedule and stays next to it.
//
// Torch-free: included by the per-instruction-set kernel files (csrc/cpu/simd/*.cpp) as well as by
// the op glue. The functions have internal linkage (`static`), so the copies compiled for different
// instruction sets stay apart at link time, as simd.h's do through their namespace.
#pragma once

#include <cstdint>

namespace hotkernels::cpu {

// How far ahead the streaming loops (elementwise maps, optimizer spans, the memory floor) fetch:
// 2 KiB, 32 cache lines per operand.
constexpr int64_t kPrefetchAhead = 2048;

enum class Access { read = 0, write = 1 };

// Fetches the cache lines covering the `bytes` bytes from address `begin`, for reading or for
// writing. Past the end of an allocation is fine: a prefetch never faults. An address that may lie
// past it is computed as an integer, never formed as an out-of-range pointer. Always inlined, as
// must be any helper built on it that does nothing but prefetch: GCC takes such a function for one
// without effects and drops its calls (a pooling helper's were gone from the object code).
template <Access A = Access::read>
[[gnu::always_inline]] static inline void prefetch_range(uintptr_t begin, int64_t bytes) {
  const uintptr_t end = begin + static_cast<uintptr_t>(bytes);
  for (uintptr_t line = begin & ~uintptr_t{63}; line < end; line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), static_cast<int>(A));
  }
}
template <Access A = Access::read>
[[gnu::always_inline]] static inline void prefetch_range(const void* p, int64_t bytes) {
  prefetch_range<A>(reinterpret_cast<uintptr_t>(p), bytes);
}

// Fetches, for each pointer, the line kPrefetchAhead bytes past its element i: the call a streaming
// loop makes at each vector (successive vectors, at most a line apart, reach every line).
template <Access A = Access::read, class... P>
[[gnu::always_inline]] static inline void prefetch_ahead(int64_t i, const P*... p) {
  (__builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p + i) + kPrefetchAhead),
                      static_cast<int>(A)),
   ...);
}

}  // namespace hotkernels::cpu
