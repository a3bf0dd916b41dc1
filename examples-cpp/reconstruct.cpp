// reconstruct.cpp: liblofi from C++17 through lofi.hpp.
//
//   reconstruct MODEL [INPUT.pgm|INPUT.ppm]
//
// Loads a model, then on one image (the given binary PGM/PPM, or a synthetic test pattern with
// the model's input channels):
//   1. reconstructs it on its own pixel grid, with a progress callback and a run report;
//   2. reconstructs it at 2x resolution, and a region of it at 4x;
//   3. reconstructs the 2x grid tile by tile into one buffer and checks that it equals the whole
//      bit for bit (with threads = 1: lofi guarantees bit-identical tiles only on one CPU thread,
//      as with more the BLAS may split rows differently);
//   4. reconstructs the 2x grid on several std::threads sharing the one model and checks every
//      result against the single-threaded one (bit for bit with threads = 1; with libtorch's
//      default thread count, to 1e-6 relative);
//   5. cancels a reconstruction from the progress callback.
// Exits non-zero if a check fails; lofi::Error's status and message are printed on failure.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lofi.hpp"

namespace {

struct Image {
  std::vector<float> pixels;  // (H, W, C), values in [0, 1]
  std::size_t width = 0, height = 0, channels = 0;
  lofi::ImageView view() const { return lofi::ImageView(pixels, width, height, channels); }
};

// Reads a binary PGM (P5) or PPM (P6), 8 or 16 bit.
Image read_pnm(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::string magic;
  f >> magic;
  if (magic != "P5" && magic != "P6") throw std::runtime_error(path + " is not a binary PGM/PPM");
  auto number = [&f, &path]() {
    for (;;) {
      int c = f.peek();
      if (c == '#') {
        std::string comment;
        std::getline(f, comment);
      } else if (std::isspace(c)) {
        f.get();
      } else {
        break;
      }
    }
    unsigned long v = 0;
    if (!(f >> v)) throw std::runtime_error(path + ": malformed header");
    return v;
  };
  Image img;
  img.width = number();
  img.height = number();
  const unsigned long maxval = number();
  f.get();  // the single whitespace after maxval
  if (maxval == 0 || maxval > 65535) throw std::runtime_error(path + ": bad maxval");
  img.channels = magic == "P5" ? 1 : 3;
  const std::size_t n = img.width * img.height * img.channels, bytes = maxval > 255 ? 2 : 1;
  std::vector<unsigned char> raw(n * bytes);
  if (!f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size())))
    throw std::runtime_error(path + ": truncated pixel data");
  img.pixels.resize(n);
  for (std::size_t i = 0; i < n; i++) {
    const unsigned v = bytes == 2 ? (unsigned(raw[2 * i]) << 8 | raw[2 * i + 1]) : raw[i];
    img.pixels[i] = float(v) / float(maxval);
  }
  return img;
}

// A smooth pattern with a little deterministic noise.
Image synthetic(std::size_t width, std::size_t height, std::size_t channels) {
  Image img{std::vector<float>(width * height * channels), width, height, channels};
  std::uint32_t state = 12345;
  for (std::size_t y = 0; y < height; y++)
    for (std::size_t x = 0; x < width; x++)
      for (std::size_t c = 0; c < channels; c++) {
        state = state * 1664525u + 1013904223u;
        const double noise = double(state >> 8) / double(1u << 24) - 0.5;
        img.pixels[(y * width + x) * channels + c] =
            float(0.5 + 0.3 * std::sin(0.3 * double(x) + double(c)) * std::cos(0.2 * double(y)) + 0.05 * noise);
      }
  return img;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// max |a - b| / max |b| (inf if the sizes differ).
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return HUGE_VAL;
  double diff = 0, scale = 1e-30;
  for (std::size_t i = 0; i < a.size(); i++) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= diff)) diff = d;  // NaN propagates
    scale = std::fmax(scale, std::fabs(double(b[i])));
  }
  return diff / scale;
}

void print_report(const char* what, const lofi::RunReport& r) {
  std::printf("%-28s %8llu pixels, %llu batch(es) of up to %llu, estimated peak %.1f MiB\n", what,
              (unsigned long long)r.pixels, (unsigned long long)r.batches, (unsigned long long)r.batch_pixels,
              double(r.estimated_peak_bytes) / 1048576.0);
}

int run(int argc, char** argv) {
  const lofi::Model model = lofi::Model::load(argv[1]);
  const lofi::ModelInfo info = model.info();
  std::printf("lofi %s; model: channels %d -> %d, %d x %d samples per pixel, %lld parameters\n", lofi::version(),
              info.channels_in, info.channels_out, info.rings, info.angles, (long long)info.parameter_count);

  const Image image = argc > 2 ? read_pnm(argv[2]) : synthetic(48, 40, std::size_t(info.channels_in));
  const lofi::ImageView in = image.view();
  const std::size_t c_out = model.channels_out();
  std::printf("image: %zu x %zu x %zu\n", in.width, in.height, in.channels);
  int failures = 0;

  // 1. On-grid, with a progress callback and a small budget (several batches).
  lofi::RunParams params;
  params.memory_budget_bytes = 8u << 20;
  unsigned batches = 0;
  params.progress = [&batches](std::uint64_t done, std::uint64_t total) {
    batches++;
    std::printf("  progress %llu / %llu\n", (unsigned long long)done, (unsigned long long)total);
    return true;
  };
  lofi::RunReport report{};
  const std::vector<float> on_grid = model.reconstruct(in, params, &report);
  print_report("on-grid:", report);
  if (batches != report.batches) {
    std::printf("FAIL: %u progress calls for %llu batches\n", batches, (unsigned long long)report.batches);
    failures++;
  }

  // 2. Twice the resolution; a region (the middle half) at four times.
  const lofi::Grid fine = lofi::Grid::scaled(in, 2.0);
  const std::vector<float> whole = model.reconstruct_region(in, fine, {}, &report);
  print_report("2x resolution:", report);
  const lofi::Region middle{double(in.width) / 4, double(in.height) / 4, double(in.width) * 3 / 4,
                            double(in.height) * 3 / 4};
  const lofi::Grid zoom = lofi::Grid::scaled(middle, 4.0);
  model.reconstruct_region(in, zoom, {}, &report);
  std::printf("region at 4x: %zu x %zu samples\n", zoom.width, zoom.height);
  print_report("", report);
  double worst = 0;  // the 2x grid's even samples are the on-grid ones
  for (std::size_t y = 0; y < in.height; y++)
    for (std::size_t x = 0; x < in.width; x++)
      for (std::size_t c = 0; c < c_out; c++)
        worst = std::fmax(worst, std::fabs(double(whole[((2 * y) * fine.width + 2 * x) * c_out + c]) -
                                           double(on_grid[(y * in.width + x) * c_out + c])));
  std::printf("2x grid vs on-grid at the pixels: max |diff| = %g\n", worst);
  if (!(worst <= 1e-5)) failures++;

  // 3. Tiles of the 2x grid, each written into its place in one buffer. Bit for bit needs one
  //    CPU thread for the whole and the tiles alike.
  lofi::RunParams one;
  one.threads = 1;
  const std::vector<float> whole1 = model.reconstruct_region(in, fine, one);
  std::vector<float> tiled(whole.size(), 0.0f);
  const lofi::OutputView out(tiled, fine.width, fine.height, c_out);
  const std::size_t tile = 32;
  for (std::size_t row0 = 0; row0 < fine.height; row0 += tile)
    for (std::size_t col0 = 0; col0 < fine.width; col0 += tile) {
      const std::size_t cols = std::min(tile, fine.width - col0), rows = std::min(tile, fine.height - row0);
      model.reconstruct_region(in, fine.tile(col0, row0, cols, rows), out.subview(col0, row0, cols, rows), one);
    }
  const bool tiles_ok = same_bits(tiled, whole1);
  std::printf("tiles of %zu x %zu == whole 2x image: %s\n", tile, tile, tiles_ok ? "yes, bit for bit" : "NO");
  if (!tiles_ok) failures++;

  // 4. Several threads sharing the one (immutable) model: even threads with one CPU thread each
  //    (bit for bit), odd ones with libtorch's default (to float rounding).
  const unsigned n_threads = 4;
  std::vector<std::vector<float>> results(n_threads);
  std::vector<std::string> errors(n_threads);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < n_threads; t++)
    threads.emplace_back([&, t] {
      try {
        results[t] = t % 2 == 0 ? model.reconstruct_region(in, fine, one) : model.reconstruct_region(in, fine);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  for (auto& th : threads) th.join();
  for (unsigned t = 0; t < n_threads; t++) {
    bool ok = errors[t].empty();
    if (ok && t % 2 == 0) {
      ok = same_bits(results[t], whole1);
      std::printf("thread %u (threads = 1) == single-threaded: %s\n", t, ok ? "yes, bit for bit" : "NO");
    } else if (ok) {
      const double rel = max_rel_diff(results[t], whole);
      ok = rel <= 1e-6;
      std::printf("thread %u (default threads) == single-threaded: %s (max relative diff %g)\n", t,
                  ok ? "yes" : "NO", rel);
    } else {
      std::printf("thread %u failed: %s\n", t, errors[t].c_str());
    }
    if (!ok) failures++;
  }

  // 5. Cancelling from the callback.
  params.progress = [](std::uint64_t, std::uint64_t) { return false; };
  try {
    model.reconstruct_region(in, fine, params);
    std::printf("FAIL: the reconstruction was not cancelled\n");
    failures++;
  } catch (const lofi::Error& e) {
    std::printf("cancelled: %s (%s)\n", e.status_name(), e.what());
    if (e.status() != LOFI_STATUS_CANCELLED) failures++;
  }

  std::printf("%s\n", failures ? "FAILED" : "all checks passed");
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: reconstruct MODEL [INPUT.pgm|INPUT.ppm]\n");
    return 2;
  }
  try {
    return run(argc, argv);
  } catch (const lofi::Error& e) {
    std::fprintf(stderr, "reconstruct: %s: %s\n", e.status_name(), e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reconstruct: %s\n", e.what());
  }
  return 1;
}
