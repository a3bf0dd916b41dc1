//! Status codes, the thread-local last-error message, and the panic boundary.

use std::cell::RefCell;
use std::ffi::CString;
use std::os::raw::c_char;

use crate::error::{panic_message, Error};

/// Result of every fallible call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lofi_status {
    /// Success.
    LOFI_STATUS_OK = 0,
    /// A null pointer, a size that does not add up, a value out of range.
    LOFI_STATUS_INVALID_ARGUMENT = 1,
    /// The input image is unusable: wrong channel count, NaN or infinite pixels, too small.
    LOFI_STATUS_INVALID_INPUT = 2,
    /// The model file is missing pieces, truncated, corrupt or inconsistent with its configuration.
    LOFI_STATUS_INVALID_MODEL = 3,
    /// A file could not be read or written.
    LOFI_STATUS_IO = 4,
    /// The memory budget cannot hold one batch; the message states the minimum.
    LOFI_STATUS_BUDGET_TOO_SMALL = 5,
    /// The requested device does not exist (e.g. CUDA on a machine without a GPU).
    LOFI_STATUS_DEVICE_UNAVAILABLE = 6,
    /// The progress callback cancelled the call; outputs hold partial results.
    LOFI_STATUS_CANCELLED = 7,
    /// libtorch failed (for instance out of device memory).
    LOFI_STATUS_TORCH = 8,
    /// A bug in lofi; please report it with the message.
    LOFI_STATUS_INTERNAL = 9,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

// `try_with`: during thread or process teardown the thread-local may already be gone (a C++
// static destructor calling lofi); then the message is dropped rather than aborting.
pub(crate) fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).expect("NULs removed");
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Some(text));
}

fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = None);
}

/// The message of the last failed call on this thread, or NULL if the last call succeeded.
/// The string belongs to lofi and stays valid until this thread's next lofi call.
#[no_mangle]
pub extern "C" fn lofi_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |s| s.as_ptr()))
        .unwrap_or(std::ptr::null())
}

/// A short, static name for a status code ("LOFI_STATUS_OK", ...); "LOFI_STATUS_UNKNOWN" for a
/// value that is not a status. Never NULL. Takes an int so that any value is safe to pass.
#[no_mangle]
pub extern "C" fn lofi_status_name(status: i32) -> *const c_char {
    let name: &'static str = match status {
        0 => "LOFI_STATUS_OK\0",
        1 => "LOFI_STATUS_INVALID_ARGUMENT\0",
        2 => "LOFI_STATUS_INVALID_INPUT\0",
        3 => "LOFI_STATUS_INVALID_MODEL\0",
        4 => "LOFI_STATUS_IO\0",
        5 => "LOFI_STATUS_BUDGET_TOO_SMALL\0",
        6 => "LOFI_STATUS_DEVICE_UNAVAILABLE\0",
        7 => "LOFI_STATUS_CANCELLED\0",
        8 => "LOFI_STATUS_TORCH\0",
        9 => "LOFI_STATUS_INTERNAL\0",
        _ => "LOFI_STATUS_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

impl From<&Error> for lofi_status {
    fn from(e: &Error) -> Self {
        match e {
            Error::InvalidArgument(_) => lofi_status::LOFI_STATUS_INVALID_ARGUMENT,
            Error::InvalidInput(_) => lofi_status::LOFI_STATUS_INVALID_INPUT,
            Error::InvalidModel(_) => lofi_status::LOFI_STATUS_INVALID_MODEL,
            Error::Io { .. } => lofi_status::LOFI_STATUS_IO,
            Error::BudgetTooSmall(_) => lofi_status::LOFI_STATUS_BUDGET_TOO_SMALL,
            Error::DeviceUnavailable(_) => lofi_status::LOFI_STATUS_DEVICE_UNAVAILABLE,
            Error::Cancelled => lofi_status::LOFI_STATUS_CANCELLED,
            Error::Torch(_) => lofi_status::LOFI_STATUS_TORCH,
            Error::Internal(_) => lofi_status::LOFI_STATUS_INTERNAL,
        }
    }
}

/// The boundary: runs `body`, records its error or panic as this thread's last error, and
/// returns the status. `name` prefixes the message ("lofi_load: ...").
pub(crate) fn guard(name: &str, body: impl FnOnce() -> crate::Result<()>) -> lofi_status {
    clear_last_error();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Ok(())) => lofi_status::LOFI_STATUS_OK,
        Ok(Err(e)) => {
            set_last_error(&format!("{name}: {e}"));
            lofi_status::from(&e)
        }
        Err(panic) => {
            let message = panic_message(&*panic);
            // tch reports libtorch exceptions as panics; anything else is our bug.
            let torch =
                message.contains("Torch") || message.contains("CUDA") || message.contains("out of memory");
            set_last_error(&format!("{name}: {message}"));
            if torch {
                lofi_status::LOFI_STATUS_TORCH
            } else {
                lofi_status::LOFI_STATUS_INTERNAL
            }
        }
    }
}

/// Turns a possibly-null pointer into a reference, or an `InvalidArgument` naming it.
///
/// # Safety
/// `ptr` must be null or valid for reads for the duration of the call.
pub(crate) unsafe fn non_null<'a, T>(ptr: *const T, what: &str) -> crate::Result<&'a T> {
    ptr.as_ref().ok_or_else(|| Error::invalid_argument(format!("{what} is NULL")))
}
