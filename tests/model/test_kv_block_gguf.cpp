// The KV cache's llama.cpp block baselines (src/cache/block_int.hpp) read by the GGUF loader's
// own dequantizer (tq::gguf::dequantize, src/model/dequantize.cpp): a row quantized by the cache
// and laid out as GGUF blocks (fp16 d, [m], [qh], qs) dequantizes to exactly the values the cache
// decodes, for q8_0, q4_0, q4_1 and q5_0 (the loader has no iq4_nl; tests/cache checks it against
// the block definition). Lives here because tq_cache does not link tq_model.
#include "cache/block_int.hpp"
#include "turboquant/base/half.hpp"
#include "turboquant/model/gguf.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace tq {
namespace {

TEST(KvBlockGguf, CacheBlocksDequantizeLikeTheGgufLoader) {
  const struct {
    blockint::Format format;
    gguf::TensorType type;
  } cases[] = {{blockint::Format::Q8_0, gguf::TensorType::kQ8_0},
               {blockint::Format::Q4_0, gguf::TensorType::kQ4_0},
               {blockint::Format::Q4_1, gguf::TensorType::kQ4_1},
               {blockint::Format::Q5_0, gguf::TensorType::kQ5_0}};
  std::mt19937 rng(16);
  std::normal_distribution<float> g(0.0f, 1.0f);
  constexpr int kDim = 256;  // 8 blocks
  for (const auto& c : cases) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> x(kDim);
      const float sd = std::pow(10.0f, static_cast<float>(trial % 5) - 2.0f);
      for (auto& v : x) v = g(rng) * sd;
      if (trial % 4 == 1) x[rng() % kDim] = -40.0f * sd;           // a negative outlier
      if (trial == 2) std::fill(x.begin(), x.begin() + 32, 0.0f);  // one all-zero block
      const int hp = blockint::halves_per_block(c.format);
      const std::size_t block_codes = blockint::block_code_bytes(c.format, 32);
      std::vector<std::uint8_t> codes(blockint::row_code_bytes(c.format, kDim));
      std::vector<half_bits> halves(blockint::row_halves(c.format, kDim));
      blockint::quantize(c.format, x.data(), kDim, codes.data(), halves.data());
      std::vector<std::uint8_t> row;
      for (int b = 0; b < kDim / 32; ++b) {
        for (int i = 0; i < hp; ++i) {
          row.push_back(static_cast<std::uint8_t>(halves[b * hp + i] & 0xff));
          row.push_back(static_cast<std::uint8_t>(halves[b * hp + i] >> 8));
        }
        row.insert(row.end(), codes.begin() + b * block_codes,
                   codes.begin() + (b + 1) * block_codes);
      }
      ASSERT_EQ(row.size(), gguf::row_bytes(c.type, kDim)) << gguf::tensor_type_name(c.type);
      std::vector<float> loader(kDim, NAN), cache(kDim, NAN);
      gguf::dequantize(c.type, row.data(), loader.data(), kDim);
      blockint::dequantize(c.format, codes.data(), halves.data(), kDim, cache.data());
      for (int j = 0; j < kDim; ++j) {
        ASSERT_EQ(cache[j], loader[j])
            << gguf::tensor_type_name(c.type) << " trial " << trial << " value " << j;
      }
    }
  }
}

}  // namespace
}  // namespace tq
