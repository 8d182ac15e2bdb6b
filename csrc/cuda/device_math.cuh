// Transcendentals for the shared formulas in csrc/math/, on CUDA scalars (float for float16 and
// bfloat16 too, see at::opmath_type). Full-precision libdevice calls: the elementwise ops are
// memory-bound, so the fast intrinsics (__expf) would buy nothing and cost accuracy.
#pragma once

namespace hotkernels::cuda {

struct DeviceExp {
  __device__ __forceinline__ float operator()(float x) const { return expf(x); }
  __device__ __forceinline__ double operator()(double x) const { return exp(x); }
};

}  // namespace hotkernels::cuda
