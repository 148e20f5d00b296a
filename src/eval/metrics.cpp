// Evaluation metrics: log-softmax, NLL, KL divergence, perplexity / KLD accumulators and the
// binary logits file (format documented in include/turboquant/eval/metrics.hpp).
#include "turboquant/eval/metrics.hpp"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "turboquant/base/half.hpp"

namespace tq::eval {

static_assert(std::endian::native == std::endian::little,
              "the logits file is little-endian and rows are copied as-is");

namespace {

constexpr std::uint64_t kUnfinished = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kMaxMetadata = 1u << 20;

// Maximum of a row, rejecting what no distribution can come from.
float checked_row_max(std::span<const float> logits, const char* what) {
  if (logits.empty()) throw std::invalid_argument(std::string(what) + ": empty logit row");
  float max_value = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (std::isnan(v) || v == std::numeric_limits<float>::infinity()) {
      throw std::invalid_argument(std::string(what) + ": logit " + std::to_string(i) + " is " +
                                  std::to_string(v) + ", expected a finite value or -inf");
    }
    max_value = std::max(max_value, v);
  }
  if (max_value == -std::numeric_limits<float>::infinity()) {
    throw std::invalid_argument(std::string(what) + ": every logit is -inf");
  }
  return max_value;
}

void check_target(TokenId target, std::size_t n_vocab, const char* what) {
  if (target < 0 || static_cast<std::size_t>(target) >= n_vocab) {
    throw std::invalid_argument(std::string(what) + ": target token " + std::to_string(target) +
                                " outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
  }
}

// log Σ exp(x_i - max), i.e. log_sum_exp minus the max, for a row whose max is already known.
double shifted_log_sum(std::span<const float> logits, float max_value) {
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max_value);
  return std::log(sum);  // sum >= 1 because the max term contributes exp(0)
}

}  // namespace

double log_sum_exp(std::span<const float> logits) {
  const float max_value = checked_row_max(logits, "log_sum_exp");
  return max_value + shifted_log_sum(logits, max_value);
}

void log_softmax(std::span<const float> logits, std::span<double> out) {
  if (out.size() != logits.size()) {
    throw std::invalid_argument("log_softmax: output has " + std::to_string(out.size()) +
                                " entries, expected " + std::to_string(logits.size()));
  }
  const float max_value = checked_row_max(logits, "log_softmax");
  const double log_norm = shifted_log_sum(logits, max_value);
  for (std::size_t i = 0; i < logits.size(); ++i) {
    out[i] = (static_cast<double>(logits[i]) - max_value) - log_norm;
  }
}

std::vector<double> log_softmax(std::span<const float> logits) {
  std::vector<double> out(logits.size());
  log_softmax(logits, out);
  return out;
}

double negative_log_likelihood(std::span<const float> logits, TokenId target) {
  const float max_value = checked_row_max(logits, "negative_log_likelihood");
  check_target(target, logits.size(), "negative_log_likelihood");
  return shifted_log_sum(logits, max_value) - (static_cast<double>(logits[target]) - max_value);
}

std::size_t argmax(std::span<const float> logits) {
  if (logits.empty()) throw std::invalid_argument("argmax: empty logit row");
  return static_cast<std::size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

TokenComparison compare_token(std::span<const float> ref_logits, std::span<const float> test_logits,
                              TokenId target) {
  if (ref_logits.size() != test_logits.size()) {
    throw std::invalid_argument("compare_token: reference row has " +
                                std::to_string(ref_logits.size()) + " logits, test row has " +
                                std::to_string(test_logits.size()));
  }
  const float ref_max = checked_row_max(ref_logits, "compare_token (reference)");
  const float test_max = checked_row_max(test_logits, "compare_token (test)");
  check_target(target, ref_logits.size(), "compare_token");
  const double ref_log_norm = shifted_log_sum(ref_logits, ref_max);
  const double test_log_norm = shifted_log_sum(test_logits, test_max);

  // KL = Σ p_r (lp_r - lp_t). Tokens with p_r = 0 contribute 0 even where lp_t = -inf.
  double kld = 0;
  for (std::size_t i = 0; i < ref_logits.size(); ++i) {
    const double lp_ref = (static_cast<double>(ref_logits[i]) - ref_max) - ref_log_norm;
    const double p_ref = std::exp(lp_ref);
    if (p_ref == 0) continue;
    const double lp_test = (static_cast<double>(test_logits[i]) - test_max) - test_log_norm;
    kld += p_ref * (lp_ref - lp_test);
  }
  TokenComparison result;
  result.kld = std::max(kld, 0.0);  // exact KL is >= 0; the sum can round to -1e-17
  result.nll_ref = ref_log_norm - (static_cast<double>(ref_logits[target]) - ref_max);
  result.nll_test = test_log_norm - (static_cast<double>(test_logits[target]) - test_max);
  result.top1_agree = argmax(ref_logits) == argmax(test_logits);
  return result;
}

double kl_divergence(std::span<const float> ref_logits, std::span<const float> test_logits) {
  return compare_token(ref_logits, test_logits, 0).kld;
}

// ---------------------------------------------------------------------------------------------

void PerplexityAccumulator::add(double nll) {
  if (std::isnan(nll)) throw std::invalid_argument("PerplexityAccumulator: NLL is NaN");
  ++n_;
  const double delta = nll - mean_;
  mean_ += delta / static_cast<double>(n_);
  m2_ += delta * (nll - mean_);
}

void PerplexityAccumulator::merge(const PerplexityAccumulator& other) {
  if (other.n_ == 0) return;
  if (n_ == 0) {
    *this = other;
    return;
  }
  const double n = static_cast<double>(n_ + other.n_);
  const double delta = other.mean_ - mean_;
  m2_ += other.m2_ + delta * delta * static_cast<double>(n_) * static_cast<double>(other.n_) / n;
  mean_ += delta * static_cast<double>(other.n_) / n;
  n_ += other.n_;
}

double PerplexityAccumulator::mean_nll() const {
  if (n_ == 0) throw std::logic_error("PerplexityAccumulator: no tokens scored");
  return mean_;
}

double PerplexityAccumulator::nll_stddev() const {
  if (n_ < 2) return 0;
  return std::sqrt(m2_ / static_cast<double>(n_ - 1));
}

double PerplexityAccumulator::ppl() const {
  return std::exp(mean_nll());
}

double PerplexityAccumulator::ppl_stderr() const {
  if (n_ < 2) return 0;
  return ppl() * nll_stddev() / std::sqrt(static_cast<double>(n_));
}

double quantile(std::vector<double> values, double q) {
  if (values.empty()) throw std::logic_error("quantile of an empty sample");
  if (!(q >= 0 && q <= 1)) {
    throw std::invalid_argument("quantile: q = " + std::to_string(q) + ", expected [0, 1]");
  }
  const double position = q * static_cast<double>(values.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(std::floor(position));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  // Two selections instead of a full sort: O(n).
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
  const double lo_value = values[lo];
  if (hi == lo) return lo_value;
  const double hi_value =
      *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lo) + 1, values.end());
  return lo_value + (position - static_cast<double>(lo)) * (hi_value - lo_value);
}

// ---------------------------------------------------------------------------------------------

void KldAccumulator::add(const TokenComparison& token) {
  if (std::isnan(token.kld)) throw std::invalid_argument("KldAccumulator: KLD is NaN");
  const double ref_mean_before = ref_.count() ? ref_.mean_nll() : 0.0;
  ref_.add(token.nll_ref);
  test_.add(token.nll_test);
  // Welford co-moment: old deviation of one variable times new deviation of the other.
  co_moment_ += (token.nll_ref - ref_mean_before) * (token.nll_test - test_.mean_nll());
  kld_.push_back(token.kld);
  if (token.top1_agree) ++top1_hits_;
}

namespace {
void require_tokens(std::size_t n) {
  if (n == 0) throw std::logic_error("KldAccumulator: no tokens compared");
}
}  // namespace

double KldAccumulator::mean() const {
  require_tokens(count());
  double sum = 0;
  for (double v : kld_) sum += v;
  return sum / static_cast<double>(kld_.size());
}

double KldAccumulator::mean_stderr() const {
  require_tokens(count());
  const std::size_t n = kld_.size();
  if (n < 2) return 0;
  const double m = mean();
  double ss = 0;
  for (double v : kld_) ss += (v - m) * (v - m);
  return std::sqrt(ss / static_cast<double>(n - 1) / static_cast<double>(n));
}

double KldAccumulator::quantile(double q) const {
  require_tokens(count());
  return eval::quantile(kld_, q);
}

double KldAccumulator::max() const {
  require_tokens(count());
  return *std::max_element(kld_.begin(), kld_.end());
}

double KldAccumulator::top1_agreement() const {
  require_tokens(count());
  return static_cast<double>(top1_hits_) / static_cast<double>(kld_.size());
}

double KldAccumulator::delta_ppl_stderr() const {
  require_tokens(count());
  const std::size_t n = count();
  if (n < 2) return 0;
  const double ppl_ref = ref_.ppl();
  const double ppl_test = test_.ppl();
  const double var_ref = ref_.nll_stddev() * ref_.nll_stddev();
  const double var_test = test_.nll_stddev() * test_.nll_stddev();
  const double cov = co_moment_ / static_cast<double>(n - 1);
  const double var = (ppl_test * ppl_test * var_test + ppl_ref * ppl_ref * var_ref -
                      2 * ppl_test * ppl_ref * cov) /
                     static_cast<double>(n);
  return std::sqrt(std::max(var, 0.0));
}

KldAccumulator::Summary KldAccumulator::summary() const {
  require_tokens(count());
  Summary s;
  s.tokens = count();
  s.kld_mean = mean();
  s.kld_mean_stderr = mean_stderr();
  s.kld_median = median();
  s.kld_p99 = p99();
  s.kld_max = max();
  s.top1_agree = top1_agreement();
  s.ppl_ref = ref_.ppl();
  s.ppl_test = test_.ppl();
  s.delta_ppl = delta_ppl();
  s.delta_ppl_stderr = delta_ppl_stderr();
  return s;
}

// ---------------------------------------------------------------------------------------------
// Logits file.

std::uint64_t LogitsFileInfo::record_bytes() const {
  const std::uint64_t value_bytes = dtype == LogitsDtype::kFloat32 ? 4 : 2;
  return 4 + value_bytes * n_vocab;
}

namespace {

void put_u32(unsigned char* p, std::uint32_t v) {
  std::memcpy(p, &v, 4);
}
void put_u64(unsigned char* p, std::uint64_t v) {
  std::memcpy(p, &v, 8);
}
std::uint32_t get_u32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::string describe(const std::filesystem::path& path) {
  return "logits file " + path.string();
}

}  // namespace

LogitsWriter::LogitsWriter(const std::filesystem::path& path, std::uint32_t n_vocab,
                           LogitsDtype dtype, std::string metadata)
    : path_(path) {
  if (n_vocab == 0) throw std::invalid_argument("LogitsWriter: n_vocab is 0, expected > 0");
  if (dtype != LogitsDtype::kFloat32 && dtype != LogitsDtype::kFloat16) {
    throw std::invalid_argument("LogitsWriter: dtype " +
                                std::to_string(static_cast<std::uint32_t>(dtype)) +
                                ", expected 1 (float32) or 2 (float16)");
  }
  if (metadata.size() > kMaxMetadata) {
    throw std::invalid_argument("LogitsWriter: metadata is " + std::to_string(metadata.size()) +
                                " bytes, at most " + std::to_string(kMaxMetadata) + " allowed");
  }
  info_.version = kLogitsVersion;
  info_.dtype = dtype;
  info_.n_vocab = n_vocab;
  info_.metadata = std::move(metadata);
  // Records go to PATH.tmp.PID, renamed over PATH by finish(): two runs saving to one path leave
  // one complete file (the last to finish), never a mix, and a file being written is never read.
  tmp_path_ = path.string() + ".tmp." + std::to_string(::getpid());
  out_.open(tmp_path_, std::ios::binary | std::ios::trunc);
  if (!out_) throw std::runtime_error("cannot create " + describe(tmp_path_));
  unsigned char header[32];
  std::memcpy(header, kLogitsMagic, 8);
  put_u32(header + 8, info_.version);
  put_u32(header + 12, static_cast<std::uint32_t>(dtype));
  put_u32(header + 16, n_vocab);
  put_u32(header + 20, static_cast<std::uint32_t>(info_.metadata.size()));
  put_u64(header + 24, kUnfinished);
  out_.write(reinterpret_cast<const char*>(header), sizeof header);
  out_.write(info_.metadata.data(), static_cast<std::streamsize>(info_.metadata.size()));
  if (!out_) throw std::runtime_error("cannot write the header of " + describe(path));
  buffer_.resize(info_.record_bytes());
}

LogitsWriter::~LogitsWriter() {
  if (finished_) return;
  try {
    finish();
  } catch (...) {
    // A destructor must not throw; the file stays marked unfinished (or short) and readers reject
    // it.
  }
}

void LogitsWriter::write(TokenId target, std::span<const float> logits) {
  if (finished_) throw std::logic_error("LogitsWriter: write after finish() on " + describe(path_));
  if (logits.size() != info_.n_vocab) {
    throw std::invalid_argument("LogitsWriter: row has " + std::to_string(logits.size()) +
                                " logits, expected n_vocab = " + std::to_string(info_.n_vocab));
  }
  check_target(target, info_.n_vocab, "LogitsWriter");
  const float max_value = checked_row_max(logits, "LogitsWriter");
  unsigned char* p = buffer_.data();
  std::memcpy(p, &target, 4);
  p += 4;
  if (info_.dtype == LogitsDtype::kFloat32) {
    for (float v : logits) {
      const float shifted = v - max_value;
      std::memcpy(p, &shifted, 4);
      p += 4;
    }
  } else {
    for (float v : logits) {
      const half_bits h = float_to_half(v - max_value);
      std::memcpy(p, &h, 2);
      p += 2;
    }
  }
  out_.write(reinterpret_cast<const char*>(buffer_.data()),
             static_cast<std::streamsize>(buffer_.size()));
  if (!out_) {
    throw std::runtime_error("write failed on " + describe(path_) + " at record " +
                             std::to_string(count_) + " (disk full?)");
  }
  ++count_;
}

void LogitsWriter::finish() {
  if (finished_) return;
  finished_ = true;
  unsigned char count_bytes[8];
  put_u64(count_bytes, count_);
  out_.seekp(24);
  out_.write(reinterpret_cast<const char*>(count_bytes), 8);
  out_.close();
  std::error_code ec;
  if (out_) std::filesystem::rename(tmp_path_, path_, ec);
  if (!out_ || ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp_path_, ignored);
    throw std::runtime_error("cannot finish " + describe(path_) +
                             (ec ? ": " + ec.message() : std::string()));
  }
}

LogitsReader::LogitsReader(const std::filesystem::path& path) : path_(path) {
  in_.open(path, std::ios::binary);
  if (!in_) throw std::runtime_error("cannot open " + describe(path));
  std::error_code ec;
  const std::uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw std::runtime_error("cannot stat " + describe(path) + ": " + ec.message());
  unsigned char header[32];
  in_.read(reinterpret_cast<char*>(header), sizeof header);
  if (!in_) {
    throw std::runtime_error(describe(path) + " is " + std::to_string(file_size) +
                             " bytes, shorter than the 32-byte header");
  }
  if (std::memcmp(header, kLogitsMagic, 8) != 0) {
    throw std::runtime_error(describe(path) + " does not start with the magic \"TQLOGIT1\"");
  }
  info_.version = get_u32(header + 8);
  if (info_.version != kLogitsVersion) {
    throw std::runtime_error(describe(path) + " has version " + std::to_string(info_.version) +
                             ", this build reads version " + std::to_string(kLogitsVersion));
  }
  const std::uint32_t dtype = get_u32(header + 12);
  if (dtype != 1 && dtype != 2) {
    throw std::runtime_error(describe(path) + " has dtype " + std::to_string(dtype) +
                             ", expected 1 (float32) or 2 (float16)");
  }
  info_.dtype = static_cast<LogitsDtype>(dtype);
  info_.n_vocab = get_u32(header + 16);
  if (info_.n_vocab == 0) throw std::runtime_error(describe(path) + " has n_vocab 0");
  const std::uint32_t metadata_size = get_u32(header + 20);
  if (metadata_size > kMaxMetadata) {
    throw std::runtime_error(describe(path) + " declares " + std::to_string(metadata_size) +
                             " bytes of metadata, at most " + std::to_string(kMaxMetadata) +
                             " allowed (corrupt header?)");
  }
  info_.n_tokens = get_u64(header + 24);
  if (info_.n_tokens == kUnfinished) {
    throw std::runtime_error(describe(path) +
                             " was never finished (the writing run stopped before the end)");
  }
  info_.metadata.resize(metadata_size);
  in_.read(info_.metadata.data(), metadata_size);
  if (!in_) throw std::runtime_error(describe(path) + " is truncated inside its metadata");
  const std::uint64_t record = info_.record_bytes();
  const std::uint64_t available = file_size - info_.header_bytes();  // >= 0: metadata was read
  if (info_.n_tokens > available / record) {
    throw std::runtime_error(describe(path) + " declares " + std::to_string(info_.n_tokens) +
                             " tokens of vocabulary " + std::to_string(info_.n_vocab) +
                             " but holds only " + std::to_string(available / record) +
                             " complete records (truncated)");
  }
  if (available != info_.n_tokens * record) {
    throw std::runtime_error(
        describe(path) + " has " + std::to_string(available - info_.n_tokens * record) +
        " trailing bytes after its " + std::to_string(info_.n_tokens) + " records (corrupt file)");
  }
  buffer_.resize(record);
}

bool LogitsReader::next(TokenId& target, std::span<float> logits) {
  if (logits.size() != info_.n_vocab) {
    throw std::invalid_argument("LogitsReader::next: buffer has " + std::to_string(logits.size()) +
                                " entries, the file's vocabulary is " +
                                std::to_string(info_.n_vocab));
  }
  if (next_ >= info_.n_tokens) return false;
  in_.read(reinterpret_cast<char*>(buffer_.data()), static_cast<std::streamsize>(buffer_.size()));
  if (!in_) {
    throw std::runtime_error(describe(path_) + ": read failed at record " + std::to_string(next_) +
                             " (file changed while reading?)");
  }
  const unsigned char* p = buffer_.data();
  std::memcpy(&target, p, 4);
  p += 4;
  const std::string where = describe(path_) + " record " + std::to_string(next_);
  if (target < 0 || static_cast<std::uint32_t>(target) >= info_.n_vocab) {
    throw std::runtime_error(where + ": target token " + std::to_string(target) +
                             " outside the vocabulary [0, " + std::to_string(info_.n_vocab) +
                             ") (corrupt file)");
  }
  float max_value = -std::numeric_limits<float>::infinity();
  for (std::uint32_t i = 0; i < info_.n_vocab; ++i) {
    float v;
    if (info_.dtype == LogitsDtype::kFloat32) {
      std::memcpy(&v, p, 4);
      p += 4;
    } else {
      half_bits h;
      std::memcpy(&h, p, 2);
      p += 2;
      v = half_to_float(h);
    }
    if (std::isnan(v) || v > 0) {
      throw std::runtime_error(where + ": logit " + std::to_string(i) + " is " + std::to_string(v) +
                               ", stored rows are shifted to a maximum of 0 (corrupt file)");
    }
    max_value = std::max(max_value, v);
    logits[i] = v;
  }
  if (max_value != 0) {
    throw std::runtime_error(where + ": row maximum is " + std::to_string(max_value) +
                             ", expected exactly 0 (corrupt file)");
  }
  ++next_;
  return true;
}

}  // namespace tq::eval
