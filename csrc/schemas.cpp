// Every hotkernels op schema, in one place. Implementations register per device in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; fake (meta) kernels and autograd are registered in
// Python next to each op's wrapper (python/hotkernels/ops/<op>.py).
#include <torch/library.h>

namespace hotkernels {
void register_in_place_kernels(torch::Library& m);  // csrc/no_derivative.cpp
}

TORCH_LIBRARY(hotkernels, m) {
  const std::vector<at::Tag> pt2 = {at::Tag::pt2_compliant_tag};

  // mish: python/hotkernels/ops/mish.py
  m.def("mish(Tensor input) -> Tensor", pt2);
  m.def("mish_(Tensor(a!) input) -> ()", pt2);  // custom ops that mutate return nothing
  m.def("mish_backward(Tensor grad_output, Tensor input) -> Tensor", pt2);

  // lstm: python/hotkernels/ops/lstm.py. Forward returns the gate activations as a last output, saved
  // for backward; backward's output_mask says which of the gradients of (input, hx, w_ih, w_hh, bias)
  // to compute (the others come back empty); the bias gradient is that of b_ih and of b_hh.
  // The layer ops take an optional projection w_hr [P, H] (torch's LSTM with proj_size P): the
  // state h = (o ⊙ tanh(c))·W_hrᵀ then has P features (hx [B, P], w_hh [4H, P], output [T, B, P])
  // while c keeps H (cx [B, H], cs [T, B, H]). lstm_layer_backward's mask has a 6th entry, for
  // w_hr, and a 7th output, grad_w_hr: empty when w_hr is None or that entry is false. Backward
  // recomputes the unprojected o ⊙ tanh(c) from the saved gates and cs (nothing more is saved).
  // Their batch_sizes (a packed batch's, non-increasing, one per step; forward direction only) say
  // that at step t only the first batch_sizes[t] rows are sequences, the others padding: the CPU
  // computes only those rows (the padding's outputs come back 0 and its output gradients are
  // ignored); CUDA computes every row, which gives the same sequences' results when the caller
  // reads none of the padding's outputs and gives them no gradient.
  m.def("lstm_cell(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh) "
        "-> (Tensor hy, Tensor cy, Tensor gates)", pt2);
  m.def("lstm_cell_backward(Tensor grad_hy, Tensor grad_cy, Tensor input, Tensor hx, Tensor cx, Tensor w_ih, "
        "Tensor w_hh, Tensor cy, Tensor gates, bool[5] output_mask) -> (Tensor grad_input, Tensor grad_hx, "
        "Tensor grad_cx, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias)", pt2);
  m.def("lstm_layer(Tensor input, Tensor hx, Tensor cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
        "Tensor? w_hr, bool reverse, int[]? batch_sizes=None) -> (Tensor output, Tensor cs, Tensor gates)", pt2);
  m.def("lstm_layer_backward(Tensor grad_output, Tensor grad_cs, Tensor input, Tensor hx, Tensor cx, Tensor w_ih, "
        "Tensor w_hh, Tensor output, Tensor cs, Tensor gates, Tensor? w_hr, bool reverse, bool[6] output_mask, "
        "int[]? batch_sizes=None) -> "
        "(Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_bias, "
        "Tensor grad_w_hr)", pt2);

  // gemm: python/hotkernels/ops/gemm.py. The CPU GEMM core's product (CPU only: CUDA has cuBLAS), and
  // the floor it is held to: the FLOPs of a register-only FMA loop of one instruction set on every
  // intra-op thread (for the benchmarks' ceiling; no tensor in, none out).
  m.def("mm(Tensor self, Tensor mat2) -> Tensor", pt2);
  m.def("fma_peak_loop(str isa, int iterations) -> int");
  // The benchmarks' memory floor (CPU only; csrc/cpu/stream.cpp): one fused pass that reads `reads`,
  // copies `sources` into `copies` (a shorter copy takes the head of each chunk of its source and the rest is
  // read; a longer one the source's chunk at the head of its own and zeros after it) and adds 1 to
  // `updates`, no other work, with software prefetch or without; returns the read bits OR-ed.
  m.def("stream_pass(Tensor[] reads, Tensor[] sources, Tensor(a!)[] copies, Tensor(b!)[] updates, "
        "bool prefetch=True) -> int");
  // The benchmarks' record of how far apart two intra-op threads are (csrc/cpu/round_trip.cpp):
  // nanoseconds per round trip of a cache line between them (NaN on one thread).
  m.def("core_round_trip(int round_trips) -> float");

  // linear: python/hotkernels/ops/linear.py. y = input·weightᵀ + bias over input's last dimension, on
  // the CPU GEMM core (CPU only, like mm); its backward is this op again.
  m.def("linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor", pt2);

  // pool: python/hotkernels/ops/pool.py. kernel_size, stride, padding, dilation as two ints each
  // (the Python wrappers expand torch's shorthand); max_pool2d returns values only (no indices to
  // write: the inference path), max_pool2d_with_indices torch's int64 indices (return_indices=True),
  // max_pool2d_with_offsets what autograd saves otherwise: per output the uint8 position kh·kW + kw
  // of its maximum within its window (kernels of at most 256 taps). The backward ops take the
  // forward's arguments; all but the indices one gather over the windows that cover each input
  // element, writing each input gradient once.
  m.def("max_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
        "bool ceil_mode) -> Tensor", pt2);
  m.def("max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
        "int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)", pt2);
  m.def("max_pool2d_backward(Tensor grad_output, Tensor input, Tensor indices, int[2] kernel_size, int[2] stride, "
        "int[2] padding, int[2] dilation, bool ceil_mode) -> Tensor", pt2);
  m.def("max_pool2d_with_offsets(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
        "int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)", pt2);
  m.def("max_pool2d_offsets_backward(Tensor grad_output, Tensor input, Tensor offsets, int[2] kernel_size, "
        "int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode) -> Tensor", pt2);
  m.def("avg_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, bool ceil_mode, "
        "bool count_include_pad, int? divisor_override) -> Tensor", pt2);
  m.def("avg_pool2d_backward(Tensor grad_output, Tensor input, int[2] kernel_size, int[2] stride, "
        "int[2] padding, bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor", pt2);

  // conv2d: python/hotkernels/ops/conv2d.py. padding = [top, left, bottom, right] (asymmetric for
  // padding='same' with an even kernel extent); input and output are NCHW, 4-D.
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[4] padding, int[2] dilation, "
        "int groups) -> Tensor", pt2);
  m.def("conv2d_backward_input(Tensor grad_output, Tensor weight, int[4] input_size, int[2] stride, "
        "int[4] padding, int[2] dilation, int groups) -> Tensor", pt2);
  m.def("conv2d_backward_weight(Tensor grad_output, Tensor input, int[4] weight_size, int[2] stride, "
        "int[4] padding, int[2] dilation, int groups) -> Tensor", pt2);
  m.def("conv2d_backward_bias(Tensor grad_output) -> Tensor", pt2);

  // optimizers: python/hotkernels/optim/. One call updates a whole param group in place (lists of
  // tensors, one per param); per-step scalars come from the state steps, which the ops increment.
  // grad_scale, found_inf (torch.amp's GradScaler, as torch's fused Adam takes them), grad_sq_norm
  // and max_grad_norm (clip_grad_norm_ in the step; LAMB's moments pass: with clip_eps 0, NVLAMB's
  // clipping): csrc/optim.h, GradInputs. param_copies (master weights): params are then the
  // float32 master copies of these float16/bfloat16 params (whose dtype the grads have), written with
  // the rounded result (an entry that is its param itself: no master copy; [] : no master weights);
  // rounding_seed: stochastic rounding of the bfloat16 param writes.
  m.def("adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] state_steps, Tensor(f!)[] param_copies, float lr, float beta1, "
        "float beta2, float eps, float weight_decay, bool amsgrad, bool maximize, bool decoupled_weight_decay, "
        "Tensor? grad_scale=None, Tensor? found_inf=None, Tensor? grad_sq_norm=None, float max_grad_norm=0., "
        "int? rounding_seed=None) -> ()", pt2);
  m.def("radam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(e!)[] state_steps, Tensor(f!)[] param_copies, float lr, float beta1, float beta2, float eps, "
        "float weight_decay, bool decoupled_weight_decay, bool maximize, Tensor? grad_scale=None, "
        "Tensor? found_inf=None, Tensor? grad_sq_norm=None, float max_grad_norm=0., int? rounding_seed=None) -> ()",
        pt2);
  m.def("multi_tensor_sq_norms(Tensor[] tensors) -> Tensor", pt2);
  m.def("lamb_moments_(Tensor[] params, Tensor[] grads, Tensor(a!)[] exp_avgs, Tensor(b!)[] exp_avg_sqs, "
        "Tensor(e!)[] state_steps, Tensor[] param_copies, Tensor(n!) norms, Tensor? grad_sq_norm, "
        "float max_grad_norm, float beta1, float beta2, float eps, float weight_decay, bool grad_averaging, "
        "bool bias_correction, bool rectify, float clip_eps=0., Tensor? grad_scale=None, Tensor? found_inf=None) -> ()",
        pt2);
  m.def("lamb_apply_(Tensor(a!)[] params, Tensor[] exp_avgs, Tensor[] exp_avg_sqs, Tensor[] state_steps, "
        "Tensor(f!)[] param_copies, Tensor norms, float lr, float beta1, float beta2, float eps, float weight_decay, "
        "bool grad_averaging, bool bias_correction, bool rectify, bool adapt, bool trust_clip, Tensor? found_inf=None, "
        "int? rounding_seed=None) -> ()", pt2);
  m.def("novograd_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] max_exp_avg_sqs, Tensor(e!)[] state_steps, Tensor(f!)[] param_copies, Tensor grad_sq_norms, "
        "float lr, float beta1, float beta2, float eps, float weight_decay, bool grad_averaging, bool amsgrad, "
        "Tensor? grad_scale=None, Tensor? found_inf=None, Tensor? grad_sq_norm=None, float max_grad_norm=0., "
        "int? rounding_seed=None) -> ()", pt2);
  m.def("lookahead_sync_(Tensor(a!)[] fast, Tensor(b!)[] slow, Tensor(f!)[] param_copies, float alpha, "
        "int? rounding_seed=None) -> ()", pt2);

  // the Autograd and ADInplaceOrView kernels of the ops above that write an argument
  hotkernels::register_in_place_kernels(m);
}
