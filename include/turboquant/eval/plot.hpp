// PNG plots for the evaluation suite without Python: an RGB raster with anti-aliased lines and
// discs, a built-in 5×9 bitmap font (ASCII letters, digits and common punctuation; drawn at an
// integer scale, horizontally or rotated for a y-axis label), and two chart renderers:
//   - render_heatmap: NIAH accuracy, rows = context lengths, columns = depths, cell colour
//     red (0) -> yellow -> green (1), the percentage written in each cell, a colour bar;
//   - render_line_chart: named (x, y) series with optional log-scale axes, 1-2-5 ticks (powers of
//     two on a log x axis spanning a few octaves), grid, legend to the right of the plot.
// Rendering is independent of libpng; write_png / read_png need a build with TQ_HAVE_PNG (they
// throw std::runtime_error otherwise).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tq::eval {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

struct Rect {
  int x = 0, y = 0, w = 0, h = 0;
  int center_x() const { return x + w / 2; }
  int center_y() const { return y + h / 2; }
};

// Row-major 8-bit RGB raster; drawing outside the image is clipped.
class Image {
 public:
  Image(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return width_; }
  int height() const { return height_; }
  Rgb pixel(int x, int y) const;  // throws std::out_of_range outside the image
  void set_pixel(int x, int y, Rgb color);
  // color over the pixel with coverage alpha in [0, 1].
  void blend_pixel(int x, int y, Rgb color, double alpha);
  void fill_rect(const Rect& rect, Rgb color);
  void stroke_rect(const Rect& rect, Rgb color, int thickness = 1);
  // Anti-aliased segment of the given width (pixel centres are at integer + 0.5).
  void draw_line(double x0, double y0, double x1, double y1, Rgb color, double width = 1.0);
  void fill_disc(double cx, double cy, double radius, Rgb color);
  const std::vector<std::uint8_t>& rgb() const { return rgb_; }

 private:
  int width_, height_;
  std::vector<std::uint8_t> rgb_;
};

// Built-in font: each glyph is 5×9 cells (7 above the baseline, 2 for descenders), advancing 6
// cells; characters without a glyph are drawn as '?'.
bool font_has_glyph(char c);
int text_width(std::string_view text, int scale);  // pixels, no trailing gap
int text_height(int scale);                        // 9 · scale
enum class TextAlign { kLeft, kCenter, kRight };
// Draws text with its top edge at y; x is the left edge, centre or right edge per align.
void draw_text(Image& image, int x, int y, std::string_view text, Rgb color, int scale = 2,
               TextAlign align = TextAlign::kLeft);
// Draws text rotated 90° counter-clockwise (reading upwards), centred on (cx, cy).
void draw_text_vertical(Image& image, int cx, int cy, std::string_view text, Rgb color,
                        int scale = 2);

// Accuracy colour map: 0 red, 0.5 yellow, 1 green (values are clamped to [0, 1]).
Rgb accuracy_color(double accuracy);
// Colour of series i in line charts (a 10-colour palette, cycled).
Rgb series_color(std::size_t index);

struct HeatmapSpec {
  std::string title;
  std::string x_label = "Needle depth";
  std::string y_label = "Context length (tokens)";
  std::vector<std::string> row_labels;      // one per row (context lengths)
  std::vector<std::string> col_labels;      // one per column (depths)
  std::vector<std::vector<double>> values;  // [row][col] accuracy in [0, 1]; NaN = not measured
  int cell_width = 64;
  int cell_height = 40;
  bool show_values = true;  // "87%" in each cell
};
struct HeatmapLayout {
  Rect plot;                             // the grid of cells
  std::vector<std::vector<Rect>> cells;  // [row][col]
  Rect color_bar;
};
// Throws std::invalid_argument when the labels and values do not agree in shape.
Image render_heatmap(const HeatmapSpec& spec, HeatmapLayout* layout = nullptr);

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in the given order
};
struct LineChartSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Series> series;
  bool log_x = false;
  bool log_y = false;
  std::optional<double> y_min;  // default: 0 for non-negative data on a linear axis
  std::optional<double> y_max;
  int width = 960;
  int height = 600;
  bool markers = true;
};
struct LineChartLayout {
  Rect plot;
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;  // data range of the plot rectangle
  bool log_x = false, log_y = false;
  std::vector<double> x_ticks, y_ticks;
  // Pixel coordinates of a data point (pixel centres at integer + 0.5).
  std::pair<double, double> to_pixel(double x, double y) const;
};
// Throws std::invalid_argument for no points, non-finite values, or non-positive values on a log
// axis.
Image render_line_chart(const LineChartSpec& spec, LineChartLayout* layout = nullptr);

// Tick positions covering [lo, hi]: 1-2-5 steps on a linear axis; powers of two on a log axis that
// spans at most 16 octaves, else powers of ten. Exposed for tests.
std::vector<double> axis_ticks(double lo, double hi, bool log_scale, int target_count = 6);
// Compact tick label: "0.25", "15", "20k"; on power-of-two log axes multiples of 1024 as "32k".
std::string tick_label(double value, bool power_of_two_axis);

// 8-bit RGB PNG. Throws std::runtime_error on I/O errors or when built without libpng.
void write_png(const Image& image, const std::filesystem::path& path);
Image read_png(const std::filesystem::path& path);
bool png_supported();

}  // namespace tq::eval
