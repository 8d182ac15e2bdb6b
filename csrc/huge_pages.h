// Large new CPU tensors that an op writes in full ask for transparent huge pages.
#pragma once

#include <ATen/core/Tensor.h>

#include <sys/mman.h>

#include <cstdint>

namespace hotkernels {

// `t`, its 2 MiB-aligned interior advised MADV_HUGEPAGE when it is in CPU memory. A large CPU
// allocation is fresh memory from the OS (glibc maps blocks above 32 MiB anew each time), and
// faulting it in 4 KiB pages costs more than writing it: on this project's 2-core EPYC, a fresh
// 100 MB tensor took 40-150 ms to fill against 6 ms for one already mapped, 17-21 ms with
// transparent huge pages. Advice only: the kernel ignores it where THP is off; for a tensor the op
// writes in full, huge pages waste no memory. The price is a longer tail in a VM: on a Zen 4
// Firecracker guest, paired over 40 calls, max pooling's forward+backward took a median of 15 ms
// with the advice against 31 ms without, but up to 424 ms against 71 ms in spells where the guest's
// fresh 2 MiB pages came slowly (Mish likewise: 17 against 41 ms, up to 177 against 50).
inline at::Tensor huge_pages(at::Tensor t) {
#ifdef MADV_HUGEPAGE
  if (!t.is_cpu()) return t;
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const auto data = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t begin = (data + kHugePage - 1) & ~(kHugePage - 1), end = (data + t.nbytes()) & ~(kHugePage - 1);
  if (end > begin + kHugePage) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
  return t;
}

}  // namespace hotkernels
