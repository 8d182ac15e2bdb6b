// `core_round_trip` (schema in csrc/schemas.cpp): how long a cache line takes to go from one
// intra-op thread to another and back, for the benchmarks' record of the machine
// (python/hotkernels/bench probe). Kernels that hand data between threads at every step (an LSTM's
// recurrence: each step reads the state that both threads wrote in the last) pay it many times
// per call. It is what a shared machine changes between runs: on this project's 2-core EPYC VM a
// round trip took 50-70 ns while its two virtual CPUs ran on cores of one cache, and 350-370 ns
// in spells when they ran apart, in which an nn.LSTM layer's steps ran ~30% slower.
#include <ATen/Config.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

namespace hotkernels::cpu {
namespace {

// Nanoseconds per round trip of a cache line between intra-op threads 0 and 1 over `round_trips`
// round trips (thread 0 writes an odd count, thread 1 answers with the next even one); NaN with
// fewer than two threads running.
double core_round_trip(int64_t round_trips) {
  TORCH_CHECK(round_trips > 0, "hotkernels.core_round_trip: expected 'round_trips' > 0, got ", round_trips);
  alignas(64) std::atomic<int64_t> count{0};
  alignas(64) std::atomic<int> present{0};
  double ns = std::numeric_limits<double>::quiet_NaN();
#if AT_PARALLEL_OPENMP  // elsewhere the two calls below could run one after the other: each would wait forever
  at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
    // One call for both (a single thread): nothing to bounce against. Otherwise the two calls run
    // at once on two threads of an OpenMP team, which wait for each other before they start.
    if (end - begin != 1) return;
    present.fetch_add(1);
    while (present.load() < 2) {
    }
    if (begin == 0) {
      const auto start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < round_trips; ++i) {
        count.store(2 * i + 1, std::memory_order_release);
        while (count.load(std::memory_order_acquire) != 2 * i + 2) {
        }
      }
      ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() /
           static_cast<double>(round_trips);
    } else {
      for (int64_t i = 0; i < round_trips; ++i) {
        while (count.load(std::memory_order_acquire) != 2 * i + 1) {
        }
        count.store(2 * i + 2, std::memory_order_release);
      }
    }
  });
#endif
  return ns;
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CompositeExplicitAutograd, m) { m.impl("core_round_trip", &core_round_trip); }

}  // namespace hotkernels::cpu
