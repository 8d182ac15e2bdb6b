// The GEMM core's own ops (schemas in csrc/schemas.cpp): `mm`, a matrix product on the core for the
// benchmarks and tests that hold it to the machine's floor and to torch.mm, and `fma_peak_loop`,
// that floor (a register-only FMA loop of one instruction set on every thread).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>
#include <string_view>

#include "checks.h"
#include "cpu/dispatch.h"
#include "cpu/gemm/gemm.h"

namespace hotkernels::cpu {
namespace {

at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  const char* op = "mm";
  check_floating(op, "self", self);
  check_same_dtype(op, "mat2", mat2, "self", self);
  const auto dt = self.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble, "hotkernels.mm: expected 'self' to be float32 or float64 on the ",
              "CPU, but got ", dt);
  TORCH_CHECK(self.dim() == 2, "hotkernels.mm: expected 'self' to be 2-D, but got ", self.dim(), "-D");
  TORCH_CHECK(mat2.dim() == 2, "hotkernels.mm: expected 'mat2' to be 2-D, but got ", mat2.dim(), "-D");
  TORCH_CHECK(self.size(1) == mat2.size(0), "hotkernels.mm: 'self' and 'mat2' shapes cannot be multiplied (",
              self.size(0), "x", self.size(1), " and ", mat2.size(0), "x", mat2.size(1), ")");
  at::Tensor out = at::empty({self.size(0), mat2.size(1)}, self.options());
  dispatch_compute(dt, [&]<class T>() {
    gemm::multiply(gemm::matrix<T>(self), gemm::matrix<T>(mat2), out.mutable_data_ptr<T>(), out.size(1), false);
  });
  return out;
}

// The floating-point operations of `iterations` rounds of the FMA loop of instruction set `isa`
// (base, avx2 or avx512; at most what this CPU runs) on each of the intra-op threads.
int64_t fma_peak_loop(std::string_view isa, int64_t iterations) {
  const Isa want = isa == "avx512" ? Isa::avx512 : isa == "avx2" ? Isa::avx2 : Isa::base;
  TORCH_CHECK(isa == isa_name(want), "hotkernels.fma_peak_loop: expected 'isa' to be base, avx2 or avx512, got '",
              isa, "'");
  TORCH_CHECK(want <= active_isa(), "hotkernels.fma_peak_loop: 'isa' ", isa, " is above what this CPU runs (",
              isa_name(active_isa()), ")");
  TORCH_CHECK(iterations >= 0, "hotkernels.fma_peak_loop: expected 'iterations' >= 0, got ", iterations);
  const GemmKernels& table = HK_ISA_TABLE_OF(want, gemm_kernels);
  std::atomic<int64_t> flops{0};
  const int64_t threads = at::get_num_threads();
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) flops += table.fma_loop(iterations);
  });
  return flops;
}

}  // namespace

TORCH_LIBRARY_IMPL(hotkernels, CPU, m) { m.impl("mm", &mm); }
TORCH_LIBRARY_IMPL(hotkernels, CompositeExplicitAutograd, m) { m.impl("fma_peak_loop", &fma_peak_loop); }

}  // namespace hotkernels::cpu
