/*
 * What lofi_reconstruct_region / lofi_reconstruct_points compute: tiles equal the whole image bit
 * for bit (with threads = 1, the setting under which lofi guarantees it), a 2x grid's even samples
 * are the on-grid reconstruction, points equal grid samples, strides and defaults change nothing,
 * the progress callback reports every batch and can cancel, the run report agrees with the memory
 * budget, and lofi_memory_requirements() states the smallest budget that works.
 */
#define _POSIX_C_SOURCE 200809L
#include "lofi_test.h"

enum { W = 24, H = 20 };

static lofi_model *gray, *rgb, *cplx;

/* Whole-image on-grid reconstruction into a new buffer (NULL on failure). */
static float *on_grid(const lofi_model *m, const lofi_image *img, size_t c_out) {
  float *o = (float *)malloc(img->width * img->height * c_out * sizeof(float));
  if (o && lofi_reconstruct_region(m, img, NULL, img->width, img->height, NULL, o, 0, NULL, NULL) !=
               LOFI_STATUS_OK) {
    fprintf(stderr, "on_grid: %s\n", lt_err());
    free(o);
    return NULL;
  }
  return o;
}

static void test_models_and_defaults(void) {
  struct {
    lofi_model *m;
    size_t c_in, c_out;
  } cases[3];
  size_t i;
  cases[0].m = gray, cases[0].c_in = 1, cases[0].c_out = 1;
  cases[1].m = rgb, cases[1].c_in = 3, cases[1].c_out = 3;
  cases[2].m = cplx, cases[2].c_in = 2, cases[2].c_out = 1;
  for (i = 0; i < 3; i++) {
    size_t n = (size_t)W * H * cases[i].c_out;
    float *px = lt_make_pixels(W, H, cases[i].c_in, (unsigned)i);
    float *a = (float *)malloc(n * sizeof(float)), *b = (float *)malloc(n * sizeof(float));
    lofi_image img = lt_image(px, W, H, cases[i].c_in);
    lofi_region whole = {0.0, 0.0, W - 1.0, H - 1.0};
    lofi_run_params params = lofi_default_run_params();
    lofi_run_report report;
    REQUIRE(px && a && b);
    memset(&report, 0xff, sizeof report);
    /* NULL region / params / report == explicit whole region / default params. */
    CHECK_OK(lofi_reconstruct_region(cases[i].m, &img, NULL, W, H, NULL, a, 0, NULL, NULL));
    CHECK_OK(lofi_reconstruct_region(cases[i].m, &img, &whole, W, H, NULL, b, 0, &params, &report));
    CHECK_MSG(memcmp(a, b, n * sizeof(float)) == 0, "model %zu: NULL region/params differ", i);
    CHECK(lt_all_finite(a, n));
    CHECK(report.pixels == (uint64_t)W * H);
    CHECK(report.batch_pixels > 0 && report.batches >= 1);
    CHECK(report.batches == (report.pixels + report.batch_pixels - 1) / report.batch_pixels);
    CHECK(report.estimated_peak_bytes > 0 && report.estimated_peak_bytes <= params.memory_budget_bytes);
    CHECK(report.measured_peak_bytes == 0); /* CPU */
    /* Deterministic: the same call twice gives the same bits. */
    CHECK_OK(lofi_reconstruct_region(cases[i].m, &img, NULL, W, H, NULL, b, 0, NULL, NULL));
    CHECK(memcmp(a, b, n * sizeof(float)) == 0);
    free(px);
    free(a);
    free(b);
  }
}

/* Input and output row strides (with NaN padding the library must not read, and output padding
 * it must not write) give the packed result. */
static void test_strides(void) {
  const size_t C = 3, pad_in = 5, pad_out = 7;
  const size_t in_stride = W * C + pad_in, out_stride = W * C + pad_out;
  float *px = lt_make_pixels(W, H, C, 11);
  float *padded = (float *)malloc(in_stride * H * sizeof(float));
  float *out = (float *)malloc(out_stride * H * sizeof(float));
  float *ref;
  lofi_image img = lt_image(px, W, H, C), img_padded;
  size_t y, x;
  int untouched = 1, equal = 1;
  REQUIRE(px && padded && out);
  for (y = 0; y < H; y++) {
    memcpy(padded + y * in_stride, px + y * W * C, W * C * sizeof(float));
    for (x = W * C; x < in_stride; x++) padded[y * in_stride + x] = (float)NAN;
  }
  for (x = 0; x < out_stride * H; x++) out[x] = -12345.0f;
  ref = on_grid(rgb, &img, C);
  REQUIRE(ref != NULL);
  img_padded = lt_image(padded, W, H, C);
  img_padded.row_stride_bytes = in_stride * sizeof(float);
  CHECK_OK(lofi_reconstruct_region(rgb, &img_padded, NULL, W, H, NULL, out,
                                   out_stride * sizeof(float), NULL, NULL));
  for (y = 0; y < H; y++) {
    equal &= memcmp(out + y * out_stride, ref + y * W * C, W * C * sizeof(float)) == 0;
    for (x = W * C; x < out_stride; x++) untouched &= out[y * out_stride + x] == -12345.0f;
  }
  CHECK_MSG(equal, "strided result differs from packed");
  CHECK_MSG(untouched, "output padding was written");
  /* An explicit stride equal to the packed one is the same as 0. */
  img.row_stride_bytes = W * C * sizeof(float);
  CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, out, W * C * sizeof(float), NULL, NULL));
  CHECK(memcmp(out, ref, W * H * C * sizeof(float)) == 0);
  free(px);
  free(padded);
  free(out);
  free(ref);
}

/* Tiles of a grid, written straight into the whole output through its row stride, or into
 * separate packed buffers, equal the whole grid bit for bit; also at 2x and on a sub-region.
 * Bit-identical tiles are guaranteed with threads = 1 (with more threads the BLAS may split rows
 * differently), so every call here runs on one thread. */
static void check_tiles(const lofi_model *m, const lofi_image *img, size_t c_out,
                        const lofi_region *region, size_t gw, size_t gh) {
  static const size_t col_cuts[] = {0, 7, 19}, row_cuts[] = {0, 9};
  const lofi_run_params one = lt_one_thread();
  const size_t ncol = sizeof col_cuts / sizeof col_cuts[0], nrow = sizeof row_cuts / sizeof row_cuts[0];
  const size_t row_floats = gw * c_out;
  float *whole = (float *)malloc(gw * gh * c_out * sizeof(float));
  float *tiled = (float *)malloc(gw * gh * c_out * sizeof(float));
  float *tile = (float *)malloc(gw * gh * c_out * sizeof(float));
  size_t i, j, r;
  int same_strided = 1, same_packed = 1;
  REQUIRE(whole && tiled && tile);
  memset(tiled, 0, gw * gh * c_out * sizeof(float));
  CHECK_OK(lofi_reconstruct_region(m, img, region, gw, gh, NULL, whole, 0, &one, NULL));
  for (j = 0; j < nrow; j++)
    for (i = 0; i < ncol; i++) {
      lofi_window win;
      win.col0 = col_cuts[i];
      win.row0 = row_cuts[j];
      win.cols = (i + 1 < ncol ? col_cuts[i + 1] : gw) - win.col0;
      win.rows = (j + 1 < nrow ? row_cuts[j + 1] : gh) - win.row0;
      /* into the whole buffer, through the stride */
      CHECK_OK(lofi_reconstruct_region(m, img, region, gw, gh, &win,
                                       tiled + win.row0 * row_floats + win.col0 * c_out,
                                       row_floats * sizeof(float), &one, NULL));
      /* into a packed buffer of exactly the tile's size */
      CHECK_OK(lofi_reconstruct_region(m, img, region, gw, gh, &win, tile, 0, &one, NULL));
      for (r = 0; r < win.rows; r++)
        same_packed &= memcmp(tile + r * win.cols * c_out,
                              whole + (win.row0 + r) * row_floats + win.col0 * c_out,
                              win.cols * c_out * sizeof(float)) == 0;
    }
  same_strided = memcmp(tiled, whole, gw * gh * c_out * sizeof(float)) == 0;
  CHECK_MSG(same_strided, "%zu x %zu grid: tiles written through the stride differ from the whole (max |diff| %g)",
            gw, gh, lt_max_abs_diff(tiled, whole, gw * gh * c_out));
  CHECK_MSG(same_packed, "%zu x %zu grid: packed tiles differ from the whole", gw, gh);
  free(whole);
  free(tiled);
  free(tile);
}

static void test_tiles_equal_whole(void) {
  float *g = lt_make_pixels(W, H, 1, 5), *c = lt_make_pixels(W, H, 3, 6);
  lofi_image gi = lt_image(g, W, H, 1), ci = lt_image(c, W, H, 3);
  lofi_region sub = {3.25, -1.5, 17.0, 12.75};
  REQUIRE(g && c);
  check_tiles(gray, &gi, 1, NULL, W, H);
  check_tiles(gray, &gi, 1, NULL, 2 * W - 1, 2 * H - 1);
  check_tiles(gray, &gi, 1, &sub, 29, 23);
  check_tiles(rgb, &ci, 3, NULL, W, H);
  free(g);
  free(c);
}

/* The (2W-1) x (2H-1) grid holds the on-grid samples at its even positions. */
static void test_double_resolution(void) {
  float *px = lt_make_pixels(W, H, 3, 9);
  lofi_image img = lt_image(px, W, H, 3);
  const size_t GW = 2 * W - 1, GH = 2 * H - 1, C = 3;
  float *fine = (float *)malloc(GW * GH * C * sizeof(float)), *ref;
  double worst = 0.0;
  size_t x, y, c;
  REQUIRE(px && fine);
  ref = on_grid(rgb, &img, C);
  REQUIRE(ref != NULL);
  CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, GW, GH, NULL, fine, 0, NULL, NULL));
  for (y = 0; y < H; y++)
    for (x = 0; x < W; x++)
      for (c = 0; c < C; c++) {
        double d = fabs((double)fine[((2 * y) * GW + 2 * x) * C + c] - (double)ref[(y * W + x) * C + c]);
        if (!(d <= worst)) worst = d;
      }
  CHECK_MSG(worst <= 1e-5, "2x grid vs on-grid: max |diff| = %g", worst);
  CHECK(lt_all_finite(fine, GW * GH * C));
  free(px);
  free(fine);
  free(ref);
}

/* Points at pixel centres equal the on-grid samples; points at a region's grid positions equal
 * that grid; a 1 x 1 grid sits at the region's centre. */
static void test_points_match_grid(void) {
  float *px = lt_make_pixels(W, H, 1, 4), *ref, *vals, grid[6 * 5], one;
  lofi_image img = lt_image(px, W, H, 1);
  double *xy = (double *)malloc(2 * W * H * sizeof(double)), sub_xy[2 * 6 * 5];
  lofi_region sub = {2.5, 4.0, 12.5, 14.0};
  lofi_run_report report;
  size_t x, y;
  REQUIRE(px && xy);
  ref = on_grid(gray, &img, 1);
  vals = (float *)malloc(W * H * sizeof(float));
  REQUIRE(ref && vals);
  for (y = 0; y < H; y++)
    for (x = 0; x < W; x++) {
      xy[2 * (y * W + x)] = (double)x;
      xy[2 * (y * W + x) + 1] = (double)y;
    }
  CHECK_OK(lofi_reconstruct_points(gray, &img, xy, W * H, vals, NULL, &report));
  CHECK(report.pixels == (uint64_t)W * H);
  CHECK_MSG(lt_max_abs_diff(vals, ref, W * H) <= 1e-5, "points vs grid: max |diff| = %g",
            lt_max_abs_diff(vals, ref, W * H));
  /* a 6 x 5 grid over `sub`: x = 2.5 + 2 i, y = 4 + 2.5 j */
  for (y = 0; y < 5; y++)
    for (x = 0; x < 6; x++) {
      sub_xy[2 * (y * 6 + x)] = 2.5 + 2.0 * (double)x;
      sub_xy[2 * (y * 6 + x) + 1] = 4.0 + 2.5 * (double)y;
    }
  CHECK_OK(lofi_reconstruct_region(gray, &img, &sub, 6, 5, NULL, grid, 0, NULL, NULL));
  CHECK_OK(lofi_reconstruct_points(gray, &img, sub_xy, 30, vals, NULL, NULL));
  CHECK_MSG(lt_max_abs_diff(vals, grid, 30) <= 1e-5, "region grid vs points: max |diff| = %g",
            lt_max_abs_diff(vals, grid, 30));
  CHECK_OK(lofi_reconstruct_region(gray, &img, &sub, 1, 1, NULL, &one, 0, NULL, NULL));
  sub_xy[0] = 7.5;
  sub_xy[1] = 9.0;
  CHECK_OK(lofi_reconstruct_points(gray, &img, sub_xy, 1, vals, NULL, NULL));
  CHECK_MSG(fabs((double)one - (double)vals[0]) <= 1e-5, "1 x 1 grid is not at the centre");
  free(px);
  free(xy);
  free(ref);
  free(vals);
}

/* ---- progress, cancellation, budget ---------------------------------------------------------- */

typedef struct {
  unsigned calls;
  unsigned filter_calls; /* done = 0: a band of a filter computed in bands, before the batches */
  unsigned cancel_at;    /* 0: never */
  uint64_t last_done, total;
  int monotonic;
  const void *self;
} progress_log;

static bool on_progress(void *user, uint64_t done, uint64_t total) {
  progress_log *log = (progress_log *)user;
  if (log->self != log) return false; /* user_data not passed unchanged */
  log->calls++;
  if (done == 0) log->filter_calls++;
  /* Batches count up strictly; the filter's calls (done = 0) come only before them. */
  if ((done == 0 ? log->last_done != 0 : done <= log->last_done) || done > total ||
      (log->total && total != log->total))
    log->monotonic = 0;
  log->last_done = done;
  log->total = total;
  return log->cancel_at == 0 || log->calls < log->cancel_at;
}

static progress_log new_log(unsigned cancel_at) {
  progress_log l;
  memset(&l, 0, sizeof l);
  l.cancel_at = cancel_at;
  l.monotonic = 1;
  return l;
}

/* The smallest budget that holds one batch, found from a run report: the fixed part (the
 * prepared image) is the estimate minus the batch's pixels. */
static uint64_t fixed_bytes(const lofi_model *m, const lofi_image *img, uint64_t *per_pixel) {
  lofi_model_info info;
  lofi_run_report rep;
  float *o = (float *)malloc(img->width * img->height * 3 * sizeof(float));
  if (!o || lofi_model_get_info(m, &info) != LOFI_STATUS_OK ||
      lofi_reconstruct_region(m, img, NULL, img->width, img->height, NULL, o, 0, NULL, &rep) != LOFI_STATUS_OK) {
    free(o);
    return 0;
  }
  free(o);
  *per_pixel = info.bytes_per_pixel;
  return rep.estimated_peak_bytes - rep.batch_pixels * info.bytes_per_pixel;
}

static void test_budget_batches_and_progress(void) {
  float *px = lt_make_pixels(W, H, 1, 2);
  lofi_image img = lt_image(px, W, H, 1);
  float *a = (float *)malloc(W * H * sizeof(float)), *b = (float *)malloc(W * H * sizeof(float));
  lofi_run_params params = lofi_default_run_params();
  lofi_run_report rep;
  progress_log log = new_log(0);
  uint64_t per_pixel = 0, fixed;
  REQUIRE(px && a && b);
  fixed = fixed_bytes(gray, &img, &per_pixel);
  REQUIRE_MSG(fixed > 0 && per_pixel > 0, "no run report");

  /* A budget for about 100 pixels per batch: several batches, the same bits as one batch (both
   * on one thread, under which lofi guarantees it). */
  params.threads = 1;
  params.memory_budget_bytes = fixed + 100 * per_pixel;
  params.progress = on_progress;
  params.progress_user_data = &log;
  log.self = &log;
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, a, 0, &params, &rep));
  CHECK_MSG(rep.batch_pixels > 0 && rep.batch_pixels <= 100, "batch of %llu pixels for a 100-pixel budget",
            (unsigned long long)rep.batch_pixels);
  CHECK(rep.estimated_peak_bytes <= params.memory_budget_bytes);
  /* batches are tiles of the output of at most batch_pixels each (input streaming) */
  CHECK(rep.batches >= (W * H + rep.batch_pixels - 1) / rep.batch_pixels && rep.batches > 1);
  CHECK_MSG(log.calls == rep.batches, "progress called %u times for %llu batches", log.calls,
            (unsigned long long)rep.batches);
  CHECK(log.monotonic && log.last_done == (uint64_t)W * H && log.total == (uint64_t)W * H);
  {
    const lofi_run_params one = lt_one_thread();
    CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, b, 0, &one, &rep));
    CHECK(rep.batches == 1);
  }
  CHECK_MSG(memcmp(a, b, W * H * sizeof(float)) == 0,
            "small batches differ from one batch (max |diff| %g)", lt_max_abs_diff(a, b, W * H));

  /* Less than one pixel above the fixed part: too small, and the message says how much is needed. */
  params.memory_budget_bytes = fixed + per_pixel / 2;
  params.progress = NULL;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, a, 0, &params, NULL),
              LOFI_STATUS_BUDGET_TOO_SMALL, "at least");

  /* Points: progress in points. */
  {
    double xy[2 * 150];
    float vals[150];
    size_t i;
    for (i = 0; i < 150; i++) {
      xy[2 * i] = (double)(i % W);
      xy[2 * i + 1] = (double)(i / W);
    }
    log = new_log(0);
    log.self = &log;
    params.memory_budget_bytes = fixed + 70 * per_pixel;
    params.progress = on_progress;
    CHECK_OK(lofi_reconstruct_points(gray, &img, xy, 150, vals, &params, &rep));
    CHECK(rep.pixels == 150 && rep.batches > 1 && log.calls == rep.batches);
    CHECK(log.monotonic && log.last_done == 150 && log.total == 150);
    CHECK(lt_max_abs_diff(vals, b, 150) <= 1e-5);
  }
  free(px);
  free(a);
  free(b);
}

/* lofi_memory_requirements(): the minimum it states is a budget that works, one byte less fails
 * with BUDGET_TOO_SMALL; its bytes per pixel are the model info's; it agrees with the run report
 * (the fixed part plus a whole number of pixels); it depends on the input size, not the grid. */
static void test_memory_requirements(void) {
  static const size_t sizes[][2] = {{W, H}, {7, 5}, {2, 2}, {33, 3}};
  struct {
    lofi_model *m;
    size_t c_in, c_out;
  } models[3];
  size_t i, k;
  models[0].m = gray, models[0].c_in = 1, models[0].c_out = 1;
  models[1].m = rgb, models[1].c_in = 3, models[1].c_out = 3;
  models[2].m = cplx, models[2].c_in = 2, models[2].c_out = 1;
  for (k = 0; k < 3; k++)
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      const size_t w = sizes[i][0], h = sizes[i][1], gw = 2 * w - 1, gh = 2 * h - 1;
      float *px = lt_make_pixels(w, h, models[k].c_in, (unsigned)(10 * k + i));
      float *o = (float *)malloc(gw * gh * models[k].c_out * sizeof(float));
      lofi_image img = lt_image(px, w, h, models[k].c_in);
      lofi_run_params params = lofi_default_run_params();
      lofi_run_report rep;
      lofi_model_info info;
      uint64_t min_budget = 0, per_pixel = 0, min_again = 0, fixed;
      double xy[2] = {0.5, 0.5};
      REQUIRE(px && o);
      CHECK_OK(lofi_model_get_info(models[k].m, &info));
      CHECK_OK(lofi_memory_requirements(models[k].m, w, h, &min_budget, &per_pixel));
      CHECK_MSG(per_pixel == info.bytes_per_pixel, "bytes per pixel %llu, model info says %llu",
                (unsigned long long)per_pixel, (unsigned long long)info.bytes_per_pixel);
      CHECK_OK(lofi_memory_requirements(models[k].m, w, h, &min_again, NULL)); /* NULL allowed */
      CHECK(min_again == min_budget && min_budget > per_pixel);

      /* The minimum works, for grids (also at 2x: the input size decides) and for points. */
      params.memory_budget_bytes = min_budget;
      CHECK_OK(lofi_reconstruct_region(models[k].m, &img, NULL, w, h, NULL, o, 0, &params, &rep));
      CHECK(rep.estimated_peak_bytes <= min_budget && rep.batch_pixels > 0);
      /* the fixed part (the prepared image) plus a whole number of pixels */
      fixed = rep.estimated_peak_bytes - rep.batch_pixels * per_pixel;
      CHECK_MSG(min_budget > fixed && (min_budget - fixed) % per_pixel == 0,
                "minimum %llu is not the fixed part %llu plus whole pixels of %llu",
                (unsigned long long)min_budget, (unsigned long long)fixed, (unsigned long long)per_pixel);
      if (i == 1) { /* (one size is enough: batches of the minimum are slow) */
        CHECK_OK(lofi_reconstruct_region(models[k].m, &img, NULL, gw, gh, NULL, o, 0, &params, &rep));
        CHECK(rep.estimated_peak_bytes <= min_budget);
      }
      CHECK_OK(lofi_reconstruct_points(models[k].m, &img, xy, 1, o, &params, NULL));
      /* One byte less does not. */
      params.memory_budget_bytes = min_budget - 1;
      EXPECT_FAIL(lofi_reconstruct_region(models[k].m, &img, NULL, w, h, NULL, o, 0, &params, NULL),
                  LOFI_STATUS_BUDGET_TOO_SMALL, "at least");
      EXPECT_FAIL(lofi_reconstruct_points(models[k].m, &img, xy, 1, o, &params, NULL),
                  LOFI_STATUS_BUDGET_TOO_SMALL, "at least");
      free(px);
      free(o);
    }
  /* A larger input needs more. */
  {
    uint64_t small = 0, big = 0;
    CHECK_OK(lofi_memory_requirements(gray, 16, 16, &small, NULL));
    CHECK_OK(lofi_memory_requirements(gray, 512, 512, &big, NULL));
    CHECK(big > small);
  }
}

static void test_cancel(void) {
  float *px = lt_make_pixels(W, H, 1, 2);
  lofi_image img = lt_image(px, W, H, 1);
  float *o = (float *)malloc(W * H * sizeof(float));
  lofi_run_params params = lofi_default_run_params();
  progress_log log;
  uint64_t per_pixel = 0, fixed;
  double xy[4] = {1, 2, 3, 4};
  REQUIRE(px && o);
  fixed = fixed_bytes(gray, &img, &per_pixel);
  REQUIRE(fixed > 0);
  params.progress = on_progress;
  params.progress_user_data = &log;

  /* Cancel at the first call: one batch covers everything with the default budget. */
  log = new_log(1);
  log.self = &log;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, o, 0, &params, NULL),
              LOFI_STATUS_CANCELLED, NULL);
  CHECK(log.calls == 1);
  /* Cancel at the second of several batches: no more calls after the cancel. */
  params.memory_budget_bytes = fixed + 64 * per_pixel;
  log = new_log(2);
  log.self = &log;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, o, 0, &params, NULL),
              LOFI_STATUS_CANCELLED, NULL);
  CHECK_MSG(log.calls == 2, "progress called %u times after cancelling at 2", log.calls);
  CHECK(log.last_done < (uint64_t)W * H);
  /* Points cancel too. */
  log = new_log(1);
  log.self = &log;
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 2, o, &params, NULL), LOFI_STATUS_CANCELLED, NULL);
  /* A cancelled call leaves the model usable, and the next success clears the error. */
  CHECK_OK(lofi_reconstruct_points(gray, &img, xy, 2, o, NULL, NULL));
  free(px);
  free(o);
}

/* A filter model whose filtered image would take more than half the budget computes it in bands
 * through scratch files before the first batch (minutes on gigapixel inputs): the callback hears
 * of every band with done = 0 and can cancel there, before any batch runs. */
static void test_cancel_during_filter(void) {
  enum { FW = 300, FH = 280 };
  float *px = lt_make_pixels(FW, FH, 1, 5);
  lofi_image img = lt_image(px, FW, FH, 1);
  float *o = (float *)malloc(FW * FH * sizeof(float));
  lofi_run_params params = lofi_default_run_params();
  lofi_run_report rep;
  progress_log log;
  uint64_t per_pixel = 0, fixed;
  size_t i;
  int untouched = 1;
  REQUIRE(px && o);
  fixed = fixed_bytes(gray, &img, &per_pixel);
  REQUIRE(fixed > 0);
  params.memory_budget_bytes = fixed * 3 / 4; /* the in-memory filter does not fit: bands */
  params.progress = on_progress;
  params.progress_user_data = &log;
  log = new_log(0);
  log.self = &log;
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, FW, FH, NULL, o, 0, &params, &rep));
  CHECK_MSG(log.filter_calls >= 3 && log.calls == log.filter_calls + rep.batches,
            "%u calls: %u of the filter, %llu batches", log.calls, log.filter_calls,
            (unsigned long long)rep.batches);
  CHECK(log.monotonic && log.last_done == (uint64_t)FW * FH && log.total == (uint64_t)FW * FH);

  for (i = 0; i < (size_t)FW * FH; i++) o[i] = -7.0f;
  log = new_log(1);
  log.self = &log;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, FW, FH, NULL, o, 0, &params, NULL),
              LOFI_STATUS_CANCELLED, NULL);
  CHECK(log.calls == 1 && log.filter_calls == 1 && log.total == (uint64_t)FW * FH);
  for (i = 0; i < (size_t)FW * FH; i++) untouched &= o[i] == -7.0f;
  CHECK_MSG(untouched, "a batch ran after the cancel");
  free(px);
  free(o);
}

/* Threads parameter: a per-call thread count gives the same result to float rounding (with
 * different thread counts the BLAS may split rows differently: about 1e-7 relative, so the
 * comparison allows 1e-6 relative); the same thread count gives the same bits. */
static void test_threads_param(void) {
  float *px = lt_make_pixels(W, H, 3, 8), *a, *b;
  lofi_image img = lt_image(px, W, H, 3);
  lofi_run_params params = lofi_default_run_params();
  REQUIRE(px);
  a = on_grid(rgb, &img, 3);
  b = (float *)malloc(W * H * 3 * sizeof(float));
  REQUIRE(a && b);
  params.threads = 1;
  CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, b, 0, &params, NULL));
  CHECK_MSG(lt_max_rel_diff(b, a, W * H * 3) <= 1e-6, "threads=1 vs default: max relative diff %g",
            lt_max_rel_diff(b, a, W * H * 3));
  params.threads = 2;
  CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, b, 0, &params, NULL));
  CHECK_MSG(lt_max_rel_diff(b, a, W * H * 3) <= 1e-6, "threads=2 vs default: max relative diff %g",
            lt_max_rel_diff(b, a, W * H * 3));
  /* one thread twice: the same bits */
  params.threads = 1;
  CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, a, 0, &params, NULL));
  {
    float *c = (float *)malloc(W * H * 3 * sizeof(float));
    REQUIRE(c != NULL);
    CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, c, 0, &params, NULL));
    CHECK(memcmp(a, c, W * H * 3 * sizeof(float)) == 0);
    free(c);
  }
  free(px);
  free(a);
  free(b);
}

/* lofi_load_from_memory gives the same model as lofi_load. */
static void test_memory_load_equivalent(void) {
  size_t size = 0;
  unsigned char *bytes = lt_read_file(lt_fixture("tiny-complex.lofi"), &size);
  lofi_model *m = NULL;
  float *px = lt_make_pixels(W, H, 2, 3), *a = NULL, *b = NULL;
  lofi_image img = lt_image(px, W, H, 2);
  REQUIRE(bytes && px);
  CHECK_OK(lofi_load_from_memory(bytes, size, NULL, &m));
  free(bytes);
  REQUIRE(m != NULL);
  a = on_grid(cplx, &img, 1);
  b = on_grid(m, &img, 1);
  CHECK(a && b && memcmp(a, b, W * H * sizeof(float)) == 0);
  lofi_model_free(m);
  free(px);
  free(a);
  free(b);
}

/* Where CUDA works: the same model on the GPU gives the CPU's result (to float32 rounding) and
 * reports its measured peak; elsewhere this test passes trivially. */
/* Noise-level-aware models: lofi_model_get_info says so, a run needs run_params.noise_level
 * (INVALID_ARGUMENT without it), the level reaches the output, NaN is refused, and a fixed-level
 * model refuses a noise level. */
static void test_noise_level(void) {
  lofi_model *aware = lt_load("tiny-gray-sigma.lofi");
  lofi_model_info info;
  lofi_run_params p = lofi_default_run_params();
  float *px = lt_make_pixels(W, H, 1, 7u);
  float *a = (float *)malloc((size_t)W * H * sizeof(float));
  float *b = (float *)malloc((size_t)W * H * sizeof(float));
  lofi_image img = lt_image(px, W, H, 1);
  REQUIRE(aware && px && a && b);
  CHECK_OK(lofi_model_get_info(aware, &info));
  CHECK(info.noise_level_aware == 1);
  CHECK(info.noise_level_min == 0.0 && info.noise_level_max == 0.2);
  CHECK_OK(lofi_model_get_info(gray, &info));
  CHECK(info.noise_level_aware == 0);
  CHECK(p.noise_level == LOFI_NOISE_LEVEL_NONE);
  EXPECT_FAIL(lofi_reconstruct_region(aware, &img, NULL, W, H, NULL, a, 0, &p, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "noise");
  p.noise_level = 10.0 / 255.0;
  CHECK_OK(lofi_reconstruct_region(aware, &img, NULL, W, H, NULL, a, 0, &p, NULL));
  p.noise_level = 40.0 / 255.0;
  CHECK_OK(lofi_reconstruct_region(aware, &img, NULL, W, H, NULL, b, 0, &p, NULL));
  CHECK(lt_all_finite(a, (size_t)W * H) && lt_all_finite(b, (size_t)W * H));
  CHECK_MSG(lt_max_abs_diff(a, b, (size_t)W * H) > 1e-5, "the noise level does not reach the output");
  p.noise_level = NAN;
  EXPECT_FAIL(lofi_reconstruct_region(aware, &img, NULL, W, H, NULL, a, 0, &p, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "NaN");
  p.noise_level = 0.1;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, a, 0, &p, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "fixed noise level");
  free(px);
  free(a);
  free(b);
  lofi_model_free(aware);
}

/* lofi_denoise_refined: NULL refinement = the defaults; both steps off = the one-pass region call
 * bit for bit (one thread); the clean-up alone = a second region call at the fraction of the level;
 * the report counts every pass; bad settings, a fixed-level model, a missing level and a bad
 * struct_size are refused with a message. */
static void test_denoise_refined(void) {
  lofi_model *aware = lt_load("tiny-gray-sigma.lofi");
  lofi_run_params p = lofi_default_run_params();
  lofi_refinement r = lofi_default_refinement();
  lofi_run_report report;
  size_t n = (size_t)W * H;
  float *px = lt_make_pixels(W, H, 1, 11u);
  float *a = (float *)malloc(n * sizeof(float)), *b = (float *)malloc(n * sizeof(float));
  float *c = (float *)malloc(n * sizeof(float));
  lofi_image img = lt_image(px, W, H, 1);
  REQUIRE(aware && px && a && b && c);
  CHECK(r.coarse_blur == 2.0 && r.cleanup == 0.1);
  p.noise_level = 0.1;
  p.threads = 1;
  CHECK_OK(lofi_denoise_refined(aware, &img, NULL, a, 0, &p, &report));
  /* Two full passes, and the 2 x 2 means on two grids (the second moved a pixel: one more block each way). */
  CHECK(report.pixels == 2 * n + (size_t)(W / 2) * (H / 2) + (size_t)(W / 2 + 1) * (H / 2 + 1));
  CHECK_OK(lofi_denoise_refined(aware, &img, &r, b, 0, &p, NULL));
  CHECK(memcmp(a, b, n * sizeof(float)) == 0 && lt_all_finite(a, n));
  CHECK_OK(lofi_reconstruct_region(aware, &img, NULL, W, H, NULL, c, 0, &p, NULL));
  CHECK_MSG(lt_max_abs_diff(a, c, n) > 1e-5, "the refinement changed nothing");
  r.coarse_blur = 0.0;
  r.cleanup = 0.0;
  CHECK_OK(lofi_denoise_refined(aware, &img, &r, b, 0, &p, NULL));
  CHECK_MSG(memcmp(b, c, n * sizeof(float)) == 0, "no steps must be the one-pass result");
  r.cleanup = 0.5;
  CHECK_OK(lofi_denoise_refined(aware, &img, &r, b, 0, &p, NULL));
  {
    lofi_image once = lt_image(c, W, H, 1);
    p.noise_level = 0.05;
    CHECK_OK(lofi_reconstruct_region(aware, &once, NULL, W, H, NULL, a, 0, &p, NULL));
    CHECK_MSG(memcmp(a, b, n * sizeof(float)) == 0, "the clean-up pass is not a second pass");
    p.noise_level = 0.1;
  }
  r.cleanup = 2.0;
  EXPECT_FAIL(lofi_denoise_refined(aware, &img, &r, b, 0, &p, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "clean-up");
  r = lofi_default_refinement();
  r.struct_size = 3;
  EXPECT_FAIL(lofi_denoise_refined(aware, &img, &r, b, 0, &p, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "struct_size");
  EXPECT_FAIL(lofi_denoise_refined(gray, &img, NULL, b, 0, &p, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "noise-level-aware");
  p.noise_level = LOFI_NOISE_LEVEL_NONE;
  EXPECT_FAIL(lofi_denoise_refined(aware, &img, NULL, b, 0, &p, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "noise");
  p.noise_level = 0.1;
  EXPECT_FAIL(lofi_denoise_refined(aware, &img, NULL, NULL, 0, &p, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "output");
  free(px);
  free(a);
  free(b);
  free(c);
  lofi_model_free(aware);
}

/* lofi_denoise_refined on an RGB image with a gray denoiser: the opponent colour path. The
 * output's channel mean is the luminance (R + G + B) / 3 denoised in one pass told sigma / sqrt(3);
 * the report counts the three channels; a fixed-level gray model refuses the image. */
static void test_denoise_colour(void) {
  lofi_model *aware = lt_load("tiny-gray-sigma.lofi");
  lofi_run_params p = lofi_default_run_params();
  lofi_refinement r = lofi_default_refinement();
  lofi_run_report report;
  size_t n = (size_t)W * H, i;
  float *px = lt_make_pixels(W, H, 3, 17u);
  float *out = (float *)malloc(3 * n * sizeof(float));
  float *luma = (float *)malloc(n * sizeof(float)), *want = (float *)malloc(n * sizeof(float));
  float *mean = (float *)malloc(n * sizeof(float));
  lofi_image img = lt_image(px, W, H, 3);
  REQUIRE(aware && px && out && luma && want && mean);
  p.noise_level = 0.1;
  p.threads = 1;
  r.coarse_blur = 0.0;
  r.cleanup = 0.0;
  CHECK_OK(lofi_denoise_refined(aware, &img, &r, out, 0, &p, &report));
  CHECK(report.pixels == 3 * n && lt_all_finite(out, 3 * n));
  for (i = 0; i < n; i++) {
    luma[i] = (px[3 * i] + px[3 * i + 1] + px[3 * i + 2]) / 3.0f;
    mean[i] = (out[3 * i] + out[3 * i + 1] + out[3 * i + 2]) / 3.0f;
  }
  {
    lofi_image gray_image = lt_image(luma, W, H, 1);
    p.noise_level = 0.1 / sqrt(3.0);
    CHECK_OK(lofi_reconstruct_region(aware, &gray_image, NULL, W, H, NULL, want, 0, &p, NULL));
    CHECK_MSG(lt_max_abs_diff(mean, want, n) < 1e-5, "the luminance is not the gray pass at sigma / sqrt(3)");
    p.noise_level = 0.1;
  }
  EXPECT_FAIL(lofi_denoise_refined(gray, &img, NULL, out, 0, &p, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "noise-level-aware");
  free(px);
  free(out);
  free(luma);
  free(want);
  free(mean);
  lofi_model_free(aware);
}

/* lofi_load_params.devices: one replica per device ("cpu,cpu" stands in for two GPUs); bands of
 * rows dealt out to them give one device's result bit for bit (one thread), windows and strides
 * included, the progress callback sees every pixel; a bad list is refused naming the entry. */
/* ---- an input the host reads itself ------------------------------------------------------------ */

/* A reader over a buffer that records which rows it was asked for; fails on call `fail_at`
 * (1-based; 0: never) and leaves its rectangles unwritten when `leave_unwritten`. */
typedef struct {
  const float *px;
  size_t width, channels;
  size_t first_row, end_row; /* rows read: [first_row, end_row) */
  unsigned calls, fail_at;
  int leave_unwritten;
} buffer_reader;

static bool read_buffer(void *user, size_t row0, size_t rows, size_t col0, size_t cols, float *out) {
  buffer_reader *b = (buffer_reader *)user;
  size_t r;
  b->calls++;
  if (b->fail_at != 0 && b->calls == b->fail_at) return false;
  if (row0 < b->first_row) b->first_row = row0;
  if (row0 + rows > b->end_row) b->end_row = row0 + rows;
  if (b->leave_unwritten) return true;
  for (r = 0; r < rows; r++) {
    memcpy(out + r * cols * b->channels, b->px + ((row0 + r) * b->width + col0) * b->channels,
           cols * b->channels * sizeof(float));
  }
  return true;
}

static lofi_input_reader reader_of(buffer_reader *b, size_t width, size_t height) {
  lofi_input_reader r = lofi_default_input_reader();
  b->first_row = (size_t)-1;
  b->end_row = 0;
  b->calls = 0;
  r.width = width;
  r.height = height;
  r.channels = b->channels;
  r.read = read_buffer;
  r.user_data = b;
  return r;
}

static bool count_progress(void *user, uint64_t done, uint64_t total) {
  uint64_t *last = (uint64_t *)user;
  CHECK(done <= total && done > *last);
  *last = done;
  return true;
}

static void test_device_list(void) {
  lofi_load_params lp = lofi_default_load_params();
  lofi_run_params params = lofi_default_run_params();
  lofi_model *two = NULL, *bad = NULL;
  lofi_window win = {2, 3, W - 5, H - 4};
  float *px = lt_make_pixels(W, H, 3, 21), *a, *b;
  lofi_image img = lt_image(px, W, H, 3);
  uint64_t last = 0;
  size_t r, row = (W - 5) * 3, stride = row + 4;
  lp.devices = "cpu, cpu";
  CHECK_OK(lofi_load(lt_fixture("tiny-rgb.lofi"), &lp, &two));
  REQUIRE(two != NULL && px != NULL);
  a = (float *)malloc(W * H * 3 * sizeof(float));
  b = (float *)calloc(W * H * 3, sizeof(float)); /* the whole grid, and the strided window */
  REQUIRE(a && b);
  params.threads = 1;
  CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, a, 0, &params, NULL));
  CHECK_OK(lofi_reconstruct_region(two, &img, NULL, W, H, NULL, b, 0, &params, NULL));
  CHECK_MSG(memcmp(a, b, W * H * 3 * sizeof(float)) == 0, "two devices differ from one");
  {
    /* The replicas' worker threads read through the host's reader (one call at a time). */
    buffer_reader br = {px, W, 3, 0, 0, 0, 0, 0};
    lofi_input_reader reader = reader_of(&br, W, H);
    memset(b, 0, W * H * 3 * sizeof(float));
    CHECK_OK(lofi_reconstruct_region_from_reader(two, &reader, NULL, W, H, NULL, b, 0, &params, NULL));
    CHECK_MSG(memcmp(a, b, W * H * 3 * sizeof(float)) == 0, "two devices through a reader differ from one");
  }
  /* A window written with a row stride; the progress callback counts up to its pixels. */
  params.progress = count_progress;
  params.progress_user_data = &last;
  CHECK_OK(lofi_reconstruct_region(two, &img, NULL, W, H, &win, b, stride * sizeof(float), &params, NULL));
  CHECK(last == (uint64_t)(W - 5) * (H - 4));
  for (r = 0; r < H - 4; r++) {
    CHECK(memcmp(b + r * stride, a + ((r + 3) * W + 2) * 3, row * sizeof(float)) == 0);
  }
  lp.devices = "cpu,tpu:0";
  EXPECT_FAIL(lofi_load(lt_fixture("tiny-rgb.lofi"), &lp, &bad), LOFI_STATUS_INVALID_ARGUMENT, "tpu");
  CHECK(bad == NULL);
  {
    /* Every entry is a copy of the model: a list longer than any machine's is refused up front. */
    static char many[65 * 4];
    for (r = 0; r < 65; r++) memcpy(many + 4 * r, "cpu,", 4);
    many[sizeof many - 1] = '\0';
    lp.devices = many;
    EXPECT_FAIL(lofi_load(lt_fixture("tiny-rgb.lofi"), &lp, &bad), LOFI_STATUS_INVALID_ARGUMENT, "at most 64");
    CHECK(bad == NULL);
  }
  lofi_model_free(two);
  free(px);
  free(a);
  free(b);
}

/* The same output as from the buffer, bit for bit (a filter model, which reads every row for the
 * global filter, and a plain one), and a band of a tall image reads only the rows its samples
 * reach. A failing reader gives LOFI_STATUS_IO, values it leaves unwritten are refused as
 * non-finite input, and a bad description is refused before any read. */
static void test_input_reader(void) {
  enum { TW = 24, TH = 400 };
  float *px = lt_make_pixels(W, H, 3, 31), *tall = lt_make_pixels(TW, TH, 1, 32);
  float *a = (float *)malloc(TW * TH * 3 * sizeof(float)), *b = (float *)malloc(TW * TH * 3 * sizeof(float));
  lofi_image img = lt_image(px, W, H, 3), tall_img = lt_image(tall, TW, TH, 1);
  buffer_reader br = {px, W, 3, 0, 0, 0, 0, 0};
  lofi_input_reader reader = reader_of(&br, W, H);
  lofi_run_params params = lofi_default_run_params();
  lofi_window band = {0, 300, TW, 10};
  lofi_model *plain = lt_load("tiny-gray-sigma-plain.lofi");
  lofi_run_report rep;
  REQUIRE(px && tall && a && b && plain);
  params.threads = 1;

  CHECK_OK(lofi_reconstruct_region(rgb, &img, NULL, W, H, NULL, a, 0, &params, NULL));
  CHECK_OK(lofi_reconstruct_region_from_reader(rgb, &reader, NULL, W, H, NULL, b, 0, &params, &rep));
  CHECK_MSG(memcmp(a, b, W * H * 3 * sizeof(float)) == 0, "the reader's output differs from the buffer's");
  CHECK(rep.pixels == (uint64_t)W * H && br.calls > 0 && br.first_row == 0 && br.end_row == H);

  params.noise_level = 0.1;
  CHECK_OK(lofi_reconstruct_region(plain, &tall_img, NULL, TW, TH, NULL, a, 0, &params, NULL));
  br.px = tall;
  br.width = TW;
  br.channels = 1;
  reader = reader_of(&br, TW, TH);
  CHECK_OK(lofi_reconstruct_region_from_reader(plain, &reader, NULL, TW, TH, &band, b, 0, &params, NULL));
  CHECK_MSG(memcmp(a + 300 * TW, b, 10 * TW * sizeof(float)) == 0, "a band read through the reader differs");
  CHECK_MSG(br.first_row > 200 && br.first_row <= 300 && br.end_row >= 310 && br.end_row < TH,
            "the band of rows 300..310 read rows %zu..%zu of %d", br.first_row, br.end_row, TH);
  printf("     rows 300..310 of %d read rows %zu..%zu\n", TH, br.first_row, br.end_row);

  reader = reader_of(&br, TW, TH);
  br.fail_at = 2;
  EXPECT_FAIL(lofi_reconstruct_region_from_reader(plain, &reader, NULL, TW, TH, NULL, b, 0, &params, NULL),
              LOFI_STATUS_IO, "input reader failed");
  br.fail_at = 0;
  br.leave_unwritten = 1;
  EXPECT_FAIL(lofi_reconstruct_region_from_reader(plain, &reader, NULL, TW, TH, NULL, b, 0, &params, NULL),
              LOFI_STATUS_INVALID_INPUT, "finite");
  br.leave_unwritten = 0;
  CHECK_OK(lofi_reconstruct_region_from_reader(plain, &reader, NULL, TW, TH, &band, b, 0, &params, NULL));

  br.calls = 0;
  reader.channels = 3;
  EXPECT_FAIL(lofi_reconstruct_region_from_reader(plain, &reader, NULL, TW, TH, NULL, b, 0, &params, NULL),
              LOFI_STATUS_INVALID_INPUT, "channel");
  reader.channels = 1;
  reader.read = NULL;
  EXPECT_FAIL(lofi_reconstruct_region_from_reader(plain, &reader, NULL, TW, TH, NULL, b, 0, &params, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "read is NULL");
  reader.read = read_buffer;
  reader.struct_size = 0;
  EXPECT_FAIL(lofi_reconstruct_region_from_reader(plain, &reader, NULL, TW, TH, NULL, b, 0, &params, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "struct_size");
  EXPECT_FAIL(lofi_reconstruct_region_from_reader(plain, NULL, NULL, TW, TH, NULL, b, 0, &params, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "reader is NULL");
  CHECK_MSG(br.calls == 0, "%u reads for descriptions that were refused", br.calls);
  lofi_model_free(plain);
  free(px);
  free(tall);
  free(a);
  free(b);
}

static void test_cuda_matches_cpu(void) {
  lofi_load_params lp = lofi_default_load_params();
  lofi_model *gpu = NULL;
  lofi_run_params params = lofi_default_run_params();
  lofi_run_report rep;
  float *px, *cpu_out, *gpu_out;
  lofi_image img;
  lofi_status s;
  lp.device = LOFI_DEVICE_CUDA;
  s = lofi_load(lt_fixture("tiny-rgb.lofi"), &lp, &gpu);
  if (s == LOFI_STATUS_DEVICE_UNAVAILABLE) {
    printf("     (no CUDA device: skipped)\n");
    return;
  }
  REQUIRE_MSG(s == LOFI_STATUS_OK, "CUDA load: %s: %s", lofi_status_name(s), lt_err());
  px = lt_make_pixels(W, H, 3, 12);
  img = lt_image(px, W, H, 3);
  cpu_out = on_grid(rgb, &img, 3);
  gpu_out = (float *)malloc(W * H * 3 * sizeof(float));
  if (px && cpu_out && gpu_out) {
    params.memory_budget_bytes = 64 << 20;
    CHECK_OK(lofi_reconstruct_region(gpu, &img, NULL, W, H, NULL, gpu_out, 0, &params, &rep));
    CHECK_MSG(lt_max_abs_diff(cpu_out, gpu_out, W * H * 3) <= 1e-4, "CUDA vs CPU: max |diff| %g",
              lt_max_abs_diff(cpu_out, gpu_out, W * H * 3));
    CHECK_MSG(rep.measured_peak_bytes > 0, "no measured peak on CUDA");
    CHECK(rep.estimated_peak_bytes <= params.memory_budget_bytes);
    printf("     CUDA: max |diff| %g, estimated %llu B, measured %llu B\n",
           lt_max_abs_diff(cpu_out, gpu_out, W * H * 3), (unsigned long long)rep.estimated_peak_bytes,
           (unsigned long long)rep.measured_peak_bytes);
  }
  lofi_model_free(gpu);
  free(px);
  free(cpu_out);
  free(gpu_out);
}

int main(int argc, char **argv) {
  lt_init(argc, argv);
  gray = lt_load("tiny-gray.lofi");
  rgb = lt_load("tiny-rgb.lofi");
  cplx = lt_load("tiny-complex.lofi");
  if (!gray || !rgb || !cplx) return 1;
  RUN(test_models_and_defaults);
  RUN(test_strides);
  RUN(test_tiles_equal_whole);
  RUN(test_double_resolution);
  RUN(test_points_match_grid);
  RUN(test_budget_batches_and_progress);
  RUN(test_memory_requirements);
  RUN(test_cancel);
  RUN(test_cancel_during_filter);
  RUN(test_threads_param);
  RUN(test_memory_load_equivalent);
  RUN(test_noise_level);
  RUN(test_denoise_refined);
  RUN(test_denoise_colour);
  RUN(test_device_list);
  RUN(test_input_reader);
  RUN(test_cuda_matches_cpu);
  lofi_model_free(gray);
  lofi_model_free(rgb);
  lofi_model_free(cplx);
  return lt_done();
}
