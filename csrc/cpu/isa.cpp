#include "cpu/isa.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string_view>

namespace hotkernels::cpu {
namespace {

Isa detect() {
#if defined(__x86_64__) || defined(_M_X64)
  // libgcc's checks include the OS's XSAVE support for the wider registers.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Isa::avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return Isa::avx2;
  }
#endif
  return Isa::base;
}

Isa cap_from_env(Isa best) {
  const char* env = std::getenv("HOTKERNELS_CPU_ISA");
  if (env == nullptr || *env == '\0') return best;
  const std::string_view want(env);
  Isa cap;
  if (want == "base") {
    cap = Isa::base;
  } else if (want == "avx2") {
    cap = Isa::avx2;
  } else if (want == "avx512") {
    cap = Isa::avx512;
  } else {
    TORCH_CHECK(false, "hotkernels: HOTKERNELS_CPU_ISA must be base, avx2 or avx512, got '", want, "'");
  }
  return cap < best ? cap : best;
}

}  // namespace

Isa active_isa() {
  static const Isa isa = cap_from_env(detect());
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "base";
  }
}

}  // namespace hotkernels::cpu
