// `tq calibrate` end to end on a 2-layer random model (tq make-model): it writes a plan that
// `--kv plan=FILE` runs, a plan for another model is refused, and bad options are clear errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

const std::filesystem::path kTq = TQ_BINARY_DIR "/tools/tq";

struct RunResult {
  int status = -1;
  std::string output;
};

RunResult run_tq(const std::string& args) {
  RunResult r;
  FILE* pipe = popen((kTq.string() + " " + args + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  r.status = pclose(pipe);
  return r;
}

bool has(const RunResult& r, const std::string& text) {
  return r.output.find(text) != std::string::npos;
}

TEST(TqCalibrateCli, PlanRunsAndBadInputIsRefused) {
  if (!std::filesystem::exists(kTq)) GTEST_SKIP() << kTq << " not built";
  const auto dir =
      std::filesystem::temp_directory_path() / ("tq_cli_calibrate_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string model = (dir / "m.gguf").string();
  const std::string other = (dir / "m3.gguf").string();
  const std::string text = (dir / "t.txt").string();
  const std::string plan = (dir / "p.json").string();
  std::ofstream(text) << "the quick brown fox jumps over the lazy dog. " << std::string(200, 'a')
                      << " one two three four five six seven eight nine ten eleven twelve";
  ASSERT_EQ(run_tq("make-model --shape smollm2-135m --layers 2 -q -o " + model).status, 0);
  ASSERT_EQ(run_tq("make-model --shape smollm2-135m --layers 3 -q -o " + other).status, 0);
  const std::string base = "calibrate -m " + model + " -f " + text + " -t 1 -q -c 16 ";
  RunResult r = run_tq(base + "--budget 3 --candidates 2,4 -o " + plan);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(has(r, "bits/value (budget 3)")) << r.output;
  EXPECT_TRUE(std::filesystem::exists(plan));
  // The plan runs and a plan for another layer count is an error naming both.
  r = run_tq("perplexity -m " + model + " -f " + text + " -c 16 --chunks 1 -t 1 --kv plan=" + plan +
             ",window=0");
  EXPECT_EQ(r.status, 0) << r.output;
  r = run_tq("perplexity -m " + other + " -f " + text + " -c 16 --chunks 1 -t 1 --kv plan=" + plan);
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(has(r, "has 2 layers; this model has 3")) << r.output;
  // Bad options.
  r = run_tq(base + "--budget 1.5 --candidates 2,4 -o " + (dir / "q.json").string());
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(has(r, "budget 1.5 bits/value is below")) << r.output;
  r = run_tq(base + "--budget 3 --candidates 2,3.3 -o " + (dir / "q.json").string());
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(has(r, "3.3 bits")) << r.output;
  r = run_tq(base + "-o " + (dir / "q.json").string());
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(has(r, "--budget")) << r.output;
  r = run_tq(base + "--budget 3 --candidates 2,4 --from-table " + text + " -o " +
             (dir / "q.json").string());
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(has(r, "is not a table written by --table")) << r.output;
  std::filesystem::remove_all(dir);
}

}  // namespace
