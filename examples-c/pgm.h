/*
 * pgm.h: binary PGM / PPM (P5 / P6, 8 or 16 bit) reading and writing for the C examples, as
 * float32 pixels in [0, 1], row-major with channels interleaved (H, W, C): the layout lofi.h uses.
 * Plain C99, no dependencies; any image tool writes these files (e.g. `convert in.png -depth 16
 * in.pgm`).
 *
 * Errors are printed to stderr, prefixed with the `program` name given to each call.
 */
#ifndef LOFI_EXAMPLES_PGM_H
#define LOFI_EXAMPLES_PGM_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
  float *data; /* (height, width, channels) floats, values in [0, 1]; free() it */
  size_t width, height, channels; /* channels: 1 (PGM) or 3 (PPM) */
  int maxval;  /* of the file: 255 for 8 bit, up to 65535 for 16 bit */
} pnm_image;

/* Reads a binary PGM (P5) or PPM (P6) from an open file; `path` names it in messages. On success
 * fills *img (img->data is malloc'd) and returns 1; on failure prints why and returns 0. */
int pnm_read_file(const char *program, const char *path, FILE *f, pnm_image *img);

/* Opens and reads `path` as pnm_read_file() does. */
int pnm_read(const char *program, const char *path, pnm_image *img);

/* Writes `width` x `height` pixels of `channels` (1: PGM, 3: PPM) floats, values clamped to
 * [0, 1], at `bits` 8 or 16. Returns 1 on success; on failure prints why and returns 0. */
int pnm_write(const char *program, const char *path, const float *pixels, size_t width, size_t height,
              size_t channels, int bits);

#endif /* LOFI_EXAMPLES_PGM_H */
