// What `tq generate` and `tq compare` report about a run: the KV cache's bytes against fp16,
// how many of its tokens are actually stored compressed (TurboQuant schemes keep the most
// recent tokens in an fp16 window, so a short chat compresses nothing), and the prefill and
// decode speed; as JSON fields and as text.
#pragma once

#include "turboquant/eval/compare.hpp"
#include "turboquant/model/model.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

namespace tq::cli {

struct KvCacheReport {
  std::size_t context_tokens = 0;  // tokens held
  std::size_t kv_bytes = 0;
  std::size_t kv_fp16_bytes = 0;  // the same tokens in fp16
  double kv_ratio = 0;
  double kv_bits_per_value = 0;
  int kv_window = 0;  // the scheme's fp16 window of recent tokens (0: none)
  // Tokens in the compressed segment of the layers that compress (0 while the window holds
  // them all); 0 as well for a scheme that compresses nothing (compresses = false).
  std::size_t kv_compressed_tokens = 0;
  bool compresses = false;  // some layer stores keys or values in a compressed format
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(KvCacheReport, context_tokens, kv_bytes, kv_fp16_bytes, kv_ratio,
                                   kv_bits_per_value, kv_window, kv_compressed_tokens)

KvCacheReport kv_cache_report(const Session& session);

// What the fp16 window holds, for a scheme with one: "window of 128 fp16 tokens holds all 94
// tokens: nothing compressed yet" or "1403 of 1531 tokens compressed, the last 128 in the fp16
// window". Empty for schemes without a window or that compress nothing.
std::string kv_window_note(const KvCacheReport& kv);

// JSON fields prefill_seconds, prefill_tokens_per_second, decode_steps, decode_seconds,
// decode_tokens_per_second.
nlohmann::json timing_json(const eval::GenerationTiming& timing);

}  // namespace tq::cli
