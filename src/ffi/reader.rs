//! An input the host reads itself, piece by piece: `lofi_input_reader`.
//!
//! `lofi_image` needs the whole observation in the caller's memory. A host whose input is larger
//! than memory (a mosaic in its own tiled format), or that only needs a band of the output (an MPI
//! rank), gives a reader instead: the library asks it for the rectangles its batches reach, the
//! same windows the CLI reads from a `.npy` file, and never for more.

use std::ops::Range;
use std::os::raw::c_void;

use super::abi::{self, Versioned};
use super::error::{guard, lofi_status};
use crate::engine::InputSource;
use crate::error::{Error, Result};

/// Reads a rectangle of the input: `rows` rows from `row0` by `cols` columns from `col0`, every
/// channel, into `out` as (row, column, channel) float32, packed (`rows * cols * channels`
/// floats). Returns `true` when `out` is filled, `false` on failure (the call then fails with
/// `LOFI_STATUS_IO` and nothing more is read). The rectangle is never empty and always lies
/// inside the image. Calls never overlap, but with a device list (`lofi_load_params.devices`)
/// they come from the library's worker threads, not only the calling thread. It must return
/// normally: no C++ exception, longjmp or thread cancellation may leave it (catch inside and
/// return `false`).
pub type lofi_read_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        row0: usize,
        rows: usize,
        col0: usize,
        cols: usize,
        out: *mut f32,
    ) -> bool,
>;

/// An input image given by a function that reads rectangles of it (for
/// `lofi_reconstruct_region_from_reader()`), instead of a buffer. Start from
/// `lofi_default_input_reader()` and set every field. The library reads the rows its work can
/// reach (checking them for NaN and infinities first), each batch's window and, for a model with
/// the Fourier filter, every row of the image (the filter is global).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct lofi_input_reader {
    /// `sizeof(lofi_input_reader)`, set by `lofi_default_input_reader()`.
    pub struct_size: usize,
    /// The whole image's size: the region's coordinates and the reflections at the borders refer
    /// to it, whatever part of it is ever read.
    pub width: usize,
    pub height: usize,
    /// Must equal the model's input channels (2 = one complex channel: real, imaginary).
    pub channels: usize,
    /// Reads a rectangle (required).
    pub read: lofi_read_fn,
    /// Passed to `read` unchanged.
    pub user_data: *mut c_void,
}

/// No size, no function.
pub fn default_input_reader() -> lofi_input_reader {
    lofi_input_reader {
        struct_size: std::mem::size_of::<lofi_input_reader>(),
        width: 0,
        height: 0,
        channels: 0,
        read: None,
        user_data: std::ptr::null_mut(),
    }
}

// SAFETY: repr(C), leading usize; numbers, a nullable pointer and an Option function pointer.
unsafe impl Versioned for lofi_input_reader {
    const NAME: &'static str = "lofi_input_reader";
    const SIZES: &'static [usize] = &[std::mem::size_of::<Self>()];
    fn defaults() -> Self {
        default_input_reader()
    }
}

/// Fills `*reader` with the empty description (no size, no function) for the layout
/// `reader->struct_size` declares; set it to `sizeof(lofi_input_reader)` first.
/// `lofi_default_input_reader()` does both.
///
/// # Safety
/// `reader` must be NULL or valid for writes of the `struct_size` it declares.
#[no_mangle]
pub unsafe extern "C" fn lofi_init_input_reader(reader: *mut lofi_input_reader) -> lofi_status {
    guard("lofi_init_input_reader", || abi::init(reader))
}

/// A caller's reader as the engine's [`InputSource`].
pub(crate) struct ReaderSource {
    width: usize,
    height: usize,
    channels: usize,
    read: unsafe extern "C" fn(*mut c_void, usize, usize, usize, usize, *mut f32) -> bool,
    user_data: *mut c_void,
    /// Serialises the calls, so that a host's reader need not be reentrant.
    calls: parking_lot::Mutex<()>,
}

// SAFETY: the reader is only called under `calls`, so calls never overlap; that they may come
// from the library's worker threads is part of `lofi_read_fn`'s contract.
unsafe impl Sync for ReaderSource {}

impl ReaderSource {
    /// Checks a caller's reader description.
    ///
    /// # Safety
    /// `reader` must be valid for reads of the `struct_size` it declares.
    pub(crate) unsafe fn new(reader: *const lofi_input_reader) -> Result<ReaderSource> {
        let r = abi::read_in(reader)?;
        let Some(read) = r.read else {
            return Err(Error::invalid_argument("lofi_input_reader.read is NULL"));
        };
        if r.width == 0 || r.height == 0 || r.channels == 0 {
            return Err(Error::invalid_input(format!(
                "image of {} x {} x {} is empty",
                r.width, r.height, r.channels
            )));
        }
        r.width
            .checked_mul(r.height)
            .and_then(|v| v.checked_mul(r.channels))
            .filter(|&v| v <= isize::MAX as usize / 4)
            .ok_or_else(|| Error::invalid_argument("reader width x height x channels overflows"))?;
        Ok(ReaderSource {
            width: r.width,
            height: r.height,
            channels: r.channels,
            read,
            user_data: r.user_data,
            calls: parking_lot::Mutex::new(()),
        })
    }
}

impl InputSource for ReaderSource {
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
        if rows.end > self.height || cols.end > self.width {
            return Err(Error::Internal(format!(
                "a read of rows {rows:?}, columns {cols:?} of a {} x {} input",
                self.width, self.height
            )));
        }
        if rows.is_empty() || cols.is_empty() {
            // Nothing to read: the reader is promised non-empty rectangles.
            return Ok(());
        }
        let n = rows.len() * cols.len() * self.channels;
        let start = out.len();
        out.try_reserve(n).map_err(|_| Error::OutOfMemory("a window of the input image".into()))?;
        // NaN, so that values the reader leaves unwritten are caught by the input check.
        out.resize(start + n, f32::NAN);
        let ok = {
            let _one_at_a_time = self.calls.lock();
            // SAFETY: the caller's function and user data, as documented; `out[start..]` holds
            // exactly the rectangle's floats.
            unsafe {
                (self.read)(
                    self.user_data,
                    rows.start,
                    rows.len(),
                    cols.start,
                    cols.len(),
                    out[start..].as_mut_ptr(),
                )
            }
        };
        if !ok {
            out.truncate(start);
            return Err(Error::io(
                format!(
                    "the input reader failed on rows {}..{}, columns {}..{}",
                    rows.start, rows.end, cols.start, cols.end
                ),
                std::io::Error::other("lofi_input_reader.read returned false"),
            ));
        }
        Ok(())
    }
}
