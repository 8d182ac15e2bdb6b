// Transcendentals for the shared formulas in csrc/math/, on CUDA scalars (float for float16 and
// bfloat16 too, see at::opmath_type). Full-precision libdevice calls: the elementwise ops are
// memory-bound, so the fast intrinsics (__expf) would buy nothing and cost accuracy.
#pragma once

namespace hotkernels::cuda {

struct DeviceExp {
  __device__ __forceinline__ float operator()(float x) const { return expf(x); }
  __device__ __forceinline__ double operator()(double x) const { return exp(x); }
};

// 1/d, IEEE-rounded (division is cheap next to the memory traffic of an elementwise kernel).
struct DeviceReciprocal {
  __device__ __forceinline__ float operator()(float d) const { return 1.0f / d; }
  __device__ __forceinline__ double operator()(double d) const { return 1.0 / d; }
};

}  // namespace hotkernels::cuda
