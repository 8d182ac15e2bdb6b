// Mish's CPU kernels: the SIMD map of csrc/cpu/simd/mish.cpp over threads (csrc/cpu/elementwise.h).
#include "mish.h"

#include "cpu/elementwise.h"
#include "cpu/simd/mish.h"

namespace hotkernels::cpu {
namespace {

void mish(const at::Tensor& out, const at::Tensor& self) { parallel_map<1>(HK_ISA_TABLE(mish_forward), out, {self}); }

void mish_backward(const at::Tensor& grad_input, const at::Tensor& grad_output, const at::Tensor& self) {
  parallel_map<2>(HK_ISA_TABLE(mish_backward), grad_input, {grad_output, self});
}

}  // namespace

HK_REGISTER_STUB(mish_stub, cpu, &mish);
HK_REGISTER_STUB(mish_backward_stub, cpu, &mish_backward);

}  // namespace hotkernels::cpu
