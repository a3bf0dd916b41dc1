/*
 * Concurrency: several pthreads reconstructing with one shared model get exactly the
 * single-threaded results (each computation compared with the same computation done on one
 * thread beforehand: whole images with whole images, tiles with tiles); lofi_last_error() is per
 * thread; loading is thread-safe.
 *
 * Every reconstruction here runs with params.threads = 1: lofi guarantees bit-identical results
 * only then (with libtorch's default thread count, the BLAS may split rows differently from one
 * call to the next when threads compete, and the last bits can differ).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "lofi_test.h"

enum { W = 24, H = 20, THREADS = 4, ROUNDS = 2, TILE_ROWS = 4 };

static lofi_model *gray, *rgb;
static float *gray_px, *rgb_px;
static float *ref_gray;  /* W x H on-grid, gray */
static float *ref_rgb2x; /* (2W-1) x (2H-1), rgb, whole */
static float *ref_rgb2x_tiles; /* the same grid computed by tiles of TILE_ROWS rows */
static float ref_points[4];
static const double points_xy[8] = {0.0, 0.0, 3.5, 7.25, 23.0, 19.0, 11.0, 2.0};
static lofi_run_params one; /* threads = 1 */

typedef struct {
  int index;
  int failures; /* counted here, reported by the main thread */
  char what[256];
} worker;

static void worker_fail(worker *w, const char *what) {
  if (w->failures++ == 0) snprintf(w->what, sizeof w->what, "%s", what);
}

static void *run_worker(void *arg) {
  worker *w = (worker *)arg;
  const size_t GW = 2 * W - 1, GH = 2 * H - 1, ntiles = (GH + TILE_ROWS - 1) / TILE_ROWS;
  size_t k;
  float *g = (float *)malloc(W * H * sizeof(float));
  float *c = (float *)malloc(GW * GH * 3 * sizeof(float));
  float *cw = (float *)malloc(GW * GH * 3 * sizeof(float));
  float pts[4];
  lofi_image gi = lt_image(gray_px, W, H, 1), ci = lt_image(rgb_px, W, H, 3);
  lofi_model *own = NULL;
  char path[4096];
  int round;
  if (!g || !c || !cw) {
    worker_fail(w, "out of memory");
    goto done;
  }
  /* Odd threads also load (and use) a model of their own, concurrently with the others. */
  if (w->index % 2 == 1 &&
      lofi_load(lt_fixture_path(path, sizeof path, "tiny-gray.lofi"), NULL, &own) != LOFI_STATUS_OK)
    worker_fail(w, "concurrent lofi_load failed");
  for (round = 0; round < ROUNDS; round++) {
    const lofi_model *gm = own && round == 1 ? own : gray;
    if (lofi_reconstruct_region(gm, &gi, NULL, W, H, NULL, g, 0, &one, NULL) != LOFI_STATUS_OK ||
        lofi_last_error() != NULL)
      worker_fail(w, "gray reconstruction failed");
    else if (memcmp(g, ref_gray, W * H * sizeof(float)) != 0)
      worker_fail(w, "gray result differs from the single-threaded one");
    /* rgb at 2x, by tiles of TILE_ROWS rows, visited in a different order by each thread */
    for (k = 0; k < ntiles; k++) {
      lofi_window t;
      t.col0 = 0;
      t.cols = GW;
      t.row0 = TILE_ROWS * ((k + (size_t)w->index) % ntiles);
      t.rows = t.row0 + TILE_ROWS > GH ? GH - t.row0 : TILE_ROWS;
      if (lofi_reconstruct_region(rgb, &ci, NULL, GW, GH, &t, c + t.row0 * GW * 3, GW * 3 * sizeof(float),
                                  &one, NULL) != LOFI_STATUS_OK)
        worker_fail(w, "rgb tile failed");
    }
    if (memcmp(c, ref_rgb2x_tiles, GW * GH * 3 * sizeof(float)) != 0)
      worker_fail(w, "rgb 2x tiles differ from the same tiles computed single-threaded");
    if (lofi_reconstruct_region(rgb, &ci, NULL, GW, GH, NULL, cw, 0, &one, NULL) != LOFI_STATUS_OK)
      worker_fail(w, "rgb 2x failed");
    else if (memcmp(cw, ref_rgb2x, GW * GH * 3 * sizeof(float)) != 0)
      worker_fail(w, "rgb 2x differs from the single-threaded one");
    /* With libtorch's default thread count: the same values to float rounding. */
    if (lofi_reconstruct_region(gm, &gi, NULL, W, H, NULL, g, 0, NULL, NULL) != LOFI_STATUS_OK)
      worker_fail(w, "gray reconstruction with default threads failed");
    else if (!(lt_max_rel_diff(g, ref_gray, W * H) <= 1e-6))
      worker_fail(w, "gray result with default threads differs by more than 1e-6 relative");
    if (lofi_reconstruct_points(gray, &gi, points_xy, 4, pts, &one, NULL) != LOFI_STATUS_OK ||
        memcmp(pts, ref_points, sizeof pts) != 0)
      worker_fail(w, "points differ");
    /* A failure on this thread sets this thread's error only (checked by the others). */
    if (w->index == 0) {
      if (lofi_reconstruct_points(gray, &gi, NULL, 1, pts, NULL, NULL) != LOFI_STATUS_INVALID_ARGUMENT ||
          lofi_last_error() == NULL || strstr(lofi_last_error(), "points_xy is NULL") == NULL)
        worker_fail(w, "expected failure not reported on this thread");
    } else if (lofi_last_error() != NULL) {
      worker_fail(w, "another thread's error is visible here");
    }
  }
done:
  lofi_model_free(own);
  free(g);
  free(c);
  free(cw);
  return NULL;
}

static void test_shared_model(void) {
  pthread_t threads[THREADS];
  worker workers[THREADS];
  int i, started = 0;
  float *scratch = (float *)malloc(W * H * sizeof(float));
  REQUIRE(scratch != NULL);
  memset(workers, 0, sizeof workers);
  for (i = 0; i < THREADS; i++) {
    workers[i].index = i;
    if (pthread_create(&threads[i], NULL, run_worker, &workers[i]) != 0) break;
    started++;
  }
  CHECK_MSG(started == THREADS, "started %d of %d threads", started, THREADS);
  /* The main thread keeps working meanwhile, and its error state is its own. */
  CHECK(lofi_reconstruct_region(gray, NULL, NULL, W, H, NULL, scratch, 0, NULL, NULL) ==
        LOFI_STATUS_INVALID_ARGUMENT);
  for (i = 0; i < started; i++) pthread_join(threads[i], NULL);
  free(scratch);
  CHECK_MSG(lofi_last_error() != NULL && strstr(lofi_last_error(), "input is NULL") != NULL,
            "main thread's error changed by other threads: %s", lt_err());
  for (i = 0; i < started; i++)
    CHECK_MSG(workers[i].failures == 0, "thread %d: %d failure(s), first: %s", i, workers[i].failures,
              workers[i].what);
}

int main(int argc, char **argv) {
  const size_t GW = 2 * W - 1, GH = 2 * H - 1;
  lofi_image gi, ci;
  lt_init(argc, argv);
  one = lt_one_thread();
  gray = lt_load("tiny-gray.lofi");
  rgb = lt_load("tiny-rgb.lofi");
  gray_px = lt_make_pixels(W, H, 1, 21);
  rgb_px = lt_make_pixels(W, H, 3, 22);
  ref_gray = (float *)malloc(W * H * sizeof(float));
  ref_rgb2x = (float *)malloc(GW * GH * 3 * sizeof(float));
  ref_rgb2x_tiles = (float *)malloc(GW * GH * 3 * sizeof(float));
  if (!gray || !rgb || !gray_px || !rgb_px || !ref_gray || !ref_rgb2x || !ref_rgb2x_tiles) return 1;
  gi = lt_image(gray_px, W, H, 1);
  ci = lt_image(rgb_px, W, H, 3);
  /* Single-threaded references. */
  if (lofi_reconstruct_region(gray, &gi, NULL, W, H, NULL, ref_gray, 0, &one, NULL) != LOFI_STATUS_OK ||
      lofi_reconstruct_region(rgb, &ci, NULL, GW, GH, NULL, ref_rgb2x, 0, &one, NULL) != LOFI_STATUS_OK ||
      lofi_reconstruct_points(gray, &gi, points_xy, 4, ref_points, &one, NULL) != LOFI_STATUS_OK) {
    fprintf(stderr, "reference reconstruction failed: %s\n", lt_err());
    return 1;
  }
  {
    lofi_window t;
    t.col0 = 0;
    t.cols = GW;
    for (t.row0 = 0; t.row0 < GH; t.row0 += TILE_ROWS) {
      t.rows = t.row0 + TILE_ROWS > GH ? GH - t.row0 : TILE_ROWS;
      if (lofi_reconstruct_region(rgb, &ci, NULL, GW, GH, &t, ref_rgb2x_tiles + t.row0 * GW * 3,
                                  GW * 3 * sizeof(float), &one, NULL) != LOFI_STATUS_OK) {
        fprintf(stderr, "reference tiles failed: %s\n", lt_err());
        return 1;
      }
    }
  }
  RUN(test_shared_model);
  lofi_model_free(gray);
  lofi_model_free(rgb);
  free(gray_px);
  free(rgb_px);
  free(ref_gray);
  free(ref_rgb2x);
  free(ref_rgb2x_tiles);
  return lt_done();
}
