/*
 * denoise.c: reconstruct an image with liblofi from plain C99.
 *
 *   denoise MODEL INPUT OUTPUT [--scale S] [--region x0,y0,x1,y1] [--budget 64MiB] ...
 *
 * INPUT is a binary PGM (P5, grey) or PPM (P6, colour), 8 or 16 bits, which any image tool can
 * write (e.g. `convert in.png -depth 16 in.pgm`), or raw float32 pixels (row-major, channels
 * interleaved) with --size WxH [--channels C], for instance two channels for a complex model.
 * OUTPUT is a PGM/PPM (one or three output channels), or raw float32 if its name ends in .raw.
 *
 * The program shows the whole C API in order: load a model (lofi_load), describe it
 * (lofi_model_get_info), reconstruct a region at a chosen resolution with a memory budget, a
 * progress callback and a run report (lofi_reconstruct_region), and release everything.
 * Every call's status is checked; failures print lofi_last_error().
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lofi.h"
#include "pgm.h"

static void usage(void) {
  fprintf(stderr,
          "usage: denoise MODEL INPUT OUTPUT [options]\n"
          "  MODEL   a .lofi model file\n"
          "  INPUT   binary PGM/PPM (P5/P6, 8 or 16 bit), or raw float32 (H, W, C) with --size\n"
          "  OUTPUT  PGM/PPM (1 or 3 output channels), or raw float32 if it ends in .raw\n"
          "options:\n"
          "  --size WxH              dimensions of a raw float32 input\n"
          "  --channels C            channels of a raw input (default: the model's)\n"
          "  --scale S               output samples per input pixel (default 1; 2 = double resolution)\n"
          "  --region x0,y0,x1,y1    rectangle to reconstruct, in input pixel coordinates\n"
          "                          (pixel centres at integers; default: the whole image)\n"
          "  --budget BYTES          working-memory budget, e.g. 64MiB (default 512MiB)\n"
          "  --threads N             CPU threads (default: libtorch's)\n"
          "  --bits 8|16             output bit depth (default: the input's; 16 for raw input)\n"
          "  --cancel-after N        cancel from the progress callback after N batches (demo)\n"
          "  --quiet                 no progress output\n");
}

/* ---- images ------------------------------------------------------------------------------- */

/* PGM/PPM input and output live in pgm.c (shared with pnp_inpaint.c); raw float32 here. */
typedef pnm_image image; /* maxval 0 for raw input */

static int read_raw(const char *path, FILE *f, image *img) {
  size_t n = img->width * img->height * img->channels;
  long size;
  img->maxval = 0;
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fprintf(stderr, "denoise: %s: cannot determine the file size\n", path);
    return 0;
  }
  if ((size_t)size != n * sizeof(float)) {
    fprintf(stderr, "denoise: %s holds %ld bytes; %zu x %zu x %zu float32 pixels need %zu\n", path, size,
            img->width, img->height, img->channels, n * sizeof(float));
    return 0;
  }
  img->data = (float *)malloc(n * sizeof(float));
  if (!img->data || fread(img->data, sizeof(float), n, f) != n) {
    fprintf(stderr, "denoise: %s: cannot read the pixels\n", path);
    return 0;
  }
  return 1;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Writes (rows, cols, channels) floats as PGM/PPM (values clamped to [0, 1]) or raw float32. */
static int write_output(const char *path, const float *px, size_t cols, size_t rows, size_t channels,
                        int bits) {
  FILE *f;
  size_t n = cols * rows * channels;
  int ok;
  if (!ends_with(path, ".raw")) {
    if (channels != 1 && channels != 3) {
      fprintf(stderr, "denoise: %zu output channels fit no PGM/PPM; name the output *.raw\n", channels);
      return 0;
    }
    return pnm_write("denoise", path, px, cols, rows, channels, bits);
  }
  f = fopen(path, "wb");
  ok = f != NULL && fwrite(px, sizeof(float), n, f) == n;
  if (f && fclose(f) != 0) ok = 0;
  if (!ok) fprintf(stderr, "denoise: cannot write %s\n", path);
  return ok;
}

/* ---- command line ----------------------------------------------------------------------------- */

/* "512MiB", "64M", "1.5GiB", "1000000" -> bytes; 0 on error. */
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

/* ---- progress callback ------------------------------------------------------------------------ */

typedef struct {
  int quiet;
  unsigned long batches;
  unsigned long cancel_after; /* 0: never */
  int last_percent;
} progress_state;

/* Called by lofi after every batch, on the thread that called lofi_reconstruct_region. */
static bool on_progress(void *user_data, uint64_t done, uint64_t total) {
  progress_state *p = (progress_state *)user_data;
  int percent = total ? (int)(100.0 * (double)done / (double)total) : 100;
  p->batches++;
  if (!p->quiet && (percent / 10 != p->last_percent / 10 || done == total)) {
    fprintf(stderr, "progress: %llu / %llu pixels (%d%%)\n", (unsigned long long)done,
            (unsigned long long)total, percent);
    p->last_percent = percent;
  }
  if (p->cancel_after && p->batches >= p->cancel_after) {
    fprintf(stderr, "progress: cancelling after %lu batch(es)\n", p->batches);
    return false;
  }
  return true;
}

static void print_info(const lofi_model_info *info) {
  printf("model: trained at %d x %d, channels %d -> %d\n", info->image_size, info->image_size,
         info->channels_in, info->channels_out);
  printf("       %d rings x %d angles, %d layers of %d, Fourier filter %s, CCPG %s, INR %s\n",
         info->rings, info->angles, info->num_layers, info->hidden_dim,
         info->fourier_filtering ? "yes" : "no", info->ccpg ? "yes" : "no",
         info->coord_deform ? "yes" : "no");
  printf("       %lld parameters on %s:%d (%s), %llu bytes of working memory per output pixel\n",
         (long long)info->parameter_count, info->device == LOFI_DEVICE_CUDA ? "cuda" : "cpu",
         info->device_index,
         info->precision == LOFI_PRECISION_BF16 ? "bf16" : info->precision == LOFI_PRECISION_F16 ? "f16" : "f32",
         (unsigned long long)info->bytes_per_pixel);
}

/* Prints a failed call's status and lofi's message. */
static int fail(const char *call, lofi_status status) {
  const char *message = lofi_last_error();
  fprintf(stderr, "denoise: %s failed with %s: %s\n", call, lofi_status_name(status),
          message ? message : "(no message)");
  return 1;
}

int main(int argc, char **argv) {
  const char *model_path, *input_path, *output_path;
  image img;
  size_t raw_w = 0, raw_h = 0, raw_c = 0, grid_w, grid_h, n_out;
  double scale = 1.0;
  int have_region = 0, bits = 0, i, status_code = 1;
  lofi_region region;
  lofi_model *model = NULL;
  lofi_model_info info;
  lofi_run_params params = lofi_default_run_params();
  lofi_run_report report;
  lofi_image input;
  lofi_status s;
  progress_state progress;
  float *output = NULL;
  FILE *f;

  /* Line-buffered stdout keeps the report in order with the progress lines on stderr. */
  setvbuf(stdout, NULL, _IOLBF, BUFSIZ);
  memset(&img, 0, sizeof img);
  memset(&progress, 0, sizeof progress);
  progress.last_percent = -100;
  if (argc < 4) {
    usage();
    return 2;
  }
  model_path = argv[1];
  input_path = argv[2];
  output_path = argv[3];
  for (i = 4; i < argc; i++) {
    const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = 1;
    if (strcmp(opt, "--quiet") == 0) {
      progress.quiet = 1;
      continue;
    }
    if (!val) {
      fprintf(stderr, "denoise: %s needs a value\n", opt);
      return 2;
    }
    i++;
    if (strcmp(opt, "--size") == 0)
      ok = sscanf(val, "%zux%zu", &raw_w, &raw_h) == 2;
    else if (strcmp(opt, "--channels") == 0)
      ok = sscanf(val, "%zu", &raw_c) == 1 && raw_c > 0;
    else if (strcmp(opt, "--scale") == 0)
      ok = sscanf(val, "%lf", &scale) == 1 && scale > 0.0 && scale <= 64.0;
    else if (strcmp(opt, "--region") == 0)
      ok = have_region = sscanf(val, "%lf,%lf,%lf,%lf", &region.x0, &region.y0, &region.x1, &region.y1) == 4;
    else if (strcmp(opt, "--budget") == 0)
      ok = (params.memory_budget_bytes = parse_bytes(val)) > 0;
    else if (strcmp(opt, "--threads") == 0)
      ok = sscanf(val, "%d", &params.threads) == 1;
    else if (strcmp(opt, "--bits") == 0)
      ok = sscanf(val, "%d", &bits) == 1 && (bits == 8 || bits == 16);
    else if (strcmp(opt, "--cancel-after") == 0)
      ok = sscanf(val, "%lu", &progress.cancel_after) == 1;
    else {
      fprintf(stderr, "denoise: unknown option %s\n", opt);
      usage();
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "denoise: bad value '%s' for %s\n", val, opt);
      return 2;
    }
  }

  /* 1. Load the model and describe it. */
  s = lofi_load(model_path, NULL, &model);
  if (s != LOFI_STATUS_OK) return fail("lofi_load", s);
  s = lofi_model_get_info(model, &info);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_model_get_info", s);
    goto done;
  }
  print_info(&info);

  /* 2. Read the input. */
  f = fopen(input_path, "rb");
  if (!f) {
    fprintf(stderr, "denoise: cannot open %s\n", input_path);
    goto done;
  }
  if (raw_w) {
    img.width = raw_w;
    img.height = raw_h;
    img.channels = raw_c ? raw_c : (size_t)info.channels_in;
    i = read_raw(input_path, f, &img);
  } else {
    i = pnm_read_file("denoise", input_path, f, &img);
    if (!i) fprintf(stderr, "denoise: (for raw float32 input, pass --size WxH)\n");
  }
  fclose(f);
  if (!i) goto done;
  if (bits == 0) bits = img.maxval > 255 || img.maxval == 0 ? 16 : 8;
  printf("input: %s, %zu x %zu, %zu channel(s)\n", input_path, img.width, img.height, img.channels);

  /* 3. The output grid: the region (default: the whole image, pixel centres 0..W-1) sampled at
   *    `scale` samples per input pixel, both ends included. */
  if (!have_region) {
    region.x0 = 0.0;
    region.y0 = 0.0;
    region.x1 = (double)img.width - 1.0;
    region.y1 = (double)img.height - 1.0;
  }
  grid_w = (size_t)floor(fabs(region.x1 - region.x0) * scale + 0.5) + 1;
  grid_h = (size_t)floor(fabs(region.y1 - region.y0) * scale + 0.5) + 1;
  printf("output: region (%g, %g) - (%g, %g), grid %zu x %zu\n", region.x0, region.y0, region.x1,
         region.y1, grid_w, grid_h);
  n_out = grid_w * grid_h * (size_t)info.channels_out;
  output = (float *)malloc(n_out * sizeof(float));
  if (!output) {
    fprintf(stderr, "denoise: out of memory for %zu output values\n", n_out);
    goto done;
  }

  /* 4. Reconstruct, with a progress callback and a run report. */
  input.data = img.data;
  input.width = img.width;
  input.height = img.height;
  input.channels = img.channels;
  input.row_stride_bytes = 0; /* packed */
  params.progress = on_progress;
  params.progress_user_data = &progress;
  s = lofi_reconstruct_region(model, &input, &region, grid_w, grid_h, NULL, output, 0, &params, &report);
  if (s != LOFI_STATUS_OK) {
    fail("lofi_reconstruct_region", s);
    goto done;
  }
  printf("run: %llu pixels in %llu batch(es) of up to %llu pixels; estimated peak %.1f MiB "
         "(budget %.1f MiB)\n",
         (unsigned long long)report.pixels, (unsigned long long)report.batches,
         (unsigned long long)report.batch_pixels, (double)report.estimated_peak_bytes / 1048576.0,
         (double)params.memory_budget_bytes / 1048576.0);
  if (report.measured_peak_bytes)
    printf("     measured device peak %.1f MiB\n", (double)report.measured_peak_bytes / 1048576.0);

  /* 5. Write it. */
  if (!write_output(output_path, output, grid_w, grid_h, (size_t)info.channels_out, bits)) goto done;
  printf("wrote %s (%zu x %zu, %d channel(s)%s)\n", output_path, grid_w, grid_h, info.channels_out,
         ends_with(output_path, ".raw") ? ", float32" : bits == 16 ? ", 16 bit" : ", 8 bit");
  status_code = 0;

done:
  lofi_model_free(model);
  free(img.data);
  free(output);
  return status_code;
}
