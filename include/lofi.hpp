/*
 * lofi.hpp: a small header-only C++17 wrapper over the C API of liblofi (lofi.h).
 *
 * Overview
 * --------
 *   #include "lofi.hpp"
 *
 *   lofi::Model model = lofi::Model::load("denoise.lofi");        // throws lofi::Error
 *   lofi::ImageView in(pixels.data(), width, height, 1);          // non-owning, float32 (H, W, C)
 *
 *   std::vector<float> same = model.reconstruct(in);              // on-grid, width x height
 *   lofi::Grid fine = lofi::Grid::scaled(in, 2.0);                // 2x resolution, whole image
 *   std::vector<float> big = model.reconstruct_region(in, fine);  // (2W-1) x (2H-1) x channels_out
 *
 *   lofi::RunParams params;                                       // defaults of lofi.h
 *   params.memory_budget_bytes = 64 << 20;
 *   params.progress = [](std::uint64_t done, std::uint64_t total) { return true; };  // false: cancel
 *   lofi::RunReport report;
 *   model.reconstruct_region(in, fine.tile(0, 0, 64, 64), params, &report);         // one tile
 *
 *   // Plug-and-play (LoFi-ADMM): the model as the prior of y = A x.
 *   lofi_operator op = lofi::default_operator();                 // the C description of A
 *   op.kind = LOFI_OPERATOR_INPAINT; op.width = 64; op.height = 64; op.channels = 1;
 *   op.mask = mask.data(); op.mask_len = mask.size();
 *   std::vector<float> y = lofi::operator_forward(op, clean);      // simulate y = A x
 *   lofi::Pnp pnp(model, op, y);                                   // keeps the model alive
 *   for (int k = 0; k < 100; k++) pnp.step();                      // lofi::PnpResiduals
 *   std::vector<float> estimate = pnp.estimate();                  // H x W x C
 *
 * Contents, in the order they appear below:
 *   lofi::Error         the exception every failure throws: lofi_status + lofi's message
 *   lofi::version()     the library's version string; check_version() (call it at start-up)
 *   release_cached_memory()  give libtorch's cached GPU memory back
 *   Plain types         ModelInfo, Region, Window, RunReport (the C structs), Point, Device,
 *                       Precision, LoadParams
 *   lofi::ImageView     read-only view of an input image (pointer, width, height, channels, stride)
 *   lofi::InputReader   an input read in rectangles by a std::function (larger than memory)
 *   lofi::OutputView    writable view of an output buffer, with subview() for tiles
 *   lofi::Grid          what to reconstruct: grid size, optional region, optional window (tile)
 *   lofi::RunParams     per-call settings: budget, threads, std::function progress callback
 *   lofi::Model         the model: move-only owner of a lofi_model*, load/info/metadata/reconstruct
 *   Plug-and-play       default_operator(), measurement_len(), operator_forward(), PnpParams,
 *                       UserOperator (A and A^T as C++ callables), lofi::Pnp (move-only owner of
 *                       a lofi_pnp*: step(), solve(), estimate())
 *   set_log_callback()  std::function log sink
 *
 * Errors: every failing call throws lofi::Error, whose status() is the lofi_status and whose
 * what() is lofi_last_error() ("lofi_load: cannot read model ..."). Checks made by this header
 * itself (a buffer of the wrong size, say) throw lofi::Error with LOFI_STATUS_INVALID_ARGUMENT and
 * a message starting with "lofi.hpp:". Nothing else is thrown, except std::bad_alloc and whatever
 * your own callbacks throw (progress callbacks, see RunParams; UserOperator functions).
 *
 * Threads: a Model is immutable once loaded; its const member functions may run concurrently on
 * any number of threads (as the C API allows). Moving, assigning or destroying a Model while
 * another thread uses it is a data race, as for any C++ object.
 *
 * Requires lofi.h from the same release (found on the include path) and C++17.
 */
#ifndef LOFI_HPP
#define LOFI_HPP

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lofi.h"

namespace lofi {

// =================================================================================================
// Errors
// =================================================================================================

/// The exception thrown for every failure: the C status and lofi's one-line message.
class Error : public std::runtime_error {
 public:
  Error(lofi_status status, const std::string& message) : std::runtime_error(message), status_(status) {}

  /// The lofi_status of the failed call (never LOFI_STATUS_OK).
  lofi_status status() const noexcept { return status_; }

  /// Its name, e.g. "LOFI_STATUS_INVALID_INPUT".
  const char* status_name() const noexcept { return lofi_status_name(status_); }

 private:
  lofi_status status_;
};

namespace detail {

/// Throws lofi::Error for a failed status, with this thread's lofi_last_error(). Must be called
/// right after the C call, before any other lofi call on this thread.
inline void check(lofi_status status) {
  if (status != LOFI_STATUS_OK) {
    const char* message = lofi_last_error();
    throw Error(status, message ? message : lofi_status_name(status));
  }
}

/// Throws for a misuse detected by this header.
[[noreturn]] inline void invalid_argument(const std::string& message) {
  throw Error(LOFI_STATUS_INVALID_ARGUMENT, "lofi.hpp: " + message);
}

}  // namespace detail

/// The library's version, "major.minor.patch" (lofi_version()).
inline const char* version() noexcept { return lofi_version(); }

/// Throws lofi::Error unless the liblofi loaded at run time serves a program compiled against
/// this header (lofi_check_version(LOFI_VERSION_NUMBER)). Call it once at start-up.
inline void check_version() { detail::check(lofi_check_version(LOFI_VERSION_NUMBER)); }

/// Gives the GPU memory libtorch caches but does not use back to the driver
/// (lofi_release_cached_memory(); nothing to do on the CPU).
inline void release_cached_memory() { detail::check(lofi_release_cached_memory()); }

// =================================================================================================
// Plain types
// =================================================================================================

/// A model's description (see lofi_model_info in lofi.h).
using ModelInfo = lofi_model_info;
/// A rectangle of input pixel coordinates {x0, y0, x1, y1}; pixel centres at integers.
using Region = lofi_region;
/// A tile of an output grid {col0, row0, cols, rows}.
using Window = lofi_window;
/// What a reconstruction did: pixels, batch size, batches, estimated and measured peak bytes.
using RunReport = lofi_run_report;

/// A point in input pixel coordinates: x is the column, y the row.
struct Point {
  double x = 0.0;
  double y = 0.0;
};
static_assert(sizeof(Point) == 2 * sizeof(double) && std::is_standard_layout<Point>::value,
              "Point must have the layout of the C API's interleaved (x, y) doubles");

/// Where a model runs.
enum class Device : lofi_device_kind { cpu = LOFI_DEVICE_CPU, cuda = LOFI_DEVICE_CUDA };

/// Precision of the networks: bf16 on CUDA or on CPUs with avx512_bf16 / amx_bf16, f16 on CUDA only.
enum class Precision : lofi_precision {
  f32 = LOFI_PRECISION_F32,
  bf16 = LOFI_PRECISION_BF16,
  f16 = LOFI_PRECISION_F16,
};

/// How to load a model; the defaults are lofi_default_load_params(): CPU, float32.
struct LoadParams {
  Device device = Device::cpu;
  int device_index = 0;  ///< GPU index when device is Device::cuda.
  Precision precision = Precision::f32;

  /// The C struct, starting from lofi_default_load_params() so future fields keep defaults.
  lofi_load_params to_c() const noexcept {
    lofi_load_params p = lofi_default_load_params();
    p.device = static_cast<lofi_device_kind>(device);
    p.device_index = static_cast<std::int32_t>(device_index);
    p.precision = static_cast<lofi_precision>(precision);
    return p;
  }
};

// =================================================================================================
// Image views
// =================================================================================================

/// A read-only, non-owning view of an input image: float32, row-major, channels interleaved
/// (H, W, C), rows `row_stride_bytes` apart (0 = packed). The pixels must outlive every call
/// that uses the view. Channels must equal the model's input channels (2 = complex).
struct ImageView {
  const float* data = nullptr;
  std::size_t width = 0;
  std::size_t height = 0;
  std::size_t channels = 1;
  std::size_t row_stride_bytes = 0;

  ImageView() = default;
  ImageView(const float* pixels, std::size_t w, std::size_t h, std::size_t c = 1,
            std::size_t stride_bytes = 0) noexcept
      : data(pixels), width(w), height(h), channels(c), row_stride_bytes(stride_bytes) {}

  /// A packed view of a vector holding exactly w * h * c values (else lofi::Error).
  ImageView(const std::vector<float>& pixels, std::size_t w, std::size_t h, std::size_t c = 1)
      : ImageView(pixels.data(), w, h, c) {
    if (pixels.size() != w * h * c)
      detail::invalid_argument("image vector holds " + std::to_string(pixels.size()) + " values, " +
                               std::to_string(w) + " x " + std::to_string(h) + " x " +
                               std::to_string(c) + " needs " + std::to_string(w * h * c));
  }
  /// A view of a temporary would dangle.
  ImageView(std::vector<float>&&, std::size_t, std::size_t, std::size_t = 1) = delete;

  /// The C descriptor.
  lofi_image to_c() const noexcept {
    lofi_image img;
    img.data = data;
    img.width = width;
    img.height = height;
    img.channels = channels;
    img.row_stride_bytes = row_stride_bytes;
    return img;
  }
};

/// Reads `rows` x `cols` pixels at (`row0`, `col0`), every channel, into `out` as packed
/// (row, column, channel) float32. Throw to fail: the exception stops the call and is rethrown
/// to its caller once the C call has returned. Calls never overlap (with a device list they may
/// come from lofi's worker threads).
using ReadFn = std::function<void(std::size_t row0, std::size_t rows, std::size_t col0, std::size_t cols,
                                  float* out)>;

/// An input image read in rectangles instead of held in memory (lofi_input_reader): lofi asks
/// `read` only for the rows the grid or window can reach (every row once for a model with the
/// Fourier filter). For inputs larger than memory, or a band of the output on one MPI rank.
struct InputReader {
  std::size_t width = 0;  ///< the whole image's size: coordinates and reflections refer to it
  std::size_t height = 0;
  std::size_t channels = 1;
  ReadFn read;
};

/// A writable, non-owning view of an output buffer: `width` x `height` samples of `channels`
/// float32 values, rows `row_stride_bytes` apart (0 = packed).
struct OutputView {
  float* data = nullptr;
  std::size_t width = 0;
  std::size_t height = 0;
  std::size_t channels = 1;
  std::size_t row_stride_bytes = 0;

  OutputView() = default;
  OutputView(float* values, std::size_t w, std::size_t h, std::size_t c = 1,
             std::size_t stride_bytes = 0) noexcept
      : data(values), width(w), height(h), channels(c), row_stride_bytes(stride_bytes) {}

  /// A packed view of a vector holding exactly w * h * c values (else lofi::Error).
  OutputView(std::vector<float>& values, std::size_t w, std::size_t h, std::size_t c = 1)
      : OutputView(values.data(), w, h, c) {
    if (values.size() != w * h * c)
      detail::invalid_argument("output vector holds " + std::to_string(values.size()) + " values, " +
                               std::to_string(w) + " x " + std::to_string(h) + " x " +
                               std::to_string(c) + " needs " + std::to_string(w * h * c));
  }

  /// Bytes from one row to the next.
  std::size_t row_bytes() const noexcept {
    return row_stride_bytes ? row_stride_bytes : width * channels * sizeof(float);
  }

  /// The view of the `cols` x `rows` samples starting at (col0, row0), sharing this buffer and
  /// its stride: reconstructing a tile into it fills that part of the whole.
  OutputView subview(std::size_t col0, std::size_t row0, std::size_t cols, std::size_t rows) const {
    if (col0 > width || cols > width - col0 || row0 > height || rows > height - row0)
      detail::invalid_argument("subview outside the output");
    auto* base = reinterpret_cast<unsigned char*>(data) + row0 * row_bytes();
    return OutputView(reinterpret_cast<float*>(base) + col0 * channels, cols, rows, channels, row_bytes());
  }
};

// =================================================================================================
// What to reconstruct
// =================================================================================================

/// An output grid: `width` x `height` samples spanning `region` (both ends included; the whole
/// image if empty), of which only `window` is computed (all of it if empty).
struct Grid {
  std::size_t width = 0;
  std::size_t height = 0;
  std::optional<Region> region;
  std::optional<Window> window;

  /// Columns and rows actually computed (the window's, or the grid's).
  std::size_t cols() const noexcept { return window ? window->cols : width; }
  std::size_t rows() const noexcept { return window ? window->rows : height; }

  /// The on-grid reconstruction of an image: one sample per input pixel.
  static Grid pixels(const ImageView& in) { return Grid{in.width, in.height, std::nullopt, std::nullopt}; }
  static Grid pixels(const InputReader& in) { return Grid{in.width, in.height, std::nullopt, std::nullopt}; }

  /// The whole image at `factor` samples per input pixel: round((W - 1) * factor) + 1 columns
  /// (so factor 2 gives 2W - 1: the pixels and the points halfway between them).
  static Grid scaled(const ImageView& in, double factor) {
    if (in.width == 0 || in.height == 0) detail::invalid_argument("scaled grid of an empty image");
    Region whole{0.0, 0.0, static_cast<double>(in.width) - 1.0, static_cast<double>(in.height) - 1.0};
    Grid g = scaled(whole, factor);
    g.region.reset();  // the same as the whole image
    return g;
  }

  /// `region` at `factor` samples per input pixel (at least one sample per axis).
  static Grid scaled(const Region& region, double factor) {
    if (!(factor > 0.0) || !std::isfinite(factor)) detail::invalid_argument("scale factor must be > 0");
    auto samples = [factor](double lo, double hi) {
      double n = std::floor(std::fabs(hi - lo) * factor + 0.5);
      if (!(n < 1e9)) detail::invalid_argument("grid too large");
      return static_cast<std::size_t>(n) + 1;
    };
    return Grid{samples(region.x0, region.x1), samples(region.y0, region.y1), region, std::nullopt};
  }

  /// This grid, computing only the tile of `cols` x `rows` samples at (col0, row0).
  Grid tile(std::size_t col0, std::size_t row0, std::size_t cols, std::size_t rows) const {
    Grid g = *this;
    g.window = Window{col0, row0, cols, rows};
    return g;
  }
};

// =================================================================================================
// Per-call settings
// =================================================================================================

/// Progress callback: the pixels done so far and the total, after every batch, on the calling
/// thread. Return false to cancel.
using ProgressFn = std::function<bool(std::uint64_t done, std::uint64_t total)>;

/// Per-call settings; the defaults are lofi_default_run_params() (512 MiB, libtorch's threads).
///
/// If `progress` returns false, the call throws lofi::Error with LOFI_STATUS_CANCELLED. If it
/// throws, the exception never crosses the C library: it is caught, the reconstruction is
/// cancelled, and the same exception is rethrown to the caller once the C call has returned.
struct RunParams {
  std::uint64_t memory_budget_bytes = lofi_default_run_params().memory_budget_bytes;
  int threads = 0;  ///< CPU threads for the call; 0: libtorch's default.
  ProgressFn progress;
  /// The input's noise level for noise-level-aware models (lofi_run_params.noise_level);
  /// negative: none.
  double noise_level = LOFI_NOISE_LEVEL_NONE;
  /// Geometric self-ensemble passes: 1 (off), 2, 4 or 8 (lofi_run_params.self_ensemble).
  unsigned self_ensemble = 1;
};

namespace detail {

/// State shared between a call and its progress trampoline.
struct ProgressContext {
  const ProgressFn* fn = nullptr;
  std::exception_ptr error;
};

/// The C callback: forwards to the std::function; exceptions are stored and cancel the call.
inline bool progress_trampoline(void* user_data, std::uint64_t done, std::uint64_t total) noexcept {
  auto* ctx = static_cast<ProgressContext*>(user_data);
  try {
    return (*ctx->fn)(done, total);
  } catch (...) {
    ctx->error = std::current_exception();
    return false;
  }
}

/// The C run parameters for `p`, with the trampoline wired to `ctx` if there is a callback.
inline lofi_run_params to_c(const RunParams& p, ProgressContext& ctx) noexcept {
  lofi_run_params c = lofi_default_run_params();
  c.memory_budget_bytes = p.memory_budget_bytes;
  c.threads = static_cast<std::int32_t>(p.threads);
  c.noise_level = p.noise_level;
  c.self_ensemble = p.self_ensemble;
  if (p.progress) {
    ctx.fn = &p.progress;
    c.progress = &progress_trampoline;
    c.progress_user_data = &ctx;
  }
  return c;
}

/// State shared between a call and its reader trampoline.
struct ReaderContext {
  const ReadFn* fn = nullptr;
  std::exception_ptr error;
};

/// The C reader: forwards to the std::function; an exception is stored and fails the call.
inline bool read_trampoline(void* user_data, std::size_t row0, std::size_t rows, std::size_t col0,
                            std::size_t cols, float* out) noexcept {
  auto* ctx = static_cast<ReaderContext*>(user_data);
  try {
    (*ctx->fn)(row0, rows, col0, cols, out);
    return true;
  } catch (...) {
    if (!ctx->error) ctx->error = std::current_exception();
    return false;
  }
}

/// After a call: the callback's own exception first, then the call's status.
inline void finish(lofi_status status, ProgressContext& ctx) {
  if (ctx.error) std::rethrow_exception(ctx.error);
  check(status);
}

}  // namespace detail

// =================================================================================================
// Model
// =================================================================================================

/// A loaded model: the unique owner of a lofi_model*, released by the destructor. Move-only. A
/// default-constructed or moved-from Model is empty; using it throws lofi::Error.
class Model {
 public:
  /// An empty model.
  Model() noexcept = default;

  /// Adopts a model loaded through the C API (it will be released by this object).
  explicit Model(lofi_model* adopted) noexcept : model_(adopted) {}

  /// Loads a .lofi file (UTF-8 path).
  static Model load(const std::string& path, const LoadParams& params = {}) {
    lofi_load_params p = params.to_c();
    lofi_model* m = nullptr;
    detail::check(lofi_load(path.c_str(), &p, &m));
    return Model(m);
  }

  /// Loads a model from the bytes of a .lofi file; the bytes may be freed afterwards.
  static Model load_from_memory(const void* data, std::size_t size, const LoadParams& params = {}) {
    lofi_load_params p = params.to_c();
    lofi_model* m = nullptr;
    detail::check(lofi_load_from_memory(static_cast<const std::uint8_t*>(data), size, &p, &m));
    return Model(m);
  }
  static Model load_from_memory(const std::vector<std::uint8_t>& bytes, const LoadParams& params = {}) {
    // data() of an empty vector may be NULL: pass a valid pointer so the library reports the
    // empty file rather than a NULL argument.
    static const std::uint8_t nothing = 0;
    return load_from_memory(bytes.empty() ? &nothing : bytes.data(), bytes.size(), params);
  }

  Model(Model&& other) noexcept : model_(std::exchange(other.model_, nullptr)) {}
  Model& operator=(Model&& other) noexcept {
    if (this != &other) {
      reset();
      model_ = std::exchange(other.model_, nullptr);
    }
    return *this;
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model() { reset(); }

  /// True unless empty.
  explicit operator bool() const noexcept { return model_ != nullptr; }
  /// The C handle (still owned by this object).
  lofi_model* get() const noexcept { return model_; }
  /// Gives up ownership: the caller must lofi_model_free() the result.
  lofi_model* release() noexcept { return std::exchange(model_, nullptr); }
  /// Releases the model now; the object becomes empty.
  void reset() noexcept {
    lofi_model_free(model_);
    model_ = nullptr;
  }

  /// The model's description.
  ModelInfo info() const {
    ModelInfo info{};
    detail::check(lofi_model_get_info(model_, &info));
    return info;
  }
  std::size_t channels_in() const { return static_cast<std::size_t>(info().channels_in); }

  /// A metadata entry ("notes", "config", "format_version", "digest"; lofi_model_get_metadata()).
  std::string metadata(const std::string& key) const {
    std::size_t needed = 0;
    detail::check(lofi_model_get_metadata(model_, key.c_str(), nullptr, 0, &needed));
    std::string value(needed, '\0');
    detail::check(lofi_model_get_metadata(model_, key.c_str(), &value[0], value.size(), &needed));
    value.resize(needed - 1);
    return value;
  }
  std::size_t channels_out() const { return static_cast<std::size_t>(info().channels_out); }

  // --- regions and grids ------------------------------------------------------------------------

  /// Reconstructs `grid` of `in` into the caller's buffer `out`, whose width, height and channels
  /// must be grid.cols(), grid.rows() and the model's output channels. Returns the run report.
  RunReport reconstruct_region(const ImageView& in, const Grid& grid, const OutputView& out,
                               const RunParams& params = {}) const {
    check_output(grid, out);
    const lofi_image img = in.to_c();
    detail::ProgressContext ctx;
    const lofi_run_params p = detail::to_c(params, ctx);
    RunReport report{};
    const lofi_status s = lofi_reconstruct_region(
        model_, &img, grid.region ? &*grid.region : nullptr, grid.width, grid.height,
        grid.window ? &*grid.window : nullptr, out.data, out.row_stride_bytes, &p, &report);
    detail::finish(s, ctx);
    return report;
  }

  /// Reconstructs `grid` of an image read in rectangles (lofi_reconstruct_region_from_reader()):
  /// the same values as from an ImageView of that image. An exception thrown by `in.read` (or by
  /// the progress callback) is rethrown here.
  RunReport reconstruct_region(const InputReader& in, const Grid& grid, const OutputView& out,
                               const RunParams& params = {}) const {
    check_output(grid, out);
    if (!in.read) detail::invalid_argument("InputReader::read is empty");
    detail::ReaderContext reader_ctx{&in.read, nullptr};
    lofi_input_reader r = lofi_default_input_reader();
    r.width = in.width;
    r.height = in.height;
    r.channels = in.channels;
    r.read = &detail::read_trampoline;
    r.user_data = &reader_ctx;
    detail::ProgressContext ctx;
    const lofi_run_params p = detail::to_c(params, ctx);
    RunReport report{};
    const lofi_status s = lofi_reconstruct_region_from_reader(
        model_, &r, grid.region ? &*grid.region : nullptr, grid.width, grid.height,
        grid.window ? &*grid.window : nullptr, out.data, out.row_stride_bytes, &p, &report);
    if (reader_ctx.error) std::rethrow_exception(reader_ctx.error);
    detail::finish(s, ctx);
    return report;
  }

  /// Reconstructs `grid` of an image read in rectangles into a new packed vector.
  std::vector<float> reconstruct_region(const InputReader& in, const Grid& grid, const RunParams& params = {},
                                        RunReport* report = nullptr) const {
    return into_vector(in, grid, params, report);
  }

  /// Reconstructs `grid` of `in` into a new packed vector of grid.rows() x grid.cols() x
  /// channels_out values. `report`, if not null, receives what the call did.
  std::vector<float> reconstruct_region(const ImageView& in, const Grid& grid, const RunParams& params = {},
                                        RunReport* report = nullptr) const {
    return into_vector(in, grid, params, report);
  }

  /// The on-grid reconstruction of the whole image (width x height x channels_out values).
  std::vector<float> reconstruct(const ImageView& in, const RunParams& params = {},
                                 RunReport* report = nullptr) const {
    return reconstruct_region(in, Grid::pixels(in), params, report);
  }

  // --- refined denoising ------------------------------------------------------------------------

  /// Refined denoising of the whole image on its own grid (lofi_denoise_refined()), for
  /// noise-level-aware denoisers: params.noise_level is required. A default-constructed
  /// refinement is the library's defaults (lofi_default_refinement()). Returns width x height x
  /// channels values; `report`, if not null, receives what the passes did together. An RGB image
  /// and a gray denoiser take the opponent colour path (see lofi_denoise_refined()): 3 channels out.
  std::vector<float> denoise_refined(const ImageView& in, const RunParams& params,
                                     const lofi_refinement& refinement = lofi_default_refinement(),
                                     RunReport* report = nullptr) const {
    std::vector<float> out(in.width * in.height * in.channels);
    const lofi_image img = in.to_c();
    detail::ProgressContext ctx;
    const lofi_run_params p = detail::to_c(params, ctx);
    RunReport r{};
    const lofi_status s = lofi_denoise_refined(model_, &img, &refinement, out.data(), 0, &p, &r);
    detail::finish(s, ctx);
    if (report) *report = r;
    return out;
  }

  // --- arbitrary points -------------------------------------------------------------------------

  /// Reconstructs `count` points into `out` (at least count x channels_out values, point after
  /// point). Zero points do nothing.
  RunReport reconstruct_points(const ImageView& in, const Point* points, std::size_t count, float* out,
                               std::size_t out_size, const RunParams& params = {}) const {
    const std::size_t c_out = channels_out();
    if (count == 0) return RunReport{};
    if (c_out == 0 || out_size / c_out < count)
      detail::invalid_argument("output holds " + std::to_string(out_size) + " values, " +
                               std::to_string(count) + " points need " + std::to_string(count * c_out));
    const lofi_image img = in.to_c();
    detail::ProgressContext ctx;
    const lofi_run_params p = detail::to_c(params, ctx);
    RunReport report{};
    // Point is two doubles, so an array of them is the C API's interleaved x, y array.
    const lofi_status s = lofi_reconstruct_points(model_, &img, reinterpret_cast<const double*>(points),
                                                  count, out, &p, &report);
    detail::finish(s, ctx);
    return report;
  }

  /// Reconstructs points into a new vector of points.size() x channels_out values.
  std::vector<float> reconstruct_points(const ImageView& in, const std::vector<Point>& points,
                                        const RunParams& params = {}, RunReport* report = nullptr) const {
    std::vector<float> out(points.size() * channels_out());
    const RunReport r = reconstruct_points(in, points.data(), points.size(), out.data(), out.size(), params);
    if (report) *report = r;
    return out;
  }

 private:
  /// The output view must be the grid's computed size with the model's output channels.
  void check_output(const Grid& grid, const OutputView& out) const {
    const std::size_t c_out = channels_out();
    if (out.width != grid.cols() || out.height != grid.rows() || out.channels != c_out)
      detail::invalid_argument("output view is " + shape(out.width, out.height, out.channels) +
                               ", the grid needs " + shape(grid.cols(), grid.rows(), c_out));
  }

  /// reconstruct_region() of an ImageView or an InputReader into a new packed vector.
  template <class Input>
  std::vector<float> into_vector(const Input& in, const Grid& grid, const RunParams& params,
                                 RunReport* report) const {
    const std::size_t c_out = channels_out();
    std::vector<float> out(grid.cols() * grid.rows() * c_out);
    const RunReport r = reconstruct_region(in, grid, OutputView(out.data(), grid.cols(), grid.rows(), c_out), params);
    if (report) *report = r;
    return out;
  }

  static std::string shape(std::size_t w, std::size_t h, std::size_t c) {
    return std::to_string(w) + " x " + std::to_string(h) + " x " + std::to_string(c);
  }

  lofi_model* model_ = nullptr;
};

// =================================================================================================
// Plug-and-play (LoFi-ADMM)
// =================================================================================================

/// Figures of one ADMM iteration: iteration, primal, dual, data_misfit, psnr (NaN without a
/// ground truth), cg_iterations.
using PnpResiduals = lofi_pnp_residuals;

/// An empty operator description (lofi_default_operator()): set kind, size and the kind's fields.
inline lofi_operator default_operator() noexcept { return lofi_default_operator(); }

/// Number of measurement floats `op` expects.
inline std::size_t measurement_len(const lofi_operator& op) {
  std::size_t n = 0;
  detail::check(lofi_operator_measurement_len(&op, &n));
  return n;
}

/// `A x` for a built-in operator on the CPU: `x` holds height x width x channels floats.
inline std::vector<float> operator_forward(const lofi_operator& op, const std::vector<float>& x) {
  if (x.size() != op.width * op.height * op.channels)
    detail::invalid_argument("operator_forward: x holds " + std::to_string(x.size()) + " values, the operator's image " +
                             std::to_string(op.width * op.height * op.channels));
  std::vector<float> y(measurement_len(op));
  detail::check(lofi_operator_forward(&op, x.data(), y.data(), y.size()));
  return y;
}

/// Progress of Pnp::solve(): iterations done and the total. Return false to cancel.
using PnpProgressFn = std::function<bool(std::uint64_t done, std::uint64_t total)>;

/// Settings of a solve; the defaults are lofi_default_pnp_params() (alpha 0.05, CG 100
/// iterations to 1e-7, 512 MiB, libtorch's threads). `progress` is called by solve() after every
/// iteration; an exception it throws cancels the solve and is rethrown by solve().
struct PnpParams {
  double alpha = lofi_default_pnp_params().alpha;
  std::uint32_t cg_max_iterations = lofi_default_pnp_params().cg_max_iterations;
  double cg_tolerance = lofi_default_pnp_params().cg_tolerance;
  std::uint64_t memory_budget_bytes = lofi_default_pnp_params().run.memory_budget_bytes;
  int threads = 0;  ///< CPU threads of the denoiser; 0: libtorch's default.
  /// LOFI_TRANSFORMS_DIHEDRAL (a different quarter turn or mirror per iteration) or
  /// LOFI_TRANSFORMS_NONE (the paper's iteration).
  lofi_transforms transforms = lofi_default_pnp_params().transforms;
  /// The estimate is the mean of the denoiser's last `average_last` outputs (1: the last).
  std::uint32_t average_last = lofi_default_pnp_params().average_last;
  PnpProgressFn progress;
};

/// A user operator: `forward(x, y)` writes A x (measurement_len floats) from an image x
/// (height x width x channels floats, (H, W, C)); `adjoint(y, x)` writes A^T y. Both run on the
/// thread calling Pnp::step()/solve(), possibly many times per iteration (conjugate gradients).
/// To fail, throw: the step is abandoned and the exception rethrown by step()/solve().
struct UserOperator {
  std::size_t width = 0;
  std::size_t height = 0;
  std::size_t channels = 1;
  std::size_t measurement_len = 0;
  std::function<void(const float* x, float* y)> forward;
  std::function<void(const float* y, float* x)> adjoint;
};

/// A LoFi-ADMM solve: the unique owner of a lofi_pnp*, released by the destructor. Move-only; a
/// default-constructed or moved-from Pnp is empty and using it throws lofi::Error. The state
/// keeps its model alive (lofi_pnp holds a reference), so the Model may go first, even a
/// temporary. Not thread-safe (as lofi_pnp).
class Pnp {
 public:
  Pnp() noexcept = default;

  /// Starts a solve of `measurements = A x` with a built-in operator described by `op` (arrays
  /// copied) and the denoiser `model`.
  Pnp(const Model& model, const lofi_operator& op, const std::vector<float>& measurements,
      PnpParams params = {})
      : state_(new State) {
    create(model, op, measurements, std::move(params));
  }

  /// Starts a solve with a user operator given as C++ callables (kept by this object).
  Pnp(const Model& model, UserOperator op, const std::vector<float>& measurements, PnpParams params = {})
      : state_(new State) {
    if (!op.forward || !op.adjoint) detail::invalid_argument("Pnp: the user operator needs forward and adjoint");
    state_->user = std::move(op);
    lofi_operator c = lofi_default_operator();
    c.kind = LOFI_OPERATOR_CALLBACKS;
    c.width = state_->user.width;
    c.height = state_->user.height;
    c.channels = state_->user.channels;
    c.measurement_len = state_->user.measurement_len;
    c.forward = &forward_trampoline;
    c.adjoint = &adjoint_trampoline;
    c.user_data = state_.get();
    create(model, c, measurements, std::move(params));
  }

  Pnp(Pnp&& other) noexcept
      : pnp_(std::exchange(other.pnp_, nullptr)), state_(std::move(other.state_)), size_(other.size_) {}
  Pnp& operator=(Pnp&& other) noexcept {
    if (this != &other) {
      reset();
      pnp_ = std::exchange(other.pnp_, nullptr);
      state_ = std::move(other.state_);
      size_ = other.size_;
    }
    return *this;
  }
  Pnp(const Pnp&) = delete;
  Pnp& operator=(const Pnp&) = delete;
  ~Pnp() { reset(); }

  /// True unless empty.
  explicit operator bool() const noexcept { return pnp_ != nullptr; }
  /// The C handle (still owned by this object).
  lofi_pnp* get() const noexcept { return pnp_; }
  /// Releases the state now; the object becomes empty.
  void reset() noexcept {
    lofi_pnp_free(pnp_);
    pnp_ = nullptr;
    state_.reset();
  }

  /// Floats of an image at the working resolution: width x height x channels.
  std::size_t image_size() const noexcept { return size_; }

  /// A ground truth (image_size() floats, (H, W, C)) so that residuals report PSNR.
  void set_ground_truth(const std::vector<float>& truth) {
    if (truth.size() != size_)
      detail::invalid_argument("Pnp: the ground truth holds " + std::to_string(truth.size()) + " values, not " +
                               std::to_string(size_));
    detail::check(lofi_pnp_set_ground_truth(pnp_, truth.data()));
  }

  /// One ADMM iteration; returns its figures.
  PnpResiduals step() {
    PnpResiduals r{};
    const lofi_status s = lofi_pnp_step(pnp_, &r);
    finish(s);
    return r;
  }

  /// `iterations` iterations, with params.progress after each; returns the last one's figures.
  /// Cancelling (progress returns false) throws lofi::Error with LOFI_STATUS_CANCELLED; the
  /// iterations done are kept.
  PnpResiduals solve(std::uint32_t iterations) {
    PnpResiduals r{};
    const lofi_status s = lofi_pnp_solve(pnp_, iterations, &r);
    finish(s);
    return r;
  }

  /// The current estimate, image_size() floats (H, W, C); zero before the first step.
  std::vector<float> estimate() const {
    std::vector<float> out(size_);
    detail::check(lofi_pnp_estimate(pnp_, out.data(), 0));
    return out;
  }

  /// The current estimate into the caller's buffer, rows `row_stride_bytes` apart (0: packed).
  void estimate(float* out, std::size_t row_stride_bytes) const {
    detail::check(lofi_pnp_estimate(pnp_, out, row_stride_bytes));
  }

 private:
  /// What the C state points to: kept at a fixed address (moves move the pointer only).
  struct State {
    PnpProgressFn progress;
    detail::ProgressContext progress_ctx;
    UserOperator user;
    std::exception_ptr user_error;
  };

  void create(const Model& model, const lofi_operator& op, const std::vector<float>& measurements,
              PnpParams params) {
    lofi_pnp_params c = lofi_default_pnp_params();
    c.alpha = params.alpha;
    c.cg_max_iterations = params.cg_max_iterations;
    c.cg_tolerance = params.cg_tolerance;
    c.run.memory_budget_bytes = params.memory_budget_bytes;
    c.run.threads = static_cast<std::int32_t>(params.threads);
    c.transforms = params.transforms;
    c.average_last = params.average_last;
    state_->progress = std::move(params.progress);
    if (state_->progress) {
      state_->progress_ctx.fn = &state_->progress;
      c.run.progress = &detail::progress_trampoline;
      c.run.progress_user_data = &state_->progress_ctx;
    }
    // data() of an empty vector may be NULL: the library reports the length either way.
    static const float nothing = 0.0f;
    const lofi_status s = lofi_pnp_create(model.get(), &op, measurements.empty() ? &nothing : measurements.data(),
                                          measurements.size(), &c, &pnp_);
    finish(s);
    size_ = op.width * op.height * op.channels;
  }

  /// After a call: a user callback's or the progress callback's exception first, then the status.
  void finish(lofi_status status) {
    if (state_) {
      std::exception_ptr e = std::exchange(state_->user_error, nullptr);
      if (!e) e = std::exchange(state_->progress_ctx.error, nullptr);
      if (e) std::rethrow_exception(e);
    }
    detail::check(status);
  }

  static bool forward_trampoline(void* user_data, const float* input, float* output) noexcept {
    auto* state = static_cast<State*>(user_data);
    try {
      state->user.forward(input, output);
      return true;
    } catch (...) {
      state->user_error = std::current_exception();
      return false;
    }
  }
  static bool adjoint_trampoline(void* user_data, const float* input, float* output) noexcept {
    auto* state = static_cast<State*>(user_data);
    try {
      state->user.adjoint(input, output);
      return true;
    } catch (...) {
      state->user_error = std::current_exception();
      return false;
    }
  }

  lofi_pnp* pnp_ = nullptr;
  std::unique_ptr<State> state_;
  std::size_t size_ = 0;
};

// =================================================================================================
// Logging
// =================================================================================================

/// Log levels, most to least severe.
enum class LogLevel : lofi_log_level {
  off = LOFI_LOG_OFF,
  error = LOFI_LOG_ERROR,
  warn = LOFI_LOG_WARN,
  info = LOFI_LOG_INFO,
  debug = LOFI_LOG_DEBUG,
  trace = LOFI_LOG_TRACE,
};

/// Receives a log message (valid only during the call). Called from any thread running lofi
/// code, possibly concurrently: make it thread-safe. Exceptions it throws are dropped.
using LogFn = std::function<void(LogLevel level, const char* message)>;

namespace detail {

inline void log_trampoline(void* user_data, lofi_log_level level, const char* message) noexcept {
  try {
    (*static_cast<const LogFn*>(user_data))(static_cast<LogLevel>(level), message);
  } catch (...) {
  }
}

/// Keeps every installed LogFn alive for the rest of the process: lofi.h does not say when a
/// replaced callback has stopped running, and lofi may log from any thread until exit, so none is
/// ever destroyed. The registry itself is never destroyed either (no exit-time destructor runs
/// after lofi's thread-local state is gone); it stays reachable, so leak checkers are quiet.
struct LogRegistry {
  std::mutex lock;
  std::vector<std::unique_ptr<LogFn>> callbacks;
  static LogRegistry& get() {
    static LogRegistry* registry = new LogRegistry;
    return *registry;
  }
};

}  // namespace detail

/// Sends lofi's log messages up to `max_level` to `fn` (an empty fn stops them). Process-wide;
/// throws lofi::Error if another Rust logger owns the process.
inline void set_log_callback(LogFn fn, LogLevel max_level = LogLevel::info) {
  auto& registry = detail::LogRegistry::get();
  std::lock_guard<std::mutex> guard(registry.lock);
  if (!fn) {
    detail::check(lofi_set_log_callback(nullptr, nullptr, LOFI_LOG_OFF));
    return;
  }
  registry.callbacks.push_back(std::make_unique<LogFn>(std::move(fn)));
  detail::check(lofi_set_log_callback(&detail::log_trampoline, registry.callbacks.back().get(),
                                      static_cast<lofi_log_level>(max_level)));
}

}  // namespace lofi

#endif  // LOFI_HPP
