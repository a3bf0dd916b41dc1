/*
 * Error paths of every entry point of lofi.h: each failure returns the documented status and
 * leaves a useful message in lofi_last_error() (prefixed with the function's name); a success
 * clears it. Nothing here may crash, leak or read out of bounds (the suite runs under ASan).
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lofi_test.h"

enum { W = 24, H = 20 };

#define INFO_FN "lofi_model_get_info"

static lofi_model *gray;    /* tiny-gray.lofi: 1 -> 1 */
static lofi_model *rgb;     /* tiny-rgb.lofi: 3 -> 3 */
static lofi_model *cplx;    /* tiny-complex.lofi: 2 -> 1 */
static float *pixels;       /* W x H x 3, valid for every model */
static float out[4 * W * H * 3];
static lofi_model *const SENTINEL = (lofi_model *)&out; /* a non-NULL value to see it reset */

/* A temporary file path unique to this process. */
static const char *tmp_path(const char *name) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/errors-%ld-%s", lt_tmp_dir(), (long)getpid(), name);
  return path;
}

static lofi_status region_call(const lofi_model *m, const lofi_image *img) {
  return lofi_reconstruct_region(m, img, NULL, img->width, img->height, NULL, out, 0, NULL, NULL);
}

/* ---- lofi_load ------------------------------------------------------------------------------ */

static void test_load_null_arguments(void) {
  lofi_model *m = SENTINEL;
  EXPECT_FAIL(lofi_load(NULL, NULL, &m), LOFI_STATUS_INVALID_ARGUMENT, "path is NULL");
  CHECK_MSG(m == NULL, "out_model must be set to NULL on failure");
  EXPECT_FAIL(lofi_load(lt_fixture("tiny-gray.lofi"), NULL, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "out_model is NULL");
  m = SENTINEL;
  EXPECT_FAIL(lofi_load("\xff\xfe.lofi", NULL, &m), LOFI_STATUS_INVALID_ARGUMENT, "UTF-8");
  CHECK(m == NULL);
}

static void test_load_missing_and_unreadable(void) {
  lofi_model *m = SENTINEL;
  const char *missing = tmp_path("does-not-exist.lofi");
  EXPECT_FAIL(lofi_load(missing, NULL, &m), LOFI_STATUS_IO, missing);
  CHECK(m == NULL);
  /* A directory is not a file. */
  EXPECT_FAIL(lofi_load(lt_tmp_dir(), NULL, &m), LOFI_STATUS_IO, "cannot read model");
  CHECK(m == NULL);
}

/* Writes `size` bytes to a temporary file and expects lofi_load to reject it as INVALID_MODEL
 * with a message naming the file and containing `needle`. */
static void expect_bad_file(const char *name, const void *data, size_t size, const char *needle,
                            int line) {
  const char *path = tmp_path(name);
  lofi_model *m = SENTINEL;
  lofi_status s;
  if (!lt_write_file(path, data, size)) {
    lt_fail(__FILE__, line, "cannot write %s", path);
    return;
  }
  s = lofi_load(path, NULL, &m);
  if (lt_expect_fail(__FILE__, line, name, s, LOFI_STATUS_INVALID_MODEL, "lofi_load", needle))
    lt_expect_fail(__FILE__, line, name, s, LOFI_STATUS_INVALID_MODEL, "lofi_load", path);
  CHECK_MSG(m == NULL, "%s: out_model not reset", name);
  lofi_model_free(m == SENTINEL ? NULL : m);
  remove(path);
}

/* Replaces the first occurrence of `from` by `to` (same length) in a copy of buf. */
static unsigned char *patched(const unsigned char *buf, size_t size, const char *from, const char *to) {
  size_t n = strlen(from), i;
  unsigned char *copy = (unsigned char *)malloc(size);
  if (!copy || strlen(to) != n) return copy;
  memcpy(copy, buf, size);
  for (i = 0; i + n <= size; i++)
    if (memcmp(copy + i, from, n) == 0) {
      memcpy(copy + i, to, n);
      return copy;
    }
  free(copy);
  return NULL;
}

static void test_load_corrupt_files(void) {
  size_t size = 0, i;
  unsigned char *good = lt_read_file(lt_fixture("tiny-gray.lofi"), &size);
  unsigned char garbage[4096];
  unsigned char *p;
  uint32_t state = 12345;
  REQUIRE_MSG(good != NULL && size > 1000, "cannot read the fixture");
  for (i = 0; i < sizeof garbage; i++) {
    state = state * 1103515245u + 12345u;
    garbage[i] = (unsigned char)(state >> 16);
  }
  expect_bad_file("empty.lofi", good, 0, "empty", __LINE__);
  expect_bad_file("garbage.lofi", garbage, sizeof garbage, "safetensors", __LINE__);
  expect_bad_file("text.lofi", "hello, world\n", 13, NULL, __LINE__);
  expect_bad_file("trunc4.lofi", good, 4, NULL, __LINE__);
  expect_bad_file("trunc-header.lofi", good, 100, NULL, __LINE__);
  expect_bad_file("trunc-half.lofi", good, size / 2, NULL, __LINE__);
  expect_bad_file("trunc-1.lofi", good, size - 1, NULL, __LINE__);

  p = patched(good, size, "\"format\":\"lofi\"", "\"format\":\"lofx\"");
  CHECK(p != NULL);
  if (p) expect_bad_file("not-lofi.lofi", p, size, "not a .lofi model", __LINE__);
  free(p);
  p = patched(good, size, "\"format_version\":\"1\"", "\"format_version\":\"9\"");
  CHECK(p != NULL);
  if (p) expect_bad_file("newer.lofi", p, size, "newer", __LINE__);
  free(p);
  /* A tensor the configuration needs is missing (renamed). */
  p = patched(good, size, "\"MLP.0.fcs.0.bias\"", "\"MLP.0.fcs.0.bia5\"");
  CHECK(p != NULL);
  if (p) expect_bad_file("renamed-tensor.lofi", p, size, NULL, __LINE__);
  free(p);
  /* The configuration disagrees with the tensors' shapes. */
  p = patched(good, size, "\\\"hidden_dim\\\":16", "\\\"hidden_dim\\\":17");
  CHECK(p != NULL);
  if (p) expect_bad_file("wrong-shape.lofi", p, size, NULL, __LINE__);
  free(p);
  free(good);
}

static void test_load_params(void) {
  lofi_load_params params = lofi_default_load_params();
  lofi_model *m = SENTINEL;
  const char *path = lt_fixture("tiny-gray.lofi");
  CHECK(params.device == LOFI_DEVICE_CPU && params.device_index == 0 &&
        params.precision == LOFI_PRECISION_F32);

  params.device = 7;
  EXPECT_FAIL(lofi_load(path, &params, &m), LOFI_STATUS_INVALID_ARGUMENT, "unknown device kind 7");
  CHECK(m == NULL);
  params.device = -1;
  EXPECT_FAIL(lofi_load(path, &params, &m), LOFI_STATUS_INVALID_ARGUMENT, "unknown device kind -1");

  params = lofi_default_load_params();
  params.precision = 9;
  EXPECT_FAIL(lofi_load(path, &params, &m), LOFI_STATUS_INVALID_ARGUMENT, "unknown precision 9");

  params = lofi_default_load_params();
  params.precision = LOFI_PRECISION_BF16;
  /* bf16 runs on CPUs with bfloat16 instructions: make the library see none, for the error. */
  setenv("LOFI_ASSUME_NO_BF16", "1", 1);
  EXPECT_FAIL(lofi_load(path, &params, &m), LOFI_STATUS_INVALID_ARGUMENT, "avx512_bf16");
  unsetenv("LOFI_ASSUME_NO_BF16");
  CHECK(m == NULL);
  params.precision = LOFI_PRECISION_F16;
  EXPECT_FAIL(lofi_load(path, &params, &m), LOFI_STATUS_INVALID_ARGUMENT, "CUDA only");

  params = lofi_default_load_params();
  params.device = LOFI_DEVICE_CUDA;
  params.device_index = -1;
  EXPECT_FAIL(lofi_load(path, &params, &m), LOFI_STATUS_INVALID_ARGUMENT, "negative");
  CHECK(m == NULL);
}

/* CUDA on a machine without a GPU: DEVICE_UNAVAILABLE. Where CUDA works, loading succeeds and
 * the test passes trivially (a GPU index far beyond any machine must still be unavailable). */
static void test_load_cuda(void) {
  lofi_load_params params = lofi_default_load_params();
  lofi_model *m = SENTINEL;
  const char *path = lt_fixture("tiny-gray.lofi");
  lofi_status s;
  int gpu_nodes = access("/dev/nvidia0", F_OK) == 0;
  params.device = LOFI_DEVICE_CUDA;
  s = lofi_load(path, &params, &m);
  if (s == LOFI_STATUS_OK) {
    lofi_model_info info;
    CHECK_MSG(gpu_nodes, "CUDA loaded on a machine without /dev/nvidia0?");
    CHECK_OK(lofi_model_get_info(m, &info));
    CHECK(info.device == LOFI_DEVICE_CUDA && info.device_index == 0);
    lofi_model_free(m);
    printf("     (CUDA is available: the unavailable-device case is skipped)\n");
  } else {
    lt_expect_fail(__FILE__, __LINE__, "lofi_load(cuda)", s, LOFI_STATUS_DEVICE_UNAVAILABLE,
                   "lofi_load", "cuda:0");
    CHECK(m == NULL);
  }
  params.device_index = 4096;
  m = SENTINEL;
  EXPECT_FAIL(lofi_load(path, &params, &m), LOFI_STATUS_DEVICE_UNAVAILABLE, "cuda:4096");
  CHECK(m == NULL);
}

/* ---- lofi_load_from_memory ------------------------------------------------------------------- */

static void test_load_from_memory(void) {
  size_t size = 0;
  unsigned char *good = lt_read_file(lt_fixture("tiny-gray.lofi"), &size);
  size_t cuts[] = {1, 7, 8, 9, 64, 5000, 0, 0};
  unsigned char *copy;
  size_t i;
  lofi_model *m = SENTINEL;
  REQUIRE(good != NULL);
  cuts[6] = size / 2;
  cuts[7] = size - 1;

  EXPECT_FAIL(lofi_load_from_memory(NULL, size, NULL, &m), LOFI_STATUS_INVALID_ARGUMENT,
              "data is NULL");
  CHECK(m == NULL);
  EXPECT_FAIL(lofi_load_from_memory(good, size, NULL, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "out_model is NULL");
  m = SENTINEL;
  EXPECT_FAIL(lofi_load_from_memory(good, 0, NULL, &m), LOFI_STATUS_INVALID_MODEL, "empty");
  CHECK(m == NULL);

  /* Truncated copies in exactly-sized heap blocks: ASan catches any read past the end. */
  for (i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    copy = (unsigned char *)malloc(cuts[i]);
    REQUIRE(copy != NULL);
    memcpy(copy, good, cuts[i]);
    m = SENTINEL;
    EXPECT_FAIL(lofi_load_from_memory(copy, cuts[i], NULL, &m), LOFI_STATUS_INVALID_MODEL, NULL);
    CHECK_MSG(m == NULL, "truncated to %zu bytes: out_model not reset", cuts[i]);
    free(copy);
  }

  /* Bad parameters are reported as for lofi_load. */
  {
    lofi_load_params params = lofi_default_load_params();
    params.precision = 3;
    EXPECT_FAIL(lofi_load_from_memory(good, size, &params, &m), LOFI_STATUS_INVALID_ARGUMENT,
                "unknown precision 3");
  }

  /* The bytes may be freed right after loading. */
  copy = (unsigned char *)malloc(size);
  REQUIRE(copy != NULL);
  memcpy(copy, good, size);
  m = NULL;
  CHECK_OK(lofi_load_from_memory(copy, size, NULL, &m));
  memset(copy, 0xAB, size);
  free(copy);
  if (m) {
    float *img = lt_make_pixels(W, H, 1, 1);
    lofi_image in = lt_image(img, W, H, 1);
    CHECK_OK(region_call(m, &in));
    free(img);
  }
  lofi_model_free(m);
  free(good);
}

/* ---- lofi_model_get_info / lofi_model_free ---------------------------------------------------- */

static void test_model_info_and_free(void) {
  lofi_model_info info;
  EXPECT_FAIL_FN(lofi_model_get_info(NULL, &info), INFO_FN, LOFI_STATUS_INVALID_ARGUMENT,
                 "model is NULL");
  EXPECT_FAIL_FN(lofi_model_get_info(gray, NULL), INFO_FN, LOFI_STATUS_INVALID_ARGUMENT,
                 "out_info is NULL");
  lofi_model_free(NULL); /* a no-op */
  CHECK_OK(lofi_model_get_info(gray, &info));
  CHECK(info.image_size == 16 && info.channels_in == 1 && info.channels_out == 1);
  CHECK_OK(lofi_model_get_info(rgb, &info));
  CHECK(info.channels_in == 3 && info.channels_out == 3);
  CHECK_OK(lofi_model_get_info(cplx, &info));
  CHECK(info.channels_in == 2 && info.channels_out == 1);
  CHECK(info.device == LOFI_DEVICE_CPU && info.precision == LOFI_PRECISION_F32);
  CHECK(info.parameter_count > 0 && info.bytes_per_pixel > 0);
  CHECK(info.rings > 0 && info.angles > 0 && info.num_layers > 0 && info.hidden_dim > 0);
}

/* ---- lofi_memory_requirements ------------------------------------------------------------------ */

static void test_memory_requirements_errors(void) {
  uint64_t min_budget = 7, per_pixel = 7;
  lofi_model_info info;
  EXPECT_FAIL(lofi_memory_requirements(NULL, W, H, &min_budget, &per_pixel),
              LOFI_STATUS_INVALID_ARGUMENT, "model is NULL");
  EXPECT_FAIL(lofi_memory_requirements(gray, W, H, NULL, &per_pixel), LOFI_STATUS_INVALID_ARGUMENT,
              "out_min_budget_bytes is NULL");
  EXPECT_FAIL(lofi_memory_requirements(gray, 0, H, &min_budget, &per_pixel),
              LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  EXPECT_FAIL(lofi_memory_requirements(gray, W, 0, &min_budget, &per_pixel),
              LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  EXPECT_FAIL(lofi_memory_requirements(gray, SIZE_MAX, H, &min_budget, &per_pixel),
              LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  EXPECT_FAIL(lofi_memory_requirements(gray, W, SIZE_MAX, &min_budget, &per_pixel),
              LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  CHECK_OK(lofi_memory_requirements(gray, W, H, &min_budget, NULL));
  CHECK_OK(lofi_memory_requirements(cplx, W, H, &min_budget, &per_pixel));
  CHECK_OK(lofi_model_get_info(cplx, &info));
  CHECK(per_pixel == info.bytes_per_pixel && min_budget > per_pixel);
}

/* ---- lofi_reconstruct_region ------------------------------------------------------------------ */

static void test_region_null_arguments(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_image no_data = lt_image(NULL, W, H, 1);
  EXPECT_FAIL(lofi_reconstruct_region(NULL, &img, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "model is NULL");
  EXPECT_FAIL(lofi_reconstruct_region(gray, NULL, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "input is NULL");
  EXPECT_FAIL(lofi_reconstruct_region(gray, &no_data, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "data is NULL");
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, NULL, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "output is NULL");
}

static void test_region_sizes(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_window win = {0, 0, 0, 1};
  img.width = 0;
  EXPECT_FAIL_FN(region_call(gray, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "empty");
  img.width = W;
  img.height = 0;
  EXPECT_FAIL_FN(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, NULL),
                 "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT, "empty");
  img.height = H;
  img.channels = 0;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_INPUT, "empty");
  img.channels = 1;
  img.height = 1; /* LoFi needs at least 2 x 2 pixels */
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, 1, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_INPUT, "2 x 2");
  img.height = H;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, 0, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "empty");
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, 0, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "empty");
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "empty");
  /* An absurd grid (only a 1 x 1 window of it, so the output buffer is small). */
  win.cols = 1;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, (size_t)1 << 21, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "absurd");
}

static void test_region_strides(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  img.row_stride_bytes = W * 4 + 2;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "not a multiple of 4");
  img.row_stride_bytes = 4 * (W - 1);
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "smaller than a row");
  img.row_stride_bytes = 4;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "smaller than a row");
  img.row_stride_bytes = 0;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 6, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "not a multiple of 4");
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 4 * (W - 1), NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "smaller than a row");
  /* rgb output: a row is 3 * W floats */
  img = lt_image(pixels, W, H, 3);
  EXPECT_FAIL(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, out, 4 * W, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "smaller than a row");
  img.row_stride_bytes = 4 * W; /* a gray row for an rgb image */
  EXPECT_FAIL(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "smaller than a row");
}

static void test_region_channels(void) {
  lofi_image img = lt_image(pixels, W, H, 3);
  EXPECT_FAIL_FN(region_call(gray, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "channel");
  img.channels = 1;
  EXPECT_FAIL_FN(region_call(rgb, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "expects 3");
  EXPECT_FAIL_FN(region_call(cplx, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "expects 2");
  img.channels = 2;
  EXPECT_FAIL_FN(region_call(rgb, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "channel");
  CHECK_OK(region_call(cplx, &img));
}

static void test_region_non_finite_pixels(void) {
  float *img_px = lt_make_pixels(W, H, 1, 3);
  lofi_image img = lt_image(img_px, W, H, 1);
  const float nan = (float)NAN, inf = (float)INFINITY;
  REQUIRE(img_px != NULL);
  img_px[3 * W + 5] = nan;
  EXPECT_FAIL_FN(region_call(gray, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "row 3, column 5");
  EXPECT_FAIL_FN(region_call(gray, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "NaN");
  img_px[3 * W + 5] = 0.5f;
  img_px[(H - 1) * W + W - 1] = inf;
  EXPECT_FAIL_FN(region_call(gray, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "inf");
  img_px[(H - 1) * W + W - 1] = -inf;
  EXPECT_FAIL_FN(region_call(gray, &img), "lofi_reconstruct_region", LOFI_STATUS_INVALID_INPUT,
                 "-inf");
  img_px[(H - 1) * W + W - 1] = 0.5f;
  CHECK_OK(region_call(gray, &img));
  /* Points check the image too. */
  img_px[0] = nan;
  {
    double xy[2] = {1.0, 1.0};
    EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 1, out, NULL, NULL),
                LOFI_STATUS_INVALID_INPUT, "NaN");
  }
  free(img_px);
}

static void test_region_window_and_region(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_window win = {20, 0, 5, 4}; /* columns 20..24 of a 24-wide grid */
  lofi_region region = {0.0, 0.0, W - 1.0, H - 1.0};
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "outside");
  win.col0 = 0;
  win.row0 = H;
  win.rows = 1;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "outside");
  win.row0 = 0;
  win.rows = H + 1;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "outside");

  region.x1 = NAN;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, &region, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "finite");
  region.x1 = W - 1.0;
  region.y0 = -INFINITY;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, &region, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "finite");
  /* Corners outside the image are allowed (reflected samples). */
  region.y0 = -3.0;
  region.x1 = W + 5.0;
  CHECK_OK(lofi_reconstruct_region(gray, &img, &region, W, H, NULL, out, 0, NULL, NULL));
  CHECK(lt_all_finite(out, (size_t)W * H));
}

/* col0 + cols (row0 + rows) overflows size_t: still outside the grid, not a wrapped-around
 * window (the bounds use checked arithmetic). */
static void test_region_window_overflow(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_window win = {SIZE_MAX, 0, 2, 1};
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "outside");
  win.col0 = 0;
  win.row0 = SIZE_MAX;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "outside");
  win.row0 = 1;
  win.rows = SIZE_MAX;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, &win, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, NULL);
}

static void test_run_params(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_run_params params = lofi_default_run_params();
  double xy[2] = {3.0, 4.0};
  CHECK(params.memory_budget_bytes == (uint64_t)512 << 20);
  CHECK(params.threads == 0 && params.progress == NULL && params.progress_user_data == NULL);
  params.threads = -1;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "negative");
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 1, out, &params, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "negative");
}

/* A budget that cannot hold one batch: BUDGET_TOO_SMALL, and the message states the minimum. */
static void test_budget_too_small(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_run_params params = lofi_default_run_params();
  double xy[2] = {3.0, 4.0};
  uint64_t budgets[] = {0, 1, 1000, 64 * 1024};
  size_t i;
  for (i = 0; i < sizeof budgets / sizeof budgets[0]; i++) {
    params.memory_budget_bytes = budgets[i];
    EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, NULL),
                LOFI_STATUS_BUDGET_TOO_SMALL, "needs at least");
    EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 1, out, &params, NULL),
                LOFI_STATUS_BUDGET_TOO_SMALL, "needs at least");
  }
}

/* ---- arguments that must not crash the process ------------------------------------------------- */

/* A budget of UINT64_MAX plans batches of the work's size (not a Vec of 2^52 coordinates). */
static void test_huge_budget(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_run_params params = lofi_default_run_params();
  lofi_run_report report;
  double xy[4] = {1.0, 2.0, 3.5, 4.5};
  params.memory_budget_bytes = UINT64_MAX;
  params.threads = 1;
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, &report));
  CHECK(lt_all_finite(out, (size_t)W * H));
  CHECK_MSG(report.batches == 1 && report.batch_pixels >= (uint64_t)W * H && report.batch_pixels < (uint64_t)W * H + 64,
            "batch of %llu pixels for %d pixels", (unsigned long long)report.batch_pixels, W * H);
  CHECK_MSG(report.estimated_peak_bytes < (uint64_t)1 << 30, "estimated peak %llu bytes",
            (unsigned long long)report.estimated_peak_bytes);
  CHECK_OK(lofi_reconstruct_points(gray, &img, xy, 2, out, &params, &report));
  CHECK(report.batch_pixels == 64 && report.pixels == 2);
  params.memory_budget_bytes = UINT64_MAX / 2 + 12345;
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, NULL));
}

/* threads far beyond the machine: clamped to its parallelism (and logged), not a million OpenMP
 * threads. */
static void test_huge_thread_counts(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_run_params params = lofi_default_run_params();
  double xy[2] = {3.0, 4.0};
  double t0 = lt_now();
  params.threads = 1000000;
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, NULL));
  params.threads = INT32_MAX;
  CHECK_OK(lofi_reconstruct_points(gray, &img, xy, 1, out, &params, NULL));
  CHECK(lt_all_finite(out, 1));
  CHECK_MSG(lt_now() - t0 < 60.0, "%.1f s with huge thread counts", lt_now() - t0);
}

/* Coordinates must be finite and within LOFI_MAX_COORDINATE pixels (1e300 used to give NaN). */
static void test_coordinate_bounds(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  double xy[4] = {1.0, 2.0, 1e300, 4.0};
  lofi_region region = {0.0, 0.0, W - 1.0, H - 1.0};
  CHECK(LOFI_MAX_COORDINATE == 1e6);
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 2, out, NULL, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "point 1 has a non-finite coordinate or one beyond +-1e6 pixels");
  xy[2] = 3.0;
  xy[1] = -1e6 * 1.0000001;
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 2, out, NULL, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "point 0");
  xy[1] = -LOFI_MAX_COORDINATE; /* the bound itself is allowed, and finite */
  xy[2] = LOFI_MAX_COORDINATE;
  CHECK_OK(lofi_reconstruct_points(gray, &img, xy, 2, out, NULL, NULL));
  CHECK(lt_all_finite(out, 2));
  region.x1 = 1e300;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, &region, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "within +-1e6 pixels");
  region.x1 = W - 1.0;
  region.y0 = -2e6;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, &region, W, H, NULL, out, 0, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "float32");
  region.y0 = -LOFI_MAX_COORDINATE;
  CHECK_OK(lofi_reconstruct_region(gray, &img, &region, W, H, NULL, out, 0, NULL, NULL));
  CHECK(lt_all_finite(out, (size_t)W * H));
}

/* The library prints nothing: failures are statuses and messages (and log records), not stderr
 * output. stderr is redirected to a file around a series of failing calls. */
static void test_nothing_on_stderr(void) {
  char path[4096];
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_run_params params = lofi_default_run_params();
  lofi_model *m = NULL;
  double xy[2] = {NAN, 1.0};
  unsigned char junk[64];
  int saved, fd;
  size_t size = 0;
  unsigned char *text;
  snprintf(path, sizeof path, "%s", tmp_path("stderr.txt"));
  fflush(stderr);
  saved = dup(2);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  memset(junk, 0x5A, sizeof junk);
  (void)lofi_load(tmp_path("missing.lofi"), NULL, &m);
  (void)lofi_load_from_memory(junk, sizeof junk, NULL, &m);
  (void)lofi_reconstruct_points(gray, &img, xy, 1, out, NULL, NULL);
  params.threads = 1000000;
  (void)lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, NULL);
  params.memory_budget_bytes = 1;
  (void)lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, NULL);
  params.struct_size = 0;
  (void)lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &params, NULL);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  text = lt_read_file(path, &size);
  CHECK_MSG(text != NULL && size == 0, "the library wrote %zu bytes to stderr: %.*s", size, (int)size,
            text ? (const char *)text : "");
  free(text);
  remove(path);
}

/* ---- lofi_reconstruct_points ------------------------------------------------------------------ */

static void test_points(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  double xy[6] = {1.0, 2.0, 3.5, 4.5, 10.0, 11.0};
  EXPECT_FAIL(lofi_reconstruct_points(NULL, &img, xy, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "model is NULL");
  EXPECT_FAIL(lofi_reconstruct_points(gray, NULL, xy, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "input is NULL");
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, NULL, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "points_xy is NULL");
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 3, NULL, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "output is NULL");
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 0, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "count = 0");
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, SIZE_MAX / 8, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  xy[2] = NAN;
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "point 1");
  xy[2] = 3.5;
  xy[5] = NAN;
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "point 2 has a non-finite coordinate");
  xy[5] = -INFINITY;
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "non-finite");
  xy[5] = 11.0;
  img.channels = 3;
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_INPUT, "channel");
  img.channels = 1;
  img.row_stride_bytes = 5;
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 3, out, NULL, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "multiple of 4");
  img.row_stride_bytes = 0;
  CHECK_OK(lofi_reconstruct_points(gray, &img, xy, 3, out, NULL, NULL));
  CHECK(lt_all_finite(out, 3));
}

/* ---- lofi_last_error semantics, lofi_status_name --------------------------------------------- */

static void test_last_error_lifecycle(void) {
  lofi_model *m = NULL;
  lofi_model_info info;
  const char *first;
  char copy[512];
  CHECK_OK(lofi_model_get_info(gray, &info));
  CHECK(lofi_last_error() == NULL);
  CHECK(lofi_load(NULL, NULL, &m) == LOFI_STATUS_INVALID_ARGUMENT);
  first = lofi_last_error();
  REQUIRE(first != NULL);
  snprintf(copy, sizeof copy, "%s", first);
  /* Reading it does not consume it. */
  CHECK(lofi_last_error() != NULL && strcmp(lofi_last_error(), copy) == 0);
  /* Another failure replaces it. */
  CHECK(lofi_model_get_info(NULL, &info) == LOFI_STATUS_INVALID_ARGUMENT);
  CHECK(lofi_last_error() != NULL && strstr(lofi_last_error(), "model is NULL") != NULL);
  CHECK(lofi_last_error() != NULL && strcmp(lofi_last_error(), copy) != 0);
  /* A success clears it, for every kind of entry point. */
  CHECK_OK(lofi_model_get_info(gray, &info));
  CHECK(lofi_load(NULL, NULL, &m) != LOFI_STATUS_OK);
  CHECK_OK(lofi_load(lt_fixture("tiny-gray.lofi"), NULL, &m));
  lofi_model_free(m);
  {
    lofi_image img = lt_image(pixels, W, H, 1);
    double xy[2] = {1.0, 1.0};
    CHECK(lofi_reconstruct_points(gray, &img, NULL, 1, out, NULL, NULL) != LOFI_STATUS_OK);
    CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, NULL));
    CHECK(lofi_reconstruct_region(gray, &img, NULL, 0, H, NULL, out, 0, NULL, NULL) != LOFI_STATUS_OK);
    CHECK_OK(lofi_reconstruct_points(gray, &img, xy, 1, out, NULL, NULL));
  }
}

static void test_status_names(void) {
  static const char *const names[] = {
      "LOFI_STATUS_OK",           "LOFI_STATUS_INVALID_ARGUMENT", "LOFI_STATUS_INVALID_INPUT",
      "LOFI_STATUS_INVALID_MODEL", "LOFI_STATUS_IO",               "LOFI_STATUS_BUDGET_TOO_SMALL",
      "LOFI_STATUS_DEVICE_UNAVAILABLE", "LOFI_STATUS_CANCELLED",   "LOFI_STATUS_TORCH",
      "LOFI_STATUS_INTERNAL",     "LOFI_STATUS_OUT_OF_MEMORY"};
  static const int32_t unknown[] = {-1, 11, 12345, INT32_MIN, INT32_MAX};
  int i;
  for (i = 0; i <= (int)LOFI_STATUS_OUT_OF_MEMORY; i++) {
    const char *n = lofi_status_name((lofi_status)i);
    CHECK_MSG(n != NULL && strcmp(n, names[i]) == 0, "lofi_status_name(%d) = %s", i, n ? n : "NULL");
  }
  /* Any int is safe to pass; values that are no status have one name. */
  for (i = 0; i < (int)(sizeof unknown / sizeof unknown[0]); i++) {
    const char *n = lofi_status_name(unknown[i]);
    CHECK_MSG(n != NULL && strcmp(n, "LOFI_STATUS_UNKNOWN") == 0, "lofi_status_name(%ld) = %s",
              (long)unknown[i], n ? n : "NULL");
  }
  CHECK(strcmp(lofi_status_name(12345), "LOFI_STATUS_UNKNOWN") == 0);
  /* It is not a fallible call: it leaves the last error alone. */
  CHECK(lofi_model_get_info(NULL, NULL) == LOFI_STATUS_INVALID_ARGUMENT);
  (void)lofi_status_name(12345);
  CHECK(lofi_last_error() != NULL);
}

int main(int argc, char **argv) {
  lt_init(argc, argv);
  gray = lt_load("tiny-gray.lofi");
  rgb = lt_load("tiny-rgb.lofi");
  cplx = lt_load("tiny-complex.lofi");
  pixels = lt_make_pixels(W, H, 3, 7);
  if (!gray || !rgb || !cplx || !pixels) return 1;

  RUN(test_load_null_arguments);
  RUN(test_load_missing_and_unreadable);
  RUN(test_load_corrupt_files);
  RUN(test_load_params);
  RUN(test_load_cuda);
  RUN(test_load_from_memory);
  RUN(test_model_info_and_free);
  RUN(test_memory_requirements_errors);
  RUN(test_region_null_arguments);
  RUN(test_region_sizes);
  RUN(test_region_strides);
  RUN(test_region_channels);
  RUN(test_region_non_finite_pixels);
  RUN(test_region_window_and_region);
  RUN(test_region_window_overflow);
  RUN(test_run_params);
  RUN(test_budget_too_small);
  RUN(test_huge_budget);
  RUN(test_huge_thread_counts);
  RUN(test_coordinate_bounds);
  RUN(test_nothing_on_stderr);
  RUN(test_points);
  RUN(test_last_error_lifecycle);
  RUN(test_status_names);

  lofi_model_free(gray);
  lofi_model_free(rgb);
  lofi_model_free(cplx);
  free(pixels);
  return lt_done();
}
