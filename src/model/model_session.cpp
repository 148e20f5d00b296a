// tq::Session: one sequence's position and the forward backend it runs on (CPU or GPU, see
// backend_factory.hpp). Input checks and chunking live here; the forward step itself is
// forward_pass.cpp, written once over the backend interface.
#include "turboquant/model/model.hpp"

#include "backend_factory.hpp"
#include "cpu_backend.hpp"
#include "forward_pass.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace tq {

struct Session::Impl {
  const Model* model = nullptr;
  KvScheme scheme;
  SessionOptions options;
  int chunk = 256;
  std::size_t max_context = 0;
  std::size_t pos = 0;
  std::unique_ptr<detail::ForwardBackend> backend;
  std::vector<float> logits;  // [n_vocab], the last token's
};

Session::Session(const Model& model, std::string_view kv_scheme, const SessionOptions& options)
    : Session(model, parse_kv_scheme(kv_scheme), options) {}

Session::Session(const Model& model, const KvScheme& scheme, const SessionOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  const ModelConfig& c = model.config();
  s.model = &model;
  s.scheme = scheme;
  s.options = options;
  if (options.prefill_chunk <= 0) {
    throw std::invalid_argument("prefill_chunk must be positive, got " +
                                std::to_string(options.prefill_chunk));
  }
  check_scheme_fits_layers(scheme, c.n_layers);
  s.max_context =
      options.max_context ? options.max_context : static_cast<std::size_t>(c.context_length);
  s.chunk = static_cast<int>(std::min<std::size_t>(options.prefill_chunk, s.max_context));
  s.backend = detail::make_backend(model, scheme, options, s.chunk, s.max_context);
  s.logits.resize(static_cast<std::size_t>(c.n_vocab));
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

std::size_t Session::position() const {
  return impl_->pos;
}
std::size_t Session::max_context() const {
  return impl_->max_context;
}
const Model& Session::model() const {
  return *impl_->model;
}
const KvScheme& Session::scheme() const {
  return impl_->scheme;
}
Device Session::device() const {
  return impl_->options.device;
}

const LayerKvCache& Session::cache(int layer) const {
  const auto* cpu = dynamic_cast<const detail::CpuBackend*>(impl_->backend.get());
  if (!cpu) {
    throw std::logic_error("Session::cache: the caches of a " + std::string(device_name(device())) +
                           " session live on the device; use kv_bytes() for their size");
  }
  const int layers = impl_->model->config().n_layers;
  if (layer < 0 || layer >= layers) {
    throw std::out_of_range("layer " + std::to_string(layer) + " out of range [0, " +
                            std::to_string(layers) + ")");
  }
  return cpu->cache(layer);
}

void Session::reset() {
  impl_->backend->reset();
  impl_->pos = 0;
}

KvSizeBreakdown Session::kv_bytes() const {
  const ModelConfig& c = impl_->model->config();
  KvSizeBreakdown out;
  out.bytes = impl_->backend->cache_bytes();
  const std::size_t values =
      impl_->pos * static_cast<std::size_t>(c.n_layers) * static_cast<std::size_t>(c.kv_dim()) * 2;
  out.fp16_bytes = values * 2;
  out.bits_per_value = values ? 8.0 * static_cast<double>(out.bytes) / values : 0.0;
  return out;
}

bool Session::compresses() const {
  const KvScheme& scheme = impl_->scheme;
  const int layers = impl_->model->config().n_layers;
  const bool fp16 = scheme.key.format == KvFormat::Fp16 && scheme.value.format == KvFormat::Fp16;
  return !fp16 && scheme.protect_first + scheme.protect_last < layers;
}

std::size_t Session::compressed_tokens() const {
  if (!compresses()) return 0;
  const std::size_t W = static_cast<std::size_t>(std::max(impl_->scheme.window, 0));
  return impl_->pos > W ? impl_->pos - W : 0;
}

std::span<const float> Session::eval(std::span<const TokenId> tokens) {
  return eval(tokens, nullptr);
}

std::span<const float> Session::eval(std::span<const TokenId> tokens, float* all_logits) {
  Impl& s = *impl_;
  const ModelConfig& c = s.model->config();
  if (tokens.empty()) throw std::invalid_argument("Session::eval: no tokens given");
  for (const TokenId t : tokens) {
    if (t < 0 || t >= c.n_vocab) {
      throw std::invalid_argument("Session::eval: token id " + std::to_string(t) +
                                  " outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
    }
  }
  if (s.pos + tokens.size() > s.max_context) {
    throw std::invalid_argument("Session::eval: " + std::to_string(tokens.size()) +
                                " tokens at position " + std::to_string(s.pos) +
                                " exceed the context of " + std::to_string(s.max_context) +
                                " tokens");
  }
  const std::size_t V = static_cast<std::size_t>(c.n_vocab);
  for (std::size_t done = 0; done < tokens.size();) {
    const int n = static_cast<int>(std::min<std::size_t>(s.chunk, tokens.size() - done));
    const detail::StepRows rows{.count = n, .first_position = s.pos};
    detail::forward_step(*s.backend, c, tokens.data() + done, rows,
                         all_logits ? all_logits + done * V : nullptr, s.logits.data());
    s.pos += static_cast<std::size_t>(n);
    done += static_cast<std::size_t>(n);
  }
  return {s.logits.data(), s.logits.size()};
}

}  // namespace tq
