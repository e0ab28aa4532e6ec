// A CPU build of torch pretending to have one CUDA device, for FakeTensorMode only (tests/cuda_dry).
// It registers a do-nothing CUDA device guard (streams, device index), CUDA hooks that say a device
// and cuDNN exist, and the two pieces of the CUDA build that route nn.LSTM to cuDNN (at::lstm's
// lstm_cudnn_stub, _cudnn_rnn's autocast wrapper); no kernel runs: every tensor claiming "cuda" must
// be a fake one (the harness gives _cudnn_rnn and its backward their fake kernels).
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/native/RNN.h>
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
  // at::lstm then takes cuDNN's path (cudnn_is_acceptable), as on a GPU; torch.backends.cudnn
  // still says unavailable (a compile-time flag), so nn.LSTM does not flatten its weights.
  bool compiledWithCuDNN() const override { return true; }
  // Random ops on fake tensors never draw numbers; a CPU generator answers the lookups.
  const at::Generator& getDefaultGenerator(c10::DeviceIndex) const override {
    return at::detail::getDefaultCPUGenerator();
  }
};

constexpr int64_t kCudnnLSTM = 2;  // cudnnRNNMode_t's CUDNN_LSTM

// torch's cudnn/RNN.cpp lstm_cudnn (_cudnn_impl): one _cudnn_rnn call covers every layer and time step.
// The weights are not flattened (no weight_buf), as in a module whose flatten_parameters() did not run.
void lstm_cudnn(at::Tensor& output, at::Tensor& hy, at::Tensor& cy, const at::Tensor& input, at::TensorList hx,
                at::TensorList params, bool has_biases, int64_t num_layers, double dropout, bool train,
                bool bidirectional, bool batch_first) {
  int64_t hidden_size = hx[1].size(2), proj_size = hx[0].size(2) == hidden_size ? 0 : hx[0].size(2);
  int64_t weight_stride0 = (has_biases ? 4 : 2) + (proj_size ? 1 : 0);
  std::tie(output, hy, cy, std::ignore, std::ignore) = at::_cudnn_rnn(
      input, params, weight_stride0, std::nullopt, hx[0], hx[1], kCudnnLSTM, hidden_size, proj_size, num_layers,
      batch_first, dropout, train, bidirectional, {}, std::nullopt);
}

// torch's cudnn/AutocastRNN.cpp: autocast runs cuDNN's RNN in fp16 (whatever autocast's dtype), its
// weights copied once per call into one flat fp16 buffer (each copy autograd-exposed), then redispatched.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cudnn_rnn_autocast(
    const at::Tensor& input, at::TensorList weight, int64_t weight_stride0, const std::optional<at::Tensor>& weight_buf,
    const at::Tensor& hx, const std::optional<at::Tensor>& cx, int64_t mode, int64_t hidden_size, int64_t proj_size,
    int64_t num_layers, bool batch_first, double dropout, bool train, bool bidirectional, at::IntArrayRef batch_sizes,
    const std::optional<at::Tensor>& dropout_state) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  bool cast = weight_buf.has_value() && weight_buf->defined()
                  ? at::autocast::is_eligible(*weight_buf) && weight_buf->scalar_type() != at::kHalf
                  : at::autocast::is_eligible(weight[0]) && weight[0].scalar_type() != at::kHalf;
  std::optional<at::Tensor> buffer = weight_buf;
  std::vector<at::Tensor> weights(weight.begin(), weight.end());
  if (cast) {
    int64_t total = 0;
    for (const auto& w : weight) total += w.numel();
    buffer = at::zeros({total}, weight[0].options().dtype(at::kHalf));
    int64_t offset = 0;
    for (size_t i = 0; i < weight.size(); ++i) {  // storage-sharing tensors, not autograd views (get_parameters)
      weights[i] = at::empty({0}, buffer->options()).set_(buffer->storage(), offset, weight[i].sizes());
      weights[i].copy_(weight[i]);
      offset += weight[i].numel();
    }
  }
  return at::_cudnn_rnn(at::autocast::cached_cast(at::kHalf, input), weights, weight_stride0, buffer,
                        at::autocast::cached_cast(at::kHalf, hx), at::autocast::cached_cast(at::kHalf, cx), mode,
                        hidden_size, proj_size, num_layers, batch_first, dropout, train, bidirectional, batch_sizes,
                        dropout_state);
}

}  // namespace

namespace at::native {
REGISTER_CUDA_DISPATCH(lstm_cudnn_stub, &lstm_cudnn)
}
TORCH_LIBRARY_IMPL(aten, AutocastCUDA, m) { m.impl("_cudnn_rnn", TORCH_FN(cudnn_rnn_autocast)); }

C10_REGISTER_GUARD_IMPL(CUDA, c10::impl::FakeGuardImpl<c10::DeviceType::CUDA>);
namespace at {
C10_REGISTER_CLASS(CUDAHooksRegistry, CUDAHooks, FakeCUDAHooks);  // the key ATen looks up
}

// True once the hooks this library registered are the ones ATen answers with (ATen caches its
// first lookup: the extension must load before anything asks whether CUDA exists).
static bool hooks_active() { return at::detail::getCUDAHooks().hasCUDA(); }

TORCH_LIBRARY(fake_cuda, m) { m.def("hooks_active() -> bool", &hooks_active); }
