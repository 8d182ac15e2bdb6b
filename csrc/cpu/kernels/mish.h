// Vectorised Mish kernels (csrc/cpu/kernels/mish.cpp), one table per instruction set.
#pragma once

#include "cpu/isa.h"
#include "cpu/kernels/map_kernel.h"

namespace hotkernels::cpu {

struct MishKernels {
  MapKernel<1> forward;   // y = mish(x)
  MapKernel<2> backward;  // grad_input = grad_output · mish'(x); inputs (grad_output, x)
};

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(MishKernels, mish_kernels)
