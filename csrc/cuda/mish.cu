// Mish's CUDA kernels: the formulas of csrc/math/mish.h through the vectorised elementwise map.
#include "mish.h"

#include "cuda/device_math.cuh"
#include "cuda/elementwise.cuh"
#include "math/mish.h"

namespace hotkernels::cuda {
namespace {

struct Forward {
  template <class V> __device__ V operator()(V x) const { return math::mish_forward(x, DeviceExp{}, DeviceReciprocal{}); }
};
struct Backward {
  template <class V> __device__ V operator()(V grad, V x) const { return math::mish_backward(grad, x, DeviceExp{}, DeviceReciprocal{}); }
};

void mish(const at::Tensor& out, const at::Tensor& self) { map<1>(Forward{}, out, {self}); }

void mish_backward(const at::Tensor& grad_input, const at::Tensor& grad_output, const at::Tensor& self) {
  map<2>(Backward{}, grad_input, {grad_output, self});
}

}  // namespace

HK_REGISTER_STUB(mish_stub, cuda, &mish);
HK_REGISTER_STUB(mish_backward_stub, cuda, &mish_backward);

}  // namespace hotkernels::cuda
