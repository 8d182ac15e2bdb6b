// Run-time choice of the CPU instruction set for the vectorised kernels.
//
// Every file in csrc/cpu/simd/ is compiled once per instruction set (CMakeLists.txt), each copy
// inside its own namespace: hotkernels::cpu::base (the compiler's baseline: SSE2 on x86-64),
// ::avx2 (AVX2 + FMA) and ::avx512 (AVX-512 F/VL/DQ/BW). A kernel file defines a table of function
// pointers in its namespace; the op picks the table of the best instruction set this CPU supports
// with HK_ISA_TABLE(name). Setting HOTKERNELS_CPU_ISA=base|avx2|avx512 caps the choice (used by the
// tests to exercise every path the machine can run).
#pragma once

namespace hotkernels::cpu {

enum class Isa { base = 0, avx2 = 1, avx512 = 2 };

// Best instruction set that this CPU and OS support, capped by HOTKERNELS_CPU_ISA. Computed once.
Isa active_isa();
const char* isa_name(Isa isa);

template <class Table>
const Table& select_isa(Isa isa, const Table& base, const Table& avx2, const Table& avx512) {
  switch (isa) {
    case Isa::avx512: return avx512;
    case Isa::avx2: return avx2;
    default: return base;
  }
}

}  // namespace hotkernels::cpu

// Declares the kernel table `name` of type `Table` in every instruction-set namespace.
#define HK_DECLARE_ISA_TABLE(Table, name)       \
  namespace hotkernels::cpu::base {             \
  extern const Table name;                      \
  }                                             \
  namespace hotkernels::cpu::avx2 {             \
  extern const Table name;                      \
  }                                             \
  namespace hotkernels::cpu::avx512 {           \
  extern const Table name;                      \
  }

// The table `name` of instruction set `isa` (at most what this CPU runs: the caller checks).
#if defined(__x86_64__) || defined(_M_X64)
#define HK_ISA_TABLE_OF(isa, name)                                                                   \
  ::hotkernels::cpu::select_isa((isa), ::hotkernels::cpu::base::name, ::hotkernels::cpu::avx2::name, \
                                ::hotkernels::cpu::avx512::name)
#else
#define HK_ISA_TABLE_OF(isa, name) (::hotkernels::cpu::base::name)
#endif
// The table `name` of the instruction set the kernels run (active_isa()).
#define HK_ISA_TABLE(name) HK_ISA_TABLE_OF(::hotkernels::cpu::active_isa(), name)
