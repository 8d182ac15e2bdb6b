// Vectorised LSTM pointwise passes (csrc/cpu/kernels/lstm.cpp), one table per instruction set.
//
// Every array is row-major and contiguous: rows of `hidden` elements for states, of 4·hidden (gates
// i, f, g, o one after another) for gates. A call covers rows [row_begin, row_end) × hidden units
// [unit_begin, unit_end) (all four gates of those units): one tile of the GEMM whose epilogue it is
// (csrc/cpu/lstm.cpp), or a slice of rows.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

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

// One function per compute type (float16/bfloat16 are not computed by the CPU kernels).
template <template <class> class Args>
struct LstmTyped {
  void (*f32)(const Args<float>&, int64_t row_begin, int64_t row_end, int64_t unit_begin, int64_t unit_end);
  void (*f64)(const Args<double>&, int64_t row_begin, int64_t row_end, int64_t unit_begin, int64_t unit_end);
};

struct LstmKernels {
  LstmTyped<LstmForwardArgs> forward;
  LstmTyped<LstmBackwardArgs> backward;
};

}  // namespace hotkernels::cpu

HK_DECLARE_ISA_TABLE(LstmKernels, lstm_kernels)
