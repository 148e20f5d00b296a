// PNG input/output for tq::eval::Image through libpng's simplified API. Compiled to stubs that
// throw when the build does not define TQ_HAVE_PNG (libpng not linked), so the rest of the
// library still links.
#include <stdexcept>
#include <string>

#include "turboquant/eval/plot.hpp"

#if defined(TQ_HAVE_PNG)
#include <png.h>

#include <cstring>
#endif

namespace tq::eval {

#if defined(TQ_HAVE_PNG)

bool png_supported() {
  return true;
}

void write_png(const Image& image, const std::filesystem::path& path) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width());
  png.height = static_cast<png_uint_32>(image.height());
  png.format = PNG_FORMAT_RGB;
  const int ok = png_image_write_to_file(&png, path.string().c_str(), 0, image.rgb().data(),
                                         image.width() * 3, nullptr);
  if (!ok) {
    const std::string message = png.message;
    png_image_free(&png);
    throw std::runtime_error("cannot write PNG " + path.string() + ": " + message);
  }
}

Image read_png(const std::filesystem::path& path) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.string().c_str())) {
    throw std::runtime_error("cannot read PNG " + path.string() + ": " + png.message);
  }
  png.format = PNG_FORMAT_RGB;
  Image image(static_cast<int>(png.width), static_cast<int>(png.height));
  // Image exposes its pixels read-only; decode into a buffer and copy in.
  std::vector<std::uint8_t> buffer(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, buffer.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    throw std::runtime_error("cannot decode PNG " + path.string() + ": " + message);
  }
  for (int y = 0; y < image.height(); ++y) {
    for (int x = 0; x < image.width(); ++x) {
      const std::size_t i = (static_cast<std::size_t>(y) * image.width() + x) * 3;
      image.set_pixel(x, y, {buffer[i], buffer[i + 1], buffer[i + 2]});
    }
  }
  return image;
}

#else

bool png_supported() {
  return false;
}

void write_png(const Image&, const std::filesystem::path& path) {
  throw std::runtime_error("cannot write " + path.string() +
                           ": turboquant was built without libpng (TQ_HAVE_PNG)");
}

Image read_png(const std::filesystem::path& path) {
  throw std::runtime_error("cannot read " + path.string() +
                           ": turboquant was built without libpng (TQ_HAVE_PNG)");
}

#endif

}  // namespace tq::eval
