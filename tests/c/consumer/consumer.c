/*
 * An out-of-tree program built against an installed liblofi (see run.sh): it includes only
 * <lofi.h>, links through pkg-config or find_package(lofi), reconstructs a small image and runs
 * one plug-and-play (denoising) iteration with the model as the prior.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lofi.h>

int main(int argc, char **argv) {
  enum { W = 16, H = 12 };
  float in[W * H], out[W * H], est[W * H];
  lofi_operator op = lofi_default_operator();
  lofi_pnp *pnp = NULL;
  lofi_pnp_residuals r;
  size_t n = 0;
  char version[32];
  lofi_model *model = NULL;
  lofi_image image;
  lofi_status s;
  int i;
  if (argc != 2) {
    fprintf(stderr, "usage: consumer MODEL (a one-channel model)\n");
    return 2;
  }
  memset(&r, 0, sizeof r);
  /* The documented start-up check: this library serves a program built against this header. */
  if (lofi_check_version(LOFI_VERSION_NUMBER) != LOFI_STATUS_OK) {
    fprintf(stderr, "consumer: %s\n", lofi_last_error());
    return 1;
  }
  snprintf(version, sizeof version, "%d.%d.%d", LOFI_VERSION_MAJOR, LOFI_VERSION_MINOR, LOFI_VERSION_PATCH);
  if (strcmp(version, lofi_version()) != 0) {
    fprintf(stderr, "consumer: header %s, library %s\n", version, lofi_version());
    return 1;
  }
  for (i = 0; i < W * H; i++) in[i] = (float)((i * 37) % 101) / 100.0f;
  s = lofi_load(argv[1], NULL, &model);
  if (s != LOFI_STATUS_OK) {
    fprintf(stderr, "consumer: %s: %s\n", lofi_status_name(s), lofi_last_error());
    return 1;
  }
  image.data = in;
  image.width = W;
  image.height = H;
  image.channels = 1;
  image.row_stride_bytes = 0;
  s = lofi_reconstruct_region(model, &image, NULL, W, H, NULL, out, 0, NULL, NULL);
  /* Plug-and-play: A = I at the image's size. */
  op.kind = LOFI_OPERATOR_DENOISE;
  op.width = W;
  op.height = H;
  op.channels = 1;
  if (s == LOFI_STATUS_OK) s = lofi_operator_measurement_len(&op, &n);
  if (s == LOFI_STATUS_OK && n != W * H) {
    fprintf(stderr, "consumer: %zu measurements for a %d x %d image\n", n, W, H);
    lofi_model_free(model);
    return 1;
  }
  if (s == LOFI_STATUS_OK) s = lofi_pnp_create(model, &op, in, n, NULL, &pnp);
  if (s == LOFI_STATUS_OK) s = lofi_pnp_step(pnp, &r);
  if (s == LOFI_STATUS_OK) s = lofi_pnp_estimate(pnp, est, 0);
  lofi_pnp_free(pnp);
  lofi_model_free(model);
  if (s != LOFI_STATUS_OK) {
    fprintf(stderr, "consumer: %s: %s\n", lofi_status_name(s), lofi_last_error());
    return 1;
  }
  for (i = 0; i < W * H; i++)
    if (!(out[i] - out[i] == 0.0f) || !(est[i] - est[i] == 0.0f)) {
      fprintf(stderr, "consumer: non-finite output\n");
      return 1;
    }
  printf("consumer: liblofi %s reconstructed %d x %d pixels; LoFi-ADMM iteration %u\n", lofi_version(), W, H,
         r.iteration);
  return 0;
}
