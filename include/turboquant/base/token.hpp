// The token id type shared by the tokenizer, the model runner and the evaluation suite.
#pragma once

#include <cstdint>

namespace tq {

using TokenId = std::int32_t;

}  // namespace tq
