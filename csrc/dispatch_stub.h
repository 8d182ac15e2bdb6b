// How one op reaches its device kernels (ATen's DispatchStub, in a few lines).
//
// An op family's host file (csrc/<op>.cpp) holds the op itself, once for every device: its checks,
// its geometry, the outputs it allocates. It calls its device kernels through stubs that it defines
// and csrc/<op>.h declares; each device's file (csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu) fills its own
// entry in as the library loads. The host file registers the op with the dispatcher for every
// device this build has (HK_DEVICE_OPS), so the device files only register and launch.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace hotkernels {

template <class Signature>
struct DispatchStub;

template <class R, class... Args>
struct DispatchStub<R(Args...)> {
  using Kernel = R (*)(Args...);
  const char* op;  // the op's name, for the error message
  Kernel cpu = nullptr;
  Kernel cuda = nullptr;

  R operator()(c10::DeviceType device, Args... args) const {
    const Kernel kernel = device == c10::DeviceType::CPU ? cpu : device == c10::DeviceType::CUDA ? cuda : nullptr;
    TORCH_CHECK(kernel != nullptr, "hotkernels.", op, ": this build of hotkernels has no ", device, " kernel");
    return kernel(args...);
  }
};

}  // namespace hotkernels

#define HK_CONCAT_IMPL(a, b) a##b
#define HK_CONCAT(a, b) HK_CONCAT_IMPL(a, b)

// In csrc/<op>.h: `HK_DECLARE_STUB(mish_stub, void(const at::Tensor& out, const at::Tensor& in));`
#define HK_DECLARE_STUB(name, ...) extern ::hotkernels::DispatchStub<__VA_ARGS__> name
// In csrc/<op>.cpp, once. Constant-initialised, so a device file's registration, run while the
// library loads in whatever order, always finds it.
#define HK_DEFINE_STUB(name, op, ...) constinit ::hotkernels::DispatchStub<__VA_ARGS__> name{op}
// In a device file, at namespace scope: `HK_REGISTER_STUB(mish_stub, cpu, &mish_kernel);`
#define HK_REGISTER_STUB(name, device, kernel) \
  [[maybe_unused]] static const bool HK_CONCAT(hk_registered_, __LINE__) = (name.device = (kernel), true)

// In csrc/<op>.cpp: registers the ops that `fn(torch::Library& m)` names (m.impl) for the CPU and,
// in a build with CUDA kernels, the CUDA dispatch key.
#ifdef HK_WITH_CUDA
#define HK_DEVICE_OPS(fn)                                 \
  TORCH_LIBRARY_IMPL(hotkernels, CPU, m) { fn(m); }      \
  TORCH_LIBRARY_IMPL(hotkernels, CUDA, m) { fn(m); }
#else
#define HK_DEVICE_OPS(fn) \
  TORCH_LIBRARY_IMPL(hotkernels, CPU, m) { fn(m); }
#endif
