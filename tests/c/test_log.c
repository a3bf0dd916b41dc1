/*
 * lofi_set_log_callback and lofi_version.
 *
 * The library logs at INFO when it loads a model ("...loaded a LoFi model...") and at DEBUG
 * around reconstructions. The test checks that the callback receives the load message at INFO,
 * that no message above the chosen level arrives, that installing, replacing and clearing the
 * callback work, and that no message arrives once it is cleared.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>

#include "lofi_test.h"

typedef struct {
  pthread_mutex_t lock; /* the callback may run on any thread */
  int count;
  int bad;
  int above_max;                      /* messages more verbose than max_level */
  lofi_log_level max_level;           /* what the sink was installed with */
  int per_level[LOFI_LOG_TRACE + 1];  /* counts by level */
  int loaded;                         /* INFO messages about loading a model */
  char first[256];
} log_sink;

static void sink_init(log_sink *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  s->max_level = LOFI_LOG_TRACE;
}

static void on_log(void *user, lofi_log_level level, const char *message) {
  log_sink *s = (log_sink *)user;
  pthread_mutex_lock(&s->lock);
  if (level < LOFI_LOG_ERROR || level > LOFI_LOG_TRACE || message == NULL || message[0] == '\0') {
    s->bad++;
  } else {
    if (s->count == 0) snprintf(s->first, sizeof s->first, "%s", message);
    s->per_level[level]++;
    if (level > s->max_level) s->above_max++;
    if (level == LOFI_LOG_INFO && strstr(message, "loaded a LoFi model") != NULL) s->loaded++;
  }
  s->count++;
  pthread_mutex_unlock(&s->lock);
}

/* Loads, reconstructs and fails once: whatever the library logs about it. */
static void exercise(void) {
  lofi_model *m = NULL, *missing = NULL;
  float *px = lt_make_pixels(16, 12, 1, 1), out[16 * 12];
  lofi_image img = lt_image(px, 16, 12, 1);
  if (lofi_load(lt_fixture("tiny-gray.lofi"), NULL, &m) == LOFI_STATUS_OK) {
    (void)lofi_reconstruct_region(m, &img, NULL, 16, 12, NULL, out, 0, NULL, NULL);
    img.channels = 3;
    (void)lofi_reconstruct_region(m, &img, NULL, 16, 12, NULL, out, 0, NULL, NULL);
  }
  (void)lofi_load(lt_fixture("no-such-model.lofi"), NULL, &missing);
  lofi_model_free(m);
  free(px);
}

static void test_log_callback(void) {
  log_sink sink, other;
  sink_init(&sink);
  sink_init(&other);

  EXPECT_FAIL(lofi_set_log_callback(on_log, &sink, 42), LOFI_STATUS_INVALID_ARGUMENT, "unknown log level");
  EXPECT_FAIL(lofi_set_log_callback(on_log, &sink, -1), LOFI_STATUS_INVALID_ARGUMENT, "unknown log level");

  CHECK_OK(lofi_set_log_callback(on_log, &sink, LOFI_LOG_TRACE));
  exercise();
  CHECK_MSG(sink.bad == 0, "%d malformed log message(s)", sink.bad);
  CHECK_MSG(sink.loaded == 1, "%d INFO message(s) about loading a model, expected 1 (first message: %s)",
            sink.loaded, sink.count ? sink.first : "none");
  printf("     %d log message(s) at trace level (error %d, warn %d, info %d, debug %d, trace %d); the "
         "first: %s\n",
         sink.count, sink.per_level[LOFI_LOG_ERROR], sink.per_level[LOFI_LOG_WARN],
         sink.per_level[LOFI_LOG_INFO], sink.per_level[LOFI_LOG_DEBUG], sink.per_level[LOFI_LOG_TRACE],
         sink.first);

  /* Replacing: messages go to the new sink only. */
  {
    int before = sink.count;
    other.max_level = LOFI_LOG_DEBUG;
    CHECK_OK(lofi_set_log_callback(on_log, &other, LOFI_LOG_DEBUG));
    exercise();
    CHECK(sink.count == before);
    CHECK_MSG(other.loaded == 1, "the replacing sink got %d load message(s)", other.loaded);
    CHECK_MSG(other.above_max == 0, "%d message(s) above DEBUG", other.above_max);
  }
  /* Levels filter: at INFO the load message still arrives, nothing more verbose does; at WARN a
   * successful load says nothing. */
  {
    log_sink info;
    sink_init(&info);
    info.max_level = LOFI_LOG_INFO;
    CHECK_OK(lofi_set_log_callback(on_log, &info, LOFI_LOG_INFO));
    exercise();
    CHECK_MSG(info.loaded == 1, "%d load message(s) at INFO", info.loaded);
    CHECK_MSG(info.above_max == 0, "%d DEBUG/TRACE message(s) with the level at INFO", info.above_max);
    CHECK_OK(lofi_set_log_callback(on_log, &info, LOFI_LOG_WARN));
    {
      int before = info.count;
      lofi_model *m = NULL;
      CHECK_OK(lofi_load(lt_fixture("tiny-gray.lofi"), NULL, &m));
      lofi_model_free(m);
      CHECK_MSG(info.count == before, "%d message(s) at WARN from a successful load", info.count - before);
    }
    CHECK_OK(lofi_set_log_callback(NULL, NULL, LOFI_LOG_OFF));
    pthread_mutex_destroy(&info.lock);
  }
  /* Level OFF with a callback, then clearing: nothing arrives any more. */
  CHECK_OK(lofi_set_log_callback(on_log, &sink, LOFI_LOG_OFF));
  {
    int before = sink.count, before_other = other.count;
    exercise();
    CHECK_MSG(sink.count == before, "messages at level OFF");
    CHECK_OK(lofi_set_log_callback(NULL, NULL, LOFI_LOG_TRACE));
    exercise();
    CHECK_MSG(sink.count == before && other.count == before_other, "messages after clearing");
  }
  /* Clearing twice is fine; re-installing works. */
  CHECK_OK(lofi_set_log_callback(NULL, NULL, LOFI_LOG_OFF));
  CHECK_OK(lofi_set_log_callback(on_log, &sink, LOFI_LOG_ERROR));
  CHECK_OK(lofi_set_log_callback(NULL, NULL, LOFI_LOG_OFF));
  pthread_mutex_destroy(&sink.lock);
  pthread_mutex_destroy(&other.lock);
}

static void test_version(void) {
  char expected[64];
  const char *v = lofi_version();
  snprintf(expected, sizeof expected, "%d.%d.%d", LOFI_VERSION_MAJOR, LOFI_VERSION_MINOR,
           LOFI_VERSION_PATCH);
  REQUIRE(v != NULL);
  CHECK_MSG(strcmp(v, expected) == 0, "lofi_version() = \"%s\", the header says %s", v, expected);
  CHECK(lofi_version() == v); /* static storage */
}

int main(int argc, char **argv) {
  lt_init(argc, argv);
  RUN(test_version);
  RUN(test_log_callback);
  return lt_done();
}
