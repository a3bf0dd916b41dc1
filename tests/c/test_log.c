/*
 * lofi_set_log_callback and lofi_version.
 *
 * The library logs at INFO when it loads a model ("...loaded a LoFi model..."), at WARN when the
 * model file has no digest (written before digests), and at DEBUG around reconstructions. The
 * test checks that the callback receives the load message at INFO, that no message above the
 * chosen level arrives, that installing, replacing and clearing the callback work, and that no
 * message arrives once it is cleared; and that the callback may replace or clear itself and call
 * lofi from inside (no deadlock: a watchdog alarm turns a hang into a failure), also while other
 * threads log and replace it.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <unistd.h>

#include "lofi_test.h"

typedef struct {
  pthread_mutex_t lock; /* the callback may run on any thread */
  int count;
  int bad;
  int above_max;                      /* messages more verbose than max_level */
  lofi_log_level max_level;           /* what the sink was installed with */
  int per_level[LOFI_LOG_TRACE + 1];  /* counts by level */
  int loaded;                         /* INFO messages about loading a model */
  int no_digest;                      /* WARN messages about a model file without a digest */
  char first[256];
  char last[256];
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
    if (level == LOFI_LOG_WARN && strstr(message, "no SHA-256 digest") != NULL) s->no_digest++;
    snprintf(s->last, sizeof s->last, "%s", message);
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
      int before = info.count, before_digest = info.no_digest, before_warn = info.per_level[LOFI_LOG_WARN];
      lofi_model *m = NULL;
      CHECK_OK(lofi_load(lt_fixture("tiny-gray.lofi"), NULL, &m));
      lofi_model_free(m);
      CHECK_MSG(info.count == before, "%d message(s) at WARN from a successful load: %s", info.count - before,
                info.last);
      /* A file without a digest (written by an older lofi) loads, with one warning. */
      m = NULL;
      CHECK_OK(lofi_load(lt_fixture("tiny-gray-nodigest.lofi"), NULL, &m));
      lofi_model_free(m);
      CHECK_MSG(info.count == before + 1 && info.no_digest == before_digest + 1 &&
                    info.per_level[LOFI_LOG_WARN] == before_warn + 1,
                "%d message(s), %d about the digest, from loading a file without a digest (last: %s)",
                info.count - before, info.no_digest - before_digest, info.last);
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

/* ---- the callback changing the callback ---------------------------------------------------------- */

typedef struct {
  log_sink sink;
  log_sink *replacement; /* installed from inside the callback, at its first message (NULL: clear) */
  int replaced;
  int reload;           /* call lofi_load from inside the callback (its messages are dropped) */
  int nested_status;
} swapping_sink;

static void on_log_swapping(void *user, lofi_log_level level, const char *message) {
  swapping_sink *s = (swapping_sink *)user;
  on_log(&s->sink, level, message);
  if (!s->replaced) {
    s->replaced = 1;
    if (s->reload) {
      lofi_model *m = NULL;
      s->nested_status = lofi_load(lt_fixture("tiny-gray.lofi"), NULL, &m);
      lofi_model_free(m);
    }
    if (s->replacement)
      (void)lofi_set_log_callback(on_log, s->replacement, LOFI_LOG_TRACE);
    else
      (void)lofi_set_log_callback(NULL, NULL, LOFI_LOG_OFF);
  }
}

static void load_once(void) {
  char path[4096];
  lofi_model *m = NULL;
  /* WARN (no digest), then INFO. Called from several threads at once: a path of its own. */
  (void)lofi_load(lt_fixture_path(path, sizeof path, "tiny-gray-nodigest.lofi"), NULL, &m);
  lofi_model_free(m);
}

static void test_callback_replaces_itself(void) {
  swapping_sink first;
  log_sink second;
  memset(&first, 0, sizeof first);
  sink_init(&first.sink);
  sink_init(&second);
  first.replacement = &second;
  alarm(60); /* a deadlock fails the test instead of hanging it */
  CHECK_OK(lofi_set_log_callback(on_log_swapping, &first, LOFI_LOG_TRACE));
  load_once();
  /* The first message went to `first`, which replaced itself; the change took effect when it
   * returned: the load's later messages went to `second`. */
  CHECK_MSG(first.sink.count == 1, "%d message(s) to the replaced callback", first.sink.count);
  CHECK_MSG(second.loaded == 1, "the replacement got %d load message(s)", second.loaded);
  load_once();
  CHECK(first.sink.count == 1 && second.loaded == 2);
  CHECK_OK(lofi_set_log_callback(NULL, NULL, LOFI_LOG_OFF));
  alarm(0);
  pthread_mutex_destroy(&first.sink.lock);
  pthread_mutex_destroy(&second.lock);
}

static void test_callback_clears_itself_and_calls_lofi(void) {
  swapping_sink s;
  memset(&s, 0, sizeof s);
  sink_init(&s.sink);
  s.replacement = NULL; /* clear */
  s.reload = 1;         /* and load a model from inside the callback */
  alarm(60);
  CHECK_OK(lofi_set_log_callback(on_log_swapping, &s, LOFI_LOG_TRACE));
  load_once();
  CHECK_MSG(s.nested_status == LOFI_STATUS_OK, "lofi_load from inside the log callback: %s",
            lofi_status_name(s.nested_status));
  /* The nested load's messages were dropped (no recursion), and the callback cleared itself. */
  CHECK_MSG(s.sink.count == 1, "%d message(s) after clearing from inside the callback", s.sink.count);
  load_once();
  CHECK(s.sink.count == 1);
  alarm(0);
  pthread_mutex_destroy(&s.sink.lock);
}

/* Threads loading (logging) while others replace the callback, and the callback replacing
 * itself: no deadlock, every message well-formed. */
enum { STRESS_THREADS = 3, STRESS_ROUNDS = 20 };
static log_sink stress_sinks[2];

static void on_log_stress(void *user, lofi_log_level level, const char *message) {
  log_sink *s = (log_sink *)user;
  on_log(s, level, message);
  if (level == LOFI_LOG_WARN) /* swap to the other sink from inside, now and then */
    (void)lofi_set_log_callback(on_log_stress, s == &stress_sinks[0] ? &stress_sinks[1] : &stress_sinks[0],
                                LOFI_LOG_TRACE);
}

static void *stress_worker(void *arg) {
  int i, index = *(int *)arg;
  for (i = 0; i < STRESS_ROUNDS; i++) {
    if (index == 0)
      (void)lofi_set_log_callback(on_log_stress, &stress_sinks[i % 2], LOFI_LOG_TRACE);
    else
      load_once();
  }
  return NULL;
}

static void test_concurrent_replacement(void) {
  pthread_t threads[STRESS_THREADS];
  int index[STRESS_THREADS], i, started = 0;
  sink_init(&stress_sinks[0]);
  sink_init(&stress_sinks[1]);
  alarm(90);
  CHECK_OK(lofi_set_log_callback(on_log_stress, &stress_sinks[0], LOFI_LOG_TRACE));
  for (i = 0; i < STRESS_THREADS; i++) {
    index[i] = i;
    if (pthread_create(&threads[i], NULL, stress_worker, &index[i]) == 0) started++;
  }
  for (i = 0; i < started; i++) pthread_join(threads[i], NULL);
  CHECK_OK(lofi_set_log_callback(NULL, NULL, LOFI_LOG_OFF));
  alarm(0);
  CHECK(started == STRESS_THREADS);
  CHECK(stress_sinks[0].bad == 0 && stress_sinks[1].bad == 0);
  CHECK_MSG(stress_sinks[0].loaded + stress_sinks[1].loaded == (STRESS_THREADS - 1) * STRESS_ROUNDS,
            "%d + %d load messages, expected %d", stress_sinks[0].loaded, stress_sinks[1].loaded,
            (STRESS_THREADS - 1) * STRESS_ROUNDS);
  pthread_mutex_destroy(&stress_sinks[0].lock);
  pthread_mutex_destroy(&stress_sinks[1].lock);
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
  RUN(test_callback_replaces_itself);
  RUN(test_callback_clears_itself_and_calls_lofi);
  RUN(test_concurrent_replacement);
  return lt_done();
}
