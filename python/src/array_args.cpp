// Argument checks for DLPack arrays (see array_args.hpp).
#include "array_args.hpp"

#include <stdexcept>

namespace tq::python {

std::string dtype_name(nb::dlpack::dtype dt) {
  std::string base;
  switch (static_cast<nb::dlpack::dtype_code>(dt.code)) {
    case nb::dlpack::dtype_code::Int:
      base = "int";
      break;
    case nb::dlpack::dtype_code::UInt:
      base = "uint";
      break;
    case nb::dlpack::dtype_code::Float:
      base = "float";
      break;
    case nb::dlpack::dtype_code::Bfloat:
      base = "bfloat";
      break;
    case nb::dlpack::dtype_code::Complex:
      base = "complex";
      break;
    case nb::dlpack::dtype_code::Bool:
      return "bool";
    default:
      base = "dtype" + std::to_string(dt.code) + "_";
  }
  std::string name = base + std::to_string(dt.bits);
  if (dt.lanes != 1) name += "x" + std::to_string(dt.lanes);
  return name;
}

namespace {

std::string expected_shape(std::initializer_list<Dim> shape) {
  std::string s = "[";
  bool first = true;
  for (const Dim& d : shape) {
    if (!first) s += ", ";
    first = false;
    s += d.size == Dim::kAny ? std::string(d.label) : std::to_string(d.size);
  }
  return s + "]";
}

template <typename Array>
std::string actual_shape(const Array& a) {
  std::string s = "(";
  for (std::size_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

template <typename Array>
bool c_contiguous(const Array& a) {
  if (a.stride_ptr() == nullptr) return true;  // DLPack: null strides mean compact row-major
  for (std::size_t i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) == 0) return true;  // nothing is read; the strides are arbitrary
  }
  std::int64_t expected = 1;
  for (std::size_t i = a.ndim(); i-- > 0;) {
    // Extents of 1 may carry any stride: NumPy leaves them arbitrary.
    if (a.shape(i) != 1 && a.stride(i) != expected) return false;
    expected *= static_cast<std::int64_t>(a.shape(i));
  }
  return true;
}

}  // namespace

template <typename Array>
std::vector<std::size_t> check_array(const Array& a, std::string_view where, std::string_view name,
                                     std::initializer_list<nb::dlpack::dtype> dtypes,
                                     std::initializer_list<Dim> shape) {
  const std::string prefix = std::string(where) + ": " + std::string(name) + " must be ";
  std::string wanted;
  for (const nb::dlpack::dtype& dt : dtypes)
    wanted += (wanted.empty() ? "" : " or ") + dtype_name(dt);
  const std::string expected = wanted + " of shape " + expected_shape(shape);
  if (a.device_type() != nb::device::cpu::value) {
    throw std::invalid_argument(
        prefix + "a CPU array (" + expected + "); got an array on DLPack device " +
        std::to_string(a.device_type()) + " (the CUDA ops are not built yet)");
  }
  bool dtype_ok = false;
  for (const nb::dlpack::dtype& dt : dtypes) dtype_ok = dtype_ok || a.dtype() == dt;
  if (!dtype_ok) {
    throw nb::type_error((prefix + expected + "; got " + dtype_name(a.dtype()) + " of shape " +
                          actual_shape(a) + " (convert it first, e.g. x.astype(np.float32))")
                             .c_str());
  }
  bool shape_ok = a.ndim() == shape.size();
  std::size_t i = 0;
  for (const Dim& d : shape) {
    if (!shape_ok) break;
    shape_ok = d.size == Dim::kAny || static_cast<std::int64_t>(a.shape(i)) == d.size;
    ++i;
  }
  if (!shape_ok) {
    throw std::invalid_argument(prefix + expected + "; got shape " + actual_shape(a));
  }
  if (!c_contiguous(a)) {
    throw std::invalid_argument(prefix + "C-contiguous (" + expected +
                                "); got a strided view, pass np.ascontiguousarray(...) of it");
  }
  std::vector<std::size_t> extents(a.ndim());
  for (std::size_t k = 0; k < a.ndim(); ++k) extents[k] = a.shape(k);
  return extents;
}

template std::vector<std::size_t> check_array(const InArray&, std::string_view, std::string_view,
                                              std::initializer_list<nb::dlpack::dtype>,
                                              std::initializer_list<Dim>);
template std::vector<std::size_t> check_array(const OutArray&, std::string_view, std::string_view,
                                              std::initializer_list<nb::dlpack::dtype>,
                                              std::initializer_list<Dim>);

}  // namespace tq::python
