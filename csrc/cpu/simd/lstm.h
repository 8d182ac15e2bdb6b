// Vectorised LSTM pointwise passes (csrc/cpu/simd/lstm.cpp), one table per instruction set.
//
// Every array is row-major and contiguous: rows of `hidden` elements for states, of 4·hidden (gates
// i, f, g, o one after another) for gates. A call covers rows [row_begin, row_end) × hidden units
// [unit_begin, unit_end) (all four gates of those units): one tile of the GEMM whose epilogue it is
// (csrc/cpu/lstm.cpp), or a slice of rows.
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "cpu/simd/per_dtype.h"

namespace hotkernels::cpu {

template <class T>
struct LstmForwardArgs {
  T* gates;          // in: pre-activations without bias; out: activations (in place)
  const T* bias;     // [4·hidden] (b_ih + b_hh) or nullptr
  const T* c_prev;   // previous cell state
  T* h;              // out: new hidden state
  T* c;              // out: new cell state
  int64_t hidden;
};

template <class T>
struct LstmBackwardArgs {
  const T* gates;     // activations saved by forward
  const T* c_prev;    // previous cell state
  const T* c;         // new cell state
  const T* dh;        // gradient of the new hidden state
  const T* dc;        // gradient of the new cell state
  const T* dc_extra;  // a second gradient of the new cell state, added to dc; or nullptr
  T* dgates;          // out: pre-activation gradients
  T* dc_prev;         // out: gradient of the previous cell state (may be dc itself)
  int64_t hidden;
};

template <class T>
using LstmForwardFn = void (*)(const LstmForwardArgs<T>&, int64_t row_begin, int64_t row_end, int64_t unit_begin,
                               int64_t unit_end);
template <class T>
using LstmBackwardFn = void (*)(const LstmBackwardArgs<T>&, int64_t row_begin, int64_t row_end, int64_t unit_begin,
                                int64_t unit_end);

struct LstmKernels {
  PerDtype<LstmForwardFn> forward;
  PerDtype<LstmBackwardFn> backward;
};

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(hotkernels::cpu::LstmKernels, lstm_kernels)
