// `tq report-plot --json bench/results/quality.json --out PNG`: the quality-vs-size chart of the
// report (scripts/report.sh runs the sweep and writes quality.json): mean KLD against the fp16
// cache versus stored bits per value, one line per scheme family, log y axis.
#include "command_registry.hpp"

#include "turboquant/eval/plot.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

namespace tq::cli {
namespace {

struct ReportPlotOptions {
  std::string json;
  std::string out;
};

// Groups a scheme string into the family it is drawn with.
std::string family(const std::string& kv) {
  const std::string base = kv.substr(0, kv.find(':'));
  const std::string opts = kv.find(':') == std::string::npos ? "" : kv.substr(kv.find(':') + 1);
  std::string name;
  if (base == "q8" || base == "q4") {
    name = "int block";
  } else if (base == "q8r" || base == "q4r") {
    name = "int block + rotation";
  } else {
    name =
        opts.find("kcodec=prod") != std::string::npos ? "TurboQuant prod keys" : "TurboQuant MSE";
  }
  if (opts.find("protect=") != std::string::npos) name += ", protect";
  if (opts.find("window=") != std::string::npos) name += ", window";
  return name;
}

void run(const ReportPlotOptions& o) {
  std::ifstream in(o.json);
  if (!in) throw std::runtime_error("cannot read '" + o.json + "'");
  const nlohmann::json j = nlohmann::json::parse(in);
  if (!j.contains("rows") || !j["rows"].is_array()) {
    throw std::runtime_error("'" + o.json + "' has no \"rows\" array (not a quality.json?)");
  }
  std::map<std::string, eval::Series> series;
  for (const auto& r : j["rows"]) {
    const std::string kv = r.at("kv").get<std::string>();
    if (kv == "fp16" || r["bits_per_value"].is_null()) continue;
    const double kld = std::max(r.at("kld_mean").get<double>(), 1e-6);
    auto& s = series[family(kv)];
    s.name = family(kv);
    s.points.emplace_back(r.at("bits_per_value").get<double>(), kld);
  }
  if (series.empty()) throw std::runtime_error("no compressed schemes in '" + o.json + "'");
  eval::LineChartSpec chart;
  chart.title = "Mean KLD vs fp16 cache against stored bits per value";
  chart.x_label = "bits per value (codes + norms/scales)";
  chart.y_label = "mean KLD (nats)";
  chart.log_y = true;
  for (auto& [name, s] : series) {
    std::sort(s.points.begin(), s.points.end());
    chart.series.push_back(s);
  }
  eval::write_png(eval::render_line_chart(chart), o.out);
}

const CommandRegistrar kRegister([](CLI::App& root) {
  auto o = std::make_shared<ReportPlotOptions>();
  CLI::App* cmd =
      root.add_subcommand("report-plot", "KLD vs bits/value chart from the report's quality.json");
  cmd->add_option("--json", o->json, "quality.json written by scripts/report.sh")->required();
  cmd->add_option("--out", o->out, "PNG to write")->required();
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace tq::cli
