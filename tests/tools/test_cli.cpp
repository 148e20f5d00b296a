// Tests of the `tq` binary itself (skipped when it is not built): every model command declares
// the shared options (model with the one default path, threads, --kv) and exactly its own
// option list; bad arguments fail before any work; `tq generate` says when the fp16 window
// holds every token (nothing compressed); `tq compare` gives the fp16 reference first and
// compresses the rest on a longer prompt; `tq make-model` writes random models the tools run and
// mark as random.
#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>

namespace {

const std::filesystem::path kTq = TQ_BINARY_DIR "/tools/tq";
const std::filesystem::path kModel = TQ_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

struct RunResult {
  int status = -1;
  std::string output;  // stdout, then stderr when `merge`
};

RunResult run_command(const std::string& command) {
  RunResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  r.status = pclose(pipe);
  return r;
}

RunResult run_tq(const std::string& args, bool merge = true) {
  return run_command(kTq.string() + " " + args + (merge ? " 2>&1" : " 2>/dev/null"));
}

// run_tq under `timeout`: a command that runs past `seconds` is killed (status 124 from timeout).
RunResult run_tq_within(int seconds, const std::string& args) {
  return run_command("timeout " + std::to_string(seconds) + " " + kTq.string() + " " + args +
                     " 2>&1");
}

// The option names of a `tq CMD --help`, e.g. {"-m,--model", "--kv", ...}.
std::set<std::string> option_names(const std::string& help) {
  std::set<std::string> names;
  const std::regex line(R"(^  (-[-A-Za-z0-9,]+))");
  std::size_t start = 0;
  while (start < help.size()) {
    const std::size_t end = help.find('\n', start);
    const std::string text = help.substr(start, end - start);
    std::smatch m;
    if (std::regex_search(text, m, line)) names.insert(m[1]);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return names;
}

#define SKIP_WITHOUT_TQ() \
  if (!std::filesystem::exists(kTq)) GTEST_SKIP() << "tq not built: " << kTq

TEST(TqCli, ModelCommandsShareTheirOptionsAndKeepTheirOwn) {
  SKIP_WITHOUT_TQ();
  using Names = std::set<std::string>;
  const Names shared = {"-h,--help", "-m,--model", "-t,--threads", "--device", "--kv"};
  const std::vector<std::pair<std::string, Names>> commands = {
      {"generate",
       {"-p,--prompt", "-f,--file", "--prompt-tokens", "-n,--n-predict", "--chat", "--temp",
        "--top-p", "--top-k", "--seed", "--chunk", "--ignore-eos", "--json", "--prompts"}},
      {"perplexity",
       {"-f,--file", "-c,--ctx", "--stride", "--chunks", "--save-logits", "--kld", "--logits-f32",
        "-b,--batch", "--json", "-q,--quiet"}},
      {"bench",
       {"--contexts", "--steps", "--full", "--batch", "--prefill", "--memory-budget", "--out",
        "--plot", "--json", "-q,--quiet"}},
      {"niah",
       {"--mode", "--lengths", "--depths", "--seeds", "--seed", "--needles", "--haystack", "--plot",
        "--out", "--json-out", "--max-new", "--json", "-q,--quiet"}},
      {"sensitivity", {"-f,--file", "-c,--ctx", "--chunks", "--out", "--plot", "-q,--quiet"}},
      {"compare",
       {"-p,--prompt", "-f,--file", "--prompt-tokens", "-n,--n-predict", "--chunk", "--json",
        "-q,--quiet"}},
  };
  for (const auto& [name, own] : commands) {
    const RunResult r = run_tq(name + " --help");
    ASSERT_EQ(r.status, 0) << name;
    Names expected = shared;
    expected.insert(own.begin(), own.end());
    EXPECT_EQ(option_names(r.output), expected) << name;
    EXPECT_NE(r.output.find("-m,--model TEXT=models/SmolLM2-135M-Instruct.Q4_1.gguf"),
              std::string::npos)
        << name;
    EXPECT_NE(r.output.find("-t,--threads INT=0"), std::string::npos) << name;
  }
}

// --device takes cpu or cuda; cuda where it cannot run says why (no CUDA in the build, no
// visible device) instead of failing somewhere later.
TEST(TqCli, DeviceOptionIsCheckedAndCudaRefusalExplained) {
  SKIP_WITHOUT_TQ();
  const RunResult bad = run_tq("generate -p hi -n 1 --device gpu");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("gpu"), std::string::npos) << bad.output;
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "model missing: " << kModel;
  const RunResult cuda = run_tq("generate -m " + kModel.string() + " -p hi -n 1 --device cuda");
  if (cuda.status != 0) {
    const bool explained = cuda.output.find("no CUDA device is visible") != std::string::npos ||
                           cuda.output.find("no CUDA support") != std::string::npos;
    EXPECT_TRUE(explained) << cuda.output;
  }
}

// generate --prompts decodes the lines together (Session::decode_batch); greedy, each line's
// tokens equal what a run on that line alone produces.
TEST(TqCli, GeneratePromptsFileDecodesTheLinesTogether) {
  SKIP_WITHOUT_TQ();
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "model missing: " << kModel;
  const std::vector<std::string> lines = {"The capital of France is", "Once upon a time",
                                          "1, 2, 3, 4,"};
  const auto file = std::filesystem::temp_directory_path() / "tq_cli_prompts.txt";
  {
    std::ofstream out(file);
    out << lines[0] << "\n\n" << lines[1] << "\r\n" << lines[2] << "\n";
  }
  const std::string m = " -m " + kModel.string() + " -t 2 -n 6 --ignore-eos --json";
  const RunResult batch = run_tq("generate --prompts " + file.string() + m, false);
  ASSERT_EQ(batch.status, 0) << batch.output;
  const nlohmann::json j = nlohmann::json::parse(batch.output);
  EXPECT_EQ(j["batch"], 3);
  ASSERT_EQ(j["sequences"].size(), 3u);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const RunResult one = run_tq("generate -p '" + lines[i] + "'" + m, false);
    ASSERT_EQ(one.status, 0) << one.output;
    const nlohmann::json k = nlohmann::json::parse(one.output);
    EXPECT_EQ(j["sequences"][i]["prompt"], lines[i]);
    EXPECT_EQ(j["sequences"][i]["generated_ids"], k["generated_ids"]) << lines[i];
  }
  EXPECT_NE(run_tq("generate --prompts " + file.string() + " -p hi" + m).status, 0);
  std::filesystem::remove(file);
}

// A scheme with several options (commas inside) reaches kv-size whole; --kv repeats for several.
TEST(TqCli, KvSizeTakesSchemesWithSeveralOptions) {
  SKIP_WITHOUT_TQ();
  const RunResult one =
      run_tq("kv-size -m smollm2-135m -c 4096 --kv tq3.5:protect=1/1,window=64 --json", false);
  ASSERT_EQ(one.status, 0) << one.output;
  const nlohmann::json j = nlohmann::json::parse(one.output);
  EXPECT_TRUE(j.is_object()) << one.output;
  const RunResult two = run_tq("kv-size -m smollm2-135m -c 4096 --kv fp16 --kv tq4 --json", false);
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_EQ(nlohmann::json::parse(two.output).size(), 2u);
}

TEST(TqCli, CompareRefusesBadArguments) {
  SKIP_WITHOUT_TQ();
  EXPECT_NE(run_tq("compare").status, 0);  // no prompt
  EXPECT_NE(run_tq("compare -p hello -n 0").status, 0);
  EXPECT_NE(run_tq("compare -p hello --kv tq9").status, 0);
  EXPECT_NE(run_tq("compare -f /nonexistent/text.raw").status, 0);
}

// The evaluation commands refuse bad arguments with a non-zero exit before loading anything.
TEST(TqCli, EvalCommandsRefuseBadArguments) {
  SKIP_WITHOUT_TQ();
  const auto run = [](const std::string& args) { return run_tq(args).status; };
  EXPECT_EQ(run("perplexity --help"), 0);  // the harness itself works
  EXPECT_NE(run("perplexity"), 0);         // -f is required
  EXPECT_NE(run("perplexity -f /nonexistent/text.raw"), 0);
  EXPECT_NE(run("perplexity -f x --kv tq9"), 0);
  EXPECT_NE(run("perplexity -f x --save-logits a --kld b"), 0);
  EXPECT_NE(run("niah --mode sideways"), 0);
  EXPECT_NE(run("niah --depths 150 -m /nonexistent.gguf"), 0);
  EXPECT_NE(run("bench --steps 0"), 0);
  EXPECT_NE(run("sensitivity -f x --kv fp16"), 0);
}

// Every integer option and scheme number is range-checked before any work: the message names the
// option, the value and the accepted range (a negative value once wrapped to 2^64 - 1, an
// oversized one to its low bits), and an absurd size fails at once instead of running for minutes.
TEST(TqCli, BadIntegersNameTheOptionTheValueAndTheRange) {
  SKIP_WITHOUT_TQ();
  const std::string m = " -m " + kModel.string() + " ";
  const std::string text = " -f " TQ_SOURCE_DIR "/docs/DESIGN.md ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"kv-size -m smollm2-135m -c -1", "--context: -1 is out of range; expected 1..1073741824"},
      {"kv-size --layers 2000000000 --kv-heads 8 --head-dim 128 -c 4096",
       "--layers: 2000000000 is out of range; expected 1..65536"},
      {"kv-size --layers 30 --kv-heads 3 --head-dim 0",
       "--head-dim: 0 is out of range; expected 1..65536"},
      {"kv-size -m smollm2-135m -c 4096 --kv tq3:window=4294967301",
       "window: 4294967301 is out of range; expected 0..2147483647"},
      {"kv-size -m smollm2-135m -c 4096 --kv tq3:protect=4294967295/0",
       "protect first: 4294967295 is out of range; expected 0..65536"},
      {"kv-size -m smollm2-135m -c 4096 --kv tq3:protect=2147483648/1",
       "protect first: 2147483648 is out of range; expected 0..65536"},
      {"kv-size -m smollm2-135m -c 4096 --kv tq3:protect=99/99",
       "protect=99/99 names 198 layers, the model has 30; expected first + last <= 30"},
      {"codec -n -1", "--vectors: -1 is out of range; expected 2..1000000000"},
      {"perplexity" + m + text + "-c -5", "--ctx: -5 is out of range; expected 2..1073741824"},
      {"perplexity" + m + text + "--chunks -1",
       "--chunks: -1 is out of range; expected 0..1073741824"},
      {"sensitivity" + m + text + "--chunks 0",
       "--chunks: 0 is out of range; expected 1..1073741824"},
      {"sensitivity" + m + text + "-c 2", "--ctx: 2 is out of range; expected 3..1073741824"},
      {"sensitivity" + m + text + "--chunks -1",
       "--chunks: -1 is out of range; expected 1..1073741824"},
      {"generate" + m + "-p hi -t -1", "--threads: -1 is out of range; expected 0..4096"},
      {"generate" + m + "-p hi --seed -1",
       "--seed: -1 is out of range; expected 0..18446744073709551615"},
      {"niah" + m + "--lengths 1024,-2048", "--lengths: -2048 is out of range; expected 1.."},
      {"bench" + m + "--contexts 0", "--contexts: 0 is out of range; expected 2.."},
  };
  for (const auto& [args, message] : cases) {
    const RunResult r = run_tq_within(30, args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.output.find(message), std::string::npos)
        << "tq " << args << "\n  printed: " << r.output << "\n  expected: " << message;
  }
  // The largest accepted values still work, and shapes given in full are not "missing".
  const RunResult ok = run_tq_within(30,
                                     "kv-size --layers 65536 --kv-heads 3 --head-dim 64 "
                                     "-c 1073741824 --kv tq3:protect=65536/0 --json");
  EXPECT_EQ(ok.status, 0) << ok.output;
}

// What a too small perplexity window and a protect=F/L beyond the model's layers say once a model
// is loaded: the smallest accepted context, and the model's layer count.
TEST(TqCli, ModelChecksNameWhatIsAccepted) {
  SKIP_WITHOUT_TQ();
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "model missing: " << kModel;
  const std::string m = " -m " + kModel.string() + " -t 2 ";
  const RunResult small =
      run_tq("perplexity" + m + "-f " TQ_SOURCE_DIR "/docs/DESIGN.md -c 2 --chunks 1");
  EXPECT_NE(small.status, 0);
  EXPECT_NE(small.output.find("-c 2 scores no token"), std::string::npos) << small.output;
  EXPECT_NE(small.output.find("expected at least 3"), std::string::npos) << small.output;
  const RunResult protect = run_tq("generate" + m + "-p hi -n 1 --kv tq3:protect=99/99");
  EXPECT_NE(protect.status, 0);
  EXPECT_NE(protect.output.find("the model has 30"), std::string::npos) << protect.output;
}

TEST(TqCli, GenerateSaysWhenTheWindowHoldsEveryToken) {
  SKIP_WITHOUT_TQ();
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "model missing: " << kModel;
  const std::string base = "generate -m " + kModel.string() + " -p 'The sky is' -n 4 -t 2 ";
  const RunResult windowed = run_tq(base + "--kv tq4");
  ASSERT_EQ(windowed.status, 0) << windowed.output;
  EXPECT_TRUE(std::regex_search(
      windowed.output,
      std::regex("window of 128 fp16 tokens holds all [0-9]+ tokens: nothing compressed yet")))
      << windowed.output;
  const RunResult smaller = run_tq(base + "--kv tq4:window=2");
  ASSERT_EQ(smaller.status, 0) << smaller.output;
  EXPECT_TRUE(std::regex_search(
      smaller.output, std::regex("[0-9]+ of [0-9]+ tokens compressed, the last 2 in the fp16")))
      << smaller.output;
  for (const char* scheme : {"fp16", "q4r"}) {
    const RunResult r = run_tq(base + "--kv " + scheme);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(r.output.find("compressed"), std::string::npos) << scheme << ": " << r.output;
  }
}

TEST(TqCli, CompareRowsOnARealModel) {
  SKIP_WITHOUT_TQ();
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "model missing: " << kModel;
  const RunResult r =
      run_tq("compare -m " + kModel.string() + " -f " TQ_SOURCE_DIR "/docs/DESIGN.md" +
                 " --prompt-tokens 160 -n 4 -t 2 --kv tq4:window=32 --kv fp16 --kv q4r --json",
             /*merge=*/false);
  ASSERT_EQ(r.status, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["prompt_tokens"], 160);
  EXPECT_EQ(j["generated_tokens"], 4);
  const nlohmann::json& rows = j["rows"];
  ASSERT_EQ(rows.size(), 3u);  // fp16 once, first, however often it is asked for
  EXPECT_EQ(rows[0]["kv"], "fp16");
  EXPECT_EQ(rows[0]["common_prefix"], 4);
  EXPECT_EQ(rows[0]["kld_mean"], 0.0);
  EXPECT_EQ(rows[0]["kv_ratio"], 1.0);
  EXPECT_EQ(rows[1]["kv"], "tq4:window=32");
  EXPECT_EQ(rows[2]["kv"], "q4r");
  const std::size_t context = 160 + 4 - 1;  // the last generated token is never run
  for (const auto& row : rows) {
    EXPECT_EQ(row["context_tokens"], context) << row["kv"];
    EXPECT_EQ(row["decode_steps"], 3) << row["kv"];
    EXPECT_GE(row["top1_agree"].get<double>(), 0.0);
    EXPECT_LE(row["top1_agree"].get<double>(), 1.0);
    EXPECT_LE(row["common_prefix"].get<int>(), 4);
  }
  EXPECT_EQ(rows[1]["kv_compressed_tokens"], context - 32);
  EXPECT_EQ(rows[2]["kv_compressed_tokens"], context);
  EXPECT_LT(rows[1]["kv_ratio"].get<double>(), 1.0);
  EXPECT_LT(rows[2]["kv_ratio"].get<double>(), 0.3);
  EXPECT_GT(rows[2]["kld_mean"].get<double>(), 0.0);
}

// `tq make-model`: a 2-layer smollm2-shaped file that `tq info` and `tq generate` accept and call
// random; the same seed gives the same bytes (whatever the threads), another seed other bytes.
TEST(TqCli, MakeModelWritesARandomModelTheToolsRun) {
  SKIP_WITHOUT_TQ();
  const auto dir =
      std::filesystem::temp_directory_path() / ("tq_cli_make_model_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto make = [&](const std::string& name, const std::string& args) {
    const std::string path = (dir / name).string();
    const RunResult r =
        run_tq("make-model --shape smollm2-135m --layers 2 -o " + path + " " + args);
    EXPECT_EQ(r.status, 0) << r.output;
    return path;
  };
  const std::string a = make("a.gguf", "--seed 3 -t 1");
  const std::string b = make("b.gguf", "--seed 3 -t 2 -q");
  const std::string c = make("c.gguf", "--seed 4 -q");
  const auto bytes = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(bytes(a), bytes(b));
  EXPECT_NE(bytes(a), bytes(c));
  EXPECT_EQ(bytes(a).size(), bytes(c).size());

  const std::string note = "note: " + a +
                           " has random weights (tq make-model): speed and agreement tests only, "
                           "not quality";
  const RunResult info = run_tq("info " + a);
  ASSERT_EQ(info.status, 0) << info.output;
  EXPECT_NE(info.output.find("random smollm2-135m seed 3"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("layers:         2"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find(note), std::string::npos) << info.output;
  const RunResult gen = run_tq("generate -m " + a + " -p 'The sky is' -n 4 -t 2 --json");
  ASSERT_EQ(gen.status, 0) << gen.output;
  EXPECT_NE(gen.output.find(note), std::string::npos) << gen.output;
  EXPECT_NE(gen.output.find("\"generated_tokens\": 4"), std::string::npos) << gen.output;
  // The real model carries no such note.
  if (std::filesystem::exists(kModel)) {
    EXPECT_EQ(run_tq("info " + kModel.string()).output.find("random weights"), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

TEST(TqCli, MakeModelRefusesBadArguments) {
  SKIP_WITHOUT_TQ();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"make-model --shape llama-2 -o /tmp/x.gguf",
       "unknown model shape 'llama-2' (expected one of llama-3.1-8b, qwen2.5-7b, mistral-7b, "
       "smollm2-135m, gemma3-270m)"},
      {"make-model --shape smollm2-135m --weights q5_k -o /tmp/x.gguf",
       "unknown weights type 'q5_k' (expected q4_0, q8_0, f16, bf16 or f32)"},
      {"make-model --shape smollm2-135m --layers 1 -o /nonexistent/dir/x.gguf",
       "-o /nonexistent/dir/x.gguf: directory '/nonexistent/dir' does not exist"},
      {"make-model --shape smollm2-135m --layers -1 -o /tmp/x.gguf",
       "--layers: -1 is out of range; expected 0..65536"},
      {"make-model --shape smollm2-135m --seed -1 -o /tmp/x.gguf",
       "--seed: -1 is out of range; expected 0..18446744073709551615"},
      {"make-model --shape smollm2-135m", "--out is required"},
      {"make-model -o /tmp/x.gguf", "--shape is required"},
  };
  for (const auto& [args, message] : cases) {
    const RunResult r = run_tq_within(30, args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.output.find(message), std::string::npos)
        << "tq " << args << "\n  printed: " << r.output << "\n  expected: " << message;
  }
  EXPECT_FALSE(std::filesystem::exists("/tmp/x.gguf.tmp"));
}

}  // namespace

// Outputs (issue 17): never over an input, checked before the work, written whole or not at all.
TEST(TqCli, OutputsNeverOverwriteInputsAndAreCheckedFirst) {
  SKIP_WITHOUT_TQ();
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "model missing: " << kModel;
  const auto dir =
      std::filesystem::temp_directory_path() / ("tq_cli_out_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto text = dir / "text.txt";
  {
    std::ofstream out(text);
    for (int i = 0; i < 40; ++i) out << "The quick brown fox jumps over the lazy dog. ";
  }
  const auto size_before = std::filesystem::file_size(text);
  // A copy of the model: a tq without the check (the one before the fix) would overwrite -m.
  const auto model = dir / "model.gguf";
  std::filesystem::copy_file(kModel, model);
  const std::string m = " -m " + model.string() + " -t 2 -q";
  const std::string ppl = "perplexity -f " + text.string() + " -c 64 --chunks 1" + m;
  // --save-logits onto the -f text or the -m model is refused before anything runs.
  RunResult r = run_tq(ppl + " --save-logits " + text.string());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("is an input of this run"), std::string::npos) << r.output;
  EXPECT_EQ(std::filesystem::file_size(text), size_before);
  EXPECT_NE(run_tq(ppl + " --save-logits " + model.string()).status, 0);
  // Unwritable destinations fail at once, and nothing creates missing directories.
  r = run_tq("niah --json-out " + (dir / "missing" / "x.json").string() + m);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "missing"));
  r = run_tq("sensitivity -f " + text.string() + " --out " + (dir / "missing" / "s").string() + m);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  EXPECT_NE(
      run_tq("make-model --shape smollm2-135m -o " + (dir / "missing" / "m.gguf").string()).status,
      0);
  // A reference saved on one text is refused by --kld on another of the same token count.
  const auto logits = dir / "ref.logits";
  ASSERT_EQ(run_tq(ppl + " --save-logits " + logits.string()).status, 0);
  EXPECT_TRUE(std::filesystem::exists(logits));
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();  // renamed away
  }
  EXPECT_EQ(run_tq(ppl + " --kld " + logits.string()).status, 0);
  const auto other = dir / "other.txt";
  {
    std::ofstream out(other);
    for (int i = 0; i < 40; ++i) out << "The quick brown cat jumps over the lazy dog. ";
  }
  r = run_tq("perplexity -f " + other.string() + " -c 64 --chunks 1" + m + " --kld " +
             logits.string());
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("another text"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}
