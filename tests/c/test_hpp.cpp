// Tests of include/lofi.hpp, the C++17 wrapper: ownership, exceptions, views, grids, tiles,
// points, progress callbacks (including one that throws), logging, threads, and the
// plug-and-play wrapper lofi::Pnp (built-in and user operators, solve, cancellation).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
static_assert(!std::is_copy_constructible<lofi::Pnp>::value, "Pnp is move-only");
static_assert(!std::is_copy_assignable<lofi::Pnp>::value, "Pnp is move-only");
static_assert(std::is_nothrow_move_constructible<lofi::Pnp>::value, "Pnp moves without throwing");
static_assert(std::is_nothrow_move_assignable<lofi::Pnp>::value, "Pnp moves without throwing");
static_assert(std::is_constructible<lofi::Pnp, lofi::Model&&, const lofi_operator&, const std::vector<float>&>::value,
              "a Pnp keeps its model alive: even a temporary will do");

std::vector<float> pixels(std::size_t c, unsigned seed) {
  float* p = lt_make_pixels(W, H, c, seed);
  std::vector<float> v(p, p + W * H * c);
  free(p);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// One CPU thread: lofi guarantees bit-identical tiles, batches and threads only then.
lofi::RunParams one_thread() {
  lofi::RunParams p;
  p.threads = 1;
  return p;
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
  // bf16 runs on CPUs with bfloat16 instructions: make the library see none, for the error.
  setenv("LOFI_ASSUME_NO_BF16", "1", 1);
  CHECK(throws_error([&] { lofi::Model::load(fixture("tiny-gray.lofi"), bad); }, LOFI_STATUS_INVALID_ARGUMENT,
                     "avx512_bf16"));
  unsetenv("LOFI_ASSUME_NO_BF16");
  bad.precision = lofi::Precision::f16;
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
  const lofi::RunParams one = one_thread();
  const std::vector<float> whole = m.reconstruct_region(in, grid, one);
  std::vector<float> tiled(whole.size(), -1.0f);
  const lofi::OutputView out(tiled, grid.width, grid.height, 1);
  for (std::size_t row0 = 0; row0 < grid.height; row0 += 16)
    for (std::size_t col0 = 0; col0 < grid.width; col0 += 20) {
      std::size_t cols = std::min<std::size_t>(20, grid.width - col0), rows = std::min<std::size_t>(16, grid.height - row0);
      m.reconstruct_region(in, grid.tile(col0, row0, cols, rows), out.subview(col0, row0, cols, rows), one);
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
  const std::vector<float> expected = m.reconstruct(in, one_thread());

  lofi::RunParams params = one_thread();   // several batches == one batch, bit for bit
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
  CHECK(same_bits(m.reconstruct(in, one_thread()), expected));
}

// An image read in rectangles by a std::function gives the ImageView's values bit for bit; an
// exception thrown by the reader reaches the caller unchanged and the model stays usable.
void test_input_reader() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-rgb.lofi"));
  const std::vector<float> px = pixels(3, 6);
  const lofi::ImageView in(px, W, H, 3);
  const lofi::Grid fine = lofi::Grid::scaled(in, 2.0);
  const std::vector<float> expected = m.reconstruct_region(in, fine, one_thread());

  std::size_t reads = 0;
  lofi::InputReader reader{W, H, 3, [&](std::size_t row0, std::size_t rows, std::size_t col0, std::size_t cols,
                                        float* out) {
                             reads++;
                             for (std::size_t r = 0; r < rows; r++)
                               std::memcpy(out + r * cols * 3, px.data() + ((row0 + r) * W + col0) * 3,
                                           cols * 3 * sizeof(float));
                           }};
  CHECK(same_bits(m.reconstruct_region(reader, fine, one_thread()), expected));
  CHECK(reads > 0);
  CHECK(lofi::Grid::pixels(reader).width == W && lofi::Grid::pixels(reader).height == H);

  lofi::InputReader failing = reader;
  failing.read = [](std::size_t, std::size_t, std::size_t, std::size_t, float*) { throw Boom{7}; };
  bool caught = false;
  try {
    m.reconstruct_region(failing, fine, one_thread());
  } catch (const Boom& b) {
    caught = b.code == 7;
  }
  CHECK_MSG(caught, "the reader's exception did not reach the caller");
  lofi::InputReader empty = reader;
  empty.read = nullptr;
  CHECK(throws_error([&] { m.reconstruct_region(empty, fine); }, LOFI_STATUS_INVALID_ARGUMENT, "read is empty"));
  CHECK(same_bits(m.reconstruct_region(in, fine, one_thread()), expected));
}

void test_threads_share_a_model() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-rgb.lofi"));
  const std::vector<float> px = pixels(3, 5);
  const lofi::ImageView in(px, W, H, 3);
  const lofi::Grid fine = lofi::Grid::scaled(in, 2.0);
  const lofi::RunParams one = one_thread();
  const std::vector<float> expected = m.reconstruct_region(in, fine, one);
  std::atomic<int> mismatches{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([&] {
      try {
        for (int round = 0; round < 2; round++)
          if (!same_bits(m.reconstruct_region(in, fine, one), expected)) mismatches++;
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
  std::atomic<int> messages{0}, loads{0};
  lofi::set_log_callback(
      [&](lofi::LogLevel level, const char* message) {
        messages++;
        if (level == lofi::LogLevel::info && std::strstr(message, "loaded a LoFi model")) loads++;
      },
      lofi::LogLevel::info);
  lofi::Model::load(fixture("tiny-gray.lofi"));
  CHECK_MSG(loads == 1, "%d load message(s) at info", loads.load());
  lofi::set_log_callback([](lofi::LogLevel, const char*) { throw 1; }, lofi::LogLevel::trace);
  lofi::Model::load(fixture("tiny-gray.lofi"));  // a throwing log callback is harmless
  lofi::set_log_callback(nullptr);
  const int after = messages;
  lofi::Model::load(fixture("tiny-gray.lofi"));
  CHECK(messages == after && after >= 1);
  lofi::check_version();
  lofi::release_cached_memory();
}

void test_metadata_and_model_lifetime() {
  const lofi::Model plain = lofi::Model::load(fixture("tiny-gray-nodigest.lofi"));
  const lofi::Model digested = lofi::Model::load(fixture("tiny-gray.lofi"));
  CHECK(plain.metadata("format_version") == "1");
  CHECK(plain.metadata("digest").empty());
  CHECK(digested.metadata("digest").size() == 7 + 64 && digested.metadata("digest").rfind("sha256:", 0) == 0);
  CHECK(digested.metadata("config") == plain.metadata("config"));
  try {
    (void)plain.metadata("nope");
    CHECK_MSG(false, "an unknown key was accepted");
  } catch (const lofi::Error& e) {
    CHECK(e.status() == LOFI_STATUS_INVALID_ARGUMENT && std::strstr(e.what(), "unknown metadata key"));
  }
  // A Pnp built on a temporary Model: the state holds the model (ASan checks the use).
  lofi_operator op = lofi::default_operator();
  op.width = W;
  op.height = H;
  op.channels = 1;
  lofi::PnpParams params;
  params.threads = 1;
  lofi::Pnp pnp(lofi::Model::load(fixture("tiny-gray.lofi")), op, pixels(1, 9), params);
  const lofi::PnpResiduals r = pnp.solve(2);
  CHECK(r.iteration == 2 && std::isfinite(r.primal));
  CHECK(pnp.estimate().size() == W * H);
}

// Noise levels and refined denoising through the wrapper: the same values as the C calls.
void test_noise_level_and_refined_denoising() {
  const lofi::Model aware = lofi::Model::load(fixture("tiny-gray-sigma.lofi"));
  const std::vector<float> px = pixels(1, 12);
  const lofi::ImageView in(px.data(), W, H, 1);
  lofi::RunParams params;
  params.threads = 1;
  try {
    (void)aware.reconstruct(in, params);
    CHECK_MSG(false, "a noise-level-aware model ran without a noise level");
  } catch (const lofi::Error& e) {
    CHECK(e.status() == LOFI_STATUS_INVALID_ARGUMENT);
  }
  params.noise_level = 0.1;
  const std::vector<float> one = aware.reconstruct(in, params);
  lofi_run_params c = lofi_default_run_params();
  c.threads = 1;
  c.noise_level = 0.1;
  const lofi_image img = in.to_c();
  std::vector<float> expected(W * H);
  CHECK_OK(lofi_denoise_refined(aware.get(), &img, NULL, expected.data(), 0, &c, NULL));
  lofi::RunReport report{};
  const std::vector<float> refined = aware.denoise_refined(in, params, lofi_default_refinement(), &report);
  CHECK(same_bits(refined, expected));
  CHECK(!same_bits(refined, one));
  // Two full passes, and the 2 x 2 means on two grids (the second moved a pixel: one more block each way).
  CHECK(report.pixels == 2 * W * H + (W / 2) * (H / 2) + (W / 2 + 1) * (H / 2 + 1));
  lofi_refinement none = lofi_default_refinement();
  none.coarse_blur = 0.0;
  none.cleanup = 0.0;
  CHECK(same_bits(aware.denoise_refined(in, params, none), one));
}

// ---- plug-and-play ------------------------------------------------------------------------------

bool finite(double v) { return v - v == 0.0; }

void test_pnp_builtin_operator() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-gray.lofi"));
  const std::vector<float> truth = pixels(1, 7);
  std::vector<float> mask(W * H);
  for (std::size_t i = 0; i < mask.size(); i++) mask[i] = (i * 7) % 10 < 4 ? 1.0f : 0.0f;
  lofi_operator op = lofi::default_operator();
  op.kind = LOFI_OPERATOR_INPAINT;
  op.width = W;
  op.height = H;
  op.channels = 1;
  op.mask = mask.data();
  op.mask_len = mask.size();
  CHECK(lofi::measurement_len(op) == W * H);
  const std::vector<float> y = lofi::operator_forward(op, truth);
  REQUIRE(y.size() == W * H);
  CHECK(y[0] == truth[0] && y[5] == 0.0f);  // mask[0] observed, mask[5] not

  lofi::PnpParams params;
  params.threads = 1;
  lofi::Pnp pnp(m, op, y, params);
  REQUIRE(static_cast<bool>(pnp));
  CHECK(pnp.image_size() == W * H);
  // Before the first step: inpainting's first guess, the observed pixels kept, the gaps filled.
  const std::vector<float> start = pnp.estimate();
  REQUIRE(start.size() == W * H);
  bool kept = true;
  for (std::size_t i = 0; i < start.size(); i++) kept = kept && std::isfinite(start[i]) && (mask[i] == 0.0f || start[i] == y[i]);
  CHECK(kept);
  lofi::PnpResiduals r = pnp.step();
  CHECK(r.iteration == 1 && finite(r.primal) && finite(r.dual) && finite(r.data_misfit) && r.psnr != r.psnr);
  pnp.set_ground_truth(truth);
  r = pnp.step();
  CHECK(r.iteration == 2 && finite(r.psnr) && r.cg_iterations == 0);
  const std::vector<float> est = pnp.estimate();

  // The same two steps through the C API give the same bits (same settings, one thread).
  const auto c_api_two_steps = [&](lofi_pnp_params cp) {
    lofi_pnp* c = nullptr;
    cp.run.threads = 1;
    std::vector<float> c_est(W * H);
    CHECK_OK(lofi_pnp_create(m.get(), &op, y.data(), y.size(), &cp, &c));
    CHECK_OK(lofi_pnp_step(c, nullptr));
    CHECK_OK(lofi_pnp_step(c, nullptr));
    CHECK_OK(lofi_pnp_estimate(c, c_est.data(), 0));
    lofi_pnp_free(c);
    return c_est;
  };
  CHECK_MSG(same_bits(est, c_api_two_steps(lofi_default_pnp_params())), "lofi::Pnp and the C API differ");
  // transforms and average_last travel through the wrapper: the plain iteration equals the C
  // API's plain iteration and differs from the default.
  {
    lofi::PnpParams plain = params;
    plain.transforms = LOFI_TRANSFORMS_NONE;
    plain.average_last = 1;
    lofi::Pnp p(m, op, y, plain);
    p.step();
    p.step();
    const std::vector<float> plain_est = p.estimate();
    lofi_pnp_params pc = lofi_default_pnp_params();
    CHECK(pc.transforms == LOFI_TRANSFORMS_DIHEDRAL && pc.average_last == 8);
    pc.transforms = LOFI_TRANSFORMS_NONE;
    pc.average_last = 1;
    CHECK_MSG(same_bits(plain_est, c_api_two_steps(pc)), "the plain iteration differs between lofi::Pnp and the C API");
    CHECK_MSG(!same_bits(plain_est, est), "the transforms changed nothing");
  }
  // Into a strided buffer.
  std::vector<float> strided((W + 3) * H, -1.0f);
  pnp.estimate(strided.data(), (W + 3) * sizeof(float));
  CHECK(std::memcmp(strided.data() + (W + 3), est.data() + W, W * sizeof(float)) == 0 && strided[W] == -1.0f);

  // Moves; an empty Pnp throws.
  lofi::Pnp moved = std::move(pnp);
  CHECK(!pnp && moved);
  CHECK(moved.step().iteration == 3);
  CHECK(throws_error([&] { pnp.step(); }, LOFI_STATUS_INVALID_ARGUMENT, "lofi_pnp_step: pnp is NULL"));
  CHECK(throws_error([&] { lofi::Pnp().estimate(); }, LOFI_STATUS_INVALID_ARGUMENT, "pnp is NULL"));
  pnp = std::move(moved);
  CHECK(pnp && !moved);
  r = pnp.solve(2);
  CHECK(r.iteration == 5 && finite(r.psnr));
  pnp.reset();
  CHECK(!pnp);

  // The wrapper's checks and the library's, as lofi::Error.
  CHECK(throws_error([&] { lofi::operator_forward(op, std::vector<float>(3)); }, LOFI_STATUS_INVALID_ARGUMENT,
                     "lofi.hpp: operator_forward"));
  CHECK(throws_error([&] { lofi::Pnp(m, op, y, params).set_ground_truth(std::vector<float>(2)); },
                     LOFI_STATUS_INVALID_ARGUMENT, "lofi.hpp: Pnp: the ground truth holds 2"));
  CHECK(throws_error([&] { lofi::Pnp(m, op, std::vector<float>(5), params); }, LOFI_STATUS_INVALID_ARGUMENT,
                     "lofi_pnp_create: inpaint: 5 measurement values, expected 480"));
  CHECK(throws_error([&] { lofi::Pnp(m, op, std::vector<float>{}, params); }, LOFI_STATUS_INVALID_ARGUMENT,
                     "lofi_pnp_create"));
  const lofi::Model cplx = lofi::Model::load(fixture("tiny-complex.lofi"));
  CHECK(throws_error([&] { lofi::Pnp(cplx, op, y, params); }, LOFI_STATUS_INVALID_ARGUMENT, "needs a denoiser"));
  lofi_operator bad = op;
  bad.kind = 42;
  CHECK(throws_error([&] { lofi::measurement_len(bad); }, LOFI_STATUS_INVALID_ARGUMENT, "unknown operator kind 42"));
  lofi::PnpParams no_alpha = params;
  no_alpha.alpha = 0.0;
  CHECK(throws_error([&] { lofi::Pnp(m, op, y, no_alpha); }, LOFI_STATUS_INVALID_ARGUMENT, "alpha"));
  CHECK(throws_error([&] { lofi::Pnp(m, op, y, params).solve(0); }, LOFI_STATUS_INVALID_ARGUMENT, "iterations is 0"));
}

void test_pnp_user_operator() {
  const lofi::Model m = lofi::Model::load(fixture("tiny-gray.lofi"));
  const std::vector<float> truth = pixels(1, 8);
  // A = 2 x 2 box average, as lambdas; a flag makes forward throw.
  int forward_calls = 0, adjoint_calls = 0;
  bool fail = false;
  lofi::UserOperator box;
  box.width = W;
  box.height = H;
  box.channels = 1;
  box.measurement_len = (W / 2) * (H / 2);
  box.forward = [&](const float* x, float* y) {
    forward_calls++;
    if (fail) throw Boom{7};
    for (std::size_t j = 0; j < H / 2; j++)
      for (std::size_t i = 0; i < W / 2; i++) {
        const float* p = x + 2 * j * W + 2 * i;
        y[j * (W / 2) + i] = 0.25f * (p[0] + p[1] + p[W] + p[W + 1]);
      }
  };
  box.adjoint = [&](const float* y, float* x) {
    adjoint_calls++;
    for (std::size_t r = 0; r < H; r++)
      for (std::size_t c = 0; c < W; c++) x[r * W + c] = 0.25f * y[(r / 2) * (W / 2) + c / 2];
  };
  std::vector<float> y(box.measurement_len);
  box.forward(truth.data(), y.data());
  forward_calls = 0;

  lofi::PnpParams params;
  params.threads = 1;
  params.cg_max_iterations = 20;
  std::uint64_t progress_calls = 0, last_done = 0, cancel_at = 0;
  params.progress = [&](std::uint64_t done, std::uint64_t) {
    progress_calls++;
    last_done = done;
    return cancel_at == 0 || progress_calls < cancel_at;
  };
  lofi::Pnp pnp(m, box, y, params);
  CHECK(adjoint_calls >= 1);
  pnp.set_ground_truth(truth);
  lofi::PnpResiduals r = pnp.step();
  CHECK(r.iteration == 1 && r.cg_iterations > 0 && finite(r.psnr) && forward_calls > 0);
  CHECK(progress_calls == 0);  // step() reports nothing

  // A callback's exception reaches the caller unchanged; the state goes on afterwards.
  fail = true;
  bool caught = false;
  try {
    pnp.step();
  } catch (const Boom& b) {
    caught = b.code == 7;
  }
  CHECK_MSG(caught, "the user operator's exception did not reach the caller");
  fail = false;
  CHECK(pnp.step().iteration == 2);

  // solve: progress after every iteration; cancelling keeps the iterations done.
  r = pnp.solve(3);
  CHECK(r.iteration == 5 && progress_calls == 3 && last_done == 3);
  progress_calls = 0;
  cancel_at = 1;
  CHECK(throws_error([&] { pnp.solve(4); }, LOFI_STATUS_CANCELLED, "lofi_pnp_solve"));
  CHECK(progress_calls == 1 && pnp.step().iteration == 7);
  // A progress callback that throws: rethrown by solve().
  progress_calls = 0;
  cancel_at = 0;
  lofi::PnpParams throwing = params;
  throwing.progress = [&](std::uint64_t done, std::uint64_t) -> bool {
    if (done == 2) throw Boom{9};
    return true;
  };
  lofi::Pnp other(m, box, y, throwing);
  caught = false;
  try {
    other.solve(5);
  } catch (const Boom& b) {
    caught = b.code == 9;
  }
  CHECK(caught && other.step().iteration == 3);

  // A user operator without both functions is refused by the wrapper.
  lofi::UserOperator half = box;
  half.adjoint = nullptr;
  CHECK(throws_error([&] { lofi::Pnp(m, half, y, params); }, LOFI_STATUS_INVALID_ARGUMENT, "lofi.hpp: Pnp"));
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
  RUN(test_input_reader);
  RUN(test_threads_share_a_model);
  RUN(test_log_and_version);
  RUN(test_pnp_builtin_operator);
  RUN(test_pnp_user_operator);
  RUN(test_metadata_and_model_lifetime);
  RUN(test_noise_level_and_refined_denoising);
  return lt_done();
}
