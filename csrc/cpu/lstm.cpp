// LSTM on the CPU: the whole body of each op once csrc/lstm.cpp has checked its arguments (one stub
// per op, csrc/lstm.h says why), on the GEMM core (csrc/cpu/gemm/gemm.h); formulas in
// csrc/math/lstm.h, the vectorised pointwise passes in csrc/cpu/simd/lstm.cpp.
//
// Forward of a layer: the input projection of every step is one GEMM into gates [T, B, 4H]. W_hhᵀ
// is packed once per call, its four gates as separate column groups, so each tile of a step's GEMM
// (gates[t] += h(t−1)·W_hhᵀ) holds all four gates of its hidden units; the tile's epilogue then
// adds the bias, turns the pre-activations into activations in place and writes h(t) and c(t),
// while the tile is still in cache. No pass over a gates tensor is left outside the GEMM.
// Backward through time: W_hh is packed once; step t's GEMM dh = grad_output(t) + dgates(t+1)·W_hh
// has as its epilogue the pointwise backward of step t (dgates(t) and dc for the tile's units).
// The weight gradients are one GEMM each over all steps. On exactly two threads, from a batch of
// 2·kSliceRows rows on, each thread takes a slice of the batch through every step (forward and
// backward through time), rather than half of each step's product; a packed batch too, unless one
// slice would be much busier (batch_slices).
//
// With a projection (w_hr [P, H], torch's proj_size): the forward epilogue writes r = o ⊙ tanh(c)
// to a scratch [B, H] instead of the output, and h(t) = r·W_hrᵀ (W_hrᵀ packed once per call) goes
// to output[t]; h [B, P] feeds the next step's GEMM (W_hhᵀ is then P × 4H). Backward: dh(t) [B, P]
// = grad_output(t) + dgates(t+1)·W_hh is a plain GEMM kept for every step; dr(t) = dh(t)·W_hr
// [B, H] (W_hr packed once) has the pointwise backward of step t as its epilogue (dr as its dh);
// grad W_hr = Σ_t dh(t)ᵀ·r(t), with r recomputed from the saved gates (o) and cs.
#include "lstm.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/dispatch.h"
#include "cpu/gemm/gemm.h"
#include "cpu/simd/lstm.h"

namespace hotkernels::cpu {
namespace {

using gemm::Matrix;
using gemm::matrix;
using gemm::PackedB;
using lstm::Dims;
using lstm::Mask;
using lstm::OptTensor;
using lstm::ptr_or_null;
using lstm::Tensors3;
using lstm::Tensors6;
using lstm::Tensors7;

// Rows per task of a pointwise pass run on its own (not as an epilogue): about 8k elements, five
// exponentials each forward, so a task is tens of microseconds; small batches stay on one thread.
int64_t row_grain(int64_t hidden) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, hidden)); }

// W_hhᵀ (H × 4H, or P × 4H with a projection) for the steps' GEMMs (`batch` rows each: the batch or
// a slice of it), one column group of H per gate: packed ahead for a layer's steps, or as a product
// used once likes it (a cell).
template <class T>
PackedB<T> pack_recurrent(const at::Tensor& w_hh, int64_t batch, bool once = false) {
  const int64_t hidden = w_hh.size(0) / 4;
  const Matrix<T> b = matrix<T>(w_hh).t();
  const GemmKernel<T>& kern = gemm::best_shape<T>(batch, hidden);
  return PackedB<T>(b, 4, kern, once ? gemm::packing_for(b, 4, batch, kern) : gemm::Packing::ahead);
}

// b (k × n) packed for products of `rows` rows: one group.
template <class T>
PackedB<T> pack(const Matrix<T>& b, int64_t rows) {
  return PackedB<T>(b, 1, gemm::best_shape<T>(rows, b.cols));
}

constexpr auto no_epilogue = [](int64_t, int64_t, int64_t, int64_t) {};

// out (m × n, contiguous) = a·b, on freshly packed b: into an allocated out, or a new one.
template <class T>
void product_into(const Matrix<T>& a, const Matrix<T>& b, const at::Tensor& out) {
  TORCH_INTERNAL_ASSERT_DEBUG_ONLY(out.is_contiguous() && out.size(0) == a.rows && out.size(1) == b.cols);
  gemm::multiply(a, b, out.mutable_data_ptr<T>(), b.cols, false);
}
template <class T>
at::Tensor product(const Matrix<T>& a, const Matrix<T>& b, const at::Tensor& like) {
  at::Tensor out = at::empty({a.rows, b.cols}, like.options());
  product_into(a, b, out);
  return out;
}

// One forward step: gates (B × 4H, holding the input projection) += h_prev·W_hhᵀ, then per tile the
// pointwise pass: activations in place, h and c out.
template <class T>
void forward_step(const Matrix<T>& h_prev, const PackedB<T>& w_hh_t, const LstmForwardArgs<T>& args) {
  const auto kernel = HK_ISA_TABLE(lstm_kernels).forward.of<T>();
  const int64_t H = args.hidden;
  gemm::multiply(h_prev, w_hh_t, args.gates, 4 * H, H, true, [&](int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
    kernel(args, i0, i0 + rows, j0, j0 + cols);
  });
}

// The pointwise backward pass over every row, split over threads.
template <class T>
void backward_rows(const LstmBackwardArgs<T>& args, int64_t rows) {
  const auto kernel = HK_ISA_TABLE(lstm_kernels).backward.of<T>();
  at::parallel_for(0, rows, row_grain(args.hidden), [&](int64_t begin, int64_t end) {
    kernel(args, begin, end, 0, args.hidden);
  });
}

// A packed batch (Dims::batch_sizes) leaves the rows past rows(t) of each step as padding: the GEMMs
// over all steps run on its sequences' rows only, gathered into one contiguous matrix (a quarter
// of the rows for lengths spread over [T/2, T]; the copies cost a pass over memory, the skipped
// rows their share of the GEMMs' flops).
//
// at_row[t]: where step t's rows start among the gathered rows of steps [t0, T) (at_row[T]: their
// count).
std::vector<int64_t> gathered_row_starts(const Dims& d, int64_t t0) {
  std::vector<int64_t> at_row(d.steps + 1, 0);
  for (int64_t t = t0; t < d.steps; ++t) at_row[t + 1] = at_row[t] + d.rows(t);
  return at_row;
}

// Steps [t0, T) of a time-major [T, B, width] tensor x, the first rows(t) rows of step t read from
// step t − lag, into [Σ rows(t), width].
template <class S>
at::Tensor gather_rows(const at::Tensor& x, int64_t width, const Dims& d, int64_t t0, int64_t lag) {
  const at::Tensor xc = x.contiguous();
  const S* src = xc.const_data_ptr<S>();
  const std::vector<int64_t> at_row = gathered_row_starts(d, t0);
  at::Tensor out = at::empty({at_row[d.steps], width}, x.options());
  S* dst = out.mutable_data_ptr<S>();
  at::parallel_for(t0, d.steps, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      std::copy_n(src + (t - lag) * d.batch * width, d.rows(t) * width, dst + at_row[t] * width);
    }
  });
  return out;
}

// The inverse for all steps: [Σ rows(t), width] back into dst [T, B, width], zeros in the padding.
template <class S>
void scatter_rows(const S* src, int64_t width, const Dims& d, S* dst) {
  const std::vector<int64_t> at_row = gathered_row_starts(d, 0);
  at::parallel_for(0, d.steps, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      S* out = dst + t * d.batch * width;
      std::copy_n(src + at_row[t] * width, d.rows(t) * width, out);
      std::fill(out + d.rows(t) * width, out + d.batch * width, S(0));
    }
  });
}

// float16 and bfloat16 run in their op-math type, float32, our kernels' compute type (as torch's CPU
// LSTM computes them): a body widens its tensors (csrc/cpu/dispatch.h), runs the float32 path and
// narrows what it returns to the input's type, the saved gate activations and states included, so
// that backward sees what a half-type forward keeps. (The bias comes in the op-math type already.)
template <class Tuple>
Tuple narrow(Tuple out, at::ScalarType dtype) {
  std::apply([&](auto&... t) { ((t = t.to(dtype)), ...); }, out);
  return out;
}

Tensors3 cell_forward(const Dims& d, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                      const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& bias) {
  if (is_half(input)) {
    return narrow(cell_forward(d, widen(input), widen(hx), widen(cx), widen(w_ih), widen(w_hh), bias),
                  input.scalar_type());
  }
  const int64_t B = d.batch, H = d.hidden;
  at::Tensor gates = at::empty({B, 4 * H}, input.options());
  at::Tensor h = at::empty({B, H}, input.options()), c = at::empty({B, H}, input.options());
  dispatch_compute(input.scalar_type(), [&]<class T>() {
    gemm::multiply(matrix<T>(input), matrix<T>(w_ih).t(), gates.mutable_data_ptr<T>(), 4 * H, false);
    const LstmForwardArgs<T> args{gates.mutable_data_ptr<T>(), ptr_or_null<T>(bias), cx.const_data_ptr<T>(),
                                  h.mutable_data_ptr<T>(), c.mutable_data_ptr<T>(), H};
    forward_step(matrix<T>(hx), pack_recurrent<T>(w_hh, B, /*once=*/true), args);
  });
  return {h, c, gates};
}

// Whether an LSTMCell's backward runs its four products as two halves side by side, one half on each
// of two threads (each product then single-threaded), rather than one after the other on all threads.
// The halves are (grad_hx, grad_w_ih) and (grad_w_hh, grad_input): B·4H·(H + I) multiply-adds each
// when the gradients asked pair up so (`mask`); else one thread would wait on the other. Side by side,
// no product ends in a wait for the other thread. With more threads, two tasks would leave the others
// idle; with fewer than 32 rows a product reads the weights more than it computes, and two threads
// read them faster. Measured on Zen 4 (2 threads, paired in one process, side by side against one
// after the other), forward+backward of every gradient: LSTMCell(256, 512) at batch 32 0.97-1.19x,
// 48 1.03-1.10x, 64 1.02-1.08x, 128 1.03-1.06x (AVX-512 and AVX2); LSTMCell(1024, 1024) at batch
// 256 1.02-1.10x, at 64 0.98-1.22x; LSTMCell(256, 512) at batch 16 0.95-0.97x. (A first version
// allocated each output on the thread that wrote it, and there LSTMCell(1024, 1024) at batch 64 ran
// 1.5-2.0x faster: the page faults of its 16 MB weight gradients, a third of its time one after the
// other (20 ms a call where glibc kept freed pages, 30 where not), went away as glibc reused a
// worker's freed pages from call to call. Tensors are made on the calling thread, though: ATen's
// thread-local state does not reach the workers.)
constexpr int64_t kSideBySideRows = 32;
bool side_by_side(int64_t batch, Mask mask) {
  const bool halves_equal = mask[1] == mask[3] && mask[0] == mask[2] && (mask[0] || mask[1]);
  return halves_equal && at::get_num_threads() == 2 && batch >= kSideBySideRows;
}

Tensors6 cell_backward(const Dims& d, const at::Tensor& grad_hy, const at::Tensor& grad_cy, const at::Tensor& input,
                       const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih, const at::Tensor& w_hh,
                       const at::Tensor& cy, const at::Tensor& gates, Mask mask) {
  if (is_half(input)) {
    return narrow(cell_backward(d, widen(grad_hy), widen(grad_cy), widen(input), widen(hx), widen(cx), widen(w_ih),
                                widen(w_hh), widen(cy), widen(gates), mask),
                  input.scalar_type());
  }
  at::Tensor dgates = at::empty(gates.sizes(), gates.options()), grad_cx = at::empty(cx.sizes(), cx.options());
  at::Tensor grad_input, grad_hx, grad_w_ih, grad_w_hh;
  dispatch_compute(input.scalar_type(), [&]<class T>() {
    backward_rows(LstmBackwardArgs<T>{gates.const_data_ptr<T>(), cx.const_data_ptr<T>(), cy.const_data_ptr<T>(),
                                      grad_hy.const_data_ptr<T>(), grad_cy.const_data_ptr<T>(), nullptr,
                                      dgates.mutable_data_ptr<T>(), grad_cx.mutable_data_ptr<T>(), d.hidden},
                  d.batch);
    const Matrix<T> dg = matrix<T>(dgates);
    // The outputs asked for, allocated here (tensors are made on the calling thread only: ATen's
    // thread-local state does not reach the workers); the halves only fill them in.
    auto asked = [&](bool needed, int64_t rows, int64_t cols) {
      return needed ? at::empty({rows, cols}, input.options()) : lstm::unused(input);
    };
    grad_input = asked(mask[0], d.batch, d.input);
    grad_hx = asked(mask[1], d.batch, d.hidden);
    grad_w_ih = asked(mask[2], 4 * d.hidden, d.input);
    grad_w_hh = asked(mask[3], 4 * d.hidden, d.hidden);
    auto half = [&](int64_t i) {
      if (i == 0) {
        if (mask[1]) product_into(dg, matrix<T>(w_hh), grad_hx);
        if (mask[2]) product_into(dg.t(), matrix<T>(input), grad_w_ih);
      } else {
        if (mask[3]) product_into(dg.t(), matrix<T>(hx), grad_w_hh);
        if (mask[0]) product_into(dg, matrix<T>(w_ih), grad_input);
      }
    };
    if (side_by_side(d.batch, mask)) {
      at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) half(i);
      });
    } else {
      half(0);
      half(1);
    }
  });
  return {grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, mask[4] ? dgates.sum(0) : lstm::unused(input)};
}

// The rows of step t among the slice [b0, b1) of the batch that are sequences (its first ones).
int64_t slice_rows(const Dims& d, int64_t t, int64_t b0, int64_t b1) {
  return std::clamp<int64_t>(d.rows(t) - b0, 0, b1 - b0);
}

// A layer's steps on two threads: each takes a slice of the batch's rows through every step, rather
// than each step's product being cut into two halves of columns. Sequences are independent, so a
// slice never waits for the other thread's h, where the halves of a step meet at its end (a wait
// for the slower half, then a read of the other core's half of h) at every step; each thread reads
// all of W_hh a step where it read half. Measured on Zen 4 (2 threads, paired in one process,
// slices against halves), nn.LSTM(256, 512, 2 layers), T = 50: at batch 32 inference 1.08-1.12x
// faster, forward+backward 1.04-1.10x (AVX2 1.07-1.13x and 1.06-1.10x); batch 24 1.04x (AVX2
// 1.07-1.12x); batch 48 1.06x; hidden 256 at batch 24-64 1.14-1.22x; hidden 1024 1.00-1.02x; the
// language-model step 1.05-1.08x (AVX2 1.05x); a packed batch: kSliceImbalance below. Fewer rows
// a slice did not pay everywhere: batch 16 (8 rows a slice) ran 1.07x at AVX-512 but 0.94x at AVX2,
// batch 2 and 4 0.82-0.88x. With more threads each would read all of W_hh where it now reads a
// small part, maybe from its L2: not measured, so those keep the halves.
constexpr int64_t kSliceRows = 12;

// Where the busier slice computes more rows over its steps than half of those the whole batch's
// steps compute by more than this factor, the halves stay. The slices save the halves' wait at
// every step, 4-12% at batch 32 (above); a packed batch of lengths in [25, 50], whose busier slice
// computes 1.14 times half the rows (AVX2's 6-row blocks: 1.12), ran 0.99-1.03x as fast as slices
// (AVX2 1.01-1.04x), so about there they break even.
constexpr double kSliceImbalance = 1.15;

// How a layer's steps run: the batch rows bounds[q] .. bounds[q + 1] of each slice q, and the rows
// the steps' GEMM shape is chosen for (`rows`). One slice {0, B} of B rows, or two: then the cut
// costs the busier slice least, counting the rows that shape's micro-kernels compute over its steps
// (whole blocks of mr, a last block's computed_rows; n: the columns of the step product's groups),
// among the middle and the cuts at whole blocks that leave each slice kSliceRows rows; on a tie,
// the most even. A padded batch is cut in the middle; a packed batch's rows end at different steps.
struct Slices {
  std::vector<int64_t> bounds;
  int64_t rows;
};

template <class T>
Slices batch_slices(const Dims& d, int64_t n) {
  const int64_t B = d.batch, half = (B + 1) / 2;
  if (at::get_num_threads() != 2 || B < 2 * kSliceRows) return {{0, B}, B};
  if (d.batch_sizes.empty()) return {{0, B / 2, B}, half};
  const int64_t mr = gemm::best_shape<T>(half, n).mr;
  auto computed = [&](int64_t b0, int64_t b1) {
    int64_t sum = 0;
    for (int64_t t = 0; t < d.steps; ++t) sum += gemm::computed_rows_of(slice_rows(d, t, b0, b1), mr);
    return sum;
  };
  auto cost = [&](int64_t cut) { return std::max(computed(0, cut), computed(cut, B)); };
  int64_t best = B / 2, best_cost = cost(best);
  for (int64_t cut = gemm::ceil_div(kSliceRows, mr) * mr; cut <= B - kSliceRows; cut += mr) {
    const int64_t c = cost(cut);
    if (c < best_cost || (c == best_cost && std::abs(2 * cut - B) < std::abs(2 * best - B))) best = cut, best_cost = c;
  }
  // Each thread's share of every step's rows, as the halves cut them.
  const double halves = static_cast<double>(computed(0, B)) / 2;
  if (static_cast<double>(best_cost) > kSliceImbalance * halves) return {{0, B}, B};
  return {{0, best, B}, half};
}

// f(b0, b1) for each slice of `bounds`, the slices side by side on the threads.
template <class F>
void for_each_slice(const std::vector<int64_t>& bounds, const F& f) {
  const int64_t slices = static_cast<int64_t>(bounds.size()) - 1;
  if (slices == 1) return f(bounds[0], bounds[1]);
  at::parallel_for(0, slices, 1, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) f(bounds[q], bounds[q + 1]);
  });
}

Tensors3 layer_forward(const Dims& d, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx,
                       const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& bias, const OptTensor& w_hr,
                       bool reverse) {
  if (is_half(input)) {
    return narrow(layer_forward(d, widen(input), widen(hx), widen(cx), widen(w_ih), widen(w_hh), bias, widen(w_hr),
                                reverse),
                  input.scalar_type());
  }
  const int64_t T = d.steps, B = d.batch, H = d.hidden, P = d.state;
  at::Tensor gates = at::empty({T, B, 4 * H}, input.options());
  at::Tensor output = at::empty({T, B, P}, input.options()), cs = at::empty({T, B, H}, input.options());
  // With a projection: the unprojected r = o ⊙ tanh(c) of the step being computed.
  at::Tensor r = w_hr ? at::empty({B, H}, input.options()) : at::Tensor();
  dispatch_compute(input.scalar_type(), [&]<class S>() {
    const Matrix<S> w_ih_t = matrix<S>(w_ih).t();
    if (d.batch_sizes.empty()) {
      gemm::multiply(matrix<S>(input.reshape({T * B, d.input})), w_ih_t, gates.mutable_data_ptr<S>(), 4 * H, false);
    } else {
      const at::Tensor x = gather_rows<S>(input, d.input, d, 0, 0);
      const at::Tensor projected = product(matrix<S>(x), w_ih_t, input);
      scatter_rows(projected.const_data_ptr<S>(), 4 * H, d, gates.mutable_data_ptr<S>());
    }
    const Slices slices = batch_slices<S>(d, H);
    const PackedB<S> w_hh_t = pack_recurrent<S>(w_hh, slices.rows);
    const std::optional<PackedB<S>> w_hr_t =
        w_hr ? std::optional(pack(matrix<S>(*w_hr).t(), slices.rows)) : std::nullopt;
    // Every step of the batch rows [b0, b1).
    for_each_slice(slices.bounds, [&](int64_t b0, int64_t b1) {
      const Matrix<S> h0 = matrix<S>(hx);
      Matrix<S> h_prev{h0.data + b0 * h0.rs, b1 - b0, h0.cols, h0.rs, h0.cs};
      const S* c_prev = cx.const_data_ptr<S>() + b0 * H;
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = reverse ? T - 1 - s : s, rows = slice_rows(d, t, b0, b1);
        S* h = output.mutable_data_ptr<S>() + (t * B + b0) * P;
        S* c = cs.mutable_data_ptr<S>() + (t * B + b0) * H;
        S* pointwise_h = w_hr ? r.mutable_data_ptr<S>() + b0 * H : h;
        // Only the step's first `rows` rows are sequences (the earlier step's h covers them); the
        // padding's h and c are 0.
        forward_step(Matrix<S>{h_prev.data, rows, h_prev.cols, h_prev.rs, h_prev.cs}, w_hh_t,
                     LstmForwardArgs<S>{gates.mutable_data_ptr<S>() + (t * B + b0) * 4 * H, ptr_or_null<S>(bias),
                                        c_prev, pointwise_h, c, H});
        if (w_hr) gemm::multiply(Matrix<S>{pointwise_h, rows, H, H, 1}, *w_hr_t, h, P, 0, false, no_epilogue);
        std::fill(h + rows * P, h + (b1 - b0) * P, S(0));
        std::fill(c + rows * H, c + (b1 - b0) * H, S(0));
        h_prev = Matrix<S>{h, b1 - b0, P, P, 1};
        c_prev = c;
      }
    });
  });
  return {output, cs, gates};
}

Tensors7 layer_backward(const Dims& d, const at::Tensor& grad_output, const at::Tensor& grad_cs,
                        const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                        const at::Tensor& w_hh, const at::Tensor& output, const at::Tensor& cs,
                        const at::Tensor& gates, const OptTensor& w_hr, bool reverse, lstm::LayerMask mask) {
  if (is_half(input)) {
    return narrow(layer_backward(d, widen(grad_output), widen(grad_cs), widen(input), widen(hx), widen(cx),
                                 widen(w_ih), widen(w_hh), widen(output), widen(cs), widen(gates), widen(w_hr),
                                 reverse, mask),
                  input.scalar_type());
  }
  const int64_t T = d.steps, B = d.batch, H = d.hidden, P = d.state;
  const at::Tensor out_c = output.contiguous();
  at::Tensor dgates = at::empty({T, B, 4 * H}, gates.options());
  // dh, dc: the gradients reaching the state of the step being processed, from later steps (in
  // forward order) and from the outputs. With a projection, dh of every step ([T, B, P], kept for
  // grad W_hr) and dr = dh·W_hr [B, H], the gradient of the unprojected r the pointwise pass reads.
  at::Tensor dh = at::empty({w_hr ? T : 1, B, P}, cs.options()), dc = at::zeros({B, H}, cs.options());
  at::Tensor dr = w_hr ? at::empty({B, H}, cs.options()) : at::Tensor();
  const int64_t t_first = reverse ? T - 1 : 0;  // the first step in forward order: its state was (hx, cx)
  at::Tensor grad_input = lstm::unused(input), grad_hx = lstm::unused(input);
  at::Tensor grad_w_ih = lstm::unused(input), grad_w_hh = lstm::unused(input), grad_w_hr = lstm::unused(input);
  dispatch_compute(input.scalar_type(), [&]<class S>() {
    const int64_t BH = B * H, BP = B * P;
    // The steps run over the batch's slices (cut for this product's shape, so maybe not as the
    // forward's); the helpers below take the slice that starts at row b0 (and ends at b1).
    const Slices slices = batch_slices<S>(d, P);
    // Step t's dh: its own slice of dh with a projection, else the one [B, H] buffer.
    auto dh_of = [&](int64_t t, int64_t b0) { return dh.mutable_data_ptr<S>() + (w_hr ? t * BP : 0) + b0 * P; };
    // The pointwise backward of step t, whose dh (dr with a projection) is ready and whose later dc
    // is in `dc`.
    auto step_args = [&](int64_t t, int64_t b0) {
      const S* c_prev = t == t_first ? cx.const_data_ptr<S>() : cs.const_data_ptr<S>() + (reverse ? t + 1 : t - 1) * BH;
      S* dcp = dc.mutable_data_ptr<S>() + b0 * H;
      return LstmBackwardArgs<S>{gates.const_data_ptr<S>() + t * 4 * BH + b0 * 4 * H, c_prev + b0 * H,
                                 cs.const_data_ptr<S>() + t * BH + b0 * H,
                                 w_hr ? dr.const_data_ptr<S>() + b0 * H : dh_of(t, b0), dcp,
                                 grad_cs.const_data_ptr<S>() + t * BH + b0 * H,
                                 dgates.mutable_data_ptr<S>() + t * 4 * BH + b0 * 4 * H, dcp, H};
    };
    const auto kernel = HK_ISA_TABLE(lstm_kernels).backward.of<S>();
    const PackedB<S> w_hh_p(matrix<S>(w_hh), 1, gemm::best_shape<S>(slices.rows, P));
    const std::optional<PackedB<S>> w_hr_p = w_hr ? std::optional(pack(matrix<S>(*w_hr), slices.rows)) : std::nullopt;
    // The pointwise backward of step t once its dh is complete: with a projection, as the epilogue of
    // dr = dh·W_hr; without, over the slice's rows (the steps after the first have it as their dh
    // GEMM's epilogue instead).
    auto pointwise = [&](int64_t t, int64_t b0, int64_t b1) {
      const LstmBackwardArgs<S> args = step_args(t, b0);
      const int64_t rows = slice_rows(d, t, b0, b1);
      if (w_hr) {
        gemm::multiply(Matrix<S>{dh_of(t, b0), rows, P, P, 1}, *w_hr_p, dr.mutable_data_ptr<S>() + b0 * H, H, 0,
                       false, [&](int64_t i0, int64_t n, int64_t j0, int64_t cols) {
                         kernel(args, i0, i0 + n, j0, j0 + cols);
                       });
      } else {
        backward_rows(args, rows);
      }
    };
    // With batch_sizes, step t computes its first d.rows(t) rows only; its padding rows of dh and
    // dgates are 0, so the GEMMs over all steps (and the next step's, over its own rows, a superset)
    // add nothing for them, and dc stays 0 on a row until its sequence's last step.
    auto start_dh = [&](int64_t t, int64_t b0, int64_t b1) {  // dh(t) = grad_output(t), 0 in the padding
      const int64_t rows = slice_rows(d, t, b0, b1);
      std::copy_n(grad_output.const_data_ptr<S>() + t * BP + b0 * P, rows * P, dh_of(t, b0));
      std::fill(dh_of(t, b0) + rows * P, dh_of(t, b0) + (b1 - b0) * P, S(0));
      S* dg = dgates.mutable_data_ptr<S>() + t * 4 * BH + b0 * 4 * H;
      std::fill(dg + rows * 4 * H, dg + (b1 - b0) * 4 * H, S(0));
    };
    // Backward through time over the batch rows [b0, b1).
    for_each_slice(slices.bounds, [&](int64_t b0, int64_t b1) {
      int64_t later = reverse ? 0 : T - 1;  // the last step in forward order comes first
      start_dh(later, b0, b1);
      pointwise(later, b0, b1);
      for (int64_t s = 1; s < T; ++s) {
        const int64_t t = reverse ? s : T - 1 - s;
        start_dh(t, b0, b1);
        const Matrix<S> dg_later{dgates.const_data_ptr<S>() + later * 4 * BH + b0 * 4 * H, slice_rows(d, t, b0, b1),
                                 4 * H, 4 * H, 1};
        if (w_hr) {
          gemm::multiply(dg_later, w_hh_p, dh_of(t, b0), P, 0, true, no_epilogue);
          pointwise(t, b0, b1);
        } else {
          // dh = grad_output(t) + dgates(t+1)·W_hh, with the pointwise backward of step t as its epilogue.
          const LstmBackwardArgs<S> args = step_args(t, b0);
          const auto epilogue = [&](int64_t i0, int64_t n, int64_t j0, int64_t cols) {
            kernel(args, i0, i0 + n, j0, j0 + cols);
          };
          gemm::multiply(dg_later, w_hh_p, dh_of(t, b0), H, 0, true, epilogue);
        }
        later = t;
      }
    });
    // The GEMMs over all steps take every row, or a packed batch's sequence rows only (gather_rows;
    // reverse is false then). rows(x, width) is a time-major [T, B, width] tensor's rows of every step.
    const bool packed = !d.batch_sizes.empty();
    auto rows = [&](const at::Tensor& x, int64_t width) {
      return packed ? gather_rows<S>(x, width, d, 0, 0) : x.reshape({T * B, width});
    };
    const at::Tensor dg_rows = rows(dgates, 4 * H);
    const Matrix<S> dg = matrix<S>(dg_rows);
    const Matrix<S> dg_first{dgates.const_data_ptr<S>() + t_first * 4 * BH, B, 4 * H, 4 * H, 1};
    if (mask[0]) {
      const at::Tensor dx = product(dg, matrix<S>(w_ih), input);
      if (packed) {
        grad_input = at::empty({T, B, d.input}, input.options());
        scatter_rows(dx.const_data_ptr<S>(), d.input, d, grad_input.mutable_data_ptr<S>());
      } else {
        grad_input = dx.view({T, B, d.input});
      }
    }
    if (mask[1]) {
      grad_hx = at::empty({B, P}, input.options());
      gemm::multiply(dg_first, w_hh_p, grad_hx.mutable_data_ptr<S>(), P, 0, false, no_epilogue);
    }
    if (mask[2]) grad_w_ih = product(dg.t(), matrix<S>(rows(input, d.input)), input);
    if (mask[3]) {
      // Σ_t dgates(t)ᵀ·h(t−1): the first step's h(t−1) is hx, the others' are outputs (a packed
      // batch's: the first rows(t) rows of step t − 1, gathered).
      grad_w_hh = product(dg_first.t(), matrix<S>(hx), input);
      if (T > 1) {
        const int64_t first_rows = packed ? d.rows(0) : B;
        const Matrix<S> dg_rest{dg.data + (reverse ? 0 : first_rows) * 4 * H, dg.rows - first_rows, 4 * H, 4 * H, 1};
        const at::Tensor h_rest = packed ? gather_rows<S>(out_c, P, d, 1, 1)
                                         : out_c.narrow(0, reverse ? 1 : 0, T - 1).reshape({(T - 1) * B, P});
        gemm::multiply(dg_rest.t(), matrix<S>(h_rest), grad_w_hh.mutable_data_ptr<S>(), P, true);
      }
    }
    if (w_hr && mask[5]) {
      // Σ_t dh(t)ᵀ·r(t)
      const at::Tensor r = lstm::recompute_r(gates, cs, H);
      grad_w_hr = product(matrix<S>(rows(dh, P)).t(), matrix<S>(rows(r, H)), input);
    }
  });
  return {grad_input, grad_hx, dc, grad_w_ih, grad_w_hh,
          mask[4] ? dgates.view({T * B, 4 * H}).sum(0) : lstm::unused(input), grad_w_hr};
}

}  // namespace

HK_REGISTER_STUB(lstm::cell_stub, cpu, &cell_forward);
HK_REGISTER_STUB(lstm::cell_backward_stub, cpu, &cell_backward);
HK_REGISTER_STUB(lstm::layer_stub, cpu, &layer_forward);
HK_REGISTER_STUB(lstm::layer_backward_stub, cpu, &layer_backward);

}  // namespace hotkernels::cpu
