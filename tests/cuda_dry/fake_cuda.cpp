// A CPU build of torch pretending to have one CUDA device, for FakeTensorMode only (tests/cuda_dry).
// It registers a do-nothing CUDA device guard (streams, device index) and CUDA hooks that say a
// device exists; no kernel runs: every tensor claiming "cuda" must be a fake one.
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/impl/FakeGuardImpl.h>
#include <torch/library.h>

namespace {

struct FakeCUDAHooks : at::CUDAHooksInterface {
  FakeCUDAHooks(at::CUDAHooksArgs) {}
  void init() const override {}
  bool hasPrimaryContext(c10::DeviceIndex) const override { return true; }
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasCUDA() const override { return true; }
  bool hasCUDART() const override { return true; }
  int getNumGPUs() const override { return 1; }
  c10::DeviceIndex deviceCount() const override { return 1; }
  c10::DeviceIndex current_device() const override { return 0; }
  c10::DeviceIndex getCurrentDevice() const override { return 0; }
  // Random ops on fake tensors never draw numbers; a CPU generator answers the lookups.
  const at::Generator& getDefaultGenerator(c10::DeviceIndex) const override {
    return at::detail::getDefaultCPUGenerator();
  }
};

}  // namespace

C10_REGISTER_GUARD_IMPL(CUDA, c10::impl::FakeGuardImpl<c10::DeviceType::CUDA>);
namespace at {
C10_REGISTER_CLASS(CUDAHooksRegistry, CUDAHooks, FakeCUDAHooks);  // the key ATen looks up
}

// True once the hooks this library registered are the ones ATen answers with (ATen caches its
// first lookup: the extension must load before anything asks whether CUDA exists).
static bool hooks_active() { return at::detail::getCUDAHooks().hasCUDA(); }

TORCH_LIBRARY(fake_cuda, m) { m.def("hooks_active() -> bool", &hooks_active); }
