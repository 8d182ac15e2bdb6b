// Mish on SIMD vectors; the formulas are shared with CUDA (csrc/math/mish.h).
#include "cpu/simd/mish.h"

#include "cpu/simd/simd.h"
#include "math/mish.h"

namespace hotkernels::cpu::HK_ISA {
namespace {

struct Forward {
  template <class V> V operator()(V x) const { return math::mish_forward(x, simd::Exp{}, simd::Reciprocal{}); }
};
struct Backward {
  template <class V> V operator()(V grad, V x) const { return math::mish_backward(grad, x, simd::Exp{}, simd::Reciprocal{}); }
};

}  // namespace

extern const MapKernel mish_forward = simd::map_kernel<Forward, 1>();
extern const MapKernel mish_backward = simd::map_kernel<Backward, 2>();

}  // namespace hotkernels::cpu::HK_ISA
