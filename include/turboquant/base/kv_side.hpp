// Which half of an attention cache a vector belongs to. It selects a layer's key or value policy
// and is part of every seed derivation, so keys and values never share a rotation.
#pragma once

#include <cstdint>

namespace tq {

enum class KvSide : std::uint32_t { Key = 0, Value = 1 };

}  // namespace tq
