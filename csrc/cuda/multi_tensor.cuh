// Multi-tensor apply on CUDA: one launch covers up to kMaxTensors tensors and kMaxBlocks chunks of
// kChunk elements; the tensor pointers, sizes and the block → (tensor, chunk) map travel in the
// kernel arguments (sm_70+ with CUDA 12.1+ takes up to 32 KiB of them), so a param group of
// hundreds of tensors costs a handful of launches.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <array>
#include <cstdint>
#include <vector>

namespace hotkernels::cuda {

constexpr int kMaxTensors = 256;
constexpr int kMaxBlocks = 1024;
constexpr int64_t kChunk = 16384;  // elements per block: 64 KiB of float32 per operand
constexpr int kThreads = 512;

template <int N>
struct TensorChunks {
  void* ptr[N][kMaxTensors];
  int64_t size[kMaxTensors];
  int32_t index[kMaxTensors];  // position of the tensor in the op's lists (for per-tensor outputs)
  int16_t block_tensor[kMaxBlocks];
  int32_t block_chunk[kMaxBlocks];
};

// One block's share: elements [begin, end) of tensor `t` of the launch.
struct BlockWork {
  int t;
  int64_t begin, end;
};

template <int N>
__device__ __forceinline__ BlockWork block_work(const TensorChunks<N>& tc) {
  const int t = tc.block_tensor[blockIdx.x];
  const int64_t begin = int64_t(tc.block_chunk[blockIdx.x]) * kChunk;
  const int64_t end = begin + kChunk < tc.size[t] ? begin + kChunk : tc.size[t];
  return {t, begin, end};
}

// Calls launch(const TensorChunks<N>&, int blocks) for successive batches of the tensors `index`
// (positions in lists[0..N)); lists[k][i] supplies pointer k of tensor i.
template <int N, class Launch>
void for_each_launch(const std::array<at::TensorList, N>& lists, const std::vector<int64_t>& index,
                     const Launch& launch) {
  TensorChunks<N> tc;
  int tensors = 0, blocks = 0;
  for (size_t k = 0; k < index.size(); ++k) {
    const int64_t i = index[k];
    const int64_t n = lists[0][i].numel();
    if (n == 0) continue;
    for (int j = 0; j < N; ++j) tc.ptr[j][tensors] = lists[j][i].data_ptr();
    tc.size[tensors] = n;
    tc.index[tensors] = static_cast<int32_t>(i);
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      tc.block_tensor[blocks] = static_cast<int16_t>(tensors);
      tc.block_chunk[blocks] = static_cast<int32_t>(c);
      if (++blocks == kMaxBlocks) {
        launch(tc, blocks);
        blocks = 0;
        if (c + 1 < chunks) {  // the tensor continues in the next launch, in slot 0
          for (int j = 0; j < N; ++j) tc.ptr[j][0] = tc.ptr[j][tensors];
          tc.size[0] = tc.size[tensors];
          tc.index[0] = tc.index[tensors];
          tensors = 0;
        } else {
          tensors = -1;
        }
      }
    }
    if (++tensors == kMaxTensors) {
      if (blocks > 0) launch(tc, blocks);
      blocks = 0;
      tensors = 0;
    }
  }
  if (blocks > 0) launch(tc, blocks);
}

}  // namespace hotkernels::cuda
