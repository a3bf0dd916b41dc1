/*
 * A deliberate heap-buffer overflow, run with the same sanitizer options and the same libraries
 * (libtorch loaded and used) as the real tests: the `asan_catches_heap_overflow` test passes only
 * if AddressSanitizer reports it. It guards against options or link orders that would silently
 * disable the sanitizer in the suite.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lofi.h"

int main(int argc, char **argv) {
  lofi_model *m = NULL;
  volatile size_t index = 16;
  float *buf;
  if (argc > 1 && lofi_load(argv[1], NULL, &m) != LOFI_STATUS_OK) {
    fprintf(stderr, "asan_canary: %s\n", lofi_last_error());
    return 2;
  }
  buf = (float *)malloc(16 * sizeof(float));
  if (!buf) return 2;
  buf[index] = 1.0f; /* one past the end */
  printf("asan_canary: the overflow was NOT detected (%g)\n", (double)buf[index]);
  free(buf);
  lofi_model_free(m);
  return 0;
}
