//! `.npy` float32 images larger than memory: a batch reads the rectangle of the input it needs
//! with positioned reads (one `pread` per row piece), and the output is written in row bands at
//! their offsets with positioned writes into a pre-sized file. The input was once read through
//! memory maps of row bands; the kernel's fault-around then mapped 64 KiB around every page a
//! window touched, so a window of a wide input held whole 64 KiB runs of each of its rows in the
//! resident set (a 512^2 output of a 16384^2 input peaked 20-35 MiB higher than of a 1024^2 one).
//!
//! Several processes (MPI ranks) may write disjoint row bands of one output: [`NpyOutput::create`]
//! is race-free because every process writes the identical header and sets the identical length
//! (writing the same bytes twice, or extending a file to the size it already has, changes
//! nothing), and it never truncates data another process may already have written.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

use crate::engine::stream::{check_shape, InputSource};
use crate::error::{Error, Result};

/// A float32 (H, W) or (H, W, C) `.npy` file, read in rectangles with positioned reads.
pub struct NpyInput {
    file: File,
    path: PathBuf,
    /// Byte offset of the first value.
    data_offset: u64,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

fn io_error<'a>(path: &'a Path, what: &str) -> impl Fn(std::io::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::io(format!("cannot {what} {}", path.display()), e)
}

impl NpyInput {
    /// Opens `path` and reads its header (the data stays on disk).
    pub fn open(path: &Path) -> Result<NpyInput> {
        let mut file = File::open(path).map_err(io_error(path, "read"))?;
        let bad = |what: String| Error::invalid_input(format!("{}: {what}", path.display()));
        let header = npyz::NpyHeader::from_reader(std::io::BufReader::new(&mut file))
            .map_err(|e| bad(format!("not a valid .npy file ({e})")))?;
        // The header's length: re-read it with a reader that stops exactly after it.
        file.rewind().map_err(io_error(path, "read"))?;
        let data_offset =
            header_length(&mut file).map_err(|e| bad(format!("not a valid .npy file ({e})")))?;
        let npy = npyz::NpyFile::with_header(header, std::io::empty());
        let descr = npy.dtype().descr();
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        // Little-endian float32 read in place: this module maps the bytes as the host's f32.
        if !matches!(descr, "<f4" | "|f4") || cfg!(target_endian = "big") {
            return Err(bad(format!(
                "dtype {descr} is not little-endian float32 ('<f4'); convert with arr.astype('<f4')"
            )));
        }
        if npy.order() != npyz::Order::C {
            return Err(bad(
                "Fortran-ordered arrays are not supported; save with np.ascontiguousarray".into()
            ));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let (height, width, channels) = match shape.as_slice() {
            [h, w] => (*h, *w, 1),
            [h, w, c] => (*h, *w, *c),
            other => return Err(bad(format!("shape {other:?} is not (H, W) or (H, W, C)"))),
        };
        if height > crate::image_io::MAX_SIDE
            || width > crate::image_io::MAX_SIDE
            || channels == 0
            || channels > 64
        {
            return Err(bad(format!("shape {shape:?} is absurdly large or empty")));
        }
        let bytes = (height * width * channels) as u64 * 4;
        let len = file.metadata().map_err(io_error(path, "read"))?.len();
        if len < data_offset + bytes {
            return Err(bad(format!(
                "truncated: shape {shape:?} needs {} bytes of data, the file holds {}",
                bytes,
                len.saturating_sub(data_offset)
            )));
        }
        Ok(NpyInput { file, path: path.to_path_buf(), data_offset, height, width, channels })
    }

    fn row_bytes(&self) -> usize {
        self.width * self.channels * 4
    }
}

/// Bytes before the data of the `.npy` file `r` is positioned at the start of.
fn header_length(r: &mut impl std::io::Read) -> std::io::Result<u64> {
    let mut lead = [0u8; 12];
    r.read_exact(&mut lead[..10])?;
    if &lead[..6] != b"\x93NUMPY" {
        return Err(std::io::Error::other("no .npy magic"));
    }
    Ok(match lead[6] {
        1 => 10 + u16::from_le_bytes([lead[8], lead[9]]) as u64,
        2 | 3 => {
            r.read_exact(&mut lead[10..12])?;
            12 + u32::from_le_bytes([lead[8], lead[9], lead[10], lead[11]]) as u64
        }
        v => return Err(std::io::Error::other(format!("unknown .npy version {v}"))),
    })
}

impl InputSource for NpyInput {
    fn height(&self) -> usize {
        self.height
    }
    fn width(&self) -> usize {
        self.width
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn read_block(&self, rows: Range<usize>, cols: Range<usize>, out: &mut Vec<f32>) -> Result<()> {
        if rows.is_empty() || cols.is_empty() {
            return Ok(());
        }
        let (row_bytes, c) = (self.row_bytes(), self.channels);
        let n = cols.len() * c;
        let start = out.len();
        out.try_reserve(rows.len() * n)
            .map_err(|_| Error::OutOfMemory("a window of the input image".into()))?;
        out.resize(start + rows.len() * n, 0.0);
        let mut bytes = vec![0u8; n * 4];
        for (r, values) in rows.zip(out[start..].chunks_exact_mut(n)) {
            let offset = self.data_offset + (r * row_bytes + cols.start * c * 4) as u64;
            self.file.read_exact_at(&mut bytes, offset).map_err(io_error(&self.path, "read"))?;
            for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(())
    }
    fn check(&self, c_in: usize, rows: Range<usize>) -> Result<()> {
        check_shape(self.height, self.width, self.channels, c_in)?;
        // The default check (bands of rows, every value finite), with the file's name.
        struct Checked<'a>(&'a NpyInput);
        impl InputSource for Checked<'_> {
            fn height(&self) -> usize {
                self.0.height
            }
            fn width(&self) -> usize {
                self.0.width
            }
            fn channels(&self) -> usize {
                self.0.channels
            }
            fn read_block(&self, rows: Range<usize>, cols: Range<usize>, out: &mut Vec<f32>) -> Result<()> {
                self.0.read_block(rows, cols, out)
            }
        }
        Checked(self).check(c_in, rows).map_err(|e| match e {
            Error::InvalidInput(m) => Error::invalid_input(format!("{}: {m}", self.path.display())),
            other => other,
        })
    }
}

/// A float32 `.npy` output of a known shape, written in row bands at their offsets.
pub struct NpyOutput {
    file: File,
    path: PathBuf,
    data_offset: u64,
    row_values: usize,
    height: usize,
}

/// The `.npy` header of a C-ordered float32 array of `shape` (npyz's, so that it matches what
/// [`crate::image_io`] writes).
fn npy_header(shape: &[u64]) -> std::io::Result<Vec<u8>> {
    let mut header = Vec::new();
    let writer =
        npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(&mut header).begin_nd()?;
    // Dropping the writer before any value only finishes the header (its complaint that the
    // values are missing is ignored on drop).
    drop(writer);
    Ok(header)
}

impl NpyOutput {
    /// Creates (or opens, under MPI) `path` for an (H, W) (`channels` 1) or (H, W, C) float32
    /// array: writes the header and sizes the file. Identical in every process, so any number of
    /// processes may call it at once; it never truncates what another has written.
    pub fn create(path: &Path, height: usize, width: usize, channels: usize) -> Result<NpyOutput> {
        let shape: Vec<u64> = if channels == 1 {
            vec![height as u64, width as u64]
        } else {
            vec![height as u64, width as u64, channels as u64]
        };
        let header = npy_header(&shape).map_err(io_error(path, "write"))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_error(path, "create"))?;
        let row_values = width * channels;
        let size = header.len() as u64 + (height * row_values) as u64 * 4;
        file.set_len(size).map_err(io_error(path, "size"))?;
        file.write_all_at(&header, 0).map_err(io_error(path, "write"))?;
        Ok(NpyOutput { file, path: path.to_path_buf(), data_offset: header.len() as u64, row_values, height })
    }

    /// Writes whole rows starting at `row0` (`values` holds a whole number of rows).
    pub fn write_rows(&self, row0: usize, values: &[f32]) -> Result<()> {
        let rows = values.len() / self.row_values;
        if !values.len().is_multiple_of(self.row_values) || row0 + rows > self.height {
            return Err(Error::invalid_argument(format!(
                "{} values at row {row0} are not whole rows of {} inside the {} rows of {}",
                values.len(),
                self.row_values,
                self.height,
                self.path.display()
            )));
        }
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let offset = self.data_offset + (row0 * self.row_values) as u64 * 4;
        self.file.write_all_at(&bytes, offset).map_err(io_error(&self.path, "write"))
    }

    /// Flushes the file to disk.
    pub fn finish(mut self) -> Result<()> {
        self.file.flush().map_err(io_error(&self.path, "write"))?;
        self.file.sync_data().map_err(io_error(&self.path, "write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_round_trip_through_image_io() {
        let dir = tempfile::tempdir().unwrap();
        let (h, w, c) = (37, 23, 3);
        let data: Vec<f32> = (0..h * w * c).map(|i| (i as f32 * 0.37).sin()).collect();
        let img = crate::image_io::Image::new(h, w, c, data.clone()).unwrap();
        let input = dir.path().join("in.npy");
        crate::image_io::write(&input, &img, 8).unwrap();
        let npy = NpyInput::open(&input).unwrap();
        assert_eq!((npy.height, npy.width, npy.channels), (h, w, c));
        let mut block = vec![];
        npy.read_block(5..9, 4..11, &mut block).unwrap();
        let want: Vec<f32> =
            (5..9).flat_map(|r| data[(r * w + 4) * c..(r * w + 11) * c].iter().copied()).collect::<Vec<_>>();
        assert_eq!(block, want);
        // A block is appended to what the buffer holds; the last row and column are reachable.
        npy.read_block(h - 1..h, w - 2..w, &mut block).unwrap();
        assert_eq!(block.len(), want.len() + 2 * c);
        assert_eq!(&block[want.len()..], &data[((h - 1) * w + w - 2) * c..]);
        // Written in bands, out of order: the same file image_io reads.
        let output = dir.path().join("out.npy");
        let out = NpyOutput::create(&output, h, w, c).unwrap();
        for (r0, r1) in [(20, 37), (0, 7), (7, 20)] {
            out.write_rows(r0, &data[r0 * w * c..r1 * w * c]).unwrap();
        }
        out.finish().unwrap();
        let back = crate::image_io::read(&output).unwrap();
        assert_eq!(back.data, data);
        assert_eq!(std::fs::read(&output).unwrap(), std::fs::read(&input).unwrap());
    }
}
