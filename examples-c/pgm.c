/* pgm.c: binary PGM / PPM input and output for the C examples (see pgm.h). */
#include "pgm.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>

/* Reads the next header number, skipping whitespace and # comments. */
static int pnm_number(FILE *f, unsigned long *value) {
  int c = fgetc(f);
  for (;;) {
    while (c != EOF && isspace(c)) c = fgetc(f);
    if (c != '#') break;
    while (c != EOF && c != '\n') c = fgetc(f);
  }
  if (c == EOF || !isdigit(c)) return 0;
  *value = 0;
  while (c != EOF && isdigit(c)) {
    if (*value > 100000000UL) return 0;
    *value = *value * 10 + (unsigned long)(c - '0');
    c = fgetc(f);
  }
  /* exactly one whitespace character ends the header's last number */
  return c != EOF && isspace(c);
}

int pnm_read_file(const char *program, const char *path, FILE *f, pnm_image *img) {
  char magic[2];
  unsigned long w, h, maxval;
  size_t n, i, bytes;
  unsigned char *raw;
  img->data = NULL;
  if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6')) {
    fprintf(stderr, "%s: %s is not a binary PGM/PPM (P5/P6)\n", program, path);
    return 0;
  }
  if (!pnm_number(f, &w) || !pnm_number(f, &h) || !pnm_number(f, &maxval) || w == 0 || h == 0 ||
      maxval == 0 || maxval > 65535) {
    fprintf(stderr, "%s: %s: malformed PGM/PPM header\n", program, path);
    return 0;
  }
  if (w > 1UL << 20 || h > 1UL << 20) {
    fprintf(stderr, "%s: %s: %lu x %lu pixels is too large\n", program, path, w, h);
    return 0;
  }
  img->width = w;
  img->height = h;
  img->channels = magic[1] == '5' ? 1 : 3;
  img->maxval = (int)maxval;
  n = img->width * img->height * img->channels;
  bytes = maxval > 255 ? 2 : 1;
  raw = (unsigned char *)malloc(n * bytes);
  img->data = (float *)malloc(n * sizeof(float));
  if (!raw || !img->data) {
    fprintf(stderr, "%s: out of memory for %s\n", program, path);
    free(raw);
    free(img->data);
    img->data = NULL;
    return 0;
  }
  if (fread(raw, bytes, n, f) != n) {
    fprintf(stderr, "%s: %s: truncated pixel data\n", program, path);
    free(raw);
    free(img->data);
    img->data = NULL;
    return 0;
  }
  for (i = 0; i < n; i++) {
    unsigned v = bytes == 2 ? (unsigned)raw[2 * i] << 8 | raw[2 * i + 1] : raw[i]; /* big-endian */
    img->data[i] = (float)v / (float)maxval;
  }
  free(raw);
  return 1;
}

int pnm_read(const char *program, const char *path, pnm_image *img) {
  FILE *f = fopen(path, "rb");
  int ok;
  img->data = NULL;
  if (!f) {
    fprintf(stderr, "%s: cannot open %s\n", program, path);
    return 0;
  }
  ok = pnm_read_file(program, path, f, img);
  fclose(f);
  return ok;
}

int pnm_write(const char *program, const char *path, const float *pixels, size_t width, size_t height,
              size_t channels, int bits) {
  const unsigned maxval = bits == 16 ? 65535u : 255u;
  const size_t n = width * height * channels;
  size_t i;
  FILE *f;
  int ok;
  if (channels != 1 && channels != 3) {
    fprintf(stderr, "%s: %zu channels fit no PGM/PPM (1 or 3)\n", program, channels);
    return 0;
  }
  f = fopen(path, "wb");
  ok = f != NULL && fprintf(f, "P%c\n%zu %zu\n%u\n", channels == 1 ? '5' : '6', width, height, maxval) > 0;
  for (i = 0; ok && i < n; i++) {
    float v = pixels[i] >= 0.0f ? (pixels[i] <= 1.0f ? pixels[i] : 1.0f) : 0.0f; /* NaN -> 0 */
    unsigned q = (unsigned)lrintf(v * (float)maxval);
    if (bits == 16)
      ok = fputc((int)(q >> 8), f) != EOF && fputc((int)(q & 0xff), f) != EOF;
    else
      ok = fputc((int)q, f) != EOF;
  }
  if (f && fclose(f) != 0) ok = 0;
  if (!ok) fprintf(stderr, "%s: cannot write %s\n", program, path);
  return ok;
}
