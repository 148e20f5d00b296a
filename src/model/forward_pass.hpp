// One forward step of the Llama-family transformer over a ForwardBackend: embeddings, then per
// layer RMSNorm → fused Q/K/V projection (+bias) → RoPE → append K/V to the layer's cache →
// attention over what the cache holds → output projection added to the residual → RMSNorm →
// SwiGLU MLP added to the residual; final RMSNorm and logits. Written once for every device.
#pragma once

#include "forward_backend.hpp"
#include "turboquant/model/model.hpp"

namespace tq::detail {

// Runs the step's tokens. With all_logits (host, [rows.count][n_vocab]) every row's logits are
// written there; last_logits (host, n_vocab) always receives the last row's.
void forward_step(ForwardBackend& backend, const ModelConfig& config, const TokenId* tokens,
                  const StepRows& rows, float* all_logits, float* last_logits);

}  // namespace tq::detail
