// The forward step of forward_pass.hpp: the order of operations of a Llama-family block (and
// of Gemma 3's, which adds QK-norm and a norm on each sub-block's output), the only place it is
// spelled out.
#include "forward_pass.hpp"

#include <cstring>

namespace tq::detail {

void forward_step(ForwardBackend& be, const ModelConfig& c, const TokenId* tokens,
                  const StepRows& rows, float* all_logits, float* last_logits) {
  const int n = rows.count;
  be.embed(tokens, rows);
  for (int l = 0; l < c.n_layers; ++l) {
    be.rms_norm(Act::X, NormWeight::Attention, l, Act::Xn, 0, n);
    be.matmul(Act::Xn, MatrixWeight::Qkv, l, Act::Qkv, 0, n, false);
    if (c.qk_norm) be.qk_norm(l, n);
    be.rope(rows, l);
    // Write the step into the cache first, then attend over what the cache holds.
    be.attention(l, rows);
    if (c.sandwich_norms) {  // x += norm(W_o · att): Xn is free once Q/K/V are formed
      be.matmul(Act::Att, MatrixWeight::AttentionOut, l, Act::Xn, 0, n, false);
      be.rms_norm_add(Act::Xn, NormWeight::PostAttention, l, Act::X, n);
    } else {
      be.matmul(Act::Att, MatrixWeight::AttentionOut, l, Act::X, 0, n, true);
    }

    be.rms_norm(Act::X, NormWeight::Ffn, l, Act::Xn, 0, n);
    be.matmul(Act::Xn, MatrixWeight::GateUp, l, Act::GateUp, 0, n, false);
    be.glu(n);
    if (c.sandwich_norms) {
      be.matmul(Act::GateUp, MatrixWeight::Down, l, Act::Xn, 0, n, false);
      be.rms_norm_add(Act::Xn, NormWeight::PostFfn, l, Act::X, n);
    } else {
      be.matmul(Act::GateUp, MatrixWeight::Down, l, Act::X, 0, n, true);
    }
  }
  // Logits of every row only when they are asked for: the vocabulary product is the largest.
  const int first = all_logits ? 0 : n - 1;
  const int count = all_logits ? n : 1;
  be.rms_norm(Act::X, NormWeight::Output, 0, Act::Xn, first, count);
  be.matmul(Act::Xn, MatrixWeight::Logits, 0, Act::Logits, first, count, false);
  const std::size_t V = static_cast<std::size_t>(c.n_vocab);
  if (all_logits) {
    be.read_logits(0, n, all_logits);
    std::memcpy(last_logits, all_logits + static_cast<std::size_t>(n - 1) * V, V * sizeof(float));
  } else {
    be.read_logits(n - 1, 1, last_logits);
  }
}

}  // namespace tq::detail
