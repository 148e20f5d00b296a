// Model-independent quality metrics for the evaluation suite (issue 4): stable log-softmax,
// per-token negative log-likelihood, perplexity with its standard error, KL divergence between a
// reference and a test distribution given as logit rows (with mean / median / p99, top-1 agreement
// and ΔPPL over many tokens), and the binary logits file written by `tq perplexity --save-logits`
// and read back by `--kld`.
//
// Logits file format (version 1, all integers little-endian):
//   offset  size  field
//   0       8     magic "TQLOGIT1"
//   8       4     u32 version (= 1)
//   12      4     u32 dtype: 1 = float32, 2 = float16 (IEEE binary16)
//   16      4     u32 n_vocab (> 0)
//   20      4     u32 metadata length L (<= 1 MiB)
//   24      8     u64 n_tokens; UINT64_MAX while the writer is still open (an unfinished file)
//   32      L     metadata: free-form UTF-8 (the CLI stores JSON: model, text, context, scheme)
//   32+L    ...   n_tokens records, each: i32 target token id, then n_vocab logits in dtype
// Each stored row is the logit row minus its maximum (so the maximum stored value is exactly 0).
// Softmax, NLL and KLD are shift-invariant, so nothing is lost, and with float16 the precision
// lands where the probability mass is: a logit within 1 of the top is stored to ~5e-4, one 20 below
// it (probability < 2e-9 relative to the top) to ~1.6e-2. float16 (the default) halves the size:
// a SmolLM2 row (49152 logits) is 96 KiB, so 10k scored tokens take ~0.94 GiB.
// The reader checks the magic, version, dtype, vocabulary size, that the file length matches the
// token count exactly, and per record that the target id is in the vocabulary, that no value is NaN
// or +inf and that the row maximum is 0; any violation throws std::runtime_error naming the value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace tq::eval {

using TokenId = std::int32_t;

// ---------------------------------------------------------------------------------------------
// Per-row functions. All accumulate in double; inputs may be as large as ±1e30 without overflow
// because the row maximum is subtracted first. Empty rows throw std::invalid_argument; a NaN or
// +inf logit throws std::invalid_argument (a -inf logit is a zero-probability token and is fine).

// log Σ_i exp(logits[i]).
double log_sum_exp(std::span<const float> logits);
// out[i] = logits[i] - log_sum_exp(logits); out.size() must equal logits.size().
void log_softmax(std::span<const float> logits, std::span<double> out);
std::vector<double> log_softmax(std::span<const float> logits);
// -log p(target) under softmax(logits); target must be in [0, logits.size()).
double negative_log_likelihood(std::span<const float> logits, TokenId target);
// Index of the largest logit (the first one on ties).
std::size_t argmax(std::span<const float> logits);
// KL(P_ref || P_test) = Σ p_ref (log p_ref - log p_test) in nats, >= 0 (tiny negative rounding is
// clamped to 0). +inf when the test distribution gives zero probability where the reference does
// not. Rows must have the same size.
double kl_divergence(std::span<const float> ref_logits, std::span<const float> test_logits);

// Everything the KLD statistics need from one scored token, computed in one pass over both rows.
struct TokenComparison {
  double kld = 0;           // KL(P_ref || P_test), nats
  double nll_ref = 0;       // -log p_ref(target)
  double nll_test = 0;      // -log p_test(target)
  bool top1_agree = false;  // argmax of both rows is the same token
};
TokenComparison compare_token(std::span<const float> ref_logits, std::span<const float> test_logits,
                              TokenId target);

// ---------------------------------------------------------------------------------------------
// Perplexity over a set of scored tokens. ppl = exp(mean NLL). Its standard error follows
// llama-perplexity (delta method): se(ppl) = ppl · sd(nll) / √n with the sample standard deviation
// (n − 1 in the denominator); 0 for fewer than two tokens. Mean and variance use Welford's update,
// so long runs lose no precision.
class PerplexityAccumulator {
 public:
  void add(double nll);
  void merge(const PerplexityAccumulator& other);
  std::size_t count() const { return n_; }
  double mean_nll() const;    // throws std::logic_error when empty
  double nll_stddev() const;  // sample standard deviation; 0 for n < 2
  double ppl() const;         // throws std::logic_error when empty
  double ppl_stderr() const;

 private:
  std::size_t n_ = 0;
  double mean_ = 0;
  double m2_ = 0;  // Σ (x - mean)²
};

// Exact quantile of a sample by linear interpolation between order statistics (numpy's default,
// "type 7"): position q·(n−1) in the sorted values. q in [0, 1]; throws on an empty sample.
double quantile(std::vector<double> values, double q);

// KL divergence and related statistics between a reference run (e.g. fp16 cache) and a test run
// (e.g. a compressed cache) on the same tokens. Stores every per-token KLD so the quantiles are
// exact (8 bytes per token).
class KldAccumulator {
 public:
  void add(const TokenComparison& token);
  void add(std::span<const float> ref_logits, std::span<const float> test_logits, TokenId target) {
    add(compare_token(ref_logits, test_logits, target));
  }

  std::size_t count() const { return kld_.size(); }
  const std::vector<double>& values() const { return kld_; }
  double mean() const;         // all statistics throw std::logic_error when empty
  double mean_stderr() const;  // sd(kld)/√n
  double median() const { return quantile(0.5); }
  double p99() const { return quantile(0.99); }
  double quantile(double q) const;
  double max() const;
  double top1_agreement() const;  // fraction in [0, 1]
  const PerplexityAccumulator& ref_perplexity() const { return ref_; }
  const PerplexityAccumulator& test_perplexity() const { return test_; }
  double delta_ppl() const { return test_.ppl() - ref_.ppl(); }  // test − ref
  // Standard error of ΔPPL by the delta method on the paired per-token NLLs: the gradient of
  // exp(m_t) − exp(m_r) is (ppl_t, −ppl_r) and the means' covariance is cov(nll_t, nll_r)/n, so the
  // strong correlation between the runs makes this much smaller than the two stderrs combined.
  double delta_ppl_stderr() const;

  struct Summary {
    std::size_t tokens = 0;
    double kld_mean = 0, kld_mean_stderr = 0, kld_median = 0, kld_p99 = 0, kld_max = 0;
    double top1_agree = 0;
    double ppl_ref = 0, ppl_test = 0, delta_ppl = 0, delta_ppl_stderr = 0;
  };
  Summary summary() const;

 private:
  std::vector<double> kld_;
  std::size_t top1_hits_ = 0;
  PerplexityAccumulator ref_, test_;
  double co_moment_ = 0;  // Σ (nll_ref - mean_ref)(nll_test - mean_test), Welford-style
};

// ---------------------------------------------------------------------------------------------
// Logits file (format above).

enum class LogitsDtype : std::uint32_t { kFloat32 = 1, kFloat16 = 2 };

struct LogitsFileInfo {
  std::uint32_t version = 0;
  LogitsDtype dtype = LogitsDtype::kFloat16;
  std::uint32_t n_vocab = 0;
  std::uint64_t n_tokens = 0;
  std::string metadata;
  std::uint64_t header_bytes() const { return 32 + metadata.size(); }
  std::uint64_t record_bytes() const;
};

inline constexpr char kLogitsMagic[8] = {'T', 'Q', 'L', 'O', 'G', 'I', 'T', '1'};
inline constexpr std::uint32_t kLogitsVersion = 1;

// Streams records to a file. The records go to PATH.tmp.PID, which finish() renames over PATH: a
// crashed run leaves PATH as it was, and two runs saving to one path leave one whole file, never
// a mix. The header's token count is written as "unfinished" and patched by finish(), so a
// temporary file that is read anyway is rejected rather than taken as a short one.
class LogitsWriter {
 public:
  LogitsWriter(const std::filesystem::path& path, std::uint32_t n_vocab,
               LogitsDtype dtype = LogitsDtype::kFloat16, std::string metadata = {});
  ~LogitsWriter();  // finishes if finish() was not called (errors are swallowed there)
  LogitsWriter(const LogitsWriter&) = delete;
  LogitsWriter& operator=(const LogitsWriter&) = delete;

  // logits.size() must be n_vocab, target in [0, n_vocab), no NaN/+inf, not all -inf.
  void write(TokenId target, std::span<const float> logits);
  void finish();  // patches the token count and closes; throws std::runtime_error on I/O errors
  std::uint64_t count() const { return count_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
  std::filesystem::path tmp_path_;  // written here, renamed to path_ by finish()
  LogitsFileInfo info_;
  std::uint64_t count_ = 0;
  bool finished_ = false;
  std::vector<unsigned char> buffer_;
};

class LogitsReader {
 public:
  explicit LogitsReader(const std::filesystem::path& path);
  const LogitsFileInfo& info() const { return info_; }
  std::uint64_t position() const { return next_; }  // records read so far
  std::uint64_t remaining() const { return info_.n_tokens - next_; }
  // Reads the next record into `logits` (size n_vocab; values are the stored, max-shifted row).
  // Returns false after the last record. Throws std::runtime_error on a corrupt record.
  bool next(TokenId& target, std::span<float> logits);

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  LogitsFileInfo info_;
  std::uint64_t next_ = 0;
  std::vector<unsigned char> buffer_;
};

}  // namespace tq::eval
