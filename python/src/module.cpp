// The extension module turboquant._core: registers the codec and KV-scheme bindings and the
// helpers the tests share with the C++ side (random_unit_vectors: the exact vectors `tq codec`
// measures on, so Python results compare with the CLI's figures value for value).
#include "array_args.hpp"
#include "bindings.hpp"

#include "turboquant/codec/distortion.hpp"

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace tq::python {

void bind_testing(nb::module_& m) {
  m.def(
      "random_unit_vectors",
      [](std::size_t count, int dim, std::uint64_t seed) {
        if (dim <= 0) throw std::invalid_argument("dim must be >= 1, got " + std::to_string(dim));
        if (count > std::numeric_limits<std::size_t>::max() / 4 / static_cast<std::size_t>(dim)) {
          throw std::invalid_argument("count " + std::to_string(count) + " x dim is too large");
        }
        auto* data = new float[count * dim];
        nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<float*>(p); });
        {
          nb::gil_scoped_release release;
          random_unit_vectors(count, dim, seed, data);
        }
        return nb::ndarray<nb::numpy, float, nb::ndim<2>>(
            data, {count, static_cast<std::size_t>(dim)}, owner);
      },
      nb::arg("count"), nb::arg("dim"), nb::arg("seed"),
      "count x dim float32 uniform unit vectors, the ones tq::measure_distortion uses for `seed`");
}

}  // namespace tq::python

NB_MODULE(_core, m) {
  m.doc() = "turboquant C++ core (tq_codec, tq_cache, tq_index) on DLPack arrays; use the turboquant package";
  tq::python::bind_codec(m);
  tq::python::bind_kv(m);
  tq::python::bind_cache(m);
  tq::python::bind_index(m);
  tq::python::bind_testing(m);
}
