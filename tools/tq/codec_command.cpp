// `tq codec`: measures a codec's distortion on random unit vectors and prints it next to the
// theoretical values and the bits per value actually stored.
#include "command_registry.hpp"
#include "common_options.hpp"

#include "turboquant/codec/distortion.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

namespace tq {
// The measured and theoretical values of --json.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(DistortionReport, vectors, mse, mse_theory, ip_distortion,
                                   ip_theory, ip_bias, ip_bias_stderr, ip_slope, ip_slope_stderr,
                                   bits_per_value)
}  // namespace tq

namespace tq::cli {
namespace {

struct CodecOptions {
  int dim = 128;
  double bits = 4.0;
  std::string codec = "mse";
  std::string rotation = "hadamard";
  std::size_t vectors = 20000;
  std::uint64_t seed = 1;
  bool norm_correction = false;
  bool json = false;
};
// The codec's parameters in --json.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CodecOptions, dim, bits, codec, rotation, norm_correction)

void run_codec(const CodecOptions& o) {
  CodecSpec spec;
  spec.dim = o.dim;
  spec.bits = o.bits;
  spec.kind = parse_codec_kind(o.codec);
  spec.rotation = parse_rotation_kind(o.rotation);
  spec.seed = o.seed;
  spec.norm_correction = o.norm_correction;
  const Codec codec(spec);
  const DistortionReport r = measure_distortion(codec, o.vectors, o.seed);
  if (o.json) {
    nlohmann::json j = o;
    j.update(nlohmann::json(r));
    j["bytes_per_vector"] = codec.layout().bytes_per_token();
    j["simd"] = codec.simd() == SimdLevel::Avx2 ? "avx2" : "scalar";
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("codec %s, d = %d, b = %g, rotation %s%s\n", o.codec.c_str(), o.dim, o.bits,
              o.rotation.c_str(), o.norm_correction ? ", norm correction" : "");
  std::printf("  stored: %zu bytes per vector = %.4f bits per value (codes + fp16 norm%s)\n",
              codec.layout().bytes_per_token(), r.bits_per_value,
              spec.kind == CodecKind::Prod ? "s" : "");
  std::printf("  %zu random unit vectors, %zu random unit queries\n", r.vectors, r.vectors);
  std::printf("  %-34s %10s %10s\n", "", "measured", "theory");
  std::printf("  %-34s %10.5f %10.5f\n", "d*MSE (reconstruction)", r.mse, r.mse_theory);
  std::printf("  %-34s %10.5f %10.5f\n", "d*E[(<q,x> - est)^2]", r.ip_distortion, r.ip_theory);
  std::printf("  %-34s %10.5f  (+- %.5f; 0 = unbiased)\n", "mean signed error, <q,x> ~ 0.7",
              r.ip_bias, r.ip_bias_stderr);
  std::printf("  %-34s %10.5f  (+- %.5f; 1 = unbiased)\n", "slope of est on <q,x>", r.ip_slope,
              r.ip_slope_stderr);
}

const CommandRegistrar registrar([](CLI::App& root) {
  auto options = std::make_shared<CodecOptions>();
  CLI::App* cmd =
      root.add_subcommand("codec", "Measure a codec's distortion on random unit vectors");
  cmd->add_option("--dim,-d", options->dim, "Vector dimension (head dim)")
      ->capture_default_str()
      ->check(in_range<int>(1, kMaxShapeSize));
  cmd->add_option("--bits,-b", options->bits, "Bits per coordinate (fractional: 2.5, 3.5, ...)")
      ->capture_default_str();
  cmd->add_option("--codec", options->codec, "mse | prod")->capture_default_str();
  cmd->add_option("--rotation", options->rotation, "hadamard | haar")->capture_default_str();
  cmd->add_option("--vectors,-n", options->vectors, "Number of random vectors")
      ->capture_default_str()
      ->check(in_range<std::size_t>(2, kMaxVectors));
  cmd->add_option("--seed", options->seed, "Random seed")
      ->capture_default_str()
      ->check(any_uint64());
  cmd->add_flag("--norm-correction", options->norm_correction, "Store n/|c[idx]| instead of n");
  cmd->add_flag("--json", options->json, "Print one JSON object");
  cmd->callback([options] { run_codec(*options); });
});

}  // namespace
}  // namespace tq::cli
