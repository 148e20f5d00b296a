// make_backend (backend_factory.hpp): the CPU backend always; the CUDA backend when this build
// has it (src/model/cuda/, compiled in with TQ_HAVE_CUDA) and a device is visible.
#include "backend_factory.hpp"

#include "cpu_backend.hpp"

#include <stdexcept>

#ifdef TQ_HAVE_CUDA
#include "cuda/gpu_backend.hpp"
#include "turboquant/cuda/attention.hpp"
#endif

namespace tq::detail {

std::unique_ptr<ForwardBackend> make_backend(const Model& model, const KvScheme& scheme,
                                             const SessionOptions& options, int chunk,
                                             std::size_t capacity) {
  if (options.device == Device::Cpu) {
    return std::make_unique<CpuBackend>(model, scheme, options, chunk,
                                        std::min(options.reserve, capacity));
  }
#ifdef TQ_HAVE_CUDA
  if (!cuda::device_available()) {
    throw std::runtime_error(
        "--device cuda: no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
  }
  return gpu::make_gpu_backend(model, scheme, options, chunk, capacity);
#else
  throw std::runtime_error(
      "--device cuda: this build of turboquant has no CUDA support (configure with nvcc on PATH "
      "or -DTQ_CUDA=ON)");
#endif
}

}  // namespace tq::detail
