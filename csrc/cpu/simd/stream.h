// The loops of the benchmarks' memory floor (csrc/cpu/stream.cpp), one table per instruction set:
// memory traffic at the vector width of the kernels it is the floor of, and no other work.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace hotkernels::cpu {

// Each loop prefetches ahead as the kernels do (csrc/cpu/prefetch.h) where `prefetch` is true.
struct StreamKernels {
  uint32_t (*read)(const uint32_t* p, int64_t n, bool prefetch);  // the bits of p[0, n) OR-ed
  void (*copy)(float* dst, const float* src, int64_t n, bool prefetch);
  void (*fill)(float* dst, int64_t n, bool prefetch);  // dst[i] = 0: a write with no read
  void (*add_one)(float* p, int64_t n, bool prefetch);  // p[i] += 1, in place
};

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(hotkernels::cpu::StreamKernels, stream_kernels)
