// Raster drawing, the built-in bitmap font and the heatmap / line-chart renderers behind
// include/turboquant/eval/plot.hpp. Layout is computed from the font metrics so labels never
// overlap the plot; all sizes are in pixels.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "turboquant/eval/plot.hpp"

namespace tq::eval {

namespace {

// ---------------------------------------------------------------------------------------------
// Font: 5 columns × 9 rows per glyph, bit 4 = leftmost column; rows 0-6 sit on the baseline,
// rows 7-8 hold descenders (g j p q y , _). Drawn for this project (scripts/gen_plot_font.py holds
// the same glyphs as ASCII art for editing).
struct Glyph {
  char c;
  std::array<std::uint8_t, 9> rows;
};
constexpr Glyph kGlyphs[] = {
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00}},
    {'"', {0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'#', {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a, 0x00, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00}},
    {'&', {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d, 0x00, 0x00}},
    {'\'', {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00}},
    {'*', {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00, 0x00, 0x00}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x00, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, 0x00, 0x00}},
    {'0', {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e, 0x00, 0x00}},
    {'1', {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}},
    {'2', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00}},
    {'3', {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e, 0x00, 0x00}},
    {'4', {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0x00, 0x00}},
    {'5', {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e, 0x00, 0x00}},
    {'6', {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0x00, 0x00}},
    {'7', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00}},
    {'8', {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e, 0x00, 0x00}},
    {'9', {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c, 0x00, 0x00}},
    {':', {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x00}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00}},
    {'=', {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00}},
    {'?', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00}},
    {'A', {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'B', {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0x00, 0x00}},
    {'C', {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00}},
    {'D', {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c, 0x00, 0x00}},
    {'E', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0x00, 0x00}},
    {'F', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00}},
    {'G', {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0x00, 0x00}},
    {'H', {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'I', {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c, 0x00, 0x00}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0x00, 0x00}},
    {'M', {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00}},
    {'O', {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00}},
    {'P', {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00}},
    {'Q', {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d, 0x00, 0x00}},
    {'R', {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0x00, 0x00}},
    {'S', {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0x00, 0x00}},
    {'T', {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a, 0x00, 0x00}},
    {'X', {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11, 0x00, 0x00}},
    {'Y', {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00}},
    {'Z', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f, 0x00, 0x00}},
    {'[', {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e, 0x00, 0x00}},
    {']', {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00}},
    {'a', {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0x00, 0x00}},
    {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e, 0x00, 0x00}},
    {'c', {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00}},
    {'d', {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f, 0x00, 0x00}},
    {'e', {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0x00, 0x00}},
    {'f', {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08, 0x00, 0x00}},
    {'g', {0x00, 0x00, 0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}},
    {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'i', {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}},
    {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00}},
    {'l', {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}},
    {'m', {0x00, 0x00, 0x1a, 0x15, 0x15, 0x15, 0x15, 0x00, 0x00}},
    {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'o', {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00}},
    {'p', {0x00, 0x00, 0x1e, 0x11, 0x11, 0x11, 0x1e, 0x10, 0x10}},
    {'q', {0x00, 0x00, 0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x01}},
    {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00}},
    {'s', {0x00, 0x00, 0x0f, 0x10, 0x0e, 0x01, 0x1e, 0x00, 0x00}},
    {'t', {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x00, 0x00}},
    {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a, 0x00, 0x00}},
    {'x', {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00, 0x00}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}},
    {'z', {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00}},
    {'~', {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00}},
};
constexpr int kGlyphW = 5;
constexpr int kGlyphH = 9;
constexpr int kAdvance = 6;

const std::array<std::uint8_t, 9>* find_glyph(char c) {
  static const auto table = [] {
    std::array<const std::array<std::uint8_t, 9>*, 128> t{};
    for (const Glyph& g : kGlyphs) t[static_cast<unsigned char>(g.c)] = &g.rows;
    return t;
  }();
  const auto u = static_cast<unsigned char>(c);
  return u < 128 ? table[u] : nullptr;
}

Rgb mix(Rgb a, Rgb b, double t) {
  const auto lerp = [t](std::uint8_t x, std::uint8_t y) {
    return static_cast<std::uint8_t>(std::lround(x + (static_cast<double>(y) - x) * t));
  };
  return {lerp(a.r, b.r), lerp(a.g, b.g), lerp(a.b, b.b)};
}

constexpr Rgb kBlack{0, 0, 0};
constexpr Rgb kText{33, 33, 33};
constexpr Rgb kAxis{110, 110, 110};
constexpr Rgb kGrid{228, 228, 228};
constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kMissing{215, 215, 215};
constexpr int kMargin = 16;
constexpr int kLabelScale = 2;
constexpr int kTitleScale = 3;

std::string format_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

bool power_of_two_axis(double lo, double hi) {
  return lo > 0 && hi > lo && std::log2(hi / lo) <= 16 &&
         std::floor(std::log2(hi)) - std::ceil(std::log2(lo)) >= 1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Image.

Image::Image(int width, int height, Rgb background) : width_(width), height_(height) {
  if (width <= 0 || height <= 0 || width > 16384 || height > 16384) {
    throw std::invalid_argument("Image: size " + std::to_string(width) + "x" +
                                std::to_string(height) + ", expected 1..16384 per side");
  }
  rgb_.resize(static_cast<std::size_t>(width) * height * 3);
  for (std::size_t i = 0; i < rgb_.size(); i += 3) {
    rgb_[i] = background.r;
    rgb_[i + 1] = background.g;
    rgb_[i + 2] = background.b;
  }
}

Rgb Image::pixel(int x, int y) const {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) {
    throw std::out_of_range("Image::pixel(" + std::to_string(x) + ", " + std::to_string(y) +
                            ") outside " + std::to_string(width_) + "x" + std::to_string(height_));
  }
  const std::size_t i = (static_cast<std::size_t>(y) * width_ + x) * 3;
  return {rgb_[i], rgb_[i + 1], rgb_[i + 2]};
}

void Image::set_pixel(int x, int y, Rgb color) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  const std::size_t i = (static_cast<std::size_t>(y) * width_ + x) * 3;
  rgb_[i] = color.r;
  rgb_[i + 1] = color.g;
  rgb_[i + 2] = color.b;
}

void Image::blend_pixel(int x, int y, Rgb color, double alpha) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_ || alpha <= 0) return;
  if (alpha >= 1) {
    set_pixel(x, y, color);
    return;
  }
  set_pixel(x, y, mix(pixel(x, y), color, alpha));
}

void Image::fill_rect(const Rect& rect, Rgb color) {
  for (int y = std::max(rect.y, 0); y < std::min(rect.y + rect.h, height_); ++y) {
    for (int x = std::max(rect.x, 0); x < std::min(rect.x + rect.w, width_); ++x) {
      set_pixel(x, y, color);
    }
  }
}

void Image::stroke_rect(const Rect& rect, Rgb color, int thickness) {
  fill_rect({rect.x, rect.y, rect.w, thickness}, color);
  fill_rect({rect.x, rect.y + rect.h - thickness, rect.w, thickness}, color);
  fill_rect({rect.x, rect.y, thickness, rect.h}, color);
  fill_rect({rect.x + rect.w - thickness, rect.y, thickness, rect.h}, color);
}

void Image::draw_line(double x0, double y0, double x1, double y1, Rgb color, double width) {
  // Coverage from the distance of each pixel centre to the segment: simple, and smooth at any
  // slope and width (charts have few segments, so the per-pixel cost does not matter).
  const double half = width / 2;
  const int xa = static_cast<int>(std::floor(std::min(x0, x1) - half - 1));
  const int xb = static_cast<int>(std::ceil(std::max(x0, x1) + half + 1));
  const int ya = static_cast<int>(std::floor(std::min(y0, y1) - half - 1));
  const int yb = static_cast<int>(std::ceil(std::max(y0, y1) + half + 1));
  const double dx = x1 - x0, dy = y1 - y0;
  const double len2 = dx * dx + dy * dy;
  for (int y = std::max(ya, 0); y <= std::min(yb, height_ - 1); ++y) {
    for (int x = std::max(xa, 0); x <= std::min(xb, width_ - 1); ++x) {
      const double px = x + 0.5, py = y + 0.5;
      double t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
      t = std::clamp(t, 0.0, 1.0);
      const double d = std::hypot(px - (x0 + t * dx), py - (y0 + t * dy));
      blend_pixel(x, y, color, std::clamp(half + 0.5 - d, 0.0, 1.0));
    }
  }
}

void Image::fill_disc(double cx, double cy, double radius, Rgb color) {
  for (int y = static_cast<int>(std::floor(cy - radius - 1));
       y <= static_cast<int>(std::ceil(cy + radius + 1)); ++y) {
    for (int x = static_cast<int>(std::floor(cx - radius - 1));
         x <= static_cast<int>(std::ceil(cx + radius + 1)); ++x) {
      const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      blend_pixel(x, y, color, std::clamp(radius + 0.5 - d, 0.0, 1.0));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Text.

bool font_has_glyph(char c) {
  return find_glyph(c) != nullptr;
}

int text_width(std::string_view text, int scale) {
  if (text.empty()) return 0;
  return (static_cast<int>(text.size()) * kAdvance - (kAdvance - kGlyphW)) * scale;
}

int text_height(int scale) {
  return kGlyphH * scale;
}

void draw_text(Image& image, int x, int y, std::string_view text, Rgb color, int scale,
               TextAlign align) {
  if (align == TextAlign::kCenter) x -= text_width(text, scale) / 2;
  if (align == TextAlign::kRight) x -= text_width(text, scale);
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto* glyph = find_glyph(text[i]);
    if (glyph == nullptr) glyph = find_glyph('?');
    const int gx = x + static_cast<int>(i) * kAdvance * scale;
    for (int row = 0; row < kGlyphH; ++row) {
      for (int col = 0; col < kGlyphW; ++col) {
        if (((*glyph)[row] >> (kGlyphW - 1 - col)) & 1) {
          image.fill_rect({gx + col * scale, y + row * scale, scale, scale}, color);
        }
      }
    }
  }
}

void draw_text_vertical(Image& image, int cx, int cy, std::string_view text, Rgb color, int scale) {
  // Rotated 90° counter-clockwise: glyph column c maps to image row (bottom - c), glyph row r to
  // image column (left + r).
  const int w = text_width(text, scale);
  const int left = cx - text_height(scale) / 2;
  const int bottom = cy + w / 2;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto* glyph = find_glyph(text[i]);
    if (glyph == nullptr) glyph = find_glyph('?');
    const int offset = static_cast<int>(i) * kAdvance * scale;
    for (int row = 0; row < kGlyphH; ++row) {
      for (int col = 0; col < kGlyphW; ++col) {
        if (((*glyph)[row] >> (kGlyphW - 1 - col)) & 1) {
          image.fill_rect({left + row * scale, bottom - offset - (col + 1) * scale, scale, scale},
                          color);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Colours, ticks, labels.

Rgb accuracy_color(double accuracy) {
  // Red -> orange -> yellow -> light green -> green, evenly spaced.
  static constexpr std::array<Rgb, 5> kStops = {
      Rgb{206, 44, 44}, Rgb{238, 122, 52}, Rgb{246, 210, 72}, Rgb{150, 200, 86}, Rgb{38, 150, 76}};
  if (std::isnan(accuracy)) return kMissing;
  const double t = std::clamp(accuracy, 0.0, 1.0) * (kStops.size() - 1);
  const std::size_t i = std::min<std::size_t>(static_cast<std::size_t>(t), kStops.size() - 2);
  return mix(kStops[i], kStops[i + 1], t - static_cast<double>(i));
}

Rgb series_color(std::size_t index) {
  static constexpr std::array<Rgb, 10> kPalette = {
      Rgb{31, 119, 180},  Rgb{214, 39, 40}, Rgb{44, 160, 44},   Rgb{255, 127, 14},
      Rgb{148, 103, 189}, Rgb{140, 86, 75}, Rgb{227, 119, 194}, Rgb{127, 127, 127},
      Rgb{188, 189, 34},  Rgb{23, 190, 207}};
  return kPalette[index % kPalette.size()];
}

std::vector<double> axis_ticks(double lo, double hi, bool log_scale, int target_count) {
  if (!(std::isfinite(lo) && std::isfinite(hi)) || hi < lo) {
    throw std::invalid_argument("axis_ticks: range [" + format_g(lo) + ", " + format_g(hi) +
                                "] is not a finite, ordered interval");
  }
  std::vector<double> ticks;
  if (log_scale) {
    if (lo <= 0) {
      throw std::invalid_argument("axis_ticks: log axis needs positive values, got " +
                                  format_g(lo));
    }
    if (power_of_two_axis(lo, hi)) {
      const int a = static_cast<int>(std::ceil(std::log2(lo) - 1e-9));
      const int b = static_cast<int>(std::floor(std::log2(hi) + 1e-9));
      const int stride = std::max(1, (b - a + target_count) / (target_count + 2));
      for (int k = a; k <= b; k += stride) ticks.push_back(std::ldexp(1.0, k));
      return ticks;
    }
    const int a = static_cast<int>(std::ceil(std::log10(lo) - 1e-9));
    const int b = static_cast<int>(std::floor(std::log10(hi) + 1e-9));
    for (int k = a; k <= b; ++k) {
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = m * std::pow(10.0, k);
        if (b - a < 2 || m == 1.0) ticks.push_back(v);
      }
    }
    ticks.erase(
        std::remove_if(ticks.begin(), ticks.end(),
                       [&](double v) { return v < lo * (1 - 1e-9) || v > hi * (1 + 1e-9); }),
        ticks.end());
    if (ticks.size() >= 2) return ticks;
    ticks.clear();  // less than a decade: fall through to linear ticks inside the range
  }
  if (hi == lo) return {lo};
  const double raw = (hi - lo) / std::max(target_count, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  const double first = std::floor(lo / step + 1e-9);
  const double last = std::ceil(hi / step - 1e-9);
  for (double k = first; k <= last; ++k) {
    const double v = k * step;
    if (log_scale && (v < lo || v > hi)) continue;
    ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return ticks;
}

std::string tick_label(double value, bool power_of_two) {
  if (power_of_two && value >= 1024 && std::fmod(value, 1024) == 0) {
    return format_g(value / 1024) + "k";
  }
  const double a = std::abs(value);
  if (a >= 1e6 && std::fmod(value, 1e5) == 0) return format_g(value / 1e6) + "M";
  if (a >= 1e4 && std::fmod(value, 100) == 0) return format_g(value / 1e3) + "k";
  return format_g(value);
}

// ---------------------------------------------------------------------------------------------
// Heatmap.

Image render_heatmap(const HeatmapSpec& spec, HeatmapLayout* layout) {
  const std::size_t rows = spec.row_labels.size();
  const std::size_t cols = spec.col_labels.size();
  if (rows == 0 || cols == 0) {
    throw std::invalid_argument("render_heatmap: " + std::to_string(rows) + " row labels and " +
                                std::to_string(cols) +
                                " column labels, expected at least one each");
  }
  if (spec.values.size() != rows) {
    throw std::invalid_argument("render_heatmap: " + std::to_string(spec.values.size()) +
                                " value rows, expected " + std::to_string(rows));
  }
  for (std::size_t r = 0; r < rows; ++r) {
    if (spec.values[r].size() != cols) {
      throw std::invalid_argument("render_heatmap: row " + std::to_string(r) + " has " +
                                  std::to_string(spec.values[r].size()) + " values, expected " +
                                  std::to_string(cols));
    }
  }
  if (spec.cell_width < 8 || spec.cell_height < 8) {
    throw std::invalid_argument("render_heatmap: cells of " + std::to_string(spec.cell_width) +
                                "x" + std::to_string(spec.cell_height) + " px, expected >= 8x8");
  }
  const int label_h = text_height(kLabelScale);
  // Few rows: grow them (up to 64 px) so the rotated y label fits beside the grid.
  const int cell_h =
      std::max(spec.cell_height,
               std::min(64, (text_width(spec.y_label, kLabelScale) + static_cast<int>(rows) - 1) /
                                static_cast<int>(rows)));
  int row_label_w = 0;
  for (const auto& s : spec.row_labels)
    row_label_w = std::max(row_label_w, text_width(s, kLabelScale));
  const int top = kMargin + (spec.title.empty() ? 0 : text_height(kTitleScale) + kMargin);
  const int y_label_w = spec.y_label.empty() ? 0 : label_h + 12;
  Rect plot{kMargin + y_label_w + row_label_w + 10, top, static_cast<int>(cols) * spec.cell_width,
            static_cast<int>(rows) * cell_h};
  const Rect bar{plot.x + plot.w + 24, plot.y, 20, plot.h};
  int width = bar.x + bar.w + 8 + text_width("100%", kLabelScale) + kMargin;
  width = std::max(width, text_width(spec.title, kTitleScale) + 2 * kMargin);
  // The rotated y label may be longer than a short grid is tall: keep it below the title and
  // let it run down past the grid (nothing else is drawn in its column), growing the image.
  const int y_label_len = text_width(spec.y_label, kLabelScale);
  const int y_label_cy = std::max(plot.center_y(), plot.y + y_label_len / 2);
  const int height =
      std::max(plot.y + plot.h + 8 + label_h + (spec.x_label.empty() ? 0 : 12 + label_h),
               y_label_cy + (y_label_len + 1) / 2) +
      kMargin;
  Image image(width, height);

  if (!spec.title.empty()) {
    const int cx = std::clamp(plot.center_x(), text_width(spec.title, kTitleScale) / 2 + kMargin,
                              width - text_width(spec.title, kTitleScale) / 2 - kMargin);
    draw_text(image, cx, kMargin, spec.title, kBlack, kTitleScale, TextAlign::kCenter);
  }
  if (!spec.y_label.empty()) {
    draw_text_vertical(image, kMargin + label_h / 2, y_label_cy, spec.y_label, kText, kLabelScale);
  }
  HeatmapLayout out;
  out.plot = plot;
  out.color_bar = bar;
  out.cells.assign(rows, std::vector<Rect>(cols));
  for (std::size_t r = 0; r < rows; ++r) {
    const int y = plot.y + static_cast<int>(r) * cell_h;
    draw_text(image, plot.x - 10, y + (cell_h - label_h) / 2, spec.row_labels[r], kText,
              kLabelScale, TextAlign::kRight);
    for (std::size_t c = 0; c < cols; ++c) {
      // A 1-pixel white gutter on every side separates the cells.
      const Rect cell{plot.x + static_cast<int>(c) * spec.cell_width + 1, y + 1,
                      spec.cell_width - 2, cell_h - 2};
      out.cells[r][c] = cell;
      const double v = spec.values[r][c];
      const Rgb fill = accuracy_color(v);
      image.fill_rect(cell, fill);
      if (!spec.show_values) continue;
      const std::string text =
          std::isnan(v) ? "-" : std::to_string(std::lround(std::clamp(v, 0.0, 1.0) * 100)) + "%";
      const int scale = text_width(text, 2) + 6 <= cell.w && text_height(2) + 4 <= cell.h ? 2 : 1;
      const double luminance = 0.299 * fill.r + 0.587 * fill.g + 0.114 * fill.b;
      draw_text(image, cell.center_x(), cell.y + (cell.h - text_height(scale)) / 2 + scale, text,
                luminance < 140 ? kWhite : kText, scale, TextAlign::kCenter);
    }
  }
  for (std::size_t c = 0; c < cols; ++c) {
    draw_text(image, plot.x + static_cast<int>(c) * spec.cell_width + spec.cell_width / 2,
              plot.y + plot.h + 8, spec.col_labels[c], kText, kLabelScale, TextAlign::kCenter);
  }
  if (!spec.x_label.empty()) {
    draw_text(image, plot.center_x(), plot.y + plot.h + 8 + label_h + 12, spec.x_label, kText,
              kLabelScale, TextAlign::kCenter);
  }
  // Colour bar, 100% at the top.
  for (int y = 0; y < bar.h; ++y) {
    const double v = 1.0 - static_cast<double>(y) / std::max(bar.h - 1, 1);
    image.fill_rect({bar.x, bar.y + y, bar.w, 1}, accuracy_color(v));
  }
  image.stroke_rect(bar, kAxis);
  for (int pct : {0, 50, 100}) {
    const int y = bar.y + static_cast<int>(std::lround((100 - pct) / 100.0 * (bar.h - 1)));
    image.fill_rect({bar.x + bar.w, y, 4, 1}, kAxis);
    const int ty = std::clamp(y - label_h / 2, bar.y - 2, bar.y + bar.h - label_h + 2);
    draw_text(image, bar.x + bar.w + 8, ty, std::to_string(pct) + "%", kText, kLabelScale);
  }
  if (layout != nullptr) *layout = std::move(out);
  return image;
}

// ---------------------------------------------------------------------------------------------
// Line chart.

std::pair<double, double> LineChartLayout::to_pixel(double x, double y) const {
  const auto t = [](double v, bool log_scale) { return log_scale ? std::log(v) : v; };
  const double fx = (t(x, log_x) - t(x_lo, log_x)) / (t(x_hi, log_x) - t(x_lo, log_x));
  const double fy = (t(y, log_y) - t(y_lo, log_y)) / (t(y_hi, log_y) - t(y_lo, log_y));
  return {plot.x + fx * plot.w, plot.y + (1 - fy) * plot.h};
}

Image render_line_chart(const LineChartSpec& spec, LineChartLayout* layout) {
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  for (const Series& s : spec.series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) {
        throw std::invalid_argument("render_line_chart: series \"" + s.name +
                                    "\" has a non-finite point (" + format_g(x) + ", " +
                                    format_g(y) + ")");
      }
      if ((spec.log_x && x <= 0) || (spec.log_y && y <= 0)) {
        throw std::invalid_argument("render_line_chart: series \"" + s.name + "\" has point (" +
                                    format_g(x) + ", " + format_g(y) +
                                    ") with a non-positive value on a log axis");
      }
      x_min = std::min(x_min, x);
      x_max = std::max(x_max, x);
      y_min = std::min(y_min, y);
      y_max = std::max(y_max, y);
    }
  }
  if (!std::isfinite(x_min)) throw std::invalid_argument("render_line_chart: no points to plot");

  LineChartLayout out;
  out.log_x = spec.log_x;
  out.log_y = spec.log_y;
  // x: the data range with a little padding (in the axis' own scale).
  if (x_max == x_min) {
    x_min = spec.log_x ? x_min / 2 : x_min - 1;
    x_max = spec.log_x ? x_max * 2 : x_max + 1;
  }
  if (spec.log_x) {
    const double pad = std::pow(x_max / x_min, 0.04);
    out.x_lo = x_min / pad;
    out.x_hi = x_max * pad;
  } else {
    const double pad = (x_max - x_min) * 0.04;
    out.x_lo = x_min - pad;
    out.x_hi = x_max + pad;
  }
  out.x_ticks =
      axis_ticks(spec.log_x ? x_min : out.x_lo, spec.log_x ? x_max : out.x_hi, spec.log_x, 7);
  out.x_ticks.erase(std::remove_if(out.x_ticks.begin(), out.x_ticks.end(),
                                   [&](double v) { return v < out.x_lo || v > out.x_hi; }),
                    out.x_ticks.end());
  // y: a linear axis starts at 0 for non-negative data and ends on ticks; a log axis pads.
  double lo = spec.y_min.value_or(!spec.log_y && y_min >= 0 ? 0.0 : y_min);
  double hi = spec.y_max.value_or(y_max);
  if (hi <= lo) hi = spec.log_y ? lo * 2 : lo + 1;
  if (spec.log_y) {
    const double pad = std::pow(hi / lo, 0.05);
    out.y_lo = spec.y_min ? lo : lo / pad;
    out.y_hi = spec.y_max ? hi : hi * pad;
    out.y_ticks = axis_ticks(out.y_lo, out.y_hi, true, 6);
  } else {
    out.y_ticks = axis_ticks(lo, hi, false, 6);
    out.y_lo = spec.y_min ? lo : std::min(lo, out.y_ticks.front());
    out.y_hi = spec.y_max ? hi : std::max(hi, out.y_ticks.back());
    out.y_ticks.erase(std::remove_if(out.y_ticks.begin(), out.y_ticks.end(),
                                     [&](double v) { return v < out.y_lo || v > out.y_hi; }),
                      out.y_ticks.end());
  }
  const bool x_p2 = spec.log_x && power_of_two_axis(x_min, x_max);
  const bool y_p2 = spec.log_y && power_of_two_axis(out.y_lo, out.y_hi);

  // Layout from the label sizes.
  const int label_h = text_height(kLabelScale);
  int y_tick_w = 0;
  for (double v : out.y_ticks)
    y_tick_w = std::max(y_tick_w, text_width(tick_label(v, y_p2), kLabelScale));
  int legend_text_w = 0;
  for (const Series& s : spec.series)
    legend_text_w = std::max(legend_text_w, text_width(s.name, kLabelScale));
  const int legend_w = spec.series.empty() ? 0 : 12 + 28 + 8 + legend_text_w + 12;
  const int top = kMargin + (spec.title.empty() ? 0 : text_height(kTitleScale) + kMargin) + 4;
  const int left = kMargin + (spec.y_label.empty() ? 0 : label_h + 12) + y_tick_w + 10;
  const int bottom =
      spec.height - kMargin - label_h - 8 - (spec.x_label.empty() ? 0 : label_h + 12);
  const int right = spec.width - kMargin - (legend_w > 0 ? legend_w + 16 : 0);
  if (right - left < 80 || bottom - top < 60) {
    throw std::invalid_argument("render_line_chart: " + std::to_string(spec.width) + "x" +
                                std::to_string(spec.height) +
                                " px leaves no room for the plot; make the chart larger");
  }
  out.plot = {left, top, right - left, bottom - top};
  Image image(spec.width, spec.height);

  // Grid and ticks.
  for (double v : out.x_ticks) {
    const double px = out.to_pixel(v, out.y_lo).first;
    image.draw_line(px, out.plot.y, px, out.plot.y + out.plot.h, kGrid, 1.0);
    image.fill_rect({static_cast<int>(px), out.plot.y + out.plot.h, 1, 5}, kAxis);
    draw_text(image, static_cast<int>(std::lround(px)), out.plot.y + out.plot.h + 8,
              tick_label(v, x_p2), kText, kLabelScale, TextAlign::kCenter);
  }
  for (double v : out.y_ticks) {
    const double py = out.to_pixel(out.x_lo, v).second;
    image.draw_line(out.plot.x, py, out.plot.x + out.plot.w, py, kGrid, 1.0);
    image.fill_rect({out.plot.x - 5, static_cast<int>(py), 5, 1}, kAxis);
    draw_text(image, out.plot.x - 9, static_cast<int>(std::lround(py)) - label_h / 2 + 2,
              tick_label(v, y_p2), kText, kLabelScale, TextAlign::kRight);
  }
  image.stroke_rect({out.plot.x - 1, out.plot.y - 1, out.plot.w + 2, out.plot.h + 2}, kAxis);

  // Series.
  for (std::size_t i = 0; i < spec.series.size(); ++i) {
    const Rgb color = series_color(i);
    const auto& points = spec.series[i].points;
    for (std::size_t j = 1; j < points.size(); ++j) {
      const auto [x0, y0] = out.to_pixel(points[j - 1].first, points[j - 1].second);
      const auto [x1, y1] = out.to_pixel(points[j].first, points[j].second);
      image.draw_line(x0, y0, x1, y1, color, 2.5);
    }
    if (spec.markers || points.size() == 1) {
      for (const auto& [x, y] : points) {
        const auto [px, py] = out.to_pixel(x, y);
        image.fill_disc(px, py, 4.0, color);
      }
    }
  }

  // Titles and labels.
  if (!spec.title.empty()) {
    draw_text(image, spec.width / 2, kMargin, spec.title, kBlack, kTitleScale, TextAlign::kCenter);
  }
  if (!spec.x_label.empty()) {
    draw_text(image, out.plot.center_x(), out.plot.y + out.plot.h + 8 + label_h + 12, spec.x_label,
              kText, kLabelScale, TextAlign::kCenter);
  }
  if (!spec.y_label.empty()) {
    draw_text_vertical(image, kMargin + label_h / 2, out.plot.center_y(), spec.y_label, kText,
                       kLabelScale);
  }

  // Legend to the right of the plot.
  if (legend_w > 0) {
    const int row_h = label_h + 10;
    const Rect box{out.plot.x + out.plot.w + 16, out.plot.y, legend_w,
                   static_cast<int>(spec.series.size()) * row_h + 12};
    image.stroke_rect(box, kGrid);
    for (std::size_t i = 0; i < spec.series.size(); ++i) {
      const int cy = box.y + 6 + static_cast<int>(i) * row_h + row_h / 2;
      const Rgb color = series_color(i);
      image.draw_line(box.x + 12, cy, box.x + 40, cy, color, 2.5);
      if (spec.markers) image.fill_disc(box.x + 26, cy, 4.0, color);
      draw_text(image, box.x + 48, cy - label_h / 2 + 2, spec.series[i].name, kText, kLabelScale);
    }
  }
  if (layout != nullptr) *layout = std::move(out);
  return image;
}

}  // namespace tq::eval
