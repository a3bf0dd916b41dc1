/*
 * The plug-and-play C API (LoFi-ADMM): lofi_operator descriptions, lofi_operator_measurement_len,
 * lofi_operator_forward, lofi_pnp_create / step / solve / estimate / set_ground_truth / free.
 *
 * The fixture models are untrained, so this tests the mechanics, not the quality: a user operator
 * written in C (a 2 x 2 box average and its exact adjoint) driven step by step, every built-in
 * kind's measurement layout and a short solve, residuals and PSNR, progress and cancellation,
 * and every refused description with its message. Runs under ASan like the rest of the suite.
 */
#define _POSIX_C_SOURCE 200809L
#include "lofi_test.h"

enum { W = 16, H = 12 }; /* working resolution: not square, not the models' training size (16) */

static lofi_model *gray; /* tiny-gray.lofi: 1 -> 1, a denoiser */
static lofi_model *rgb;  /* tiny-rgb.lofi: 3 -> 3 */
static lofi_model *cplx; /* tiny-complex.lofi: 2 -> 1, not a denoiser */
static lofi_pnp *const SENTINEL = (lofi_pnp *)&gray; /* a non-NULL value, to see it reset */

static lofi_operator op_of(lofi_operator_kind kind, size_t width, size_t height, size_t channels) {
  lofi_operator op = lofi_default_operator();
  op.kind = kind;
  op.width = width;
  op.height = height;
  op.channels = channels;
  return op;
}

/* lofi_operator_measurement_len, 0 on failure (reported). */
static size_t measurement_len(const lofi_operator *op) {
  size_t n = 0;
  lofi_status s = lofi_operator_measurement_len(op, &n);
  if (s != LOFI_STATUS_OK) {
    fprintf(stderr, "lofi_operator_measurement_len: %s: %s\n", lofi_status_name(s), lt_err());
    return 0;
  }
  return n;
}

/* Settings that keep the solves short: few CG iterations, one CPU thread (ctest runs tests in
 * parallel on few cores). */
static lofi_pnp_params quick_params(void) {
  lofi_pnp_params p = lofi_default_pnp_params();
  p.cg_max_iterations = 25;
  p.run.threads = 1;
  return p;
}

static int finite(double v) { return v - v == 0.0; }

static int residuals_finite(const lofi_pnp_residuals *r) {
  return finite(r->primal) && finite(r->dual) && finite(r->data_misfit) && r->primal >= 0.0 &&
         r->dual >= 0.0 && r->data_misfit >= 0.0;
}

/* PSNR as lofi documents it (scikit-image: data range = max - min of the truth), in double. */
static double psnr_of(const float *truth, const float *estimate, size_t n) {
  double lo = truth[0], hi = truth[0], mse = 0.0;
  size_t i;
  for (i = 0; i < n; i++) {
    double d = (double)truth[i] - (double)estimate[i];
    if (truth[i] < lo) lo = truth[i];
    if (truth[i] > hi) hi = truth[i];
    mse += d * d;
  }
  mse /= (double)n;
  return 10.0 * log10((hi - lo) * (hi - lo) / mse);
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0.0;
  size_t i;
  for (i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
  return s;
}

/* ---- a user operator in C: 2 x 2 box average, and its exact adjoint ------------------------ */

typedef struct {
  const void *self; /* checks that user_data arrives unchanged */
  size_t w, h;      /* image size (even) */
  unsigned forward_calls, adjoint_calls;
  int fail_forward, fail_adjoint, nan_forward; /* misbehave on purpose */
  int bad_user_data;
} box_op;

/* y (h/2 x w/2) = mean of each 2 x 2 block of x (h x w). */
static bool box_forward(void *user, const float *x, float *y) {
  box_op *b = (box_op *)user;
  size_t i, j, w2;
  if (b == NULL || b->self != b) return false;
  b->forward_calls++;
  if (b->fail_forward) return false;
  w2 = b->w / 2;
  for (j = 0; j < b->h / 2; j++)
    for (i = 0; i < w2; i++) {
      const float *p = x + 2 * j * b->w + 2 * i;
      y[j * w2 + i] = 0.25f * (p[0] + p[1] + p[b->w] + p[b->w + 1]);
    }
  if (b->nan_forward) y[3] = (float)NAN;
  return true;
}

/* x = A^T y: each block gets a quarter of its measurement. */
static bool box_adjoint(void *user, const float *y, float *x) {
  box_op *b = (box_op *)user;
  size_t r, c;
  if (b == NULL || b->self != b) return false;
  b->adjoint_calls++;
  if (b->fail_adjoint) return false;
  for (r = 0; r < b->h; r++)
    for (c = 0; c < b->w; c++) x[r * b->w + c] = 0.25f * y[(r / 2) * (b->w / 2) + c / 2];
  return true;
}

static void box_init(box_op *b, size_t w, size_t h) {
  memset(b, 0, sizeof *b);
  b->self = b;
  b->w = w;
  b->h = h;
}

static lofi_operator box_operator(box_op *b) {
  lofi_operator op = op_of(LOFI_OPERATOR_CALLBACKS, b->w, b->h, 1);
  op.forward = box_forward;
  op.adjoint = box_adjoint;
  op.user_data = b;
  op.measurement_len = (b->w / 2) * (b->h / 2);
  return op;
}

/* The pair is adjoint (checked in C, before lofi sees it): <A x, y> = <x, A^T y>. */
static void test_user_operator_is_adjoint(void) {
  box_op b;
  float *x = lt_make_pixels(W, H, 1, 31), *ax = (float *)malloc(W * H / 4 * sizeof(float));
  float *y = lt_make_pixels(W / 2, H / 2, 1, 32), *aty = (float *)malloc(W * H * sizeof(float));
  double lhs, rhs;
  REQUIRE(x && ax && y && aty);
  box_init(&b, W, H);
  CHECK(box_forward(&b, x, ax) && box_adjoint(&b, y, aty));
  lhs = dot(ax, y, W * H / 4);
  rhs = dot(x, aty, W * H);
  CHECK_MSG(fabs(lhs - rhs) <= 1e-6 * fabs(lhs), "<Ax, y> = %.9g, <x, A^T y> = %.9g", lhs, rhs);
  free(x);
  free(ax);
  free(y);
  free(aty);
}

/* Driving lofi_pnp_step with the C operator: iterations count up, residuals are finite, the
 * callbacks run (conjugate gradients: there is no closed form), PSNR appears with a ground truth,
 * a callback returning false fails the step cleanly and leaves the state usable. */
static void test_user_operator_steps(void) {
  box_op b;
  lofi_operator op;
  lofi_pnp_params params = quick_params();
  lofi_pnp *pnp = SENTINEL;
  lofi_pnp_residuals r;
  float *truth = lt_make_pixels(W, H, 1, 33), *y = (float *)malloc(W * H / 4 * sizeof(float));
  float *est = (float *)malloc(W * H * sizeof(float));
  unsigned k, fwd, adj;
  size_t i;
  int zero = 1;
  REQUIRE(truth && y && est);
  box_init(&b, W, H);
  op = box_operator(&b);
  CHECK(measurement_len(&op) == W * H / 4);
  CHECK(box_forward(&b, truth, y));
  b.forward_calls = 0;

  REQUIRE_OK(lofi_pnp_create(gray, &op, y, W * H / 4, &params, &pnp));
  REQUIRE(pnp != NULL && pnp != SENTINEL);
  CHECK_MSG(b.adjoint_calls >= 1, "A^T y not computed through the callback at create");
  /* Before the first step the estimate is zero. */
  for (i = 0; i < W * H; i++) est[i] = 1.0f;
  CHECK_OK(lofi_pnp_estimate(pnp, est, 0));
  for (i = 0; i < W * H; i++) zero &= est[i] == 0.0f;
  CHECK_MSG(zero, "the estimate before the first step is not zero");

  for (k = 1; k <= 3; k++) {
    fwd = b.forward_calls;
    adj = b.adjoint_calls;
    memset(&r, 0xff, sizeof r);
    CHECK_OK(lofi_pnp_step(pnp, &r));
    CHECK_MSG(r.iteration == k, "iteration %u after %u steps", r.iteration, k);
    CHECK_MSG(residuals_finite(&r), "step %u: primal %g dual %g misfit %g", k, r.primal, r.dual,
              r.data_misfit);
    CHECK_MSG(r.psnr != r.psnr, "PSNR %g without a ground truth (expected NaN)", r.psnr);
    CHECK_MSG(r.cg_iterations >= 1 && r.cg_iterations <= params.cg_max_iterations,
              "%u CG iterations (max %u)", r.cg_iterations, params.cg_max_iterations);
    CHECK_MSG(b.forward_calls > fwd && b.adjoint_calls > adj,
              "step %u: forward called %u times, adjoint %u times", k, b.forward_calls - fwd,
              b.adjoint_calls - adj);
    if (k == 1) /* v starts at zero: ||v - 0|| / ||v|| */
      CHECK_MSG(fabs(r.dual - 1.0) < 1e-6, "first dual residual %g, expected 1", r.dual);
    if (lt_verbose)
      printf("     step %u: primal %.4g dual %.4g misfit %.4g, %u CG, callbacks %u/%u\n", k, r.primal,
             r.dual, r.data_misfit, r.cg_iterations, b.forward_calls, b.adjoint_calls);
  }
  CHECK(!b.bad_user_data);
  CHECK_OK(lofi_pnp_step(pnp, NULL)); /* out may be NULL */

  /* With a ground truth, PSNR: finite, and what the estimate gives. */
  CHECK_OK(lofi_pnp_set_ground_truth(pnp, truth));
  CHECK_OK(lofi_pnp_step(pnp, &r));
  CHECK(r.iteration == 5);
  CHECK_OK(lofi_pnp_estimate(pnp, est, 0));
  CHECK(lt_all_finite(est, W * H));
  CHECK_MSG(finite(r.psnr) && fabs(r.psnr - psnr_of(truth, est, W * H)) < 1e-3,
            "PSNR %g, computed from the estimate %g", r.psnr, psnr_of(truth, est, W * H));

  /* A callback returning false fails the step with a message naming it ... */
  b.fail_forward = 1;
  EXPECT_FAIL(lofi_pnp_step(pnp, &r), LOFI_STATUS_INVALID_ARGUMENT, "forward failed: the callback returned false");
  b.fail_forward = 0;
  b.fail_adjoint = 1;
  EXPECT_FAIL(lofi_pnp_step(pnp, &r), LOFI_STATUS_INVALID_ARGUMENT, "adjoint failed: the callback returned false");
  b.fail_adjoint = 0;
  /* ... as does a non-finite value it writes ... */
  b.nan_forward = 1;
  EXPECT_FAIL(lofi_pnp_step(pnp, &r), LOFI_STATUS_INVALID_INPUT, "non-finite");
  b.nan_forward = 0;
  /* ... and the state goes on from where it was. */
  CHECK_OK(lofi_pnp_step(pnp, &r));
  CHECK_MSG(r.iteration == 6, "iteration %u after failed steps, expected 6", r.iteration);
  CHECK(residuals_finite(&r) && finite(r.psnr));

  lofi_pnp_free(pnp);
  free(truth);
  free(y);
  free(est);
}

/* The user operator's failures at create time, and its own description errors. */
static void test_user_operator_refused(void) {
  box_op b;
  lofi_operator op;
  lofi_pnp *pnp = SENTINEL;
  float y[W * H / 4];
  size_t n = 99;
  memset(y, 0, sizeof y);
  y[0] = 1.0f;
  box_init(&b, W, H);
  op = box_operator(&b);
  b.fail_adjoint = 1; /* create computes A^T y */
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H / 4, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "adjoint failed: the callback returned false");
  CHECK(pnp == NULL);
  b.fail_adjoint = 0;
  /* lofi_pnp_create's length must be the description's */
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H / 4 - 1, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "47 measurement values, expected 48");
  y[5] = (float)INFINITY;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H / 4, NULL, &pnp), LOFI_STATUS_INVALID_INPUT,
              "measurement 5 is not finite");
  y[5] = 0.0f;
  op.forward = NULL;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H / 4, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "needs both forward and adjoint");
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT,
              "needs both forward and adjoint");
  op = box_operator(&b);
  op.adjoint = NULL;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H / 4, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "needs both forward and adjoint");
  op = box_operator(&b);
  op.measurement_len = 0;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H / 4, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "measurement_len = 0");
  op.measurement_len = SIZE_MAX;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  CHECK(pnp == NULL);
  CHECK(b.forward_calls == 0);
}

/* ---- built-in operators --------------------------------------------------------------------- */

/* Simulates y = A x with lofi_operator_forward, solves two steps, reads the estimate. */
static void solve_builtin(const char *name, const lofi_model *m, const lofi_operator *op,
                          size_t expect_len, int closed_form) {
  const size_t n = op->width * op->height * op->channels;
  size_t len = measurement_len(op), k;
  float *x = lt_make_pixels(op->width, op->height, op->channels, 40);
  float *y, *est = (float *)malloc(n * sizeof(float));
  lofi_pnp_params params = quick_params();
  lofi_pnp *pnp = NULL;
  lofi_pnp_residuals r;
  CHECK_MSG(len == expect_len, "%s: measurement_len %zu, expected %zu", name, len, expect_len);
  REQUIRE(len > 0 && x && est);
  y = (float *)malloc(len * sizeof(float));
  REQUIRE(y != NULL);
  CHECK_OK(lofi_operator_forward(op, x, y, len));
  CHECK_MSG(lt_all_finite(y, len), "%s: non-finite measurements", name);
  CHECK_OK(lofi_pnp_create(m, op, y, len, &params, &pnp));
  if (pnp) {
    CHECK_OK(lofi_pnp_set_ground_truth(pnp, x));
    for (k = 1; k <= 2; k++) {
      CHECK_OK(lofi_pnp_step(pnp, &r));
      CHECK_MSG(r.iteration == k && residuals_finite(&r) && finite(r.psnr),
                "%s step %zu: iteration %u, primal %g dual %g misfit %g psnr %g", name, k, r.iteration,
                r.primal, r.dual, r.data_misfit, r.psnr);
      CHECK_MSG(closed_form ? r.cg_iterations == 0 : r.cg_iterations > 0, "%s: %u CG iterations", name,
                r.cg_iterations);
    }
    CHECK_OK(lofi_pnp_estimate(pnp, est, 0));
    CHECK_MSG(lt_all_finite(est, n), "%s: non-finite estimate", name);
    /* The reported misfit is ||A v - y|| / ||y|| of the estimate v, as computed here (complex
     * measurements count both parts). */
    {
      float *av = (float *)malloc(len * sizeof(float));
      double num = 0.0, den = 0.0, misfit;
      REQUIRE(av != NULL);
      CHECK_OK(lofi_operator_forward(op, est, av, len));
      for (k = 0; k < len; k++) {
        const double e = (double)av[k] - (double)y[k];
        num += e * e;
        den += (double)y[k] * y[k];
      }
      misfit = sqrt(num / den);
      CHECK_MSG(fabs(misfit - r.data_misfit) <= 1e-4 * misfit, "%s: data misfit %.6g, from the estimate %.6g",
                name, r.data_misfit, misfit);
      free(av);
    }
    if (lt_verbose)
      printf("     %-13s %5zu measurements: misfit %.4g, PSNR %.2f dB, %u CG\n", name, len, r.data_misfit,
             r.psnr, r.cg_iterations);
  }
  lofi_pnp_free(pnp);
  free(x);
  free(y);
  free(est);
}

static void test_denoise(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_DENOISE, W, H, 1);
  float *x = lt_make_pixels(W, H, 1, 41), y[W * H];
  REQUIRE(x != NULL);
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  CHECK_MSG(memcmp(x, y, sizeof y) == 0, "A = I changed the image");
  solve_builtin("denoise", gray, &op, W * H, 1);
  op.channels = 3;
  CHECK(measurement_len(&op) == W * H * 3);
  free(x);
}

static void test_inpaint(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_INPAINT, W, H, 1);
  float mask[W * H * 3], *x = lt_make_pixels(W, H, 3, 42), y[W * H * 3], y2[W * H * 3];
  size_t i, zeros = 0, differ = 0;
  int exact = 1;
  REQUIRE(x != NULL);
  for (i = 0; i < W * H * 3; i++) mask[i] = (i * 7) % 5 < 2 ? 0.0f : (i % 3 ? 1.0f : -2.5f); /* nonzero = observed */
  op.mask = mask;
  op.mask_len = W * H;
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  for (i = 0; i < W * H; i++) exact &= y[i] == (mask[i] != 0.0f ? x[i] : 0.0f);
  CHECK_MSG(exact, "inpaint: A x is not x on the observed pixels and 0 elsewhere");
  solve_builtin("inpaint", gray, &op, W * H, 1);
  /* An H x W mask for a 3-channel image applies to every channel; an H x W x C one per channel. */
  op.channels = 3;
  CHECK(measurement_len(&op) == W * H * 3);
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  for (i = 0, exact = 1; i < W * H * 3; i++) exact &= y[i] == (mask[i / 3] != 0.0f ? x[i] : 0.0f);
  CHECK_MSG(exact, "inpaint: an H x W mask is not applied to every channel");
  op.mask_len = W * H * 3;
  CHECK(measurement_len(&op) == W * H * 3);
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  for (i = 0, exact = 1; i < W * H * 3; i++) exact &= y[i] == (mask[i] != 0.0f ? x[i] : 0.0f);
  CHECK_MSG(exact, "inpaint: an H x W x C mask is not applied per channel");
  solve_builtin("inpaint-rgb", rgb, &op, W * H * 3, 1);

  /* No mask: a random one from observed_fraction and seed, the same for the same seed. */
  op = op_of(LOFI_OPERATOR_INPAINT, W, H, 1);
  op.observed_fraction = 0.5;
  op.seed = 7;
  CHECK(measurement_len(&op) == W * H);
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  CHECK_OK(lofi_operator_forward(&op, x, y2, sizeof y2 / sizeof y2[0]));
  CHECK(memcmp(y, y2, W * H * sizeof(float)) == 0);
  for (i = 0; i < W * H; i++) zeros += y[i] == 0.0f;
  CHECK_MSG(zeros > W * H / 5 && zeros < W * H * 4 / 5, "%zu of %d pixels unobserved at fraction 0.5",
            zeros, W * H);
  op.seed = 8;
  CHECK_OK(lofi_operator_forward(&op, x, y2, sizeof y2 / sizeof y2[0]));
  for (i = 0; i < W * H; i++) differ += (y[i] == 0.0f) != (y2[i] == 0.0f);
  CHECK_MSG(differ > 0, "another seed gives the same mask");
  solve_builtin("inpaint-random", gray, &op, W * H, 1);

  /* Values at unobserved pixels are ignored: NaN is allowed there, not where observed. */
  {
    lofi_pnp *pnp = NULL;
    op = op_of(LOFI_OPERATOR_INPAINT, W, H, 1);
    op.mask = mask;
    op.mask_len = W * H;
    CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
    for (i = 0; i < W * H; i++)
      if (mask[i] == 0.0f) y[i] = (float)NAN;
    CHECK_OK(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp));
    lofi_pnp_free(pnp);
    pnp = SENTINEL;
    y[1] = (float)NAN; /* mask[1] is observed */
    REQUIRE(mask[1] != 0.0f);
    EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_INPUT,
                "observed measurement is not finite");
    CHECK(pnp == NULL);
  }
  free(x);
}

/* Row-major position of (row, col) among the nonzero entries of an h x w mask. */
static size_t mask_rank(const float *mask, size_t w, size_t row, size_t col) {
  size_t i, rank = 0;
  for (i = 0; i < row * w + col; i++) rank += mask[i] != 0.0f;
  return rank;
}

static void test_fourier_mask(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_FOURIER_MASK, W, H, 1);
  float mask[W * H], *x = lt_make_pixels(W, H, 3, 43), *y;
  size_t i, count = 0, dc;
  double sum = 0.0, want;
  REQUIRE(x != NULL);
  for (i = 0; i < W * H; i++) mask[i] = (i * 5) % 7 < 3 ? 1.0f : 0.0f;
  mask[(H / 2) * W + W / 2] = 2.0f; /* the DC, centred layout (any nonzero value measures) */
  for (i = 0; i < W * H; i++) count += mask[i] != 0.0f;
  op.mask = mask;
  op.mask_len = W * H;
  CHECK_MSG(measurement_len(&op) == count * 2, "fourier-mask: %zu values for %zu frequencies",
            measurement_len(&op), count);
  /* The measured DC of the unitary centred transform is sum(x) / sqrt(H W), real. */
  y = (float *)malloc(3 * count * 2 * sizeof(float));
  REQUIRE(y != NULL);
  dc = mask_rank(mask, W, H / 2, W / 2);
  {
    float gx[W * H];
    for (i = 0; i < W * H; i++) {
      gx[i] = x[3 * i];
      sum += gx[i];
    }
    CHECK_OK(lofi_operator_forward(&op, gx, y, 3 * count * 2));
  }
  want = sum / sqrt((double)(W * H));
  CHECK_MSG(fabs(y[2 * dc] - want) <= 1e-4 * fabs(want) && fabs(y[2 * dc + 1]) <= 1e-4 * fabs(want),
            "DC = (%g, %g), expected (%g, 0)", y[2 * dc], y[2 * dc + 1], want);
  solve_builtin("fourier-mask", gray, &op, count * 2, 1);
  /* Three channels: C * count * 2, channel after channel. */
  op.channels = 3;
  CHECK(measurement_len(&op) == 3 * count * 2);
  CHECK_OK(lofi_operator_forward(&op, x, y, 3 * count * 2));
  {
    size_t c;
    for (c = 0; c < 3; c++) {
      double s = 0.0;
      for (i = 0; i < W * H; i++) s += x[3 * i + c];
      s /= sqrt((double)(W * H));
      CHECK_MSG(fabs(y[2 * (c * count + dc)] - s) <= 1e-4 * fabs(s), "channel %zu: DC %g, expected %g", c,
                y[2 * (c * count + dc)], s);
    }
  }
  solve_builtin("fourier-rgb", rgb, &op, 3 * count * 2, 1);
  free(x);
  free(y);
}

/* NUFFT: visibilities at arbitrary (u, v) in wavelengths. A unit point source at the phase centre
 * (height/2, width/2) gives 1 + 0i on every baseline; one pixel to the right (+l) gives
 * exp(-2 pi i u delta). Then a short solve, natural and uniform weighting, and bad descriptions. */
static void test_nufft(void) {
  enum { M = 300 };
  lofi_operator op = op_of(LOFI_OPERATOR_NUFFT, W, H, 1);
  const double delta = 2.0 / 3600.0 * 3.14159265358979323846 / 180.0; /* 2 arcsec */
  double uv[2 * M];
  float x[W * H], y[2 * M], weights[M];
  size_t j;
  for (j = 0; j < M; j++) { /* a spiral of baselines inside the Nyquist band */
    double r = 0.45 * (double)(j + 1) / M / delta, t = 0.37 * (double)j;
    uv[2 * j] = r * cos(t);
    uv[2 * j + 1] = r * sin(t);
    weights[j] = j % 10 == 0 ? 0.0f : 1.0f + (float)(j % 3);
  }
  op.uv = uv;
  op.visibility_count = M;
  op.pixel_arcsec = 2.0;
  CHECK_MSG(measurement_len(&op) == 2 * M, "nufft: %zu measurement floats", measurement_len(&op));
  memset(x, 0, sizeof x);
  x[(H / 2) * W + W / 2] = 1.0f;
  CHECK_OK(lofi_operator_forward(&op, x, y, 2 * M));
  for (j = 0; j < M; j++)
    CHECK_MSG(fabs(y[2 * j] - 1.0) < 1e-3 && fabs(y[2 * j + 1]) < 1e-3, "centre source: V_%zu = (%g, %g)", j,
              y[2 * j], y[2 * j + 1]);
  x[(H / 2) * W + W / 2] = 0.0f;
  x[(H / 2) * W + W / 2 + 1] = 1.0f;
  CHECK_OK(lofi_operator_forward(&op, x, y, 2 * M));
  for (j = 0; j < M; j += 37) {
    double phase = -2.0 * 3.14159265358979323846 * uv[2 * j] * delta;
    CHECK_MSG(fabs(y[2 * j] - cos(phase)) < 1e-3 && fabs(y[2 * j + 1] - sin(phase)) < 1e-3,
              "shifted source: V_%zu = (%g, %g), expected (%g, %g)", j, y[2 * j], y[2 * j + 1], cos(phase),
              sin(phase));
  }
  solve_builtin("nufft", gray, &op, 2 * M, 0);
  /* Uniform weighting with flagged visibilities: the data term (and the reported misfit) is the
   * weighted one, so solve_builtin's unweighted misfit check does not apply; two steps run. */
  op.weights = weights;
  op.weighting = LOFI_WEIGHTING_UNIFORM;
  {
    lofi_pnp_params params = quick_params();
    lofi_pnp *pnp = NULL;
    lofi_pnp_residuals r;
    float *truth = lt_make_pixels(W, H, 1, 40);
    REQUIRE(truth != NULL);
    CHECK_OK(lofi_operator_forward(&op, truth, y, 2 * M));
    CHECK_OK(lofi_pnp_create(gray, &op, y, 2 * M, &params, &pnp));
    if (pnp) {
      CHECK_OK(lofi_pnp_step(pnp, &r));
      CHECK_OK(lofi_pnp_step(pnp, &r));
      CHECK_MSG(r.iteration == 2 && residuals_finite(&r) && r.cg_iterations > 0,
                "nufft-uniform: iteration %u, misfit %g, %u CG", r.iteration, r.data_misfit, r.cg_iterations);
    }
    lofi_pnp_free(pnp);
    free(truth);
  }
  op.weighting = 5;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &j), LOFI_STATUS_INVALID_ARGUMENT, "unknown weighting 5");
  op.weighting = LOFI_WEIGHTING_NATURAL;
  op.pixel_arcsec = 0.0;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &j), LOFI_STATUS_INVALID_ARGUMENT, "pixel size");
  op.pixel_arcsec = 2.0;
  op.uv = NULL;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &j), LOFI_STATUS_INVALID_ARGUMENT, "uv is NULL");
  op.uv = uv;
  uv[7] = NAN;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &j), LOFI_STATUS_INVALID_ARGUMENT, "not finite");
  uv[7] = 0.0;
  for (j = 0; j < M; j++) weights[j] = 0.0f;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &j), LOFI_STATUS_INVALID_ARGUMENT, "weight 0");
}

static void test_blur(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_BLUR, W, H, 1);
  const float delta[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
  const float box[15] = {1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15,
                         1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15, 1.f / 15};
  float *x = lt_make_pixels(W, H, 1, 44), y[W * H];
  REQUIRE(x != NULL);
  /* A centred delta kernel leaves the image as it is (to FFT rounding). */
  op.kernel = delta;
  op.kernel_width = 3;
  op.kernel_height = 3;
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  CHECK_MSG(lt_max_abs_diff(x, y, W * H) < 1e-5, "delta blur changed the image by %g",
            lt_max_abs_diff(x, y, W * H));
  op.kernel = box; /* 5 wide, 3 high */
  op.kernel_width = 5;
  op.kernel_height = 3;
  solve_builtin("blur", gray, &op, W * H, 1);
  op.channels = 3;
  CHECK(measurement_len(&op) == W * H * 3);
  free(x);
}

static void test_lensing(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_LENSING, W, H, 1);
  float flat[W * H], y[W * H * 2], *x = lt_make_pixels(W, H, 1, 46);
  double worst = 0.0, ny, nx;
  size_t i;
  REQUIRE(x != NULL);
  for (i = 0; i < W * H; i++) flat[i] = 0.25f;
  /* The kernel is 1 at k = 0 (documented in src/operators/lensing.rs): a uniform convergence
   * gives a uniform shear (0.25, 0), laid out as (H, W, 2) interleaved real and imaginary. */
  CHECK_OK(lofi_operator_forward(&op, flat, y, sizeof y / sizeof y[0]));
  for (i = 0; i < W * H; i++) {
    double d = fabs(y[2 * i] - 0.25) + fabs(y[2 * i + 1]);
    if (!(d <= worst)) worst = d;
  }
  CHECK_MSG(worst < 1e-5, "the shear of a constant 0.25 is off by %g", worst);
  /* |D| = 1: the shear has the convergence's norm (A^T A = I, a closed-form data step). */
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  ny = dot(y, y, W * H * 2);
  nx = dot(x, x, W * H);
  CHECK_MSG(fabs(ny - nx) <= 1e-5 * nx, "||A x||^2 = %g, ||x||^2 = %g", ny, nx);
  solve_builtin("lensing", gray, &op, W * H * 2, 1);
  free(x);
}

static void test_radon(void) {
  const double angles[5] = {0.0, 30.0, 72.5, 90.0, 151.0};
  const size_t detectors = (size_t)ceil(sqrt(2.0) * (W > H ? W : H));
  lofi_operator op = op_of(LOFI_OPERATOR_RADON, W, H, 1);
  float *x = lt_make_pixels(W, H, 1, 45), y[5 * 64];
  double total = 0.0;
  size_t a, d, i;
  REQUIRE(x != NULL && detectors == 23);
  op.angles_deg = angles;
  op.angle_count = 5;
  CHECK_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  /* Every projection carries about the image's mass. */
  for (i = 0; i < W * H; i++) total += x[i];
  for (a = 0; a < 5; a++) {
    double s = 0.0;
    for (d = 0; d < detectors; d++) s += y[a * detectors + d];
    CHECK_MSG(fabs(s - total) <= 0.05 * total, "angle %g: projection sums to %g, the image to %g", angles[a],
              s, total);
  }
  solve_builtin("radon", gray, &op, 5 * detectors, 0);
  op.channels = 3;
  CHECK(measurement_len(&op) == 3 * 5 * detectors);
  op = op_of(LOFI_OPERATOR_RADON, 40, 9, 2);
  op.angles_deg = angles;
  op.angle_count = 3;
  CHECK(measurement_len(&op) == 2 * 3 * (size_t)ceil(sqrt(2.0) * 40));
  free(x);
}

/* ---- refused descriptions and arguments -------------------------------------------------------- */

static void test_refused_descriptions(void) {
  float mask[W * H], zeros[W * H * 3], y[W * H * 3], kernel[9];
  const double angles[2] = {0.0, (double)NAN};
  lofi_operator op;
  lofi_pnp *pnp = SENTINEL;
  size_t n = 0, i;
  for (i = 0; i < W * H; i++) mask[i] = 1.0f;
  memset(zeros, 0, sizeof zeros);
  for (i = 0; i < W * H * 3; i++) y[i] = 0.5f;
  for (i = 0; i < 9; i++) kernel[i] = 1.0f / 9;

  /* unknown kinds */
  op = op_of(99, W, H, 1);
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "unknown operator kind 99");
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "unknown operator kind 99");
  CHECK(pnp == NULL);
  op.kind = -1;
  EXPECT_FAIL(lofi_operator_forward(&op, y, zeros, sizeof zeros / sizeof zeros[0]), LOFI_STATUS_INVALID_ARGUMENT, "unknown operator kind -1");

  /* sizes: width or height 1, zero channels, absurd sizes */
  op = op_of(LOFI_OPERATOR_DENOISE, 1, H, 1);
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "1 x 12 x 1");
  op = op_of(LOFI_OPERATOR_DENOISE, W, 1, 1);
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  op = op_of(LOFI_OPERATOR_DENOISE, W, H, 0);
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  op = op_of(LOFI_OPERATOR_INPAINT, SIZE_MAX, SIZE_MAX, 1);
  op.mask = mask;
  op.mask_len = W * H;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "out of range");
  op = lofi_default_operator(); /* all zero */
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "out of range");

  /* measurement length */
  op = op_of(LOFI_OPERATOR_DENOISE, W, H, 1);
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H + 1, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "193 measurement values, expected 192");
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H - 1, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "expected 192");
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, 0, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "measurements");
  op = op_of(LOFI_OPERATOR_LENSING, W, H, 1);
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "expected 384");
  CHECK(pnp == NULL);

  /* non-finite measurements */
  op = op_of(LOFI_OPERATOR_DENOISE, W, H, 1);
  y[17] = (float)NAN;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_INPUT,
              "measurement 17 is not finite");
  y[17] = 0.5f;
  y[0] = -(float)INFINITY;
  op = op_of(LOFI_OPERATOR_BLUR, W, H, 1);
  op.kernel = kernel;
  op.kernel_width = op.kernel_height = 3;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_INPUT, "not finite");
  y[0] = 0.5f;

  /* masks: empty (all zeros), wrong length, NULL */
  op = op_of(LOFI_OPERATOR_INPAINT, W, H, 1);
  op.mask = zeros;
  op.mask_len = W * H;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "observes no pixel");
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "observes no pixel");
  op.mask = mask;
  op.mask_len = 7;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "the mask has 7 values, expected 192");
  op.mask_len = W * H * 3; /* a per-channel mask for one channel */
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "576 values");
  op.mask_len = 0;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "mask has 0 values");
  op.mask = NULL; /* no mask: the random one, which needs a fraction in (0, 1] */
  op.observed_fraction = 0.0;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "observed fraction 0");
  op.observed_fraction = 1.5;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "not in (0, 1]");
  op.observed_fraction = (double)NAN;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "not in (0, 1]");
  op = op_of(LOFI_OPERATOR_FOURIER_MASK, W, H, 1);
  op.mask = zeros;
  op.mask_len = W * H;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, 2, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "measures no frequency");
  op.mask = mask;
  op.mask_len = W * H * 3;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "expected 192 (H x W)");
  op.mask = NULL;
  op.mask_len = W * H;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "mask is NULL");

  /* blur kernels */
  op = op_of(LOFI_OPERATOR_BLUR, W, H, 1);
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "kernel is NULL");
  op.kernel = kernel;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "kernel has 0 values");
  op.kernel_width = 3;
  op.kernel_height = SIZE_MAX;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "kernel");
  op.kernel_height = 3;
  kernel[4] = (float)NAN;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "NaN or infinite");
  kernel[4] = 1.0f / 9;

  /* lensing needs one channel; radon needs finite angles */
  op = op_of(LOFI_OPERATOR_LENSING, W, H, 3);
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "1 channel");
  EXPECT_FAIL(lofi_pnp_create(rgb, &op, y, W * H * 2, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "1 channel");
  op = op_of(LOFI_OPERATOR_RADON, W, H, 1);
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "angles_deg is NULL");
  op.angles_deg = angles;
  op.angle_count = 0;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "angles_deg has 0 values");
  op.angle_count = 2;
  EXPECT_FAIL(lofi_operator_measurement_len(&op, &n), LOFI_STATUS_INVALID_ARGUMENT, "finite degrees");
  CHECK(pnp == NULL);
}

/* The model and the parameters. */
static void test_refused_models_and_params(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_DENOISE, W, H, 1);
  lofi_pnp_params params = lofi_default_pnp_params();
  lofi_pnp *pnp = SENTINEL;
  float y[W * H * 3];
  uint64_t min_budget = 0;
  size_t i;
  const double bad_alpha[] = {0.0, -0.05, (double)NAN, (double)INFINITY};
  for (i = 0; i < W * H * 3; i++) y[i] = 0.25f + 0.001f * (float)i;

  /* a model that is no denoiser (2 -> 1), whatever the channels */
  op.channels = 2;
  EXPECT_FAIL(lofi_pnp_create(cplx, &op, y, W * H * 2, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "needs a denoiser");
  CHECK(pnp == NULL);
  op.channels = 1;
  EXPECT_FAIL(lofi_pnp_create(cplx, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "maps 2 to 1");
  /* channels that are not the model's */
  op.channels = 3;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H * 3, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "3-channel images, the model on 1");
  op.channels = 1;
  EXPECT_FAIL(lofi_pnp_create(rgb, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "1-channel images, the model on 3");

  /* alpha, CG tolerance, threads */
  for (i = 0; i < sizeof bad_alpha / sizeof bad_alpha[0]; i++) {
    params = lofi_default_pnp_params();
    params.alpha = bad_alpha[i];
    EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
                "must be positive and finite");
  }
  params = lofi_default_pnp_params();
  params.cg_tolerance = -1.0;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "cg_tolerance");
  params = lofi_default_pnp_params();
  params.run.threads = -2;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "threads is negative");

  /* The memory budget: lofi_memory_requirements' minimum for the working resolution works, one
   * byte less does not. */
  REQUIRE_OK(lofi_memory_requirements(gray, W, H, &min_budget, NULL));
  params = quick_params();
  params.run.memory_budget_bytes = min_budget - 1;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp), LOFI_STATUS_BUDGET_TOO_SMALL, "at least");
  params.run.memory_budget_bytes = 1000;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp), LOFI_STATUS_BUDGET_TOO_SMALL, "at least");
  CHECK(pnp == NULL);
  params.run.memory_budget_bytes = min_budget;
  CHECK_OK(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp));
  if (pnp) {
    lofi_pnp_residuals r;
    CHECK_OK(lofi_pnp_step(pnp, &r));
    CHECK(r.iteration == 1 && residuals_finite(&r));
  }
  lofi_pnp_free(pnp);
}

/* Every pointer argument NULL in turn. */
static void test_null_pointers(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_DENOISE, W, H, 1);
  lofi_pnp *pnp = SENTINEL;
  lofi_pnp_residuals r;
  float y[W * H], out[W * H];
  size_t n = 0, i;
  for (i = 0; i < W * H; i++) y[i] = 0.5f;

  EXPECT_FAIL(lofi_operator_measurement_len(NULL, &n), LOFI_STATUS_INVALID_ARGUMENT, "op is NULL");
  EXPECT_FAIL(lofi_operator_measurement_len(&op, NULL), LOFI_STATUS_INVALID_ARGUMENT, "out_len is NULL");
  EXPECT_FAIL(lofi_operator_forward(NULL, y, out, sizeof out / sizeof out[0]), LOFI_STATUS_INVALID_ARGUMENT, "op is NULL");
  EXPECT_FAIL(lofi_operator_forward(&op, NULL, out, sizeof out / sizeof out[0]), LOFI_STATUS_INVALID_ARGUMENT, "x is NULL");
  EXPECT_FAIL(lofi_operator_forward(&op, y, NULL, W * H), LOFI_STATUS_INVALID_ARGUMENT, "y is NULL");
  EXPECT_FAIL(lofi_operator_forward(&op, y, out, W * H - 1), LOFI_STATUS_INVALID_ARGUMENT, "holds");

  EXPECT_FAIL(lofi_pnp_create(NULL, &op, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "model is NULL");
  CHECK(pnp == NULL);
  pnp = SENTINEL;
  EXPECT_FAIL(lofi_pnp_create(gray, NULL, y, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "op is NULL");
  CHECK(pnp == NULL);
  pnp = SENTINEL;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, NULL, W * H, NULL, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "measurements is NULL");
  CHECK(pnp == NULL);
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, NULL, NULL), LOFI_STATUS_INVALID_ARGUMENT, "out_pnp is NULL");

  EXPECT_FAIL(lofi_pnp_set_ground_truth(NULL, y), LOFI_STATUS_INVALID_ARGUMENT, "pnp is NULL");
  EXPECT_FAIL(lofi_pnp_step(NULL, &r), LOFI_STATUS_INVALID_ARGUMENT, "pnp is NULL");
  EXPECT_FAIL(lofi_pnp_solve(NULL, 3, &r), LOFI_STATUS_INVALID_ARGUMENT, "pnp is NULL");
  EXPECT_FAIL(lofi_pnp_estimate(NULL, out, 0), LOFI_STATUS_INVALID_ARGUMENT, "pnp is NULL");

  /* NULL params mean the defaults. */
  REQUIRE_OK(lofi_pnp_create(gray, &op, y, W * H, NULL, &pnp));
  EXPECT_FAIL(lofi_pnp_set_ground_truth(pnp, NULL), LOFI_STATUS_INVALID_ARGUMENT, "truth is NULL");
  EXPECT_FAIL(lofi_pnp_estimate(pnp, NULL, 0), LOFI_STATUS_INVALID_ARGUMENT, "out is NULL");
  CHECK_OK(lofi_pnp_solve(pnp, 1, NULL)); /* last may be NULL */
  lofi_pnp_free(pnp);
  lofi_pnp_free(NULL); /* a no-op */
}

/* ---- solve: iterations, progress, cancellation; estimate strides ------------------------------ */

typedef struct {
  const void *self;
  unsigned calls;
  unsigned cancel_at; /* 0: never */
  uint64_t last_done, last_total;
  int ordered;
} progress_log;

static bool on_progress(void *user, uint64_t done, uint64_t total) {
  progress_log *p = (progress_log *)user;
  if (p == NULL || p->self != p) return false;
  p->calls++;
  if (done != p->last_done + 1 || done > total) p->ordered = 0;
  p->last_done = done;
  p->last_total = total;
  return p->cancel_at == 0 || p->calls < p->cancel_at;
}

static void test_solve_and_cancel(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_INPAINT, W, H, 1);
  lofi_pnp_params params = quick_params();
  lofi_pnp *pnp = NULL;
  lofi_pnp_residuals r;
  progress_log log;
  float *x = lt_make_pixels(W, H, 1, 50), y[W * H];
  REQUIRE(x != NULL);
  op.observed_fraction = 0.4;
  op.seed = 3;
  REQUIRE_OK(lofi_operator_forward(&op, x, y, sizeof y / sizeof y[0]));
  memset(&log, 0, sizeof log);
  log.self = &log;
  log.ordered = 1;
  params.run.progress = on_progress;
  params.run.progress_user_data = &log;
  REQUIRE_OK(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp));

  /* A plain solve: progress after every iteration, (done, total) in iterations. */
  memset(&r, 0, sizeof r);
  CHECK_OK(lofi_pnp_solve(pnp, 3, &r));
  CHECK_MSG(r.iteration == 3 && residuals_finite(&r), "solve(3): iteration %u", r.iteration);
  CHECK_MSG(log.calls == 3 && log.ordered && log.last_done == 3 && log.last_total == 3,
            "progress: %u call(s), last %llu / %llu", log.calls, (unsigned long long)log.last_done,
            (unsigned long long)log.last_total);
  /* step does not call it (one iteration, nothing to report) */
  CHECK_OK(lofi_pnp_step(pnp, &r));
  CHECK(r.iteration == 4 && log.calls == 3);

  /* Cancelling after the first iteration: CANCELLED, that iteration is kept. */
  memset(&log, 0, sizeof log);
  log.self = &log;
  log.ordered = 1;
  log.cancel_at = 1;
  EXPECT_FAIL(lofi_pnp_solve(pnp, 10, &r), LOFI_STATUS_CANCELLED, NULL);
  CHECK_MSG(log.calls == 1 && log.last_done == 1 && log.last_total == 10,
            "cancelled solve: %u progress call(s), last %llu / %llu", log.calls,
            (unsigned long long)log.last_done, (unsigned long long)log.last_total);
  CHECK_OK(lofi_pnp_step(pnp, &r));
  CHECK_MSG(r.iteration == 6, "after a solve cancelled at its first iteration: iteration %u, expected 6",
            r.iteration);

  EXPECT_FAIL(lofi_pnp_solve(pnp, 0, &r), LOFI_STATUS_INVALID_ARGUMENT, "iterations is 0");

  /* The estimate through a row stride: rows land in place, the padding is not written. */
  {
    const size_t stride = W + 5;
    float packed[W * H], strided[(W + 5) * H];
    size_t i, row;
    int same = 1, untouched = 1;
    for (i = 0; i < stride * H; i++) strided[i] = -7.0f;
    CHECK_OK(lofi_pnp_estimate(pnp, packed, 0));
    CHECK_OK(lofi_pnp_estimate(pnp, strided, stride * sizeof(float)));
    for (row = 0; row < H; row++) {
      same &= memcmp(strided + row * stride, packed + row * W, W * sizeof(float)) == 0;
      for (i = W; i < stride; i++) untouched &= strided[row * stride + i] == -7.0f;
    }
    CHECK_MSG(same, "strided estimate differs from the packed one");
    CHECK_MSG(untouched, "the estimate wrote into the row padding");
    CHECK_OK(lofi_pnp_estimate(pnp, packed, W * sizeof(float))); /* the packed stride, explicitly */
    EXPECT_FAIL(lofi_pnp_estimate(pnp, packed, W * sizeof(float) + 2), LOFI_STATUS_INVALID_ARGUMENT,
                "row stride 66 bytes is invalid");
    EXPECT_FAIL(lofi_pnp_estimate(pnp, packed, (W - 1) * sizeof(float)), LOFI_STATUS_INVALID_ARGUMENT,
                "row stride 60 bytes is invalid");
    EXPECT_FAIL(lofi_pnp_estimate(pnp, packed, 1), LOFI_STATUS_INVALID_ARGUMENT, "row stride");
  }
  lofi_pnp_free(pnp);
  free(x);
}

/* Two states may share one model; each keeps its own iterations. */
static void test_two_states_one_model(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_DENOISE, W, H, 1);
  lofi_pnp_params params = quick_params();
  lofi_pnp *a = NULL, *b = NULL;
  lofi_pnp_residuals ra, rb;
  float *y = lt_make_pixels(W, H, 1, 60), ea[W * H], eb[W * H];
  REQUIRE(y != NULL);
  CHECK_OK(lofi_pnp_create(gray, &op, y, W * H, &params, &a));
  CHECK_OK(lofi_pnp_create(gray, &op, y, W * H, &params, &b));
  if (a && b) {
    CHECK_OK(lofi_pnp_step(a, &ra));
    CHECK_OK(lofi_pnp_step(a, &ra));
    CHECK_OK(lofi_pnp_step(b, &rb));
    CHECK(ra.iteration == 2 && rb.iteration == 1);
    CHECK_OK(lofi_pnp_step(b, &rb));
    CHECK_OK(lofi_pnp_estimate(a, ea, 0));
    CHECK_OK(lofi_pnp_estimate(b, eb, 0));
    /* the same problem, the same settings, the same steps: the same estimate */
    CHECK_MSG(memcmp(ea, eb, sizeof ea) == 0, "two identical solves differ (max |diff| %g)",
              lt_max_abs_diff(ea, eb, W * H));
  }
  lofi_pnp_free(a);
  lofi_pnp_free(b);
  free(y);
}

/* The state holds a reference to its model: freeing the model first is safe, and the state
 * goes on (step, solve, estimate, ground truth, warm start), then frees the model with itself.
 * Under ASan a use after free would stop the test. The model here is one of its own (the shared
 * fixtures stay loaded). */
static void test_model_freed_before_state(void) {
  lofi_model *own = lt_load("tiny-gray.lofi");
  lofi_operator op = op_of(LOFI_OPERATOR_INPAINT, W, H, 1);
  lofi_pnp_params params = quick_params();
  lofi_pnp *a = NULL, *b = NULL;
  lofi_pnp_residuals r;
  float *truth = lt_make_pixels(W, H, 1, 61), y[W * H], est[W * H];
  size_t i;
  REQUIRE(own != NULL && truth != NULL);
  op.observed_fraction = 0.5;
  op.seed = 3;
  CHECK_OK(lofi_operator_forward(&op, truth, y, W * H));
  REQUIRE_OK(lofi_pnp_create(own, &op, y, W * H, &params, &a));
  REQUIRE_OK(lofi_pnp_create(own, &op, y, W * H, &params, &b));
  lofi_model_free(own); /* the caller's reference: the two states keep the model */
  own = NULL;
  CHECK_OK(lofi_pnp_step(a, &r));
  CHECK(r.iteration == 1);
  CHECK_OK(lofi_pnp_set_ground_truth(a, truth));
  CHECK_OK(lofi_pnp_solve(a, 2, &r));
  CHECK(r.iteration == 3 && r.psnr == r.psnr);
  CHECK_OK(lofi_pnp_estimate(a, est, 0));
  CHECK(lt_all_finite(est, W * H));
  lofi_pnp_free(a); /* the model stays: b uses it */
  CHECK_OK(lofi_pnp_set_estimate(b, est));
  CHECK_OK(lofi_pnp_step(b, &r));
  CHECK_OK(lofi_pnp_estimate(b, est, 0));
  for (i = 0; i < W * H; i++)
    if (!(est[i] - est[i] == 0.0f)) break;
  CHECK(i == W * H);
  lofi_pnp_free(b); /* the last user: the model goes with it (LeakSanitizer checks) */
  free(truth);
}

/* Arguments that used to crash or hang: a budget of UINT64_MAX (a batch vector sized by the
 * budget) and a million threads, through plug-and-play. */
static void test_huge_budget_and_threads(void) {
  lofi_operator op = op_of(LOFI_OPERATOR_DENOISE, W, H, 1);
  lofi_pnp_params params = quick_params();
  lofi_pnp *pnp = NULL;
  lofi_pnp_residuals r;
  float *y = lt_make_pixels(W, H, 1, 62);
  REQUIRE(y != NULL);
  params.run.memory_budget_bytes = UINT64_MAX;
  REQUIRE_OK(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp));
  CHECK_OK(lofi_pnp_step(pnp, &r));
  CHECK(r.iteration == 1 && residuals_finite(&r));
  lofi_pnp_free(pnp);
  pnp = NULL;
  params.run.threads = 1000000;
  REQUIRE_OK(lofi_pnp_create(gray, &op, y, W * H, &params, &pnp));
  CHECK_OK(lofi_pnp_solve(pnp, 2, &r));
  CHECK(r.iteration == 2 && residuals_finite(&r));
  lofi_pnp_free(pnp);
  free(y);
}

static void test_defaults(void) {
  lofi_operator op = lofi_default_operator();
  lofi_pnp_params p = lofi_default_pnp_params();
  lofi_run_params run = lofi_default_run_params();
  CHECK(op.kind == LOFI_OPERATOR_DENOISE && op.width == 0 && op.height == 0 && op.channels == 0);
  CHECK(op.mask == NULL && op.mask_len == 0 && op.observed_fraction == 0.0 && op.seed == 0);
  CHECK(op.kernel == NULL && op.kernel_width == 0 && op.kernel_height == 0);
  CHECK(op.angles_deg == NULL && op.angle_count == 0);
  CHECK(op.forward == NULL && op.adjoint == NULL && op.user_data == NULL && op.measurement_len == 0);
  CHECK(p.alpha == 0.05 && p.cg_max_iterations == 100 && p.cg_tolerance == 1e-7);
  CHECK(p.run.memory_budget_bytes == run.memory_budget_bytes && p.run.threads == 0);
  CHECK(p.run.progress == NULL && p.run.progress_user_data == NULL);
}

/* Annealed LoFi-ADMM through the C API: the schedule's sigma falls geometrically and alpha rises as
 * (sigma_end / sigma_k)^2; a schedule or a fixed denoiser sigma is refused by a fixed-level model
 * (a noise-aware model without either runs the default schedule); the tolerance stops a solve early after
 * the schedule; a warm start is what the estimate holds before the first step; and a user
 * operator (callbacks) runs under a schedule too. */
static void test_annealing_and_warm_start(void) {
  lofi_model *aware = lt_load("tiny-gray-sigma.lofi");
  lofi_operator op = op_of(LOFI_OPERATOR_INPAINT, W, H, 1);
  lofi_pnp_params p = quick_params();
  lofi_pnp_residuals r, first;
  lofi_pnp *pnp = NULL;
  float *x = lt_make_pixels(W, H, 1, 5), y[W * H], start[W * H], got[W * H];
  box_op box;
  lofi_operator user;
  float ybox[W * H / 4];
  size_t i;
  double previous_sigma = 1.0, previous_alpha = 0.0;
  REQUIRE(aware && x);
  op.observed_fraction = 0.4;
  op.seed = 3;
  CHECK_OK(lofi_operator_forward(&op, x, y, W * H));
  /* A noise-aware model given neither a noise level nor a schedule runs the default schedule
   * (from the top of its training range, 0.2 for the fixture, down to half of it). */
  REQUIRE_OK(lofi_pnp_create(aware, &op, y, W * H, &p, &pnp));
  REQUIRE_OK(lofi_pnp_step(pnp, &first));
  CHECK(fabs(first.sigma - 0.2) < 1e-9);
  lofi_pnp_free(pnp);
  pnp = NULL;
  p.anneal_sigma_start = 40.0 / 255.0;
  p.anneal_sigma_end = 5.0 / 255.0;
  p.anneal_iterations = 4;
  p.alpha = 0.5;
  /* A fixed-level model refuses a schedule. */
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, &p, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "noise-level-aware");
  p.anneal_sigma_end = -1.0;
  EXPECT_FAIL(lofi_pnp_create(aware, &op, y, W * H, &p, &pnp), LOFI_STATUS_INVALID_ARGUMENT, "schedule");
  p.anneal_sigma_end = 5.0 / 255.0;
  REQUIRE_OK(lofi_pnp_create(aware, &op, y, W * H, &p, &pnp));
  for (i = 0; i < 4; i++) {
    REQUIRE_OK(lofi_pnp_step(pnp, &r));
    CHECK(residuals_finite(&r));
    CHECK_MSG(r.sigma < previous_sigma && r.alpha > previous_alpha, "step %zu: sigma %g alpha %g", i,
              r.sigma, r.alpha);
    previous_sigma = r.sigma;
    previous_alpha = r.alpha;
  }
  CHECK(fabs(r.sigma - 5.0 / 255.0) < 1e-9 && fabs(r.alpha - 0.5) < 1e-9);
  REQUIRE_OK(lofi_pnp_step(pnp, &r)); /* after the schedule: its last sigma */
  CHECK(fabs(r.sigma - 5.0 / 255.0) < 1e-9);
  lofi_pnp_free(pnp);

  /* Early stopping: a huge tolerance stops right after the schedule (2 iterations), not before. */
  p.anneal_iterations = 2;
  p.tolerance = 1e9;
  REQUIRE_OK(lofi_pnp_create(aware, &op, y, W * H, &p, &pnp));
  CHECK_OK(lofi_pnp_solve(pnp, 50, &r));
  CHECK_MSG(r.iteration == 2 && r.converged == 1, "stopped after %u iterations (converged %u)", r.iteration,
            r.converged);
  lofi_pnp_free(pnp);

  /* Fixed sigma through run.noise_level; a warm start is the estimate before any step. */
  p = quick_params();
  p.run.noise_level = 10.0 / 255.0;
  EXPECT_FAIL(lofi_pnp_create(gray, &op, y, W * H, &p, &pnp), LOFI_STATUS_INVALID_ARGUMENT,
              "fixed noise level");
  REQUIRE_OK(lofi_pnp_create(aware, &op, y, W * H, &p, &pnp));
  for (i = 0; i < W * H; i++) start[i] = 0.25f + 0.5f * (float)(i % 7) / 7.0f;
  CHECK_OK(lofi_pnp_set_estimate(pnp, start));
  CHECK_OK(lofi_pnp_estimate(pnp, got, 0));
  CHECK(memcmp(start, got, sizeof got) == 0);
  start[3] = (float)INFINITY;
  EXPECT_FAIL(lofi_pnp_set_estimate(pnp, start), LOFI_STATUS_INVALID_INPUT, "finite");
  EXPECT_FAIL(lofi_pnp_set_estimate(pnp, NULL), LOFI_STATUS_INVALID_ARGUMENT, "NULL");
  REQUIRE_OK(lofi_pnp_step(pnp, &first));
  CHECK(fabs(first.sigma - 10.0 / 255.0) < 1e-12 && first.alpha == p.alpha);
  lofi_pnp_free(pnp);

  /* A user operator under a schedule. */
  box_init(&box, W, H);
  user = box_operator(&box);
  REQUIRE_OK(lofi_operator_forward(&user, x, ybox, W * H / 4));
  p = quick_params();
  p.anneal_sigma_start = 30.0 / 255.0;
  p.anneal_sigma_end = 3.0 / 255.0;
  p.anneal_iterations = 3;
  REQUIRE_OK(lofi_pnp_create(aware, &user, ybox, W * H / 4, &p, &pnp));
  CHECK_OK(lofi_pnp_solve(pnp, 3, &r));
  CHECK(r.iteration == 3 && residuals_finite(&r) && fabs(r.sigma - 3.0 / 255.0) < 1e-9);
  lofi_pnp_free(pnp);
  free(x);
  lofi_model_free(aware);
}

int main(int argc, char **argv) {
  lt_init(argc, argv);
  gray = lt_load("tiny-gray.lofi");
  rgb = lt_load("tiny-rgb.lofi");
  cplx = lt_load("tiny-complex.lofi");
  if (!gray || !rgb || !cplx) return 1;
  RUN(test_defaults);
  RUN(test_user_operator_is_adjoint);
  RUN(test_user_operator_steps);
  RUN(test_user_operator_refused);
  RUN(test_denoise);
  RUN(test_inpaint);
  RUN(test_fourier_mask);
  RUN(test_nufft);
  RUN(test_blur);
  RUN(test_lensing);
  RUN(test_radon);
  RUN(test_refused_descriptions);
  RUN(test_refused_models_and_params);
  RUN(test_null_pointers);
  RUN(test_solve_and_cancel);
  RUN(test_two_states_one_model);
  RUN(test_model_freed_before_state);
  RUN(test_huge_budget_and_threads);
  RUN(test_annealing_and_warm_start);
  lofi_model_free(gray);
  lofi_model_free(rgb);
  lofi_model_free(cplx);
  return lt_done();
}
