// Elementwise map on CUDA: out[i] = f(in_0[i], ..., in_{N-1}[i]) over tensors that share one dense
// layout (csrc/layout.h), computing in at::opmath_type (float for float16/bfloat16).
//
// Each thread moves 16 bytes per operand per step (4 floats, 8 halves, 2 doubles) as one vector
// access when every pointer is 16-byte aligned, else one element. Grid-stride loop over 64-bit
// indices; launched on the current stream of the tensors' device.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <array>
#include <cstdint>
#include <utility>

#include "cuda/grid.cuh"

namespace hotkernels::cuda {

template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <class T, int N>
struct Inputs {
  const T* p[N];
};

template <int V, class T, int N, class F, size_t... K>
__device__ __forceinline__ T apply(const F& f, const Pack<T, V> (&a)[N], int j, std::index_sequence<K...>) {
  using Op = at::opmath_type<T>;
  return static_cast<T>(f(static_cast<Op>(a[K].v[j])...));
}

template <int V, class T, int N, class F>
__global__ void map_kernel(int64_t n, F f, T* __restrict__ out, Inputs<T, N> in) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x * V;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V; i < n; i += stride) {
    Pack<T, V> a[N];
    Pack<T, V> r;
    if (i + V <= n) {
#pragma unroll
      for (int k = 0; k < N; ++k) a[k] = *reinterpret_cast<const Pack<T, V>*>(in.p[k] + i);
#pragma unroll
      for (int j = 0; j < V; ++j) r.v[j] = apply<V>(f, a, j, std::make_index_sequence<N>{});
      *reinterpret_cast<Pack<T, V>*>(out + i) = r;
    } else {
      for (int64_t e = i; e < n; ++e) {
        const int j = static_cast<int>(e - i);
#pragma unroll
        for (int k = 0; k < N; ++k) a[k].v[j] = in.p[k][e];
        out[e] = apply<V>(f, a, j, std::make_index_sequence<N>{});
      }
    }
  }
}

template <int V, class T, int N, class F>
void launch(int64_t n, const F& f, T* out, const Inputs<T, N>& in) {
  constexpr int kThreads = 256;
  const int blocks = grid_stride_blocks(n, int64_t{kThreads} * V, 16);
  map_kernel<V><<<blocks, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(n, f, out, in);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// F: a functor with a __device__ call operator over N opmath values, templated on their type.
template <int N, class F>
void map(const F& f, const at::Tensor& out, const std::array<at::Tensor, N>& in) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "hotkernels_map_cuda", [&] {
    using T = scalar_t;
    constexpr int kVec = 16 / sizeof(T);
    T* out_ptr = out.mutable_data_ptr<T>();
    Inputs<T, N> ptrs;
    bool aligned = reinterpret_cast<uintptr_t>(out_ptr) % 16 == 0;
    for (int k = 0; k < N; ++k) {
      ptrs.p[k] = in[k].template const_data_ptr<T>();
      aligned = aligned && reinterpret_cast<uintptr_t>(ptrs.p[k]) % 16 == 0;
    }
    if (aligned) {
      launch<kVec>(n, f, out_ptr, ptrs);
    } else {
      launch<1>(n, f, out_ptr, ptrs);
    }
  });
}

}  // namespace hotkernels::cuda
