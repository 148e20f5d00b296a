// Tests for the PNG plots: raster primitives, the bitmap font, the colour map, axis ticks and tick
// labels, heatmap and line-chart layouts (cell and data-point pixels have the expected colours),
// input validation, and a PNG round trip through libpng (skipped in builds without TQ_HAVE_PNG).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "turboquant/eval/plot.hpp"

namespace tq::eval {
namespace {

constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kInk{0, 0, 0};

TEST(EvalPlot, ImagePrimitives) {
  Image image(10, 6, {1, 2, 3});
  EXPECT_EQ(image.rgb().size(), 10u * 6u * 3u);
  EXPECT_EQ(image.pixel(9, 5), (Rgb{1, 2, 3}));
  image.set_pixel(4, 2, {200, 100, 50});
  EXPECT_EQ(image.pixel(4, 2), (Rgb{200, 100, 50}));
  image.set_pixel(-1, 0, kInk);  // clipped, no throw
  image.set_pixel(10, 0, kInk);
  EXPECT_THROW(image.pixel(10, 0), std::out_of_range);
  image.fill_rect({-5, -5, 8, 7}, kWhite);  // clipped to (0..2, 0..1)
  EXPECT_EQ(image.pixel(2, 1), kWhite);
  EXPECT_EQ(image.pixel(3, 1), (Rgb{1, 2, 3}));
  image.blend_pixel(5, 5, kWhite, 0.5);
  EXPECT_EQ(image.pixel(5, 5), (Rgb{128, 129, 129}));
  EXPECT_THROW(Image(0, 5), std::invalid_argument);

  Image canvas(40, 40);
  canvas.draw_line(5, 20.5, 35, 20.5, kInk, 3.0);
  EXPECT_EQ(canvas.pixel(20, 20), kInk);    // on the line
  EXPECT_EQ(canvas.pixel(20, 10), kWhite);  // far from it
  canvas.fill_disc(20, 30, 4, {255, 0, 0});
  EXPECT_EQ(canvas.pixel(20, 30), (Rgb{255, 0, 0}));
  EXPECT_EQ(canvas.pixel(20, 36), kWhite);
}

TEST(EvalPlot, FontDrawsKnownGlyphs) {
  for (char c : std::string("ABCXYZabcxyz0123456789 %.-:/()")) EXPECT_TRUE(font_has_glyph(c)) << c;
  EXPECT_FALSE(font_has_glyph('\x01'));
  EXPECT_EQ(text_width("", 2), 0);
  EXPECT_EQ(text_width("a", 1), 5);
  EXPECT_EQ(text_width("ab", 2), 22);  // (2 glyphs · 6 − 1 gap) · 2
  EXPECT_EQ(text_height(3), 27);
  // '-' is a full-width bar on row 3 only.
  Image image(12, 12);
  draw_text(image, 1, 1, "-", kInk, 1);
  for (int x = 1; x <= 5; ++x) {
    EXPECT_EQ(image.pixel(x, 4), kInk) << x;
    EXPECT_EQ(image.pixel(x, 3), kWhite) << x;
  }
  EXPECT_EQ(image.pixel(6, 4), kWhite);
  // Right alignment ends at x; centring straddles it.
  Image right(20, 12);
  draw_text(right, 15, 0, "-", kInk, 1, TextAlign::kRight);
  EXPECT_EQ(right.pixel(14, 3), kInk);
  EXPECT_EQ(right.pixel(10, 3), kInk);
  EXPECT_EQ(right.pixel(15, 3), kWhite);
  // Rotated: the '-' becomes a vertical bar.
  Image vertical(20, 20);
  draw_text_vertical(vertical, 10, 10, "-", kInk, 1);
  int ink_rows = 0, ink_cols = 0;
  for (int y = 0; y < 20; ++y) ink_rows += vertical.pixel(9, y) == kInk;
  for (int x = 0; x < 20; ++x) ink_cols += vertical.pixel(x, 10) == kInk;
  EXPECT_EQ(ink_rows + ink_cols, 6);  // 5 along the bar, 1 across it
}

TEST(EvalPlot, AccuracyColours) {
  const Rgb red = accuracy_color(0), yellow = accuracy_color(0.5), green = accuracy_color(1);
  EXPECT_GT(red.r, 2 * red.g);
  EXPECT_GT(yellow.r, 200);
  EXPECT_GT(yellow.g, 180);
  EXPECT_LT(yellow.b, 120);
  EXPECT_GT(green.g, 2 * green.r);
  EXPECT_EQ(accuracy_color(-3), red);
  EXPECT_EQ(accuracy_color(7), green);
  EXPECT_EQ(accuracy_color(NAN), (Rgb{215, 215, 215}));
  EXPECT_NE(series_color(0), series_color(1));
  EXPECT_EQ(series_color(0), series_color(10));
}

TEST(EvalPlot, AxisTicksAndLabels) {
  EXPECT_EQ(axis_ticks(0, 1, false, 5),
            (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  const auto lin = axis_ticks(0, 170, false, 6);
  EXPECT_EQ(lin.front(), 0);
  EXPECT_EQ(lin.back(), 180);
  EXPECT_EQ(lin[1], 20);
  EXPECT_EQ(axis_ticks(512, 8192, true), (std::vector<double>{512, 1024, 2048, 4096, 8192}));
  EXPECT_EQ(axis_ticks(1, 1e6, true), (std::vector<double>{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6}));
  const auto many = axis_ticks(16, 131072, true, 6);  // 13 octaves: thinned, still powers of 2
  EXPECT_LE(many.size(), 8u);
  for (double v : many) EXPECT_EQ(std::exp2(std::round(std::log2(v))), v);
  EXPECT_THROW(axis_ticks(0, 10, true), std::invalid_argument);
  EXPECT_THROW(axis_ticks(2, 1, false), std::invalid_argument);

  EXPECT_EQ(tick_label(32768, true), "32k");
  EXPECT_EQ(tick_label(512, true), "512");
  EXPECT_EQ(tick_label(0.25, false), "0.25");
  EXPECT_EQ(tick_label(0.6000000000000001, false), "0.6");
  EXPECT_EQ(tick_label(20000, false), "20k");
  EXPECT_EQ(tick_label(1500000, false), "1.5M");
  EXPECT_EQ(tick_label(150, false), "150");
}

HeatmapSpec small_heatmap() {
  HeatmapSpec spec;
  spec.title = "NIAH test";
  spec.row_labels = {"1k", "4k"};
  spec.col_labels = {"0%", "50%", "100%"};
  spec.values = {{1.0, 0.5, 0.0}, {0.25, NAN, 0.75}};
  return spec;
}

TEST(EvalPlot, HeatmapCellsHaveAccuracyColours) {
  const HeatmapSpec spec = small_heatmap();
  HeatmapLayout layout;
  const Image image = render_heatmap(spec, &layout);
  ASSERT_EQ(layout.cells.size(), 2u);
  ASSERT_EQ(layout.cells[0].size(), 3u);
  for (std::size_t r = 0; r < 2; ++r) {
    for (std::size_t c = 0; c < 3; ++c) {
      const Rect& cell = layout.cells[r][c];
      // Corners of the cell hold the fill colour (the percentage is drawn in the middle).
      EXPECT_EQ(image.pixel(cell.x + 1, cell.y + 1), accuracy_color(spec.values[r][c]));
      EXPECT_EQ(image.pixel(cell.x + cell.w - 2, cell.y + cell.h - 2),
                accuracy_color(spec.values[r][c]));
      // The gutter between cells is white.
      EXPECT_EQ(image.pixel(cell.x - 1, cell.y + 1), kWhite);
    }
  }
  // Text is drawn in the middle of each cell: some pixels differ from the fill.
  const Rect& cell = layout.cells[0][0];
  int text_pixels = 0;
  for (int y = cell.y; y < cell.y + cell.h; ++y) {
    for (int x = cell.x; x < cell.x + cell.w; ++x) {
      text_pixels += image.pixel(x, y) != accuracy_color(1.0);
    }
  }
  EXPECT_GT(text_pixels, 50);
  // Colour bar: green at the top, red at the bottom (one pixel inside the border).
  const auto close = [](Rgb a, Rgb b) {
    return std::abs(a.r - b.r) <= 4 && std::abs(a.g - b.g) <= 4 && std::abs(a.b - b.b) <= 4;
  };
  const Rect& bar = layout.color_bar;
  EXPECT_TRUE(close(image.pixel(bar.center_x(), bar.y + 1), accuracy_color(1.0)));
  EXPECT_TRUE(close(image.pixel(bar.center_x(), bar.y + bar.h - 2), accuracy_color(0.0)));
  EXPECT_TRUE(close(image.pixel(bar.center_x(), bar.center_y()), accuracy_color(0.5)));
  // The grid lies inside the image.
  EXPECT_LE(layout.plot.x + layout.plot.w, image.width());
  EXPECT_LE(layout.plot.y + layout.plot.h, image.height());
}

TEST(EvalPlot, HeatmapRejectsShapeMismatch) {
  HeatmapSpec spec = small_heatmap();
  spec.values[1].pop_back();
  EXPECT_THROW(render_heatmap(spec), std::invalid_argument);
  spec = small_heatmap();
  spec.values.pop_back();
  EXPECT_THROW(render_heatmap(spec), std::invalid_argument);
  spec.row_labels.clear();
  EXPECT_THROW(render_heatmap(spec), std::invalid_argument);
}

LineChartSpec small_chart(bool log_x) {
  LineChartSpec spec;
  spec.title = "Decode speed";
  spec.x_label = "Context length";
  spec.y_label = "tokens/s";
  spec.log_x = log_x;
  spec.series = {{"fp16", {{512, 100}, {2048, 80}, {8192, 40}}},
                 {"tq4", {{512, 110}, {2048, 95}, {8192, 70}}}};
  return spec;
}

TEST(EvalPlot, LineChartPointsLandWhereTheLayoutSays) {
  for (bool log_x : {false, true}) {
    const LineChartSpec spec = small_chart(log_x);
    LineChartLayout layout;
    const Image image = render_line_chart(spec, &layout);
    EXPECT_EQ(image.width(), spec.width);
    EXPECT_EQ(image.height(), spec.height);
    EXPECT_EQ(layout.y_lo, 0);  // non-negative data starts at zero
    EXPECT_GE(layout.y_hi, 110);
    for (std::size_t i = 0; i < spec.series.size(); ++i) {
      for (const auto& [x, y] : spec.series[i].points) {
        const auto [px, py] = layout.to_pixel(x, y);
        EXPECT_EQ(image.pixel(static_cast<int>(px), static_cast<int>(py)), series_color(i))
            << "series " << i << " x " << x << (log_x ? " log" : " linear");
      }
    }
    // On a log axis the midpoint in pixels is the geometric mean.
    if (log_x) {
      const double mid = (layout.to_pixel(512, 1).first + layout.to_pixel(8192, 1).first) / 2;
      EXPECT_NEAR(layout.to_pixel(2048, 1).first, mid, 1e-9);
      EXPECT_EQ(layout.x_ticks, (std::vector<double>{512, 1024, 2048, 4096, 8192}));
    }
  }
}

TEST(EvalPlot, LineChartRejectsBadInput) {
  LineChartSpec spec = small_chart(true);
  spec.series[0].points.push_back({0, 5});
  EXPECT_THROW(render_line_chart(spec), std::invalid_argument);
  spec = small_chart(false);
  spec.series[1].points.push_back({1, NAN});
  EXPECT_THROW(render_line_chart(spec), std::invalid_argument);
  spec.series.clear();
  EXPECT_THROW(render_line_chart(spec), std::invalid_argument);
  spec = small_chart(false);
  spec.width = 150;
  EXPECT_THROW(render_line_chart(spec), std::invalid_argument);
}

TEST(EvalPlot, PngRoundTrip) {
  if (!png_supported()) GTEST_SKIP() << "built without libpng (TQ_HAVE_PNG)";
  const auto dir = std::filesystem::temp_directory_path() / "tq_eval_plot_test";
  std::filesystem::create_directories(dir);
  HeatmapLayout layout;
  const Image image = render_heatmap(small_heatmap(), &layout);
  const auto path = dir / "heatmap.png";
  write_png(image, path);
  // A PNG signature, then the decoded image is identical.
  std::ifstream in(path, std::ios::binary);
  char signature[8];
  in.read(signature, 8);
  EXPECT_EQ(std::string(signature, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const Image back = read_png(path);
  ASSERT_EQ(back.width(), image.width());
  ASSERT_EQ(back.height(), image.height());
  EXPECT_EQ(back.rgb(), image.rgb());
  EXPECT_EQ(back.pixel(layout.cells[0][0].x + 1, layout.cells[0][0].y + 1), accuracy_color(1.0));
  EXPECT_EQ(back.pixel(layout.cells[0][2].x + 1, layout.cells[0][2].y + 1), accuracy_color(0.0));

  const auto chart = dir / "chart.png";
  write_png(render_line_chart(small_chart(true)), chart);
  EXPECT_EQ(read_png(chart).width(), 960);

  // Not a PNG / missing / unwritable.
  const auto junk = dir / "junk.png";
  std::ofstream(junk) << "not a png";
  EXPECT_THROW(read_png(junk), std::runtime_error);
  EXPECT_THROW(read_png(dir / "missing.png"), std::runtime_error);
  EXPECT_THROW(write_png(image, dir / "no_such_dir" / "x.png"), std::runtime_error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tq::eval
