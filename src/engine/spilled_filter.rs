//! The Fourier filter of an input too large for the memory budget, computed in bands through
//! scratch files so that working memory does not depend on the input's size.
//!
//! The filter is global (a product with a learned response over the whole padded spectrum), so no
//! tiling of the *image* computes it exactly; the 2-D FFT, however, is separable, and every pass
//! of it touches either whole rows or whole columns:
//!
//! 1. rows: each band of padded rows is read from the source, zero-padded and transformed along
//!    its rows; the band's half-way spectrum is written *transposed* (channel, column, row) to a
//!    scratch file, so that the next pass reads a strip of columns as one piece per band;
//! 2. columns: each strip of columns is joined from those pieces, transformed along the rows'
//!    axis, multiplied by the response (the stored filter resized bicubically, computed for the
//!    strip only: the resize is separable too), transformed back, cropped to the image's rows and
//!    written as one (channel, row, column) piece;
//! 3. rows: each band of the image's rows is joined from the strips' pieces, transformed back
//!    along its rows, cropped, and written with the raw input as (row, column, channel) float32
//!    to the file the windows are read from.
//!
//! Every read and write is one contiguous piece, so bands can be small: the passes use a quarter
//! of the call's budget (see `stream::spill_budget`) and the batches have it all afterwards.
//!
//! The result equals [`crate::kernels::filter::apply_filter`] up to float32 rounding (the FFTs
//! and the resize sum in another order), not bit for bit, which is why the engine spills only
//! when the in-memory filter does not fit (it logs which path it takes). Scratch files are
//! anonymous files in the temporary directory (`TMPDIR`), deleted when dropped; their pages live
//! in the kernel's page cache, not in the process. Reads and writes are positioned (`pread`,
//! `pwrite`), never memory maps, for the same reason.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use tch::{Device, Kind, Tensor};

use super::budget::format_bytes;
use super::stream::InputSource;
use crate::config::{LofiConfig, FILTER_PAD};
use crate::error::{Error, Result};

/// Allocator rounding and small temporaries in the passes' estimates.
const SAFETY: f64 = 1.5;

/// A float32 image of (row, column, channel) values in an anonymous scratch file.
pub struct SpilledImage {
    file: File,
    height: usize,
    width: usize,
    channels: usize,
}

impl SpilledImage {
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Rows `rows` x columns `cols` as a (1, C, h, w) float32 tensor on the CPU.
    pub fn read_window(&self, rows: &Range<usize>, cols: &Range<usize>) -> Result<Tensor> {
        if rows.end > self.height || cols.end > self.width {
            return Err(Error::Internal(format!(
                "a window of rows {rows:?}, columns {cols:?} of a {} x {} filtered image",
                self.width, self.height
            )));
        }
        let (h, w, c) = (rows.len(), cols.len(), self.channels);
        let mut block = crate::error::try_vec(h * w * c, "a window of the filtered image")?;
        block.resize(h * w * c, 0.0);
        for (i, r) in rows.clone().enumerate() {
            let offset = ((r * self.width + cols.start) * c * 4) as u64;
            read_at(&self.file, &mut block[i * w * c..(i + 1) * w * c], offset)?;
        }
        Ok(Tensor::f_from_slice(&block)?
            .view([h as i64, w as i64, c as i64])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .contiguous())
    }
}

fn scratch_file() -> Result<File> {
    tempfile::tempfile().map_err(|e| {
        Error::io(
            format!(
                "cannot create a scratch file for the filtered image in {} (set TMPDIR to a folder with room)",
                std::env::temp_dir().display()
            ),
            e,
        )
    })
}

fn as_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and no invalid bit patterns as bytes; u8 needs no alignment.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn as_bytes_mut(values: &mut [f32]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; every byte pattern is a valid f32.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

fn write_at(file: &File, values: &[f32], offset: u64) -> Result<()> {
    file.write_all_at(as_bytes(values), offset).map_err(|e| {
        Error::io(
            format!("cannot write the filtered image's scratch file in {}", std::env::temp_dir().display()),
            e,
        )
    })
}

fn read_at(file: &File, values: &mut [f32], offset: u64) -> Result<()> {
    file.read_exact_at(as_bytes_mut(values), offset)
        .map_err(|e| Error::io("cannot read the filtered image's scratch file", e))
}

/// PyTorch's bicubic resize along one axis (`upsample_bicubic2d`, `align_corners = false`,
/// A = -0.75, indices clamped at the borders) from `input` to `output` samples: for each output
/// index, the 4 source indices and their weights.
fn bicubic_taps(input: usize, output: usize) -> (Vec<i64>, Vec<f32>) {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = input as f32 / output as f32;
    let (mut index, mut weight) = (Vec::with_capacity(4 * output), Vec::with_capacity(4 * output));
    for dst in 0..output {
        let real = scale * (dst as f32 + 0.5) - 0.5;
        let first = real.floor();
        let t = real - first;
        weight.extend([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]);
        index.extend((0..4).map(|j| (first as i64 - 1 + j).clamp(0, input as i64 - 1)));
    }
    (index, weight)
}

/// The response (2 c_f, columns, hp) at `columns` of the padded spectrum, every row: the stored
/// planes (2 c_f, S, S) resized bicubically, along the columns by a small dense matrix, along
/// the rows by gathering each row's 4 taps.
fn response_at(planes: &Tensor, columns: (&[i64], &[f32]), rows: (&Tensor, &Tensor)) -> Tensor {
    let size = planes.size()[2] as usize;
    let n = columns.1.len() / 4;
    let mut dense = vec![0f32; n * size];
    for (k, (i, w)) in columns.0.iter().zip(columns.1).enumerate() {
        dense[(k / 4) * size + *i as usize] += w;
    }
    let dense = Tensor::from_slice(&dense).view([n as i64, size as i64]);
    // (2 c_f, n, S): resized along the columns.
    let along_columns = planes.matmul(&dense.tr()).transpose(1, 2);
    let (index, weight) = rows;
    let hp = weight.size()[0];
    let q = along_columns.size()[0];
    (along_columns.index_select(2, index).view([q, n as i64, hp, 4]) * weight).sum_dim_intlist(
        -1,
        false,
        Kind::Float,
    )
}

/// Bytes of working memory per padded row of pass 1, per column of pass 2 and per image row of
/// pass 3, and the fixed bytes (the resize matrices), for a `height` x `width` input.
struct PassCosts {
    row: usize,
    column: usize,
    image_row: usize,
    fixed: usize,
}

fn pass_costs(cfg: &LofiConfig, height: usize, width: usize) -> PassCosts {
    let pad = FILTER_PAD as usize;
    let (hp, wp) = ((height + 2 * pad) as f64, (width + 2 * pad) as f64);
    let c = cfg.c_in as f64;
    let cs = cfg.spectrum_channels() as f64;
    let cf = cfg.filter_channels() as f64;
    let cp = cfg.sampled_channels() as f64;
    let s = cfg.filter_size() as f64;
    let bytes = |v: f64| (v * SAFETY).ceil() as usize;
    PassCosts {
        // The source block and its tensor, the padded band, the spectrum, its real view and
        // transposed copy, the bytes written.
        row: bytes(wp * (12.0 * c + 32.0 * cs)),
        // The pieces read and their tensors, the joined strip and its spectrum, the repeated
        // spectrum, the response (real planes and complex), the product, its inverse, the
        // cropped copy written.
        column: bytes(hp * (40.0 * cs + 136.0 * cf)),
        // The pieces read and their tensors, the joined band, the inverse, real and imaginary
        // parts, the raw input, the concatenation and its (row, column, channel) copy written.
        image_row: bytes(wp * 56.0 * cf + width as f64 * (16.0 * cp + 12.0 * c)),
        // The rows' and columns' resize taps (and the rows' as tensors), the stored planes.
        fixed: bytes(96.0 * hp + 16.0 * wp + 8.0 * cf * s * s),
    }
}

/// The least budget [`filter_to_scratch`] runs with: one row and one column per pass.
pub fn minimum_budget(cfg: &LofiConfig, height: usize, width: usize) -> usize {
    let c = pass_costs(cfg, height, width);
    c.fixed + c.row.max(c.column).max(c.image_row)
}

/// Filters the image of `source` as [`crate::kernels::filter::apply_filter`] does (channels
/// Re(filtered), Im(filtered), raw input) into a scratch file, in bands sized so that the passes'
/// working memory stays within `budget` bytes. `filter` is the stored parameter on the CPU.
/// `progress` gets [pieces done, pieces in all] after every band and strip of the three passes;
/// returning `false` stops the work ([`Error::Cancelled`]).
pub fn filter_to_scratch(
    cfg: &LofiConfig,
    filter: &Tensor,
    source: &dyn InputSource,
    budget: usize,
    progress: &mut dyn FnMut([usize; 2]) -> bool,
) -> Result<SpilledImage> {
    let _guard = tch::no_grad_guard();
    let (height, width, c) = (source.height(), source.width(), source.channels());
    let pad = FILTER_PAD as usize;
    let (hp, wp) = (height + 2 * pad, width + 2 * pad);
    let costs = pass_costs(cfg, height, width);
    let need = minimum_budget(cfg, height, width);
    if budget < need {
        return Err(Error::BudgetTooSmall(format!(
            "a memory budget of {} is too small to filter a {width} x {height} image in bands: it needs at least {}",
            format_bytes(budget),
            format_bytes(need)
        )));
    }
    let spare = budget - costs.fixed;
    let band = |per: usize, n: usize| (spare / per).clamp(1, n);
    let (cs, cf) = (cfg.spectrum_channels() as usize, cfg.filter_channels() as usize);
    let size = cfg.filter_size() as usize;
    log::info!(
        "filtering the {width} x {height} input in bands through scratch files in {} ({} there, freed after)",
        std::env::temp_dir().display(),
        format_bytes(
            (cs * hp * wp + cf * height * wp) * 8 + height * width * cfg.sampled_channels() as usize * 4
        )
    );

    // Pass 1: bands of padded rows, transformed along the row. Each band is stored whole and
    // transposed, (channel, column, row of the band), after the bands above it, so that a strip
    // of columns is one contiguous read per band.
    let half = scratch_file()?;
    let rows_per_band = band(costs.row, hp);
    let bands: Vec<Range<usize>> =
        (0..hp).step_by(rows_per_band).map(|r0| r0..(r0 + rows_per_band).min(hp)).collect();
    let cols_per_strip = band(costs.column, wp);
    let strips: Vec<Range<usize>> =
        (0..wp).step_by(cols_per_strip).map(|k0| k0..(k0 + cols_per_strip).min(wp)).collect();
    let image_rows_per_band = band(costs.image_row, height);
    let pieces_in_all = bands.len() + strips.len() + height.div_ceil(image_rows_per_band);
    let mut pieces_done = 0;
    let mut piece_done = || {
        pieces_done += 1;
        if progress([pieces_done, pieces_in_all]) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    };
    let mut block = Vec::new();
    for rows in &bands {
        let (r0, n) = (rows.start, rows.len());
        // Input rows in this band of padded rows.
        let (i0, i1) = (r0.max(pad).min(pad + height) - pad, rows.end.max(pad).min(pad + height) - pad);
        let padded = Tensor::zeros([c as i64, n as i64, wp as i64], (Kind::Float, Device::Cpu));
        if i1 > i0 {
            block.clear();
            source.read_block(i0..i1, 0..width, &mut block)?;
            let rows = Tensor::f_from_slice(&block)?
                .view([(i1 - i0) as i64, width as i64, c as i64])
                .permute([2, 0, 1]);
            let mut inside = padded.narrow(1, (i0 + pad - r0) as i64, (i1 - i0) as i64).narrow(
                2,
                pad as i64,
                width as i64,
            );
            inside.copy_(&rows);
        }
        let signal = if c == 2 {
            Tensor::complex(&padded.select(0, 0), &padded.select(0, 1)).unsqueeze(0)
        } else {
            padded
        };
        // (cs, n, wp) complex -> (cs, wp, n, 2) float.
        let spectrum = signal.fft_fft(None::<i64>, -1, "forward").transpose(1, 2).view_as_real();
        write_at(
            &half,
            &super::to_host(&spectrum, "a band of the filter's spectrum")?,
            (cs * wp * r0 * 8) as u64,
        )?;
        piece_done()?;
    }

    // The stored response (2 c_f, S, S), real planes then imaginary planes, and its resize taps.
    let planes = filter.to_kind(Kind::Float).permute([0, 4, 1, 2, 3]).reshape([
        (2 * cf) as i64,
        size as i64,
        size as i64,
    ]);
    let (row_index, row_weight) = bicubic_taps(size, hp);
    let rows_taps = (Tensor::from_slice(&row_index), Tensor::from_slice(&row_weight).view([hp as i64, 4]));
    drop((row_index, row_weight));
    let column_taps = bicubic_taps(size, wp);

    // Pass 2: strips of columns, transformed along the column, filtered, transformed back and
    // cropped to the image's rows. Each strip is stored whole as (filter channel, image row,
    // column of the strip), after the strips left of it.
    let filtered_half = scratch_file()?;
    let repeats = (cf / cs) as i64;
    for cols in &strips {
        let (k0, n) = (cols.start, cols.len());
        // (cs, n, band rows, 2) from each band, joined along the rows.
        let mut pieces = Vec::with_capacity(bands.len());
        for rows in &bands {
            let nb = rows.len();
            let mut piece = crate::error::try_vec(cs * n * nb * 2, "a strip of the filter's spectrum")?;
            piece.resize(cs * n * nb * 2, 0.0);
            for ch in 0..cs {
                let offset = (cs * wp * rows.start + (ch * wp + k0) * nb) * 8;
                read_at(&half, &mut piece[ch * n * nb * 2..(ch + 1) * n * nb * 2], offset as u64)?;
            }
            pieces.push(Tensor::f_from_slice(&piece)?.view([cs as i64, n as i64, nb as i64, 2]));
        }
        let spectrum = Tensor::cat(&pieces, 2).view_as_complex();
        drop(pieces);
        let spectrum = spectrum.fft_fft(None::<i64>, -1, "forward");
        // (2 c_f, n, hp): the response at these columns, every row.
        let taps = (&column_taps.0[4 * k0..4 * (k0 + n)], &column_taps.1[4 * k0..4 * (k0 + n)]);
        let response = response_at(&planes, taps, (&rows_taps.0, &rows_taps.1));
        let response =
            Tensor::complex(&response.narrow(0, 0, cf as i64), &response.narrow(0, cf as i64, cf as i64));
        let filtered = (spectrum.repeat([repeats, 1, 1]) * response)
            .fft_ifft(None::<i64>, -1, "forward")
            .narrow(2, pad as i64, height as i64)
            .transpose(1, 2)
            .view_as_real();
        write_at(
            &filtered_half,
            &super::to_host(&filtered, "a strip of the filtered spectrum")?,
            (cf * height * k0 * 8) as u64,
        )?;
        piece_done()?;
    }
    drop(half);

    // Pass 3: bands of the image's rows, joined from the strips, transformed back along the row
    // and cropped; stored with the raw input as (row, column, channel).
    let out =
        SpilledImage { file: scratch_file()?, height, width, channels: cfg.sampled_channels() as usize };
    for r0 in (0..height).step_by(image_rows_per_band) {
        let r1 = (r0 + image_rows_per_band).min(height);
        let nb = r1 - r0;
        // (cf, nb, strip columns, 2) from each strip, joined along the columns.
        let mut pieces = Vec::with_capacity(strips.len());
        for cols in &strips {
            let n = cols.len();
            let mut piece = crate::error::try_vec(cf * nb * n * 2, "a band of the filtered spectrum")?;
            piece.resize(cf * nb * n * 2, 0.0);
            for ch in 0..cf {
                let offset = (cf * height * cols.start + (ch * height + r0) * n) * 8;
                read_at(&filtered_half, &mut piece[ch * nb * n * 2..(ch + 1) * nb * n * 2], offset as u64)?;
            }
            pieces.push(Tensor::f_from_slice(&piece)?.view([cf as i64, nb as i64, n as i64, 2]));
        }
        let spectrum = Tensor::cat(&pieces, 2).view_as_complex();
        drop(pieces);
        let filtered = spectrum.fft_ifft(None::<i64>, -1, "forward").narrow(2, pad as i64, width as i64);
        block.clear();
        source.read_block(r0..r1, 0..width, &mut block)?;
        let raw = Tensor::f_from_slice(&block)?.view([nb as i64, width as i64, c as i64]);
        let planes = Tensor::cat(&[filtered.real(), filtered.imag()], 0).permute([1, 2, 0]);
        let band = super::to_host(&Tensor::cat(&[planes, raw], 2), "a band of the filtered image")?;
        write_at(&out.file, &band, (r0 * width * out.channels * 4) as u64)?;
        piece_done()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The taps reproduce `upsample_bicubic2d` (align_corners = false), enlarging, shrinking and
    /// at the same size (the identity), for a column strip as for the whole plane.
    #[test]
    fn the_response_strip_is_the_bicubic_resize() {
        tch::manual_seed(3);
        let planes = Tensor::randn([2, 12, 12], (Kind::Float, Device::Cpu));
        for (hp, wp) in [(37, 29), (12, 12), (7, 20)] {
            let expected = planes.unsqueeze(0).upsample_bicubic2d([hp, wp], false, None, None).squeeze_dim(0);
            let (ri, rw) = bicubic_taps(12, hp as usize);
            let rows = (Tensor::from_slice(&ri), Tensor::from_slice(&rw).view([hp, 4]));
            let (ci, cw) = bicubic_taps(12, wp as usize);
            let whole = response_at(&planes, (&ci, &cw), (&rows.0, &rows.1)).transpose(1, 2);
            let err = f64::try_from((&whole - &expected).abs().max()).unwrap();
            assert!(err < 1e-5, "{hp} x {wp}: {err}");
            let (k0, n) = (3usize, 5usize);
            let strip = response_at(
                &planes,
                (&ci[4 * k0..4 * (k0 + n)], &cw[4 * k0..4 * (k0 + n)]),
                (&rows.0, &rows.1),
            );
            // The same sums, but the BLAS may block a 5-column product differently from the
            // whole plane's (bit-equal on the Xeon, not on an AMD EPYC): float32 rounding only.
            let part = whole.transpose(1, 2).narrow(1, k0 as i64, n as i64);
            let err = f64::try_from((&strip - &part).abs().max()).unwrap();
            assert!(err < 1e-6, "a strip of {hp} x {wp}: {err}");
        }
    }
}
