// Tests of include/lofi.hpp, the C++17 wrapper: ownership, exceptions, views, grids, tiles,
// points, progress callbacks (including one that throws), logging and threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <type_traits>

#include "lofi.hpp"
#include "lofi_test.h"

namespace {

constexpr std::size_t W = 24, H = 20;

static_assert(!std::is_copy_constructible<lofi::Model>::value, "Model is move-only");
static_assert(!std::is_copy_assignable<lofi::Model>::value, "Model is move-only");
static_assert(std::is_nothrow_move_constructible<lofi::Model>::value, "Model moves without throwing");
static_assert(std::is_nothrow_move_assignable<lofi::Model>::value, "Model moves without throwing");

std::vector<float> pixels(std::size_t c, unsigned seed) {
  float* p = lt_make_pixels(W, H, c, seed);
  std::vector<float> v(p, p + W * H * c);
  free(p);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs f, expecting lofi::Error with `status` and a message containing `needle`.
template <class F>
bool throws_error(F&& f, lofi_status status, const char* needle) {
  try {
    f();
  } catch (const lofi::Error& e) {
    if (lt_verbose) std::fprintf(stderr, "  %-28s %s\n", e.status_name(), e.what());
    return e.status() == status && std::strstr(e.what(), needle) != nullptr;
  }
  return false;
}

std::string fixture(const char* name) { return lt_fixture(name); }

void test_load_and_ownership() {
  CHECK(throws_error([] { lofi::Model::load(fixture("missing.lofi")); }, LOFI_STATUS_IO, "lofi_load: cannot read"));
  lofi::Model a = lofi::Model::load(fixture("tiny-rgb.lofi"));
  REQUIRE(static_cast<bool>(a));
  lofi::ModelInfo info = a.info();
  CHECK(info.channels_in == 3 && info.channels_out == 3 && a.channels_out() == 3);
  lofi::Model b = std::move(a);
  CHECK(!a && b);
  CHECK(throws_error([&] { a.info(); }, LOFI_STATUS_INVALID_ARGUMENT, "model is NULL"));
  a = std::move(b);
  CHECK(a && !b);
  lofi::Model& alias = a;
  a = std::move(alias);  // self-move keeps the model
  CHECK(static_cast<bool>(a));
  lofi_model* raw = a.release();
  CHECK(!a && raw != nullptr);
  lofi::Model adopted(raw);
  CHECK(adopted.channels_in() == 3);
  adopted.reset();
  CHECK(!adopted);
  adopted.reset();  // twice is fine

  lofi::LoadParams bad;
  bad.precision = lofi::Precision::bf16;
  CHECK(throws_error([&] { lofi::Model::load(fixture("tiny-gray.lofi"), bad); }, LOFI_STATUS_INVALID_ARGUMENT,
                     "CUDA only"));
  lofi::LoadParams cuda;
  cuda.device = lofi::Device::cuda;
  try {
    lofi::Model m = lofi::Model::load(fixture("tiny-gray.lofi"), cuda);
    CHECK(m.info().device == LOFI_DEVICE_CUDA);
  } catch (const lofi::Error& e) {
    CHECK(e.status() == LOFI_STATUS_DEVICE_UNAVAILABLE);
  }
}

void test_load_from_memory() {
  std::size_t size = 0;
  unsigned char* bytes = lt_read_file(lt_fixture("tiny-gray.lofi"), &size);
  REQUIRE(bytes != nullptr);
  std::vector<std::uint8_t> v(bytes, bytes + size);
  free(bytes);
  lofi::Model m = lofi::Model::load_from_memory(v);
  CHECK(m.channels_in() == 1);
  CHECK(throws_error([] { lofi::Model::load_from_memory(std::vector<std::uint8_t>{}); }, LOFI_STATUS_INVALID_MODEL,
                     "empty"));
  v.resize(v.size() / 2);
  CHECK(throws_error([&] { lofi::Model::load_from_memory(v); }, LOFI_STATUS_INVALID_MODEL, "lofi_load_from_memory:"));
}

void test_matches_c_api() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-rgb.lofi"));
  const std::vector<float> px = pixels(3, 1);
  const lofi::ImageView in(px, W, H, 3);
  lofi_image img = lt_image(px.data(), W, H, 3);

  std::vector<float> c_on(W * H * 3), c_fine((2 * W - 1) * (2 * H - 1) * 3);
  CHECK_OK(lofi_reconstruct_region(m.get(), &img, nullptr, W, H, nullptr, c_on.data(), 0, nullptr, nullptr));
  CHECK_OK(lofi_reconstruct_region(m.get(), &img, nullptr, 2 * W - 1, 2 * H - 1, nullptr, c_fine.data(), 0,
                                   nullptr, nullptr));
  lofi::RunReport report{};
  CHECK(same_bits(m.reconstruct(in, {}, &report), c_on));
  CHECK(report.pixels == W * H && report.batches >= 1);
  const lofi::Grid fine = lofi::Grid::scaled(in, 2.0);
  CHECK(fine.width == 2 * W - 1 && fine.height == 2 * H - 1 && !fine.region && !fine.window);
  CHECK(same_bits(m.reconstruct_region(in, fine), c_fine));

  // A region at a scale: Grid::scaled(region) = the C call with that region and grid.
  const lofi::Region r{2.0, 3.0, 17.5, 15.0};
  const lofi::Grid g = lofi::Grid::scaled(r, 2.0);
  CHECK(g.width == 32 && g.height == 25);
  std::vector<float> c_region(32 * 25 * 3);
  CHECK_OK(lofi_reconstruct_region(m.get(), &img, &r, 32, 25, nullptr, c_region.data(), 0, nullptr, nullptr));
  CHECK(same_bits(m.reconstruct_region(in, g), c_region));

  // Points.
  std::vector<lofi::Point> pts;
  for (std::size_t y = 0; y < H; y += 3)
    for (std::size_t x = 0; x < W; x += 5) pts.push_back({double(x), double(y)});
  const std::vector<float> vals = m.reconstruct_points(in, pts);
  REQUIRE(vals.size() == pts.size() * 3);
  double worst = 0;
  for (std::size_t i = 0; i < pts.size(); i++)
    for (std::size_t c = 0; c < 3; c++) {
      std::size_t at = (std::size_t(pts[i].y) * W + std::size_t(pts[i].x)) * 3 + c;
      worst = std::max(worst, std::fabs(double(vals[i * 3 + c]) - double(c_on[at])));
    }
  CHECK_MSG(worst <= 1e-5, "points vs grid: %g", worst);
  CHECK(m.reconstruct_points(in, std::vector<lofi::Point>{}).empty());
}

void test_tiles_into_subviews() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-gray.lofi"));
  const std::vector<float> px = pixels(1, 2);
  const lofi::ImageView in(px, W, H);
  const lofi::Grid grid = lofi::Grid::scaled(in, 2.0);
  const std::vector<float> whole = m.reconstruct_region(in, grid);
  std::vector<float> tiled(whole.size(), -1.0f);
  const lofi::OutputView out(tiled, grid.width, grid.height, 1);
  for (std::size_t row0 = 0; row0 < grid.height; row0 += 16)
    for (std::size_t col0 = 0; col0 < grid.width; col0 += 20) {
      std::size_t cols = std::min<std::size_t>(20, grid.width - col0), rows = std::min<std::size_t>(16, grid.height - row0);
      m.reconstruct_region(in, grid.tile(col0, row0, cols, rows), out.subview(col0, row0, cols, rows));
    }
  CHECK_MSG(same_bits(whole, tiled), "tiles differ from the whole");
}

void test_wrapper_checks() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-gray.lofi"));
  const std::vector<float> px = pixels(1, 3);
  const lofi::ImageView in(px, W, H);
  std::vector<float> small(10);
  CHECK(throws_error([&] {
                       lofi::ImageView bad(px, W, H + 1);
                       (void)bad;
                     }, LOFI_STATUS_INVALID_ARGUMENT, "lofi.hpp: image"));
  CHECK(throws_error([&] { m.reconstruct_region(in, lofi::Grid::pixels(in), lofi::OutputView(small, 10, 1)); },
                     LOFI_STATUS_INVALID_ARGUMENT, "lofi.hpp: output view is 10 x 1 x 1"));
  CHECK(throws_error([&] { lofi::OutputView(small.data(), 5, 1).subview(3, 0, 3, 1); }, LOFI_STATUS_INVALID_ARGUMENT,
                     "subview"));
  const lofi::Point p{1, 1};
  CHECK(throws_error([&] { m.reconstruct_points(in, &p, 1, small.data(), 0); }, LOFI_STATUS_INVALID_ARGUMENT,
                     "lofi.hpp: output holds 0"));
  CHECK(throws_error([] { lofi::Grid::scaled(lofi::Region{0, 0, 1, 1}, 0.0); }, LOFI_STATUS_INVALID_ARGUMENT, "scale"));
  // The library's own checks come through as lofi::Error with its message.
  const lofi::ImageView rgb_in(px.data(), W / 3, H, 3);
  CHECK(throws_error([&] { m.reconstruct(rgb_in); }, LOFI_STATUS_INVALID_INPUT, "lofi_reconstruct_region: the image has 3"));
  lofi::RunParams tiny;
  tiny.memory_budget_bytes = 1000;
  CHECK(throws_error([&] { m.reconstruct(in, tiny); }, LOFI_STATUS_BUDGET_TOO_SMALL, "at least"));
  CHECK(throws_error([&] { m.reconstruct_region(in, lofi::Grid::pixels(in).tile(20, 0, 5, 1)); },
                     LOFI_STATUS_INVALID_ARGUMENT, "outside"));
}

struct Boom {
  int code;
};

void test_progress_callbacks() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-gray.lofi"));
  const std::vector<float> px = pixels(1, 4);
  const lofi::ImageView in(px, W, H);
  const std::vector<float> expected = m.reconstruct(in);

  lofi::RunParams params;
  params.memory_budget_bytes = 2u << 20;  // about 64 pixels per batch for this model and image
  std::uint64_t calls = 0, last = 0;
  params.progress = [&](std::uint64_t done, std::uint64_t total) {
    calls++;
    last = done;
    return total == W * H;
  };
  lofi::RunReport report{};
  CHECK(same_bits(m.reconstruct(in, params, &report), expected));
  CHECK(calls == report.batches && calls > 1 && last == W * H);

  params.progress = [](std::uint64_t, std::uint64_t) { return false; };
  CHECK(throws_error([&] { m.reconstruct(in, params); }, LOFI_STATUS_CANCELLED, "lofi_reconstruct_region"));

  // An exception from the callback cancels the call and reaches the caller unchanged.
  calls = 0;
  params.progress = [&](std::uint64_t, std::uint64_t) -> bool {
    if (++calls == 2) throw Boom{42};
    return true;
  };
  bool caught = false;
  try {
    m.reconstruct(in, params);
  } catch (const Boom& b) {
    caught = b.code == 42;
  }
  CHECK_MSG(caught, "the callback's exception did not reach the caller");
  CHECK_MSG(calls == 2, "the callback ran %llu times; the call should stop at the throw", (unsigned long long)calls);
  // Points too.
  calls = 0;
  caught = false;
  try {
    m.reconstruct_points(in, std::vector<lofi::Point>(300, lofi::Point{2.0, 3.0}), params);
  } catch (const Boom&) {
    caught = true;
  }
  CHECK(caught);
  // The model is still fine afterwards.
  CHECK(same_bits(m.reconstruct(in), expected));
}

void test_threads_share_a_model() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-rgb.lofi"));
  const std::vector<float> px = pixels(3, 5);
  const lofi::ImageView in(px, W, H, 3);
  const lofi::Grid fine = lofi::Grid::scaled(in, 2.0);
  const std::vector<float> expected = m.reconstruct_region(in, fine);
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([&] {
      try {
        for (int round = 0; round < 2; round++)
          if (!same_bits(m.reconstruct_region(in, fine), expected)) mismatches++;
      } catch (...) {
        errors++;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(mismatches == 0 && errors == 0);
}

void test_log_and_version() {
  char expected[32];
  std::snprintf(expected, sizeof expected, "%d.%d.%d", LOFI_VERSION_MAJOR, LOFI_VERSION_MINOR, LOFI_VERSION_PATCH);
  CHECK(std::strcmp(lofi::version(), expected) == 0);
  std::atomic<int> messages{0};
  lofi::set_log_callback([&](lofi::LogLevel, const char*) { messages++; }, lofi::LogLevel::trace);
  lofi::Model::load(fixture("tiny-gray.lofi"));
  lofi::set_log_callback([](lofi::LogLevel, const char*) { throw 1; }, lofi::LogLevel::trace);
  lofi::Model::load(fixture("tiny-gray.lofi"));  // a throwing log callback is harmless
  lofi::set_log_callback(nullptr);
  CHECK(messages >= 0);
}

}  // namespace

int main(int argc, char** argv) {
  lt_init(argc, argv);
  RUN(test_load_and_ownership);
  RUN(test_load_from_memory);
  RUN(test_matches_c_api);
  RUN(test_tiles_into_subviews);
  RUN(test_wrapper_checks);
  RUN(test_progress_callbacks);
  RUN(test_threads_share_a_model);
  RUN(test_log_and_version);
  return lt_done();
}
