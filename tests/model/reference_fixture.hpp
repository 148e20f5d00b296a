// The machinery of the reference-fixture tests (docs/reference_fixtures.md): our runner over a
// fixture's prompts (prefill logits at every position, greedy decoding) and the comparison with
// llama.cpp's top-k logits, log-probabilities and greedy continuations under stated tolerances.
// Shared by test_model_reference.cpp (SmolLM2) and test_gemma3_reference.cpp (Gemma 3).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "turboquant/model/model.hpp"
#include "turboquant/model/sampler.hpp"

namespace tq::testing {

constexpr int kMaxGreedy = 32;

// One prompt as our runner sees it: logits at every prompt position, then the greedy tokens and
// the logit row each was chosen from (row 0 is the last prompt position).
struct OurRun {
  std::vector<tq::TokenId> ids;
  std::vector<float> prompt_logits;  // ids.size() × n_vocab
  std::vector<tq::TokenId> greedy;
  std::vector<std::vector<float>> greedy_rows;
};

// Runs every fixture prompt through a session with the given cache: one batched prefill (all
// positions' logits kept when `keep_rows`), then greedy decoding one token per step until EOS or
// kMaxGreedy tokens.
inline std::vector<OurRun> run_prompts(const tq::Model& model, const nlohmann::json& fx,
                                       const std::string& cache, bool keep_rows) {
  const auto V = static_cast<std::size_t>(model.config().n_vocab);
  const auto eos = fx["meta"]["eos_id"].get<tq::TokenId>();
  tq::Session session(model, cache);
  std::vector<OurRun> runs;
  for (const auto& p : fx["prompts"]) {
    OurRun r;
    r.ids = p["ids"].get<std::vector<tq::TokenId>>();
    session.reset();
    std::span<const float> logits;
    if (keep_rows) {
      r.prompt_logits.resize(r.ids.size() * V);
      logits = session.eval(r.ids, r.prompt_logits.data());
    } else {
      logits = session.eval(r.ids);
    }
    for (int i = 0; i < kMaxGreedy; ++i) {
      const tq::TokenId t = tq::argmax(logits);
      r.greedy.push_back(t);
      if (keep_rows) r.greedy_rows.emplace_back(logits.begin(), logits.end());
      if (t == eos || i + 1 == kMaxGreedy) break;
      logits = session.decode(t);
    }
    runs.push_back(std::move(r));
  }
  return runs;
}

struct Tolerances {
  float logit;
  double logprob;
  float top1_margin;
  float greedy_margin;
};

struct Stats {
  float max_logit = 0.0f;         // over the reference top-10 at prompt positions
  double max_logprob = 0.0;       // same entries, as log-probabilities
  float max_greedy_logit = 0.0f;  // over the reference top-2 at compared greedy steps
  std::size_t top1_checked = 0, positions = 0;
  std::size_t greedy_compared = 0, greedy_total = 0, full_matches = 0;
};

inline double logsumexp(const float* row, std::size_t n) {
  double m = row[0], z = 0.0;
  for (std::size_t t = 0; t < n; ++t) m = std::max(m, static_cast<double>(row[t]));
  for (std::size_t t = 0; t < n; ++t) z += std::exp(row[t] - m);
  return m + std::log(z);
}

// Checks our runs (of the fixture's prompts, in order) against one fixture; failures are reported
// through gtest.
inline Stats compare(const std::vector<OurRun>& runs, const nlohmann::json& fx, std::size_t V,
                     const Tolerances& tol) {
  Stats st;
  EXPECT_EQ(fx["prompts"].size(), runs.size());
  for (std::size_t pi = 0; pi < runs.size() && pi < fx["prompts"].size(); ++pi) {
    const auto& p = fx["prompts"][pi];
    const OurRun& run = runs[pi];
    SCOPED_TRACE(p["name"].get<std::string>());
    if (p["ids"].get<std::vector<tq::TokenId>>() != run.ids) {
      ADD_FAILURE() << "the fixtures disagree on the prompt's token ids";
      continue;
    }
    for (std::size_t i = 0; i < run.ids.size(); ++i) {
      const auto& top = p["positions"][i]["top"];
      const float* row = &run.prompt_logits[i * V];
      const float ref_margin = top[0][1].get<float>() - top[1][1].get<float>();
      ++st.positions;
      if (ref_margin > tol.top1_margin) {
        ++st.top1_checked;
        EXPECT_EQ(tq::argmax({row, V}), top[0][0].get<tq::TokenId>())
            << "position " << i << " (reference margin " << ref_margin << ")";
      }
      const double lse = logsumexp(row, V);
      const double ref_lse = p["positions"][i]["logsumexp"].get<double>();
      for (const auto& entry : top) {
        const float ref_logit = entry[1].get<float>();
        const float ours = row[entry[0].get<std::size_t>()];
        const float diff = std::abs(ours - ref_logit);
        const double lp_diff = std::abs((ours - lse) - (ref_logit - ref_lse));
        st.max_logit = std::max(st.max_logit, diff);
        st.max_logprob = std::max(st.max_logprob, lp_diff);
        EXPECT_LT(diff, tol.logit) << "position " << i << " token " << entry[0];
        EXPECT_LT(lp_diff, tol.logprob) << "position " << i << " token " << entry[0];
      }
    }
    const auto ref = p["greedy"]["ids"].get<std::vector<tq::TokenId>>();
    const auto margins = p["greedy"]["margins"].get<std::vector<float>>();
    const auto& top2 = p["greedy"]["top2"];
    std::size_t k = 0;
    for (; k < ref.size() && k < run.greedy.size(); ++k) {
      if (run.greedy[k] != ref[k]) {
        if (margins[k] >= tol.greedy_margin) {
          ADD_FAILURE() << "greedy step " << k << ": ours " << run.greedy[k] << ", reference "
                        << ref[k] << " (reference margin " << margins[k] << ")";
        }
        break;  // contexts differ from here on
      }
      for (const auto& entry : top2[k]) {
        const float diff =
            std::abs(run.greedy_rows[k][entry[0].get<std::size_t>()] - entry[1].get<float>());
        st.max_greedy_logit = std::max(st.max_greedy_logit, diff);
        EXPECT_LT(diff, tol.logit) << "greedy step " << k << " token " << entry[0];
      }
    }
    st.greedy_compared += k;
    st.greedy_total += ref.size();
    st.full_matches += run.greedy == ref;
  }
  return st;
}

inline void print(const char* name, const Stats& st, std::size_t n_prompts) {
  std::printf(
      "%s: max |logit diff| over reference top-10 %.4f (log-prob %.4f), over greedy top-2 %.4f; "
      "top-1 checked at %zu of %zu positions; greedy steps compared %zu of %zu; prompts whose "
      "whole greedy run matches: %zu of %zu\n",
      name, st.max_logit, st.max_logprob, st.max_greedy_logit, st.top1_checked, st.positions,
      st.greedy_compared, st.greedy_total, st.full_matches, n_prompts);
}

}  // namespace tq::testing
