// Grid size for the CUDA kernels' grid-stride loops, shared by every op.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace hotkernels::cuda {

// CUDA's limit on gridDim.y and gridDim.z (x goes to 2^31 − 1): a launch whose y or z extent can
// pass it caps the grid there and its kernel walks the rest grid-stride.
constexpr int64_t kMaxGridYZ = 65535;

// Blocks for `items` work items at `per_block` items a block, at most `per_sm` blocks per SM: enough
// to fill every SM several times over; each kernel's grid-stride loop covers the rest. At least 1,
// so a launch is always valid.
inline int grid_stride_blocks(int64_t items, int64_t per_block, int64_t per_sm) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return static_cast<int>(std::clamp<int64_t>((items + per_block - 1) / per_block, 1, sms * per_sm));
}

}  // namespace hotkernels::cuda
