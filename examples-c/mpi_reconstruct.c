/*
 * mpi_reconstruct.c: liblofi inside an MPI program; every rank reconstructs a band of rows and
 * writes it into one shared output file.
 *
 *   mpiexec -n 4 mpi_reconstruct MODEL INPUT.raw WIDTH HEIGHT OUTPUT.raw [--sigma S] [--threads N]
 *                                [--budget BYTES]
 *
 * INPUT is raw float32, row-major, channels interleaved (HEIGHT, WIDTH, C) with C the model's
 * input channels (1 for a grey model, 2 for a complex one); OUTPUT receives raw float32
 * (HEIGHT, WIDTH, C_out), the on-grid reconstruction of the whole image.
 *
 * What it shows: the output grid (WIDTH x HEIGHT samples of the whole image) is split into
 * contiguous bands of rows, as evenly as possible over the ranks. Every rank loads the model and
 * computes only its band, as a lofi_window of the whole-image grid: a window of a grid is exactly
 * what the whole-grid call computes for those samples (bit for bit on the CPU with one thread), so
 * the file equals the single-process result (ctest checks it with -n 1, 2 and 3). The input is
 * not loaded: a lofi_input_reader reads, with MPI_File_read_at, the rectangles lofi asks for,
 * which are the rows the band's samples can reach (its rows plus a halo from the model's learned
 * offsets; all rows for a model with the Fourier filter, which is global). Rank 0 prints the rows
 * each rank read. The ranks then write their bands with one collective MPI_File_write_at_all into
 * the output, which MPI_File_set_size sized (and truncated) first. A rank whose band is empty
 * (more ranks than rows) still takes part in every collective call.
 *
 * Every lofi call's status is checked; a failure prints the rank and lofi_last_error(). Failures
 * while setting up (the library, the model) are agreed on by all ranks, which then leave together
 * through MPI_Finalize; later ones MPI_Abort all ranks (a rank that just returned would leave the
 * others waiting in a collective call).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "lofi.h"

static int rank, ranks;

static void usage(void) {
  if (rank != 0) return;
  fprintf(stderr,
          "usage: mpiexec -n RANKS mpi_reconstruct MODEL INPUT.raw WIDTH HEIGHT OUTPUT.raw [options]\n"
          "  MODEL       a .lofi model file\n"
          "  INPUT.raw   raw float32 (HEIGHT, WIDTH, C), C = the model's input channels\n"
          "  OUTPUT.raw  raw float32 (HEIGHT, WIDTH, C_out), written by all ranks at their offsets\n"
          "options:\n"
          "  --sigma S          noise level of the input for noise-level-aware models, e.g. 0.1 or\n"
          "                     25/255 (fixed-level models take none)\n"
          "  --threads N        CPU threads per rank (default: libtorch's); 1 for results that equal\n"
          "                     one process bit for bit\n"
          "  --budget BYTES     working-memory budget per rank, e.g. 64MiB (default 512MiB)\n");
}

/* ---- failures: print with the rank, then stop every rank --------------------------------------- */

static void die(const char *what) {
  fprintf(stderr, "mpi_reconstruct: rank %d of %d: %s\n", rank, ranks, what);
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1); /* not reached */
}

/* A failed lofi call: its status and lofi's message. */
static void lofi_check(const char *call, lofi_status status) {
  char line[1024];
  const char *message;
  if (status == LOFI_STATUS_OK) return;
  message = lofi_last_error();
  snprintf(line, sizeof line, "%s failed with %s: %s", call, lofi_status_name(status),
           message ? message : "(no message)");
  die(line);
}

/* Setup failures, before the first collective call: each rank keeps its first message, then
 * all_ranks_ready() lets every rank learn whether any failed. They then all leave through
 * MPI_Finalize with status 1. This is not MPI_Abort for a reason: MPICH's mpiexec may kill the
 * other ranks (and stop forwarding their output) before an aborting rank's message has reached
 * it, so the message of the failure could be lost. */
static char setup_error[1024];

/* Keeps a failed lofi call's message (the first one); returns 1 if the call failed. */
static int setup_failed(const char *call, lofi_status status) {
  const char *message;
  if (status == LOFI_STATUS_OK) return 0;
  message = lofi_last_error();
  if (!setup_error[0])
    snprintf(setup_error, sizeof setup_error, "%s failed with %s: %s", call, lofi_status_name(status),
             message ? message : "(no message)");
  return 1;
}

/* Prints this rank's setup failure, if any; true if every rank's setup succeeded. */
static int all_ranks_ready(void) {
  int ready = setup_error[0] == '\0', all_ready = 0;
  if (!ready) fprintf(stderr, "mpi_reconstruct: rank %d of %d: %s\n", rank, ranks, setup_error);
  MPI_Allreduce(&ready, &all_ready, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  return all_ready;
}

/* A failed MPI call (file operations return their errors: MPI_ERRORS_RETURN is the default
 * error handler of files). */
static void mpi_check(const char *call, const char *path, int code) {
  char line[1024], text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (code == MPI_SUCCESS) return;
  MPI_Error_string(code, text, &len);
  snprintf(line, sizeof line, "%s(%s) failed: %s", call, path, text);
  die(line);
}

/* ---- command line ----------------------------------------------------------------------------- */

/* "512MiB", "64M", "1.5GiB", "1000000" -> bytes; 0 on error (as in denoise.c). */
static uint64_t parse_bytes(const char *text) {
  char *end;
  double v = strtod(text, &end), scale = 1.0;
  if (end == text || !(v >= 0.0)) return 0;
  if (*end == 'K' || *end == 'k') scale = 1024.0, end++;
  else if (*end == 'M' || *end == 'm') scale = 1024.0 * 1024.0, end++;
  else if (*end == 'G' || *end == 'g') scale = 1024.0 * 1024.0 * 1024.0, end++;
  if (scale > 1.0 && (*end == 'i' || *end == 'I')) end++;
  if (*end == 'B' || *end == 'b') end++;
  if (*end != '\0' || v * scale >= 18446744073709551615.0) return 0;
  return (uint64_t)(v * scale);
}

/* "0.1" or "25/255" -> the value; negative on error. */
static double parse_sigma(const char *text) {
  char *end;
  double v = strtod(text, &end);
  if (end == text || !(v >= 0.0)) return -1.0;
  if (*end == '/') {
    const char *d = end + 1;
    double den = strtod(d, &end);
    if (end == d || !(den > 0.0)) return -1.0;
    v /= den;
  }
  return *end == '\0' ? v : -1.0;
}

static int parse_size(const char *text, size_t *out) {
  char *end;
  unsigned long long v = strtoull(text, &end, 10);
  if (end == text || *end != '\0' || text[0] == '-' || v == 0 || v > (1ull << 31)) return 0;
  *out = (size_t)v;
  return 1;
}

/* ---- MPI-IO in pieces of at most 1 GiB (MPI counts are ints) ------------------------------------ */

#define PIECE ((size_t)1 << 30)

/* Collective read or write of `bytes` bytes at byte `offset`. Collective calls must be made the
 * same number of times on every rank: all ranks loop `pieces` times (the largest count of any
 * rank), those with less to do pass a count of 0. */
static void file_io_all(MPI_File fh, const char *path, int write, MPI_Offset offset, void *buf, size_t bytes,
                        size_t pieces) {
  static char nothing; /* the buffer of an empty band: MPI wants a valid pointer even for 0 bytes */
  size_t done = 0, p;
  for (p = 0; p < pieces; p++) {
    size_t n = bytes - done < PIECE ? bytes - done : PIECE;
    char *at = buf ? (char *)buf + done : &nothing;
    MPI_Status status;
    int count = 0;
    if (write)
      mpi_check("MPI_File_write_at_all", path,
                MPI_File_write_at_all(fh, offset + (MPI_Offset)done, at, (int)n, MPI_BYTE, &status));
    else
      mpi_check("MPI_File_read_at_all", path,
                MPI_File_read_at_all(fh, offset + (MPI_Offset)done, at, (int)n, MPI_BYTE, &status));
    MPI_Get_count(&status, MPI_BYTE, &count);
    if ((size_t)count != n) {
      char line[256];
      snprintf(line, sizeof line, "%s %s: %d of %zu bytes at offset %lld", write ? "writing" : "reading", path,
               count, n, (long long)(offset + (MPI_Offset)done));
      die(line);
    }
    done += n;
  }
}

static size_t pieces_of(size_t bytes) { return (bytes + PIECE - 1) / PIECE; }

/* ---- the input, read where lofi asks ------------------------------------------------------------ */

/* The open input file and the rows read so far ([first_row, end_row)); `failure` keeps the first
 * MPI error for the message (the reader itself only returns false). */
typedef struct {
  MPI_File fh;
  size_t width, channels;
  size_t first_row, end_row;
  int failure;
} input_file;

/* lofi_read_fn: rows x cols pixels at (row0, col0), packed, with independent MPI_File_read_at
 * calls (the ranks read different rows at different times). Whole rows are one read per 1 GiB;
 * narrower windows one read per row. */
static bool read_rectangle(void *user, size_t row0, size_t rows, size_t col0, size_t cols, float *out) {
  input_file *f = (input_file *)user;
  size_t pixel = f->channels * sizeof(float), r, done, bytes;
  size_t pieces = cols == f->width ? 1 : rows, piece_bytes = cols == f->width ? rows * cols * pixel : cols * pixel;
  for (r = 0; r < pieces; r++) {
    MPI_Offset at = (MPI_Offset)((((row0 + r) * f->width + col0)) * pixel);
    char *dst = (char *)out + r * piece_bytes;
    for (done = 0; done < piece_bytes; done += bytes) {
      MPI_Status status;
      int count = 0, code;
      bytes = piece_bytes - done < PIECE ? piece_bytes - done : PIECE;
      code = MPI_File_read_at(f->fh, at + (MPI_Offset)done, dst + done, (int)bytes, MPI_BYTE, &status);
      MPI_Get_count(&status, MPI_BYTE, &count);
      if (code != MPI_SUCCESS || (size_t)count != bytes) {
        if (!f->failure) f->failure = code != MPI_SUCCESS ? code : MPI_ERR_TRUNCATE;
        return false;
      }
    }
  }
  if (row0 < f->first_row) f->first_row = row0;
  if (row0 + rows > f->end_row) f->end_row = row0 + rows;
  return true;
}

int main(int argc, char **argv) {
  const char *model_path, *input_path, *output_path;
  size_t width = 0, height = 0, c_in, c_out, band_start, band_rows, base, extra, in_bytes, out_row_bytes,
         band_bytes, out_bytes;
  unsigned long long local_pieces, max_pieces, rows_read[2], *all_rows_read = NULL;
  double sigma = LOFI_NOISE_LEVEL_NONE, t0, seconds, slowest;
  int i, r;
  lofi_load_params load = lofi_default_load_params();
  lofi_run_params params = lofi_default_run_params();
  lofi_model *model = NULL;
  lofi_model_info info;
  lofi_input_reader reader = lofi_default_input_reader();
  input_file input = {0};
  lofi_window window;
  lofi_run_report report;
  MPI_File fh;
  MPI_Offset file_size;
  float *out = NULL;

  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);

  /* Every rank parses the same command line, so all of them leave here together on an error. */
  if (argc < 6) {
    usage();
    MPI_Finalize();
    return 2;
  }
  model_path = argv[1];
  input_path = argv[2];
  output_path = argv[5];
  if (!parse_size(argv[3], &width) || !parse_size(argv[4], &height)) {
    if (rank == 0) fprintf(stderr, "mpi_reconstruct: bad size %s x %s\n", argv[3], argv[4]);
    MPI_Finalize();
    return 2;
  }
  for (i = 6; i < argc; i++) {
    const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    int ok;
    if (!val) {
      if (rank == 0) fprintf(stderr, "mpi_reconstruct: %s needs a value\n", opt);
      MPI_Finalize();
      return 2;
    }
    i++;
    if (strcmp(opt, "--sigma") == 0)
      ok = (sigma = parse_sigma(val)) >= 0.0;
    else if (strcmp(opt, "--threads") == 0)
      ok = sscanf(val, "%d", &params.threads) == 1 && params.threads >= 0;
    else if (strcmp(opt, "--budget") == 0)
      ok = (params.memory_budget_bytes = parse_bytes(val)) > 0;
    else {
      if (rank == 0) fprintf(stderr, "mpi_reconstruct: unknown option %s\n", opt);
      usage();
      MPI_Finalize();
      return 2;
    }
    if (!ok) {
      if (rank == 0) fprintf(stderr, "mpi_reconstruct: bad value '%s' for %s\n", val, opt);
      MPI_Finalize();
      return 2;
    }
  }

  /* 1. The library, the model (every rank loads its own copy; the defaults: CPU, float32). */
  if (!setup_failed("lofi_check_version", lofi_check_version(LOFI_VERSION_NUMBER)) &&
      !setup_failed("lofi_load", lofi_load(model_path, &load, &model)) &&
      !setup_failed("lofi_model_get_info", lofi_model_get_info(model, &info)) && info.noise_level_aware &&
      sigma < 0.0)
    snprintf(setup_error, sizeof setup_error, "%s is noise-level aware (trained for %g to %g): pass --sigma",
             model_path, info.noise_level_min, info.noise_level_max);
  if (!all_ranks_ready()) {
    lofi_model_free(model); /* NULL where loading failed: a no-op */
    MPI_Finalize();
    return 1;
  }
  c_in = (size_t)info.channels_in;
  c_out = (size_t)info.channels_out;
  /* A fixed-level model given --sigma is refused by lofi_reconstruct_region with its message. */
  params.noise_level = sigma;

  /* 2. This rank's band of output rows: HEIGHT / ranks each, the first HEIGHT % ranks one more. */
  base = height / (size_t)ranks;
  extra = height % (size_t)ranks;
  band_rows = base + ((size_t)rank < extra ? 1 : 0);
  band_start = (size_t)rank * base + ((size_t)rank < extra ? (size_t)rank : extra);

  MPI_Barrier(MPI_COMM_WORLD);
  t0 = MPI_Wtime();

  /* 3. The input: opened by every rank (collectively), read only where lofi asks. */
  in_bytes = width * height * c_in * sizeof(float);
  mpi_check("MPI_File_open", input_path,
            MPI_File_open(MPI_COMM_WORLD, input_path, MPI_MODE_RDONLY, MPI_INFO_NULL, &input.fh));
  mpi_check("MPI_File_get_size", input_path, MPI_File_get_size(input.fh, &file_size));
  if ((size_t)file_size != in_bytes) {
    char line[512];
    snprintf(line, sizeof line, "%s holds %lld bytes; %zu x %zu x %zu float32 pixels need %zu", input_path,
             (long long)file_size, width, height, c_in, in_bytes);
    die(line);
  }
  input.width = width;
  input.channels = c_in;
  input.first_row = height;
  input.end_row = 0;
  reader.width = width;
  reader.height = height; /* the whole image: coordinates and border reflections refer to it */
  reader.channels = c_in;
  reader.read = read_rectangle;
  reader.user_data = &input;

  /* 4. Reconstruct the band: a window of the whole image's on-grid grid (region NULL = the whole
   *    image, WIDTH x HEIGHT samples = the pixel centres). */
  out_row_bytes = width * c_out * sizeof(float);
  band_bytes = band_rows * out_row_bytes;
  if (band_rows > 0) {
    lofi_status status;
    out = (float *)malloc(band_bytes);
    if (!out) die("out of memory for the output band");
    window.col0 = 0;
    window.row0 = band_start;
    window.cols = width;
    window.rows = band_rows;
    status = lofi_reconstruct_region_from_reader(model, &reader, NULL, width, height, &window, out, 0, &params,
                                                 &report);
    if (input.failure) mpi_check("MPI_File_read_at", input_path, input.failure);
    lofi_check("lofi_reconstruct_region_from_reader", status);
  }
  mpi_check("MPI_File_close", input_path, MPI_File_close(&input.fh));

  /* 5. Write: size the file (truncating an older, longer one), then every rank its band at
   *    band_start rows. All ranks make the same collective calls, an empty band included. */
  out_bytes = height * out_row_bytes;
  mpi_check("MPI_File_open", output_path,
            MPI_File_open(MPI_COMM_WORLD, output_path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh));
  mpi_check("MPI_File_set_size", output_path, MPI_File_set_size(fh, (MPI_Offset)out_bytes));
  local_pieces = (unsigned long long)pieces_of(band_bytes);
  MPI_Allreduce(&local_pieces, &max_pieces, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
  file_io_all(fh, output_path, 1, (MPI_Offset)(band_start * out_row_bytes), out, band_bytes, (size_t)max_pieces);
  mpi_check("MPI_File_close", output_path, MPI_File_close(&fh));
  free(out);
  lofi_model_free(model);

  /* 6. From rank 0: the slowest rank's time (read + reconstruct + write), and the input rows each
   *    rank read. */
  seconds = MPI_Wtime() - t0;
  MPI_Reduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  rows_read[0] = input.first_row < input.end_row ? (unsigned long long)input.first_row : 0;
  rows_read[1] = (unsigned long long)input.end_row;
  if (rank == 0) {
    all_rows_read = (unsigned long long *)malloc(2 * sizeof(unsigned long long) * (size_t)ranks);
    if (!all_rows_read) die("out of memory");
  }
  MPI_Gather(rows_read, 2, MPI_UNSIGNED_LONG_LONG, all_rows_read, 2, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    printf("mpi_reconstruct: %d rank(s), rows", ranks);
    for (r = 0; r < ranks && r < 8; r++) printf("%s%zu", r ? "/" : " ", base + ((size_t)r < extra ? 1 : 0));
    printf("%s, %zu x %zu x %zu -> %s (%zu bytes) in %.3f s\n", ranks > 8 ? "/..." : "", width, height, c_out,
           output_path, out_bytes, slowest);
    printf("mpi_reconstruct: input rows read");
    for (r = 0; r < ranks && r < 8; r++) printf("%s%llu..%llu", r ? ", " : " ", all_rows_read[2 * r], all_rows_read[2 * r + 1]);
    printf("%s of %zu\n", ranks > 8 ? ", ..." : "", height);
    free(all_rows_read);
  }
  MPI_Finalize();
  return 0;
}
