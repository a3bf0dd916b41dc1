/*
 * Writes the small input images the example tests use into DIR: gray8.pgm (with a header
 * comment), gray16.pgm, rgb8.ppm, gray.raw (float32) and complex.raw (float32, 2 channels),
 * all 24 x 20; gray32.pgm, 32 x 32 (for pnp_inpaint); and for mpi_reconstruct, mpi40x37.raw
 * (float32, 40 x 37: 37 rows split unevenly over 2 and 3 ranks), mpi40x2.raw (its first 2 rows:
 * 3 ranks leave one with no rows) and mpi40x200.raw (tall enough that a rank's band plus its halo
 * is well short of the whole image).
 */
#define _POSIX_C_SOURCE 200809L
#include <sys/stat.h>

#include "lofi_test.h"

enum { W = 24, H = 20 };

static int write_pnm(const char *dir, const char *name, const float *px, size_t w, size_t h, size_t channels,
                     unsigned maxval, const char *comment) {
  char path[4096];
  FILE *f;
  size_t i;
  int ok;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (!f) return 0;
  ok = fprintf(f, "P%c\n%s%zu %zu\n%u\n", channels == 1 ? '5' : '6', comment, w, h, maxval) > 0;
  for (i = 0; ok && i < w * h * channels; i++) {
    float v = px[i] < 0.0f ? 0.0f : px[i] > 1.0f ? 1.0f : px[i];
    unsigned q = (unsigned)(v * (float)maxval + 0.5f);
    if (maxval > 255) ok = fputc((int)(q >> 8), f) != EOF;
    ok = ok && fputc((int)(q & 0xff), f) != EOF;
  }
  return fclose(f) == 0 && ok;
}

static int write_raw(const char *dir, const char *name, const float *px, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return lt_write_file(path, px, n * sizeof(float));
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  float *g = lt_make_pixels(W, H, 1, 1), *c = lt_make_pixels(W, H, 3, 2), *z = lt_make_pixels(W, H, 2, 3);
  float *g32 = lt_make_pixels(32, 32, 1, 4), *m = lt_make_pixels(40, 37, 1, 5);
  float *tall = lt_make_pixels(40, 200, 1, 6);
  int ok;
  mkdir(dir, 0777);
  ok = g && c && z && g32 && m && tall && write_pnm(dir, "gray8.pgm", g, W, H, 1, 255, "# written by write_inputs\n") &&
       write_pnm(dir, "gray16.pgm", g, W, H, 1, 65535, "") && write_pnm(dir, "rgb8.ppm", c, W, H, 3, 255, "") &&
       write_raw(dir, "gray.raw", g, W * H) && write_raw(dir, "complex.raw", z, W * H * 2) &&
       write_pnm(dir, "gray32.pgm", g32, 32, 32, 1, 255, "") && write_raw(dir, "mpi40x37.raw", m, 40 * 37) &&
       write_raw(dir, "mpi40x2.raw", m, 40 * 2) && write_raw(dir, "mpi40x200.raw", tall, 40 * 200);
  free(m);
  free(tall);
  free(g);
  free(c);
  free(z);
  free(g32);
  if (!ok) {
    fprintf(stderr, "write_inputs: cannot write the inputs into %s\n", dir);
    return 1;
  }
  printf("write_inputs: wrote 9 inputs into %s\n", dir);
  return 0;
}
