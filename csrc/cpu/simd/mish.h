// Vectorised Mish (csrc/cpu/simd/mish.cpp), one kernel of each per instruction set.
#pragma once

#include "cpu/isa.h"
#include "cpu/simd/map_kernel.h"

// y = mish(x); one input (x)
HK_DECLARE_ISA_TABLE(hotkernels::cpu::MapKernel, mish_forward)
// grad_input = grad_output · mish'(x); inputs (grad_output, x)
HK_DECLARE_ISA_TABLE(hotkernels::cpu::MapKernel, mish_backward)
