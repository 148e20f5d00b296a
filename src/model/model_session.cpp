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
  std::vector<std::size_t> positions;  // tokens held per sequence
  std::unique_ptr<detail::ForwardBackend> backend;
  std::vector<float> logits;         // [n_vocab], the last token's
  std::vector<float> batch_logits;   // [batch][n_vocab], decode_batch's
  std::vector<int> step_positions;   // decode_batch's rows (−1: inactive)
  std::vector<TokenId> step_tokens;  // decode_batch's tokens (inactive rows: token 0)
  std::size_t total_tokens() const {
    std::size_t n = 0;
    for (std::size_t p : positions) n += p;
    return n;
  }
  int checked_sequence(int sequence) const {
    if (sequence < 0 || sequence >= static_cast<int>(positions.size())) {
      throw std::invalid_argument("Session: sequence " + std::to_string(sequence) +
                                  " out of range [0, " + std::to_string(positions.size()) + ")");
    }
    return sequence;
  }
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
  if (options.batch <= 0 || options.batch > 4096) {
    throw std::invalid_argument("batch must be in [1, 4096], got " + std::to_string(options.batch));
  }
  check_scheme_fits_layers(scheme, c.n_layers);
  s.max_context =
      options.max_context ? options.max_context : static_cast<std::size_t>(c.context_length);
  s.chunk = static_cast<int>(std::min<std::size_t>(options.prefill_chunk, s.max_context));
  // The activation buffers hold a prefill chunk or one row per sequence, whichever is more.
  s.backend =
      detail::make_backend(model, scheme, options, std::max(s.chunk, options.batch), s.max_context);
  s.positions.assign(static_cast<std::size_t>(options.batch), 0);
  s.logits.resize(static_cast<std::size_t>(c.n_vocab));
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

std::size_t Session::position(int sequence) const {
  return impl_->positions[static_cast<std::size_t>(impl_->checked_sequence(sequence))];
}
int Session::batch() const {
  return static_cast<int>(impl_->positions.size());
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
  return cpu->cache(0, layer);
}

void Session::fill_synthetic(int sequence, std::size_t tokens, std::uint64_t seed) {
  Impl& s = *impl_;
  std::size_t& pos = s.positions[static_cast<std::size_t>(s.checked_sequence(sequence))];
  if (pos + tokens > s.max_context) {
    throw std::invalid_argument("Session::fill_synthetic: " + std::to_string(tokens) +
                                " tokens at position " + std::to_string(pos) +
                                " exceed the context of " + std::to_string(s.max_context));
  }
  s.backend->fill_synthetic(sequence, pos, tokens, seed);
  pos += tokens;
}

void Session::reset() {
  impl_->backend->reset();
  std::fill(impl_->positions.begin(), impl_->positions.end(), 0);
}

void Session::reset(int sequence) {
  impl_->backend->reset(impl_->checked_sequence(sequence));
  impl_->positions[static_cast<std::size_t>(sequence)] = 0;
}

KvSizeBreakdown Session::kv_bytes() const {
  KvSizeBreakdown out;
  out.bytes = impl_->backend->cache_bytes();
  // The fp16 baseline of the tokens each sequence holds, as tq kv-size counts it (a
  // sliding-window layer at most its window); two bytes per value held.
  const ModelShape shape = impl_->model->kv_shape();
  const KvScheme fp16 = parse_kv_scheme("fp16");
  for (const std::size_t held : impl_->positions) {
    out.fp16_bytes += kv_cache_size(shape, fp16, held).fp16_bytes;
  }
  const std::size_t values = out.fp16_bytes / 2;
  out.bits_per_value = values ? 8.0 * static_cast<double>(out.bytes) / values : 0.0;
  return out;
}

std::size_t Session::device_weight_bytes() const {
  return impl_->options.device == Device::Cpu ? impl_->model->load_stats().weight_bytes
                                              : impl_->backend->weight_bytes();
}

bool Session::compresses() const {
  const KvScheme& scheme = impl_->scheme;
  const int layers = impl_->model->config().n_layers;
  const bool fp16 = scheme.key.format == KvFormat::Fp16 && scheme.value.format == KvFormat::Fp16;
  return !fp16 && scheme.protect_first + scheme.protect_last < layers;
}

std::size_t Session::compressed_tokens(int sequence) const {
  if (!compresses()) return 0;
  const std::size_t W = static_cast<std::size_t>(std::max(impl_->scheme.window, 0));
  const std::size_t pos = position(sequence);
  return pos > W ? pos - W : 0;
}

std::span<const float> Session::eval(std::span<const TokenId> tokens) {
  return eval(0, tokens, nullptr);
}

std::span<const float> Session::eval(std::span<const TokenId> tokens, float* all_logits) {
  return eval(0, tokens, all_logits);
}

namespace {

void check_token(TokenId t, int n_vocab) {
  if (t < 0 || t >= n_vocab) {
    throw std::invalid_argument("Session::eval: token id " + std::to_string(t) +
                                " outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
  }
}

}  // namespace

std::span<const float> Session::eval(int sequence, std::span<const TokenId> tokens,
                                     float* all_logits) {
  Impl& s = *impl_;
  const ModelConfig& c = s.model->config();
  std::size_t& pos = s.positions[static_cast<std::size_t>(s.checked_sequence(sequence))];
  if (tokens.empty()) throw std::invalid_argument("Session::eval: no tokens given");
  for (const TokenId t : tokens) check_token(t, c.n_vocab);
  if (pos + tokens.size() > s.max_context) {
    throw std::invalid_argument("Session::eval: " + std::to_string(tokens.size()) +
                                " tokens at position " + std::to_string(pos) +
                                " exceed the context of " + std::to_string(s.max_context) +
                                " tokens");
  }
  const std::size_t V = static_cast<std::size_t>(c.n_vocab);
  for (std::size_t done = 0; done < tokens.size();) {
    const int n = static_cast<int>(std::min<std::size_t>(s.chunk, tokens.size() - done));
    const detail::StepRows rows{.count = n, .sequence = sequence, .first_position = pos};
    detail::forward_step(*s.backend, c, tokens.data() + done, rows,
                         all_logits ? all_logits + done * V : nullptr, s.logits.data());
    pos += static_cast<std::size_t>(n);
    done += static_cast<std::size_t>(n);
  }
  return {s.logits.data(), s.logits.size()};
}

std::span<const float> Session::decode_batch(std::span<const TokenId> tokens) {
  Impl& s = *impl_;
  const ModelConfig& c = s.model->config();
  const std::size_t B = s.positions.size();
  if (tokens.size() != B) {
    throw std::invalid_argument("Session::decode_batch: " + std::to_string(tokens.size()) +
                                " tokens for a batch of " + std::to_string(B));
  }
  s.step_positions.assign(B, -1);
  s.step_tokens.assign(tokens.begin(), tokens.end());
  std::vector<TokenId>& ids = s.step_tokens;
  bool any = false;
  for (std::size_t b = 0; b < B; ++b) {
    if (tokens[b] == kNoToken) {
      ids[b] = 0;  // a row is still computed; its result is dropped
      continue;
    }
    check_token(tokens[b], c.n_vocab);
    if (s.positions[b] + 1 > s.max_context) {
      throw std::invalid_argument("Session::decode_batch: sequence " + std::to_string(b) +
                                  " holds " + std::to_string(s.positions[b]) +
                                  " tokens, the whole context");
    }
    s.step_positions[b] = static_cast<int>(s.positions[b]);
    any = true;
  }
  const std::size_t V = static_cast<std::size_t>(c.n_vocab);
  s.batch_logits.resize(B * V);
  if (!any) return {s.batch_logits.data(), s.batch_logits.size()};
  const detail::StepRows rows{.count = static_cast<int>(B), .positions = s.step_positions.data()};
  s.backend->decode_step(ids.data(), rows, s.batch_logits.data(), [&] {
    detail::forward_step(*s.backend, c, ids.data(), rows, s.batch_logits.data(), s.logits.data());
  });
  for (std::size_t b = 0; b < B; ++b) {
    if (s.step_positions[b] >= 0) ++s.positions[b];
  }
  return {s.batch_logits.data(), s.batch_logits.size()};
}

}  // namespace tq
