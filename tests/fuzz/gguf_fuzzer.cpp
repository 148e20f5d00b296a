// libFuzzer target for the GGUF parser (and the tokenizer built from its metadata): any input
// must either parse or raise an exception; crashes, sanitizer reports, hangs and huge
// allocations are bugs. Build with -DTQ_FUZZ=ON using clang; run e.g.
//   build/fuzz/tests/fuzz/tq_fuzz_gguf -max_len=4096 -rss_limit_mb=512 corpus/
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>

#include "turboquant/model/gguf.hpp"
#include "turboquant/model/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto file = tq::gguf::File::from_bytes(std::span<const std::uint8_t>(data, size));
    for (const auto& tensor : file.tensors()) {
      // The whole tensor: its size is bounded by the input, so this stays small.
      (void)file.dequantize(tensor);
    }
    for (const auto& [key, value] : file.metadata()) (void)value.to_string();
    if (file.has("tokenizer.ggml.model")) {
      try {
        const auto tok = tq::Tokenizer::from_gguf(file);
        const auto ids = tok.encode("Hello <s> world 123 \xc3\xa9\xf0\x9f\x8e\x89", true, true);
        (void)tok.decode(ids, true);
      } catch (const std::exception&) {
      }
    }
  } catch (const tq::gguf::FormatError&) {
  }
  return 0;
}
