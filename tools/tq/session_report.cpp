// The KV-cache and speed summaries of `tq generate` and `tq compare` (session_report.hpp).
#include "session_report.hpp"

namespace tq::cli {

KvCacheReport kv_cache_report(const Session& session) {
  const KvSizeBreakdown bytes = session.kv_bytes();
  KvCacheReport r;
  r.context_tokens = session.position();
  r.kv_bytes = bytes.bytes;
  r.kv_fp16_bytes = bytes.fp16_bytes;
  r.kv_ratio = bytes.ratio();
  r.kv_bits_per_value = bytes.bits_per_value;
  r.kv_window = session.scheme().window;
  r.compresses = session.compresses();
  r.kv_compressed_tokens = session.compressed_tokens();
  return r;
}

std::string kv_window_note(const KvCacheReport& kv) {
  if (!kv.compresses || kv.kv_window <= 0) return "";
  const std::string window = std::to_string(kv.kv_window);
  if (kv.kv_compressed_tokens == 0) {
    return "window of " + window + " fp16 tokens holds all " + std::to_string(kv.context_tokens) +
           " tokens: nothing compressed yet";
  }
  return std::to_string(kv.kv_compressed_tokens) + " of " + std::to_string(kv.context_tokens) +
         " tokens compressed, the last " + window + " in the fp16 window";
}

nlohmann::json timing_json(const eval::GenerationTiming& t) {
  return {{"prefill_seconds", t.prefill_seconds},
          {"prefill_tokens_per_second", t.prefill_tokens_per_second()},
          {"decode_steps", t.decode_steps},
          {"decode_seconds", t.decode_seconds},
          {"decode_tokens_per_second", t.decode_tokens_per_second()}};
}

}  // namespace tq::cli
