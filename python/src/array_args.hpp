// Checks of the arrays the extension receives through DLPack (nb::ndarray): device, dtype, exact
// shape and C-contiguity, with errors that name the function, the argument, what was expected and
// what came. Nothing is converted or copied here: a float64 or strided array is refused (the
// Python layer documents this), so the kernels always read the caller's memory as it is.
#pragma once

#include <nanobind/ndarray.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace tq::python {

namespace nb = nanobind;

using InArray = nb::ndarray<nb::ro>;  // read-only input of any dtype and shape, checked here
using OutArray = nb::ndarray<>;       // writable output, checked here

// One expected extent: a fixed size, or any size (kAny) shown under `label` in messages.
struct Dim {
  static constexpr std::int64_t kAny = -1;
  std::int64_t size;
  const char* label = nullptr;
  Dim(std::int64_t s) : size(s) {}              // NOLINT: implicit so that {n, 128} reads naturally
  Dim(const char* l) : size(kAny), label(l) {}  // NOLINT
};

// "float32", "uint8", ... for a DLPack dtype.
std::string dtype_name(nb::dlpack::dtype dt);

// Validates `a` as argument `name` of `where`: on the CPU, one of `dtypes`, of exactly `shape`
// (free extents match anything) and C-contiguous. Wrong dtype -> TypeError; wrong device, shape or
// layout -> ValueError. Returns the array's extents.
template <typename Array>
std::vector<std::size_t> check_array(const Array& a, std::string_view where, std::string_view name,
                                     std::initializer_list<nb::dlpack::dtype> dtypes,
                                     std::initializer_list<Dim> shape);

}  // namespace tq::python
