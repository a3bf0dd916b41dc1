/*
 * lofi_test.h: a tiny test harness for the C tests of liblofi (C99, no dependencies).
 *
 *   static void test_something(void) { CHECK(1 + 1 == 2); REQUIRE(ptr != NULL); ... }
 *   int main(int argc, char **argv) { lt_init(argc, argv); RUN(test_something); return lt_done(); }
 *
 * CHECK* record a failure and go on; REQUIRE* record it and return from the test function.
 * EXPECT_FAIL(call, status, substring) checks that a lofi call fails with that status and leaves a
 * useful message in lofi_last_error() (non-NULL, naming the function, containing substring).
 * The fixture directory comes from argv[1] (CMake passes it), else LOFI_FIXTURE_DIR; argv[2], if
 * given, selects tests by name: "tiles" runs those containing "tiles", "-tiles" all others.
 */
#ifndef LOFI_TEST_H
#define LOFI_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lofi.h"

#ifndef LOFI_FIXTURE_DIR
#define LOFI_FIXTURE_DIR "tests/fixtures/models"
#endif
#ifndef LOFI_TEST_TMP_DEFAULT
#define LOFI_TEST_TMP_DEFAULT "/tmp"
#endif

static int lt_failures;
static int lt_checks;
static const char *lt_current = "";
static const char *lt_fixture_dir = LOFI_FIXTURE_DIR;
static const char *lt_filter = ""; /* argv[2]: run the tests whose name contains it; "-x": all but */
static int lt_verbose;

static inline void lt_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  lt_failures++;
  fprintf(stderr, "%s:%d: [%s] FAILED: ", file, line, lt_current);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

#define CHECK_MSG(cond, ...)                                                                       \
  do {                                                                                             \
    lt_checks++;                                                                                   \
    if (!(cond)) lt_fail(__FILE__, __LINE__, __VA_ARGS__);                                         \
  } while (0)
#define CHECK(cond) CHECK_MSG(cond, "%s", #cond)
#define REQUIRE_MSG(cond, ...)                                                                     \
  do {                                                                                             \
    lt_checks++;                                                                                   \
    if (!(cond)) {                                                                                 \
      lt_fail(__FILE__, __LINE__, __VA_ARGS__);                                                    \
      return;                                                                                      \
    }                                                                                              \
  } while (0)
#define REQUIRE(cond) REQUIRE_MSG(cond, "%s", #cond)

static inline const char *lt_err(void) {
  const char *e = lofi_last_error();
  return e ? e : "(NULL)";
}

/* A call that must succeed; on success lofi_last_error() must be NULL. */
#define CHECK_OK(call)                                                                             \
  do {                                                                                             \
    lofi_status lt_s_ = (call);                                                                    \
    lt_checks++;                                                                                   \
    if (lt_s_ != LOFI_STATUS_OK)                                                                   \
      lt_fail(__FILE__, __LINE__, "%s returned %s: %s", #call, lofi_status_name(lt_s_), lt_err()); \
    else if (lofi_last_error() != NULL)                                                            \
      lt_fail(__FILE__, __LINE__, "%s succeeded but lofi_last_error() = \"%s\"", #call,           \
              lofi_last_error());                                                                  \
  } while (0)
#define REQUIRE_OK(call)                                                                           \
  do {                                                                                             \
    int lt_before_ = lt_failures;                                                                  \
    CHECK_OK(call);                                                                                \
    if (lt_failures != lt_before_) return;                                                         \
  } while (0)

/* Checks a failure: status, and a message naming `fn` (the prefix "fn: ") containing `needle`. */
static inline int lt_expect_fail(const char *file, int line, const char *expr, lofi_status got,
                          lofi_status want, const char *fn, const char *needle) {
  const char *msg = lofi_last_error();
  lt_checks++;
  if (got != want) {
    lt_fail(file, line, "%s returned %s, expected %s (message: %s)", expr, lofi_status_name(got),
            lofi_status_name(want), msg ? msg : "(NULL)");
    return 0;
  }
  if (msg == NULL || msg[0] == '\0') {
    lt_fail(file, line, "%s failed with %s but lofi_last_error() is %s", expr,
            lofi_status_name(got), msg ? "empty" : "NULL");
    return 0;
  }
  if (fn != NULL && (strncmp(msg, fn, strlen(fn)) != 0 || msg[strlen(fn)] != ':')) {
    lt_fail(file, line, "%s: message \"%s\" does not start with \"%s:\"", expr, msg, fn);
    return 0;
  }
  if (needle != NULL && strstr(msg, needle) == NULL) {
    lt_fail(file, line, "%s: message \"%s\" does not mention \"%s\"", expr, msg, needle);
    return 0;
  }
  if (lt_verbose) fprintf(stderr, "  %-28s %s\n", lofi_status_name(got), msg);
  return 1;
}
/* The function name is the text of `call` up to its '(' : "lofi_load(...)" -> "lofi_load". */
static inline const char *lt_fn_name(const char *call, char *buf, size_t size) {
  size_t n = strcspn(call, "( ");
  if (n >= size) n = size - 1;
  memcpy(buf, call, n);
  buf[n] = '\0';
  return buf;
}
#define EXPECT_FAIL(call, want, needle)                                                            \
  do {                                                                                             \
    char lt_fn_[64];                                                                               \
    lofi_status lt_s_ = (call);                                                                    \
    lt_expect_fail(__FILE__, __LINE__, #call, lt_s_, want, lt_fn_name(#call, lt_fn_, sizeof lt_fn_), \
                   needle);                                                                        \
  } while (0)

/* As EXPECT_FAIL, for calls made through a helper: the entry point's name is given. */
#define EXPECT_FAIL_FN(call, fn, want, needle)                                                     \
  do {                                                                                             \
    lofi_status lt_s_ = (call);                                                                    \
    lt_expect_fail(__FILE__, __LINE__, #call, lt_s_, want, fn, needle);                            \
  } while (0)

static inline double lt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int lt_selected(const char *name) {
  if (lt_filter[0] == '-') return strstr(name, lt_filter + 1) == NULL;
  return strstr(name, lt_filter) != NULL;
}

#define RUN(test)                                                                                  \
  do {                                                                                             \
    int lt_before_ = lt_failures;                                                                  \
    if (!lt_selected(#test)) break;                                                                \
    double lt_t0_ = lt_now();                                                                      \
    lt_current = #test;                                                                            \
    test();                                                                                        \
    printf("%s %-36s %6.2f s\n", lt_failures == lt_before_ ? "ok  " : "FAIL", #test,               \
           lt_now() - lt_t0_);                                                                     \
    fflush(stdout);                                                                                \
  } while (0)

static inline void lt_init(int argc, char **argv) {
  if (argc > 1 && argv[1][0] != '\0') lt_fixture_dir = argv[1];
  if (argc > 2) lt_filter = argv[2];
  lt_verbose = getenv("LOFI_TEST_VERBOSE") != NULL;
}

static inline int lt_done(void) {
  printf("%d checks, %d failure(s)\n", lt_checks, lt_failures);
  return lt_failures == 0 ? 0 : 1;
}

/* ---- helpers ------------------------------------------------------------------------------- */

/* "<fixture dir>/<name>" in a static buffer (one at a time). */
/* The path of fixture `name` in `buf` (thread-safe). */
static inline const char *lt_fixture_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", lt_fixture_dir, name);
  return buf;
}

/* The path of fixture `name` in one static buffer, valid until the next call: not for threads
 * (two threads writing it at once hand lofi_load a torn path), which use lt_fixture_path(). */
static inline const char *lt_fixture(const char *name) {
  static char path[4096];
  return lt_fixture_path(path, sizeof path, name);
}

static inline const char *lt_tmp_dir(void) {
  const char *d = getenv("LOFI_TEST_TMP");
  return d && d[0] ? d : LOFI_TEST_TMP_DEFAULT;
}

/* Reads a whole file (malloc'd, caller frees); NULL on error. */
static inline unsigned char *lt_read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  unsigned char *buf;
  long n;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return NULL;
  }
  buf = (unsigned char *)malloc(n > 0 ? (size_t)n : 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return buf;
}

static inline int lt_write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  int ok;
  if (!f) return 0;
  ok = fwrite(data, 1, size, f) == size;
  return fclose(f) == 0 && ok;
}

/* A deterministic test image: smooth structure plus pseudo-random noise, values in about [0, 1].
 * Packed (H, W, C); malloc'd, caller frees. */
static inline float *lt_make_pixels(size_t width, size_t height, size_t channels, unsigned seed) {
  float *p = (float *)malloc(width * height * channels * sizeof(float));
  uint32_t state = 2463534242u ^ seed;
  size_t x, y, c;
  if (!p) return NULL;
  for (y = 0; y < height; y++)
    for (x = 0; x < width; x++)
      for (c = 0; c < channels; c++) {
        float smooth = 0.5f + 0.3f * (float)sin(0.4 * (double)x + 0.7 * (double)c) *
                                  (float)cos(0.3 * (double)y);
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        p[(y * width + x) * channels + c] = smooth + 0.1f * ((float)(state % 1000) / 1000.0f - 0.5f);
      }
  return p;
}

static inline lofi_image lt_image(const float *data, size_t width, size_t height, size_t channels) {
  lofi_image img;
  img.data = data;
  img.width = width;
  img.height = height;
  img.channels = channels;
  img.row_stride_bytes = 0;
  return img;
}

static inline lofi_model *lt_load(const char *name) {
  lofi_model *m = NULL;
  lofi_status s = lofi_load(lt_fixture(name), NULL, &m);
  if (s != LOFI_STATUS_OK) {
    fprintf(stderr, "cannot load %s: %s: %s\n", lt_fixture(name), lofi_status_name(s), lt_err());
    return NULL;
  }
  return m;
}

/* Largest |a - b| over n values (NaN if either holds a NaN). */
static inline double lt_max_abs_diff(const float *a, const float *b, size_t n) {
  double worst = 0.0;
  size_t i;
  for (i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d != d) return d;
    if (d > worst) worst = d;
  }
  return worst;
}

/* Largest |a - b| relative to the largest |b| (normwise: meaningful even where b is near zero);
 * NaN if either holds a NaN. For results computed with different thread counts, which agree to
 * about 1e-7 relative, not bit for bit. */
static inline double lt_max_rel_diff(const float *a, const float *b, size_t n) {
  double scale = 0.0, d = lt_max_abs_diff(a, b, n);
  size_t i;
  for (i = 0; i < n; i++)
    if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
  return d / (scale > 1e-30 ? scale : 1e-30);
}

/* Run parameters with a single CPU thread: the setting under which tiles, batches and threads
 * are guaranteed to give bit-identical results (with more threads the BLAS may split rows
 * differently, and the last bits can differ). */
static inline lofi_run_params lt_one_thread(void) {
  lofi_run_params p = lofi_default_run_params();
  p.threads = 1;
  return p;
}

static inline int lt_all_finite(const float *a, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (!(a[i] - a[i] == 0.0f)) return 0;
  return 1;
}

#endif /* LOFI_TEST_H */
