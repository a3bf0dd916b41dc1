/*
 * pnp_inpaint.c: plug-and-play inpainting (LoFi-ADMM) with liblofi from plain C99.
 *
 *   pnp_inpaint MODEL INPUT OUTPUT [OBSERVED_FRACTION [ITERATIONS]] [options]
 *
 * Loads a LoFi denoiser (as many output as input channels), reads a clean binary PGM (or PPM for
 * a three-channel model), hides all but OBSERVED_FRACTION of its pixels (default 0.3, a random
 * mask), and recovers them with ITERATIONS (default 50) LoFi-ADMM iterations, the denoiser acting
 * as the prior. Residuals and the PSNR against the clean image are printed every 10 iterations;
 * the estimate is written to OUTPUT (PGM/PPM, the input's bit depth).
 *
 * The program shows the plug-and-play C API in order:
 *   1. describe the operator A of y = A x (lofi_operator, kind LOFI_OPERATOR_INPAINT, a mask);
 *   2. simulate the measurements y = A x (lofi_operator_measurement_len, lofi_operator_forward);
 *   3. start a solve (lofi_pnp_create), give the ground truth for PSNR (lofi_pnp_set_ground_truth);
 *   4. iterate (lofi_pnp_step), read the estimate (lofi_pnp_estimate), release (lofi_pnp_free).
 * Every call's status is checked; failures print lofi_last_error().
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lofi.h"
#include "pgm.h"

static void usage(void) {
  fprintf(stderr,
          "usage: pnp_inpaint MODEL INPUT OUTPUT [OBSERVED_FRACTION [ITERATIONS]] [options]\n"
          "  MODEL              a .lofi denoiser (as many output as input channels)\n"
          "  INPUT              the clean image: binary PGM (P5) or, for a 3-channel model, PPM (P6)\n"
          "  OUTPUT             the estimate, written as PGM/PPM\n"
          "  OBSERVED_FRACTION  share of pixels kept, in (0, 1] (default 0.3)\n"
          "  ITERATIONS         LoFi-ADMM iterations (default 50)\n"
          "options:\n"
          "  --alpha A          ADMM penalty (default: lofi's, 0.05)\n"
          "  --seed N           seed of the random mask (default 1)\n"
          "  --threads N        CPU threads (default: libtorch's)\n"
          "  --observed PATH    also write the observed image (unobserved pixels black)\n");
}

/* Prints a failed call's status and lofi's message. */
static void fail(const char *call, lofi_status status) {
  const char *message = lofi_last_error();
  fprintf(stderr, "pnp_inpaint: %s failed with %s: %s\n", call, lofi_status_name(status),
          message ? message : "(no message)");
}

/* A small deterministic generator (xorshift64*), uniform in [0, 1): the same mask everywhere. */
static double uniform(uint64_t *state) {
  *state ^= *state >> 12;
  *state ^= *state << 25;
  *state ^= *state >> 27;
  return (double)((*state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* PSNR as lofi reports it (scikit-image's: the data range is max - min of the truth). */
static double psnr(const float *truth, const float *estimate, size_t n) {
  double lo = truth[0], hi = truth[0], mse = 0.0;
  size_t i;
  for (i = 0; i < n; i++) {
    double d = (double)truth[i] - (double)estimate[i];
    if (truth[i] < lo) lo = truth[i];
    if (truth[i] > hi) hi = truth[i];
    mse += d * d;
  }
  return 10.0 * log10((hi - lo) * (hi - lo) / (mse / (double)n));
}

int main(int argc, char **argv) {
  const char *model_path, *input_path, *output_path, *observed_path = NULL;
  double fraction = 0.3, alpha = 0.0;
  unsigned long iterations = 50, seed = 1, k;
  int threads = 0, status_code = 1, positional = 0, i;
  pnm_image img;
  lofi_model *model = NULL;
  lofi_operator op = lofi_default_operator();
  lofi_pnp_params params = lofi_default_pnp_params();
  lofi_pnp *pnp = NULL;
  lofi_pnp_residuals r;
  lofi_status s;
  float *mask = NULL, *y = NULL, *estimate = NULL;
  size_t n_pixels, n_values, n_measurements = 0, observed = 0, p;
  uint64_t state;

  setvbuf(stdout, NULL, _IOLBF, BUFSIZ);
  memset(&img, 0, sizeof img);
  if (argc < 4) {
    usage();
    return 2;
  }
  model_path = argv[1];
  input_path = argv[2];
  output_path = argv[3];
  for (i = 4; i < argc; i++) {
    const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = 1;
    if (strncmp(arg, "--", 2) != 0) { /* the optional positionals */
      if (positional == 0)
        ok = sscanf(arg, "%lf", &fraction) == 1 && fraction > 0.0 && fraction <= 1.0;
      else if (positional == 1)
        ok = sscanf(arg, "%lu", &iterations) == 1 && iterations > 0 && iterations < 1000000;
      else
        ok = 0;
      positional++;
      if (!ok) {
        fprintf(stderr, "pnp_inpaint: bad argument '%s'\n", arg);
        usage();
        return 2;
      }
      continue;
    }
    if (!val) {
      fprintf(stderr, "pnp_inpaint: %s needs a value\n", arg);
      return 2;
    }
    i++;
    if (strcmp(arg, "--alpha") == 0)
      ok = sscanf(val, "%lf", &alpha) == 1 && alpha > 0.0;
    else if (strcmp(arg, "--seed") == 0)
      ok = sscanf(val, "%lu", &seed) == 1;
    else if (strcmp(arg, "--threads") == 0)
      ok = sscanf(val, "%d", &threads) == 1 && threads >= 0;
    else if (strcmp(arg, "--observed") == 0)
      observed_path = val;
    else {
      fprintf(stderr, "pnp_inpaint: unknown option %s\n", arg);
      usage();
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "pnp_inpaint: bad value '%s' for %s\n", val, arg);
      return 2;
    }
  }

  /* The model (lofi_pnp_create checks that it is a denoiser for the image's channels). */
  s = lofi_load(model_path, NULL, &model);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_load", s);
    return 1;
  }
  if (!pnm_read("pnp_inpaint", input_path, &img)) goto done;
  n_pixels = img.width * img.height;
  n_values = n_pixels * img.channels;
  printf("input: %s, %zu x %zu, %zu channel(s)\n", input_path, img.width, img.height, img.channels);

  /* 1. The operator: A = diag(mask), one mask value per pixel (shared by the channels), nonzero
   *    where the pixel is observed. lofi copies the mask during lofi_pnp_create. */
  mask = (float *)malloc(n_pixels * sizeof(float));
  estimate = (float *)malloc(n_values * sizeof(float));
  if (!mask || !estimate) {
    fprintf(stderr, "pnp_inpaint: out of memory\n");
    goto done;
  }
  state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)seed;
  for (p = 0; p < n_pixels; p++) {
    mask[p] = uniform(&state) < fraction ? 1.0f : 0.0f;
    observed += mask[p] != 0.0f;
  }
  op.kind = LOFI_OPERATOR_INPAINT;
  op.width = img.width; /* the working resolution: the image's own */
  op.height = img.height;
  op.channels = img.channels;
  op.mask = mask;
  op.mask_len = n_pixels;
  printf("mask: observed %zu of %zu pixels (%.1f%%, fraction %g, seed %lu)\n", observed, n_pixels,
         100.0 * (double)observed / (double)n_pixels, fraction, seed);

  /* 2. The measurements y = A x of the clean image (the image with unobserved pixels zeroed). */
  s = lofi_operator_measurement_len(&op, &n_measurements);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_operator_measurement_len", s);
    goto done;
  }
  y = (float *)malloc(n_measurements * sizeof(float));
  if (!y) {
    fprintf(stderr, "pnp_inpaint: out of memory\n");
    goto done;
  }
  s = lofi_operator_forward(&op, img.data, y, n_measurements);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_operator_forward", s);
    goto done;
  }
  printf("measurements: %zu values; PSNR of the observed image %.2f dB\n", n_measurements,
         psnr(img.data, y, n_values));
  if (observed_path && !pnm_write("pnp_inpaint", observed_path, y, img.width, img.height, img.channels,
                                  img.maxval > 255 ? 16 : 8))
    goto done;

  /* 3. The solve: LoFi as the prior, the clean image as ground truth (for PSNR only). */
  if (alpha > 0.0) params.alpha = alpha;
  params.run.threads = threads;
  s = lofi_pnp_create(model, &op, y, n_measurements, &params, &pnp);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_pnp_create", s);
    goto done;
  }
  s = lofi_pnp_set_ground_truth(pnp, img.data);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_pnp_set_ground_truth", s);
    goto done;
  }
  printf("LoFi-ADMM: alpha %g, %lu iteration(s)\n", params.alpha, iterations);

  /* 4. Iterate; print the figures every 10 iterations and at the last. */
  for (k = 1; k <= iterations; k++) {
    s = lofi_pnp_step(pnp, &r);
    if (s != LOFI_STATUS_OK) {
      fail("lofi_pnp_step", s);
      goto done;
    }
    if (k % 10 == 0 || k == 1 || k == iterations)
      printf("iteration %4u  primal %.3e  dual %.3e  misfit %.3e  psnr %.2f dB\n", r.iteration, r.primal,
             r.dual, r.data_misfit, r.psnr);
  }
  s = lofi_pnp_estimate(pnp, estimate, 0);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_pnp_estimate", s);
    goto done;
  }
  if (!pnm_write("pnp_inpaint", output_path, estimate, img.width, img.height, img.channels,
                 img.maxval > 255 ? 16 : 8))
    goto done;
  printf("wrote %s (%zu x %zu, %zu channel(s)); PSNR %.2f dB\n", output_path, img.width, img.height,
         img.channels, psnr(img.data, estimate, n_values));
  status_code = 0;

done:
  lofi_pnp_free(pnp); /* before the model it borrows */
  lofi_model_free(model);
  free(img.data);
  free(mask);
  free(y);
  free(estimate);
  return status_code;
}
