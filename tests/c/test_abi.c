/*
 * The evolvable ABI (docs/abi.md): every public struct's layout pinned; struct_size rules; a
 * program built against the first (smaller) layouts keeps working and gets defaults for the
 * fields it lacks; structs lofi writes are written only up to the caller's size (canaries after
 * them, exactly-sized heap blocks under ASan); the run-time version check; model metadata and the
 * file digest; lofi_release_cached_memory().
 */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>

#include "lofi_test.h"

enum { W = 24, H = 20 };

static lofi_model *gray;    /* tiny-gray-nodigest.lofi: written before digests */
static lofi_model *signed_; /* tiny-gray.lofi: the same model, with a digest */
static float *pixels;
static float out[W * H];

/* The operator of the PnP calls below: the default kind (denoising) on a W x H gray image. */
static lofi_operator gray_op(void) {
  lofi_operator op = lofi_default_operator();
  op.width = W;
  op.height = H;
  op.channels = 1;
  return op;
}

/* ---- the first layouts, as a program compiled against that lofi.h declares them ------------ */

typedef struct {
  size_t struct_size;
  lofi_device_kind device;
  int32_t device_index;
  lofi_precision precision;
} load_params_v1;

typedef struct {
  size_t struct_size;
  uint64_t memory_budget_bytes;
  int32_t threads;
  lofi_progress_fn progress;
  void *progress_user_data;
} run_params_v1;

typedef struct {
  size_t struct_size;
  double alpha;
  uint32_t cg_max_iterations;
  double cg_tolerance;
  run_params_v1 run;
} pnp_params_v1;

/* The second lofi_run_params: the first and the noise level. */
typedef struct {
  size_t struct_size;
  uint64_t memory_budget_bytes;
  int32_t threads;
  lofi_progress_fn progress;
  void *progress_user_data;
  double noise_level;
} run_params_v2;

/* The second lofi_pnp_params: the second run, then annealing, tolerance and splitting (its last
 * 4 bytes padding, where the third layout put `transforms`). */
typedef struct {
  size_t struct_size;
  double alpha;
  uint32_t cg_max_iterations;
  double cg_tolerance;
  run_params_v2 run;
  double anneal_sigma_start, anneal_sigma_end;
  uint32_t anneal_iterations;
  double tolerance;
  lofi_splitting splitting;
} pnp_params_v2;

typedef struct {
  size_t struct_size;
  uint64_t pixels;
  uint64_t batch_pixels;
  uint64_t batches;
  uint64_t estimated_peak_bytes;
  uint64_t measured_peak_bytes;
} run_report_v1;

typedef struct {
  size_t struct_size;
  uint64_t pixels;
  uint64_t batch_pixels;
  uint64_t batches;
  uint64_t estimated_peak_bytes;
  uint64_t measured_peak_bytes;
  uint64_t measured_peak_reserved_bytes;
  uint64_t reserved_bytes;
} run_report_v2;

typedef struct {
  size_t struct_size;
  int32_t image_size, channels_in, channels_out, rings, angles, num_layers, hidden_dim;
  int32_t fourier_filtering, ccpg, coord_deform;
  int64_t parameter_count;
  int32_t device, device_index, precision;
  uint64_t bytes_per_pixel;
} model_info_v1;

typedef struct {
  size_t struct_size;
  uint32_t iteration;
  double primal, dual, data_misfit, psnr;
  uint32_t cg_iterations;
} pnp_residuals_v1;

/* ---- layouts --------------------------------------------------------------------------------- */

#define CHECK_SIZE(T, n) \
  CHECK_MSG(sizeof(T) == (size_t)(n), "sizeof(%s) = %zu, pinned at %d", #T, sizeof(T), (int)(n))
#define CHECK_LAYOUT(T, f, n)                                                                   \
  CHECK_MSG(offsetof(T, f) == (size_t)(n), "offsetof(%s, %s) = %zu, pinned at %d", #T, #f, \
            offsetof(T, f), (int)(n))

/* The numbers of the 64-bit Linux ABI. A change here is an ABI change: append fields only (with
 * a new size: docs/abi.md), and update these numbers and the first-layout copies above. */
static void test_layouts_are_pinned(void) {
  if (sizeof(void *) != 8 || sizeof(size_t) != 8 || sizeof(double) != 8) {
    printf("     (not an LP64 platform: the pinned numbers do not apply)\n");
    return;
  }
  CHECK_SIZE(lofi_load_params, 32);
  CHECK_LAYOUT(lofi_load_params, struct_size, 0);
  CHECK_LAYOUT(lofi_load_params, device, 8);
  CHECK_LAYOUT(lofi_load_params, device_index, 12);
  CHECK_LAYOUT(lofi_load_params, precision, 16);
  CHECK_LAYOUT(lofi_load_params, devices, 24);

  CHECK_SIZE(lofi_run_params, 56);
  CHECK_LAYOUT(lofi_run_params, struct_size, 0);
  CHECK_LAYOUT(lofi_run_params, memory_budget_bytes, 8);
  CHECK_LAYOUT(lofi_run_params, threads, 16);
  CHECK_LAYOUT(lofi_run_params, progress, 24);
  CHECK_LAYOUT(lofi_run_params, progress_user_data, 32);
  CHECK_LAYOUT(lofi_run_params, noise_level, 40);
  CHECK_LAYOUT(lofi_run_params, self_ensemble, 48);

  CHECK_SIZE(lofi_run_report, 72);
  CHECK_LAYOUT(lofi_run_report, struct_size, 0);
  CHECK_LAYOUT(lofi_run_report, pixels, 8);
  CHECK_LAYOUT(lofi_run_report, batch_pixels, 16);
  CHECK_LAYOUT(lofi_run_report, batches, 24);
  CHECK_LAYOUT(lofi_run_report, estimated_peak_bytes, 32);
  CHECK_LAYOUT(lofi_run_report, measured_peak_bytes, 40);
  CHECK_LAYOUT(lofi_run_report, measured_peak_reserved_bytes, 48);
  CHECK_LAYOUT(lofi_run_report, reserved_bytes, 56);
  CHECK_LAYOUT(lofi_run_report, workers, 64);

  CHECK_SIZE(lofi_model_info, 104);
  CHECK_LAYOUT(lofi_model_info, struct_size, 0);
  CHECK_LAYOUT(lofi_model_info, image_size, 8);
  CHECK_LAYOUT(lofi_model_info, channels_in, 12);
  CHECK_LAYOUT(lofi_model_info, channels_out, 16);
  CHECK_LAYOUT(lofi_model_info, rings, 20);
  CHECK_LAYOUT(lofi_model_info, angles, 24);
  CHECK_LAYOUT(lofi_model_info, num_layers, 28);
  CHECK_LAYOUT(lofi_model_info, hidden_dim, 32);
  CHECK_LAYOUT(lofi_model_info, fourier_filtering, 36);
  CHECK_LAYOUT(lofi_model_info, ccpg, 40);
  CHECK_LAYOUT(lofi_model_info, coord_deform, 44);
  CHECK_LAYOUT(lofi_model_info, parameter_count, 48);
  CHECK_LAYOUT(lofi_model_info, device, 56);
  CHECK_LAYOUT(lofi_model_info, device_index, 60);
  CHECK_LAYOUT(lofi_model_info, precision, 64);
  CHECK_LAYOUT(lofi_model_info, bytes_per_pixel, 72);
  CHECK_LAYOUT(lofi_model_info, noise_level_aware, 80);
  CHECK_LAYOUT(lofi_model_info, noise_level_min, 88);
  CHECK_LAYOUT(lofi_model_info, noise_level_max, 96);

  CHECK_SIZE(lofi_operator, 184);
  CHECK_LAYOUT(lofi_operator, struct_size, 0);
  CHECK_LAYOUT(lofi_operator, kind, 8);
  CHECK_LAYOUT(lofi_operator, width, 16);
  CHECK_LAYOUT(lofi_operator, height, 24);
  CHECK_LAYOUT(lofi_operator, channels, 32);
  CHECK_LAYOUT(lofi_operator, mask, 40);
  CHECK_LAYOUT(lofi_operator, mask_len, 48);
  CHECK_LAYOUT(lofi_operator, observed_fraction, 56);
  CHECK_LAYOUT(lofi_operator, seed, 64);
  CHECK_LAYOUT(lofi_operator, kernel, 72);
  CHECK_LAYOUT(lofi_operator, kernel_width, 80);
  CHECK_LAYOUT(lofi_operator, kernel_height, 88);
  CHECK_LAYOUT(lofi_operator, angles_deg, 96);
  CHECK_LAYOUT(lofi_operator, angle_count, 104);
  CHECK_LAYOUT(lofi_operator, forward, 112);
  CHECK_LAYOUT(lofi_operator, adjoint, 120);
  CHECK_LAYOUT(lofi_operator, user_data, 128);
  CHECK_LAYOUT(lofi_operator, measurement_len, 136);
  CHECK_LAYOUT(lofi_operator, uv, 144);
  CHECK_LAYOUT(lofi_operator, visibility_count, 152);
  CHECK_LAYOUT(lofi_operator, weights, 160);
  CHECK_LAYOUT(lofi_operator, pixel_arcsec, 168);
  CHECK_LAYOUT(lofi_operator, weighting, 176);

  CHECK_SIZE(lofi_input_reader, 48);
  CHECK_LAYOUT(lofi_input_reader, struct_size, 0);
  CHECK_LAYOUT(lofi_input_reader, width, 8);
  CHECK_LAYOUT(lofi_input_reader, height, 16);
  CHECK_LAYOUT(lofi_input_reader, channels, 24);
  CHECK_LAYOUT(lofi_input_reader, read, 32);
  CHECK_LAYOUT(lofi_input_reader, user_data, 40);
  CHECK_SIZE(lofi_refinement, 24);
  CHECK_LAYOUT(lofi_refinement, struct_size, 0);
  CHECK_LAYOUT(lofi_refinement, coarse_blur, 8);
  CHECK_LAYOUT(lofi_refinement, cleanup, 16);

  CHECK_SIZE(lofi_pnp_params, 136);
  CHECK_LAYOUT(lofi_pnp_params, struct_size, 0);
  CHECK_LAYOUT(lofi_pnp_params, alpha, 8);
  CHECK_LAYOUT(lofi_pnp_params, cg_max_iterations, 16);
  CHECK_LAYOUT(lofi_pnp_params, cg_tolerance, 24);
  CHECK_LAYOUT(lofi_pnp_params, run, 32);
  CHECK_LAYOUT(lofi_pnp_params, anneal_sigma_start, 88);
  CHECK_LAYOUT(lofi_pnp_params, anneal_sigma_end, 96);
  CHECK_LAYOUT(lofi_pnp_params, anneal_iterations, 104);
  CHECK_LAYOUT(lofi_pnp_params, tolerance, 112);
  CHECK_LAYOUT(lofi_pnp_params, splitting, 120);
  CHECK_LAYOUT(lofi_pnp_params, transforms, 124);
  CHECK_LAYOUT(lofi_pnp_params, average_last, 128);
  CHECK_SIZE(pnp_params_v2, 120);

  CHECK_SIZE(lofi_pnp_residuals, 80);
  CHECK_LAYOUT(lofi_pnp_residuals, struct_size, 0);
  CHECK_LAYOUT(lofi_pnp_residuals, iteration, 8);
  CHECK_LAYOUT(lofi_pnp_residuals, primal, 16);
  CHECK_LAYOUT(lofi_pnp_residuals, dual, 24);
  CHECK_LAYOUT(lofi_pnp_residuals, data_misfit, 32);
  CHECK_LAYOUT(lofi_pnp_residuals, psnr, 40);
  CHECK_LAYOUT(lofi_pnp_residuals, cg_iterations, 48);
  CHECK_LAYOUT(lofi_pnp_residuals, sigma, 56);
  CHECK_LAYOUT(lofi_pnp_residuals, alpha, 64);
  CHECK_LAYOUT(lofi_pnp_residuals, converged, 72);

  /* Frozen value types (no struct_size: docs/abi.md says why). */
  CHECK_SIZE(lofi_image, 40);
  CHECK_LAYOUT(lofi_image, data, 0);
  CHECK_LAYOUT(lofi_image, width, 8);
  CHECK_LAYOUT(lofi_image, height, 16);
  CHECK_LAYOUT(lofi_image, channels, 24);
  CHECK_LAYOUT(lofi_image, row_stride_bytes, 32);
  CHECK_SIZE(lofi_region, 32);
  CHECK_LAYOUT(lofi_region, x0, 0);
  CHECK_LAYOUT(lofi_region, y0, 8);
  CHECK_LAYOUT(lofi_region, x1, 16);
  CHECK_LAYOUT(lofi_region, y1, 24);
  CHECK_SIZE(lofi_window, 32);
  CHECK_LAYOUT(lofi_window, col0, 0);
  CHECK_LAYOUT(lofi_window, row0, 8);
  CHECK_LAYOUT(lofi_window, cols, 16);
  CHECK_LAYOUT(lofi_window, rows, 24);

  /* The first layouts are prefixes of the current ones. */
  CHECK_SIZE(load_params_v1, 24);
  CHECK_SIZE(run_params_v1, 40);
  CHECK_SIZE(run_params_v2, 48);
  CHECK_LAYOUT(run_params_v2, noise_level, 40);
  CHECK_SIZE(pnp_params_v1, 72);
  CHECK_SIZE(run_report_v1, 48);
  CHECK_SIZE(run_report_v2, 64);
  CHECK_SIZE(model_info_v1, 80);
  CHECK_SIZE(pnp_residuals_v1, 56);
  CHECK_LAYOUT(run_params_v1, progress_user_data, 32);
  CHECK_LAYOUT(pnp_params_v1, run, 32);
  CHECK_LAYOUT(model_info_v1, bytes_per_pixel, 72);
  CHECK_LAYOUT(pnp_residuals_v1, cg_iterations, 48);
}

/* lofi_default_*() set struct_size to this header's sizeof (and run's inside pnp params). */
static void test_defaults_carry_their_size(void) {
  lofi_load_params lp = lofi_default_load_params();
  lofi_run_params rp = lofi_default_run_params();
  lofi_pnp_params pp = lofi_default_pnp_params();
  lofi_operator op = lofi_default_operator();
  lofi_input_reader ir = lofi_default_input_reader();
  CHECK(ir.struct_size == sizeof ir && ir.width == 0 && ir.read == NULL && ir.user_data == NULL);
  {
    lofi_refinement rf = lofi_default_refinement();
    CHECK(rf.struct_size == sizeof rf && rf.coarse_blur == 2.0 && rf.cleanup == 0.1);
  }
  CHECK(lp.struct_size == sizeof lp && lp.device == LOFI_DEVICE_CPU && lp.precision == LOFI_PRECISION_F32);
  CHECK(rp.struct_size == sizeof rp && rp.memory_budget_bytes == (uint64_t)512 << 20 && rp.threads == 0);
  CHECK(rp.progress == NULL && rp.progress_user_data == NULL && rp.noise_level == LOFI_NOISE_LEVEL_NONE);
  CHECK(rp.self_ensemble == 1);
  CHECK(pp.struct_size == sizeof pp && pp.run.struct_size == sizeof pp.run);
  CHECK(pp.alpha == 0.05 && pp.cg_max_iterations == 100 && pp.cg_tolerance == 1e-7);
  CHECK(pp.anneal_iterations == 0 && pp.tolerance == 0.0 && pp.splitting == LOFI_SPLITTING_ADMM);
  CHECK(pp.transforms == LOFI_TRANSFORMS_DIHEDRAL && pp.average_last == 8);
  CHECK(op.struct_size == sizeof op && op.kind == LOFI_OPERATOR_DENOISE && op.mask == NULL && op.forward == NULL);
}

/* ---- struct_size refused ------------------------------------------------------------------------ */

static void test_bad_struct_sizes_are_refused(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_run_params rp = lofi_default_run_params();
  lofi_load_params lp = lofi_default_load_params();
  lofi_pnp_params pp = lofi_default_pnp_params();
  lofi_operator op = gray_op();
  lofi_model *m = NULL;
  lofi_pnp *pnp = NULL;
  lofi_model_info info;
  lofi_run_report report;
  lofi_pnp_residuals r;
  double xy[2] = {1.0, 2.0};

  rp.struct_size = 0;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &rp, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "lofi_run_params.struct_size is 0");
  EXPECT_FAIL(lofi_reconstruct_points(gray, &img, xy, 1, out, &rp, NULL), LOFI_STATUS_INVALID_ARGUMENT,
              "lofi_default_run_params()");
  rp.struct_size = 39;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &rp, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "smaller than the first version of lofi_run_params (40 bytes)");
  rp.struct_size = 44; /* between two versions: an uninitialised struct, most likely */
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &rp, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "not the size of any version");
  rp.struct_size = sizeof rp + 8; /* a newer lofi.h: fields this library would ignore */
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &rp, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "newer lofi.h");
  rp.struct_size = (size_t)-1;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, &rp, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "newer lofi.h");

  lp.struct_size = 0;
  EXPECT_FAIL(lofi_load(lt_fixture("tiny-gray.lofi"), &lp, &m), LOFI_STATUS_INVALID_ARGUMENT,
              "lofi_load_params.struct_size is 0");
  CHECK(m == NULL);
  lp.struct_size = 16;
  EXPECT_FAIL(lofi_load(lt_fixture("tiny-gray.lofi"), &lp, &m), LOFI_STATUS_INVALID_ARGUMENT,
              "smaller than the first version");

  op.struct_size = 0;
  {
    size_t n = 0;
    EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT,
                "lofi_operator.struct_size is 0");
    EXPECT_FAIL(lofi_pnp_create(gray, &op, pixels, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
                "lofi_operator.struct_size is 0");
    CHECK(pnp == NULL);
  }
  op.struct_size = sizeof op;

  pp.struct_size = 0;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, pixels, W * H, &pp, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "lofi_pnp_params.struct_size is 0");
  pp.struct_size = sizeof pp;
  pp.run.struct_size = 0;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, pixels, W * H, &pp, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "lofi_pnp_params.run.struct_size is 0");
  pp.run.struct_size = sizeof(run_params_v1); /* a first-layout run inside a current-layout struct */
  EXPECT_FAIL(lofi_pnp_create(gray, &op, pixels, W * H, &pp, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "no layout of lofi_pnp_params");
  pp.run.struct_size = sizeof pp.run;
  pp.struct_size = sizeof pp + 8;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, pixels, W * H, &pp, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "newer lofi.h");
  CHECK(pnp == NULL);

  /* Sizes of structs lofi writes: those of the *_sized() calls. */
  EXPECT_FAIL_FN(lofi_model_get_info_sized(gray, &info, 0), "lofi_model_get_info",
                 LOFI_STATUS_INVALID_ARGUMENT, "smaller than the first version of lofi_model_info");
  EXPECT_FAIL_FN(lofi_model_get_info_sized(gray, &info, sizeof(model_info_v1) + 4), "lofi_model_get_info",
                 LOFI_STATUS_INVALID_ARGUMENT, "not the size of any version");
  EXPECT_FAIL_FN(lofi_reconstruct_region_sized(gray, &img, NULL, W, H, NULL, out, 0, NULL, &report, 8),
                 "lofi_reconstruct_region", LOFI_STATUS_INVALID_ARGUMENT, "report_size = 8");
  EXPECT_FAIL_FN(lofi_reconstruct_points_sized(gray, &img, xy, 1, out, NULL, &report, 1),
                 "lofi_reconstruct_points", LOFI_STATUS_INVALID_ARGUMENT, "report_size = 1");
  /* A NULL report needs no size. */
  CHECK_OK(lofi_reconstruct_region_sized(gray, &img, NULL, W, H, NULL, out, 0, NULL, NULL, 0));
  op = gray_op();
  REQUIRE_OK(lofi_pnp_create(gray, &op, pixels, W * H, NULL, &pnp));
  EXPECT_FAIL_FN(lofi_pnp_step_sized(pnp, &r, 2), "lofi_pnp_step", LOFI_STATUS_INVALID_ARGUMENT,
                 "out_size = 2");
  EXPECT_FAIL_FN(lofi_pnp_solve_sized(pnp, 2, &r, 2), "lofi_pnp_solve", LOFI_STATUS_INVALID_ARGUMENT,
                 "last_size = 2");
  CHECK_OK(lofi_pnp_step_sized(pnp, NULL, 0));
  CHECK_OK(lofi_pnp_step(pnp, &r));
  CHECK_MSG(r.iteration == 2, "the refused calls ran iterations: %u", r.iteration);
  lofi_pnp_free(pnp);

  /* The initialisers refuse what they cannot fill. */
  EXPECT_FAIL(lofi_init_run_params(NULL), LOFI_STATUS_INVALID_ARGUMENT, "NULL");
  rp.struct_size = 0;
  EXPECT_FAIL(lofi_init_run_params(&rp), LOFI_STATUS_INVALID_ARGUMENT, "struct_size is 0");
  CHECK(rp.struct_size == 0);
}

/* ---- a program built against the first layouts ------------------------------------------------ */

/* The first lofi_load_params (before the device list), in an exactly-sized heap block: the
 * library reads no further than its 24 bytes and loads on its one device. */
static void test_first_layout_load_params(void) {
  load_params_v1 *old = (load_params_v1 *)malloc(sizeof *old);
  lofi_model *m = NULL;
  lofi_model_info info;
  REQUIRE(old != NULL);
  memset(old, 0xA5, sizeof *old);
  old->struct_size = sizeof *old;
  CHECK_OK(lofi_init_load_params((lofi_load_params *)old));
  CHECK(old->device == LOFI_DEVICE_CPU && old->device_index == 0 && old->precision == LOFI_PRECISION_F32);
  CHECK_OK(lofi_load(lt_fixture("tiny-gray.lofi"), (const lofi_load_params *)old, &m));
  REQUIRE(m != NULL);
  CHECK_OK(lofi_model_get_info(m, &info));
  CHECK(info.device == LOFI_DEVICE_CPU);
  lofi_model_free(m);
  free(old);
}

/* The first lofi_run_params, filled by that header's lofi_default_run_params() (which sets
 * struct_size and calls lofi_init_run_params), in an exactly-sized heap block: ASan stops any
 * read or write beyond it. */
static void test_first_layout_run_params(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  run_params_v1 *old = (run_params_v1 *)malloc(sizeof *old);
  lofi_run_params *wide = (lofi_run_params *)malloc(sizeof *wide);
  lofi_model *aware = lt_load("tiny-gray-sigma.lofi");
  float ref[W * H];
  REQUIRE(old && wide && aware);
  memset(old, 0xA5, sizeof *old);
  old->struct_size = sizeof *old;
  CHECK_OK(lofi_init_run_params((lofi_run_params *)old));
  CHECK(old->struct_size == sizeof *old && old->memory_budget_bytes == (uint64_t)512 << 20);
  CHECK(old->threads == 0 && old->progress == NULL && old->progress_user_data == NULL);
  old->threads = 1;
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, ref, 0, (const lofi_run_params *)old, NULL));
  CHECK(lt_all_finite(ref, W * H));

  /* The missing field takes its default (no noise level), whatever lies after the struct: here
   * a current-layout struct whose noise_level would be refused by a fixed-level model... */
  *wide = lofi_default_run_params();
  wide->threads = 1;
  wide->noise_level = 0.1;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, wide, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "takes no noise level");
  /* ... read with the first layout's size, it is not seen: the same result as above. */
  wide->struct_size = sizeof(run_params_v1);
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, wide, NULL));
  CHECK(memcmp(out, ref, sizeof ref) == 0);
  /* ... and a noise-level-aware model, which needs a noise level, is told none. */
  EXPECT_FAIL(lofi_reconstruct_region(aware, &img, NULL, W, H, NULL, out, 0, wide, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "noise-level aware");
  wide->struct_size = sizeof *wide;
  CHECK_OK(lofi_reconstruct_region(aware, &img, NULL, W, H, NULL, out, 0, wide, NULL));
  lofi_model_free(aware);
  free(old);
  free(wide);
}

/* The second lofi_run_params (up to noise_level) in an exactly-sized heap block: self_ensemble,
 * which it lacks, is off, whatever lies after it; the current layout's self_ensemble is used,
 * checked, and refused by plug-and-play (which has its own transforms). */
static void test_second_layout_run_params(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_model *plain = lt_load("tiny-gray-sigma-plain.lofi");
  run_params_v2 *old = (run_params_v2 *)malloc(sizeof *old);
  lofi_run_params *wide = (lofi_run_params *)malloc(sizeof *wide);
  float one[W * H], eight[W * H];
  REQUIRE(plain && old && wide);
  memset(old, 0xA5, sizeof *old);
  old->struct_size = sizeof *old;
  CHECK_OK(lofi_init_run_params((lofi_run_params *)old));
  CHECK(old->noise_level == LOFI_NOISE_LEVEL_NONE);
  old->threads = 1;
  old->noise_level = 0.1;
  CHECK_OK(lofi_reconstruct_region(plain, &img, NULL, W, H, NULL, one, 0, (const lofi_run_params *)old, NULL));

  *wide = lofi_default_run_params();
  wide->threads = 1;
  wide->noise_level = 0.1;
  wide->self_ensemble = 8;
  CHECK_OK(lofi_reconstruct_region(plain, &img, NULL, W, H, NULL, eight, 0, wide, NULL));
  CHECK(lt_all_finite(eight, W * H));
  CHECK_MSG(memcmp(one, eight, sizeof one) != 0, "8 passes gave the one-pass values");
  /* Read with the second layout's size, the 8 is not seen. */
  wide->struct_size = sizeof(run_params_v2);
  CHECK_OK(lofi_reconstruct_region(plain, &img, NULL, W, H, NULL, out, 0, wide, NULL));
  CHECK(memcmp(out, one, sizeof one) == 0);
  wide->struct_size = sizeof *wide;
  wide->self_ensemble = 3;
  EXPECT_FAIL(lofi_reconstruct_region(plain, &img, NULL, W, H, NULL, out, 0, wide, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "1 (off), 2 (half turn), 4 (quarter turns) or 8");
  /* A model with the Fourier filter refuses an ensemble, saying why. */
  wide->self_ensemble = 4;
  wide->noise_level = LOFI_NOISE_LEVEL_NONE;
  EXPECT_FAIL(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, wide, NULL),
              LOFI_STATUS_INVALID_ARGUMENT, "Fourier filter");
  {
    lofi_operator op = gray_op();
    lofi_pnp_params pp = lofi_default_pnp_params();
    lofi_pnp *pnp = NULL;
    pp.run.self_ensemble = 8;
    EXPECT_FAIL(lofi_pnp_create(gray, &op, pixels, W * H, &pp, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
                "run.self_ensemble = 8");
    CHECK(pnp == NULL);
  }
  lofi_model_free(plain);
  free(old);
  free(wide);
}

/* lofi_pnp_params_for_inpainting(): the measured inpainting settings for a noise-level-aware
 * model (alpha 0.01, sigma 0.6 x the top of its range: 0.12 for the fixture's [0, 0.2]), the
 * generic defaults for a fixed-level one; the first layout is written up to its size only. */
static void test_inpainting_pnp_params(void) {
  lofi_model *aware = lt_load("tiny-gray-sigma.lofi");
  lofi_pnp_params pp = lofi_default_pnp_params();
  pnp_params_v1 *old = (pnp_params_v1 *)malloc(sizeof *old);
  REQUIRE(aware && old);
  CHECK(LOFI_PNP_INPAINTING_ITERATIONS == 40);
  CHECK_OK(lofi_pnp_params_for_inpainting(aware, &pp));
  CHECK(pp.struct_size == sizeof pp && pp.run.struct_size == sizeof pp.run && pp.alpha == 0.01);
  CHECK_MSG(pp.run.noise_level > 0.11999 && pp.run.noise_level < 0.12001, "sigma %g", pp.run.noise_level);
  CHECK(pp.transforms == LOFI_TRANSFORMS_DIHEDRAL && pp.average_last == 8 && pp.anneal_iterations == 0);
  CHECK(pp.run.self_ensemble == 1 && pp.run.memory_budget_bytes == (uint64_t)512 << 20);
  CHECK_OK(lofi_pnp_params_for_inpainting(gray, &pp));
  CHECK(pp.alpha == 0.05 && pp.run.noise_level == LOFI_NOISE_LEVEL_NONE);
  EXPECT_FAIL(lofi_pnp_params_for_inpainting(NULL, &pp), LOFI_STATUS_INVALID_ARGUMENT, "model is NULL");
  EXPECT_FAIL(lofi_pnp_params_for_inpainting(aware, NULL), LOFI_STATUS_INVALID_ARGUMENT, "pointer is NULL");
  memset(old, 0xA5, sizeof *old);
  old->struct_size = sizeof *old;
  old->run.struct_size = sizeof old->run;
  CHECK_OK(lofi_pnp_params_for_inpainting(aware, (lofi_pnp_params *)old));
  CHECK(old->struct_size == sizeof *old && old->run.struct_size == sizeof old->run && old->alpha == 0.01);
  CHECK(old->cg_max_iterations == 100 && old->run.threads == 0);
  lofi_model_free(aware);
  free(old);
}

/* The first lofi_pnp_params (with the first run inside, and no annealing, tolerance or
 * splitting): initialised and used; bytes after it are not read. */
static void test_first_layout_pnp_params(void) {
  lofi_operator op = gray_op();
  pnp_params_v1 *old = (pnp_params_v1 *)malloc(sizeof *old);
  unsigned char *wide = (unsigned char *)malloc(sizeof(lofi_pnp_params));
  lofi_pnp *pnp = NULL;
  lofi_pnp_residuals r;
  float truth[W * H];
  REQUIRE(old && wide);
  memcpy(truth, pixels, sizeof truth);

  memset(old, 0xA5, sizeof *old);
  old->struct_size = sizeof *old;
  old->run.struct_size = sizeof old->run;
  CHECK_OK(lofi_init_pnp_params((lofi_pnp_params *)old));
  CHECK(old->struct_size == sizeof *old && old->run.struct_size == sizeof old->run);
  CHECK(old->alpha == 0.05 && old->cg_max_iterations == 100 && old->cg_tolerance == 1e-7);
  CHECK(old->run.memory_budget_bytes == (uint64_t)512 << 20 && old->run.threads == 0 && old->run.progress == NULL);
  old->run.threads = 1;
  REQUIRE_OK(lofi_pnp_create(gray, &op, truth, W * H, (const lofi_pnp_params *)old, &pnp));
  /* tolerance defaults to 0 (never stop early): all three iterations run. */
  CHECK_OK(lofi_pnp_solve(pnp, 3, &r));
  CHECK_MSG(r.iteration == 3 && !r.converged, "iteration %u, converged %u", r.iteration, r.converged);
  lofi_pnp_free(pnp);

  /* The first layout at the start of a larger block whose following bytes hold what a current
   * layout would have there (a schedule, an instant-convergence tolerance, a bad splitting): not
   * read. */
  {
    lofi_pnp_params full = lofi_default_pnp_params();
    pnp_params_v1 first;
    full.anneal_sigma_start = 0.5;
    full.anneal_sigma_end = 0.1;
    full.anneal_iterations = 5;
    full.tolerance = 1e9;
    full.splitting = 7;
    memcpy(wide, &full, sizeof full);
    memcpy(&first, old, sizeof first);
    /* After the first layout: the fields that follow `run` in the current one. */
    memcpy(wide, &first, sizeof first);
    memcpy(wide + sizeof first, (unsigned char *)&full + offsetof(lofi_pnp_params, anneal_sigma_start),
           sizeof full - offsetof(lofi_pnp_params, anneal_sigma_start));
    pnp = NULL;
    CHECK_OK(lofi_pnp_create(gray, &op, truth, W * H, (const lofi_pnp_params *)wide, &pnp));
    if (pnp) {
      CHECK_OK(lofi_pnp_solve(pnp, 3, &r));
      CHECK_MSG(r.iteration == 3, "bytes after the first layout were read: iteration %u", r.iteration);
      lofi_pnp_free(pnp);
    }
    /* The same bytes with the current size are read, and refused. */
    memcpy(wide, &full, sizeof full);
    EXPECT_FAIL(lofi_pnp_create(gray, &op, truth, W * H, (const lofi_pnp_params *)wide, &pnp),
                LOFI_STATUS_INVALID_ARGUMENT, "splitting = 7");
  }
  free(old);
  free(wide);
}

/* The second lofi_pnp_params (120 bytes): its trailing padding, where the current layout has
 * `transforms`, is not read, whatever it holds; the defaults of the fields it lacks apply. */
static void test_second_layout_pnp_params(void) {
  lofi_operator op = gray_op();
  pnp_params_v2 *old = (pnp_params_v2 *)malloc(sizeof *old);
  lofi_pnp *pnp = NULL;
  lofi_pnp_residuals r;
  REQUIRE(old);
  memset(old, 0xA5, sizeof *old);
  old->struct_size = sizeof *old;
  old->run.struct_size = sizeof old->run;
  CHECK_OK(lofi_init_pnp_params((lofi_pnp_params *)old));
  CHECK(old->struct_size == sizeof *old && old->splitting == LOFI_SPLITTING_ADMM && old->tolerance == 0.0);
  old->run.threads = 1;
  /* What a compiler may leave in the padding after `splitting`: no LOFI_TRANSFORMS_* value. */
  memset((unsigned char *)old + offsetof(pnp_params_v2, splitting) + sizeof old->splitting, 0x7F,
         sizeof *old - offsetof(pnp_params_v2, splitting) - sizeof old->splitting);
  REQUIRE_OK(lofi_pnp_create(gray, &op, pixels, W * H, (const lofi_pnp_params *)old, &pnp));
  CHECK_OK(lofi_pnp_solve(pnp, 2, &r));
  CHECK_MSG(r.iteration == 2, "iteration %u", r.iteration);
  lofi_pnp_free(pnp);
  /* The same bytes read as the current layout (head, run and tail each where the current one
   * puts them): `transforms` = 0x7F7F7F7F, refused by name. */
  {
    lofi_pnp_params now = lofi_default_pnp_params();
    memcpy(&now, old, offsetof(pnp_params_v2, run));
    memcpy(&now.run, &old->run, sizeof old->run);
    memcpy((unsigned char *)&now + offsetof(lofi_pnp_params, anneal_sigma_start),
           (unsigned char *)old + offsetof(pnp_params_v2, anneal_sigma_start),
           sizeof *old - offsetof(pnp_params_v2, anneal_sigma_start));
    now.struct_size = sizeof now;
    now.run.struct_size = sizeof now.run;
    EXPECT_FAIL(lofi_pnp_create(gray, &op, pixels, W * H, &now, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
                "transforms = ");
  }
  free(old);
}

/* Structs lofi writes, in the first layout: written up to their size only. Exactly-sized heap
 * blocks (ASan) and canaries after stack copies. */
static void test_first_layout_outputs(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_model_info now;
  lofi_run_report report_now;
  unsigned char block[sizeof(lofi_model_info) + 32];
  model_info_v1 *info = (model_info_v1 *)malloc(sizeof *info);
  run_report_v1 *report = (run_report_v1 *)malloc(sizeof *report);
  pnp_residuals_v1 *res = (pnp_residuals_v1 *)malloc(sizeof *res);
  lofi_operator op = gray_op();
  lofi_pnp *pnp = NULL;
  size_t i;
  int canary = 1;
  REQUIRE(info && report && res);

  REQUIRE_OK(lofi_model_get_info(gray, &now));
  CHECK(now.struct_size == sizeof now);
  CHECK_OK(lofi_model_get_info_sized(gray, (lofi_model_info *)info, sizeof *info));
  CHECK(info->struct_size == sizeof *info);
  CHECK(info->image_size == now.image_size && info->channels_in == now.channels_in &&
        info->channels_out == now.channels_out && info->rings == now.rings && info->angles == now.angles &&
        info->num_layers == now.num_layers && info->hidden_dim == now.hidden_dim &&
        info->parameter_count == now.parameter_count && info->device == now.device &&
        info->precision == now.precision && info->bytes_per_pixel == now.bytes_per_pixel);
  /* On the stack, with a canary after. */
  memset(block, 0xA5, sizeof block);
  CHECK_OK(lofi_model_get_info_sized(gray, (lofi_model_info *)block, sizeof(model_info_v1)));
  for (i = sizeof(model_info_v1); i < sizeof block; i++) canary &= block[i] == 0xA5;
  CHECK_MSG(canary, "lofi_model_get_info wrote past a first-layout lofi_model_info");
  /* A newer caller's larger struct: this library's part, struct_size telling where it ends, zeros
   * after. */
  memset(block, 0xA5, sizeof block);
  CHECK_OK(lofi_model_get_info_sized(gray, (lofi_model_info *)block, sizeof block));
  CHECK(((lofi_model_info *)block)->struct_size == sizeof(lofi_model_info));
  for (i = sizeof(lofi_model_info), canary = 1; i < sizeof block; i++) canary &= block[i] == 0;
  CHECK_MSG(canary, "the part of a newer lofi_model_info this library does not know is not zeroed");

  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, &report_now));
  CHECK(report_now.struct_size == sizeof report_now && report_now.pixels == W * H);
  CHECK_OK(lofi_reconstruct_region_sized(gray, &img, NULL, W, H, NULL, out, 0, NULL,
                                         (lofi_run_report *)report, sizeof *report));
  CHECK(report->struct_size == sizeof *report && report->pixels == W * H && report->batches >= 1);
  CHECK(report->batch_pixels == report_now.batch_pixels && report->estimated_peak_bytes == report_now.estimated_peak_bytes);
  {
    double xy[4] = {1.0, 2.0, 3.0, 4.0};
    CHECK_OK(lofi_reconstruct_points_sized(gray, &img, xy, 2, out, NULL, (lofi_run_report *)report,
                                           sizeof *report));
    CHECK(report->struct_size == sizeof *report && report->pixels == 2);
  }

  REQUIRE_OK(lofi_pnp_create(gray, &op, pixels, W * H, NULL, &pnp));
  CHECK_OK(lofi_pnp_step_sized(pnp, (lofi_pnp_residuals *)res, sizeof *res));
  CHECK(res->struct_size == sizeof *res && res->iteration == 1 && res->cg_iterations == 0);
  CHECK_OK(lofi_pnp_solve_sized(pnp, 2, (lofi_pnp_residuals *)res, sizeof *res));
  CHECK(res->struct_size == sizeof *res && res->iteration == 3);
  lofi_pnp_free(pnp);
  free(info);
  free(report);
  free(res);
}

/* ---- the version check --------------------------------------------------------------------------- */

static void test_version_check(void) {
  const uint32_t v = LOFI_VERSION_NUMBER;
  CHECK(v == LOFI_VERSION_MAJOR * 10000u + LOFI_VERSION_MINOR * 100u + LOFI_VERSION_PATCH);
  CHECK_MSG(lofi_version_number() == v, "library %u, header %u", lofi_version_number(), v);
  CHECK_OK(lofi_check_version(LOFI_VERSION_NUMBER));
  /* Patch versions do not matter. */
  CHECK_OK(lofi_check_version(v - v % 100 + 99));
  CHECK_OK(lofi_check_version(v - v % 100));
  /* A header newer than the library is refused, naming both. */
  EXPECT_FAIL(lofi_check_version(v + 100), LOFI_STATUS_INVALID_ARGUMENT, "built against lofi.h");
  EXPECT_FAIL(lofi_check_version(v + 10000), LOFI_STATUS_INVALID_ARGUMENT, "runs with liblofi");
  if (LOFI_VERSION_MAJOR == 0) {
    /* Before 1.0 every minor version is an ABI of its own (SONAME liblofi.so.0.MINOR). */
    if (LOFI_VERSION_MINOR > 0)
      EXPECT_FAIL(lofi_check_version(v - 100), LOFI_STATUS_INVALID_ARGUMENT, "same minor version");
    EXPECT_FAIL(lofi_check_version(10000 + LOFI_VERSION_MINOR * 100), LOFI_STATUS_INVALID_ARGUMENT, NULL);
  }
}

/* ---- metadata and the digest --------------------------------------------------------------------- */

static void test_metadata(void) {
  char buf[4096];
  size_t needed = 0;
  lofi_model *m = NULL;
  CHECK_OK(lofi_model_get_metadata(gray, "format_version", buf, sizeof buf, &needed));
  CHECK_MSG(strcmp(buf, "1") == 0 && needed == 2, "format_version \"%s\", needed %zu", buf, needed);
  CHECK_OK(lofi_model_get_metadata(gray, "config", buf, sizeof buf, &needed));
  CHECK(buf[0] == '{' && strstr(buf, "\"image_size\":16") != NULL && needed == strlen(buf) + 1);
  CHECK_OK(lofi_model_get_metadata(gray, "notes", buf, sizeof buf, NULL));
  /* A file written before digests: "" */
  CHECK_OK(lofi_model_get_metadata(gray, "digest", buf, sizeof buf, &needed));
  CHECK(buf[0] == '\0' && needed == 1);
  CHECK_OK(lofi_model_get_metadata(signed_, "digest", buf, sizeof buf, &needed));
  CHECK_MSG(strncmp(buf, "sha256:", 7) == 0 && strlen(buf) == 7 + 64 && needed == 72, "digest \"%s\"", buf);
  /* Size query, then a buffer of exactly that size. */
  needed = 0;
  CHECK_OK(lofi_model_get_metadata(signed_, "config", NULL, 0, &needed));
  CHECK(needed > 10);
  {
    char *exact = (char *)malloc(needed), *small = (char *)malloc(needed - 1);
    REQUIRE(exact && small);
    CHECK_OK(lofi_model_get_metadata(signed_, "config", exact, needed, NULL));
    CHECK(strlen(exact) == needed - 1);
    memset(small, 'x', needed - 1);
    EXPECT_FAIL(lofi_model_get_metadata(signed_, "config", small, needed - 1, NULL),
                LOFI_STATUS_INVALID_ARGUMENT, "needs");
    CHECK_MSG(small[0] == '\0', "a buffer too small is not left as the empty string");
    free(exact);
    free(small);
  }
  EXPECT_FAIL(lofi_model_get_metadata(gray, "colour", buf, sizeof buf, &needed), LOFI_STATUS_INVALID_ARGUMENT,
              "unknown metadata key 'colour' (known: notes, config, format_version, digest)");
  EXPECT_FAIL(lofi_model_get_metadata(gray, NULL, buf, sizeof buf, &needed), LOFI_STATUS_INVALID_ARGUMENT,
              "key is NULL");
  EXPECT_FAIL(lofi_model_get_metadata(NULL, "config", buf, sizeof buf, &needed), LOFI_STATUS_INVALID_ARGUMENT,
              "model is NULL");
  EXPECT_FAIL(lofi_model_get_metadata(gray, "config", NULL, 5, &needed), LOFI_STATUS_INVALID_ARGUMENT,
              "buf is NULL");
  CHECK_OK(lofi_load(lt_fixture("tiny-gray-nodigest.lofi"), NULL, &m));
  lofi_model_free(m);
}

/* A flipped bit anywhere in a digested file's tensor data is caught at load, with the digests. */
static void test_digest_catches_corruption(void) {
  size_t size = 0, i, header, tried = 0;
  unsigned char *bytes = lt_read_file(lt_fixture("tiny-gray.lofi"), &size);
  lofi_model *m = NULL;
  REQUIRE(bytes != NULL && size > 1000);
  for (i = 0, header = 0; i < 8; i++) header |= (size_t)bytes[i] << (8 * i);
  REQUIRE(8 + header < size);
  for (i = 8 + header; i < size; i += 4093, tried++) {
    bytes[i] ^= 0x01;
    m = (lofi_model *)bytes;
    EXPECT_FAIL(lofi_load_from_memory(bytes, size, NULL, &m), LOFI_STATUS_INVALID_MODEL, "SHA-256 digest mismatch");
    CHECK(m == NULL);
    bytes[i] ^= 0x01;
  }
  CHECK(tried >= 10);
  CHECK_OK(lofi_load_from_memory(bytes, size, NULL, &m));
  lofi_model_free(m);
  free(bytes);
}

/* ---- GPU memory ------------------------------------------------------------------------------------ */

static void test_release_cached_memory(void) {
  lofi_image img = lt_image(pixels, W, H, 1);
  lofi_run_report report;
  CHECK_OK(lofi_release_cached_memory()); /* before any GPU use: nothing to do */
  CHECK_OK(lofi_reconstruct_region(gray, &img, NULL, W, H, NULL, out, 0, NULL, &report));
  /* On the CPU the device figures are 0. */
  CHECK(report.measured_peak_bytes == 0 && report.measured_peak_reserved_bytes == 0 && report.reserved_bytes == 0);
  CHECK_OK(lofi_release_cached_memory());
  CHECK_OK(lofi_release_cached_memory());
  CHECK(lofi_last_error() == NULL);
}

int main(int argc, char **argv) {
  lt_init(argc, argv);
  if (lofi_check_version(LOFI_VERSION_NUMBER) != LOFI_STATUS_OK) {
    fprintf(stderr, "%s\n", lt_err());
    return 1;
  }
  gray = lt_load("tiny-gray-nodigest.lofi");
  signed_ = lt_load("tiny-gray.lofi");
  pixels = lt_make_pixels(W, H, 1, 5);
  if (!gray || !signed_ || !pixels) return 1;
  RUN(test_layouts_are_pinned);
  RUN(test_defaults_carry_their_size);
  RUN(test_bad_struct_sizes_are_refused);
  RUN(test_first_layout_load_params);
  RUN(test_first_layout_run_params);
  RUN(test_second_layout_run_params);
  RUN(test_inpainting_pnp_params);
  RUN(test_first_layout_pnp_params);
  RUN(test_second_layout_pnp_params);
  RUN(test_first_layout_outputs);
  RUN(test_version_check);
  RUN(test_metadata);
  RUN(test_digest_catches_corruption);
  RUN(test_release_cached_memory);
  lofi_model_free(gray);
  lofi_model_free(signed_);
  free(pixels);
  return lt_done();
}
