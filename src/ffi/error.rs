//! Status codes, the thread-local last-error message, and the panic boundary.

use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::Once;

use crate::error::{panic_error, Error};

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
    /// libtorch failed for a reason other than memory.
    LOFI_STATUS_TORCH = 8,
    /// A bug in lofi (a caught panic or a broken invariant); please report it with the message.
    LOFI_STATUS_INTERNAL = 9,
    /// A host or device (CUDA) allocation failed. Nothing was leaked; retry with a smaller
    /// `memory_budget_bytes`, a smaller input, or after `lofi_release_cached_memory()`.
    LOFI_STATUS_OUT_OF_MEMORY = 10,
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
        10 => "LOFI_STATUS_OUT_OF_MEMORY\0",
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
            Error::OutOfMemory(_) => lofi_status::LOFI_STATUS_OUT_OF_MEMORY,
            Error::Internal(_) => lofi_status::LOFI_STATUS_INTERNAL,
        }
    }
}

thread_local! {
    /// Depth of C entry points running on this thread (see [`quietly`]).
    static IN_ENTRY_POINT: Cell<u32> = const { Cell::new(0) };
}

/// Installs (once) a panic hook that keeps panics caught at the C boundary off stderr: inside an
/// entry point a panic becomes a status and a message, and a log record (ERROR for a bug, DEBUG
/// for a libtorch failure that tch surfaced as a panic). Panics outside entry points (a Rust
/// program using the crate) still go to the hook that was installed before.
fn install_quiet_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_ENTRY_POINT.try_with(|d| d.get() > 0).unwrap_or(false) {
                match panic_error(info.payload()) {
                    Error::Internal(_) => log::error!(target: "lofi", "caught at the C boundary: {info}"),
                    _ => log::debug!(target: "lofi", "libtorch failure caught at the C boundary: {info}"),
                }
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` as a C entry point: with the quiet panic hook, catching any panic (returned as the
/// error it stands for).
pub(crate) fn quietly<T>(f: impl FnOnce() -> crate::Result<T>) -> crate::Result<T> {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            let _ = IN_ENTRY_POINT.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    install_quiet_panic_hook();
    let _ = IN_ENTRY_POINT.try_with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => Err(panic_error(&*panic)),
    }
}

/// The boundary: runs `body`, records its error or panic as this thread's last error, and
/// returns the status. `name` prefixes the message ("lofi_load: ..."). A panic is reported as
/// `LOFI_STATUS_INTERNAL`, except libtorch failures that tch surfaced as panics
/// (`LOFI_STATUS_TORCH`, or `LOFI_STATUS_OUT_OF_MEMORY`); nothing is printed.
pub(crate) fn guard(name: &str, body: impl FnOnce() -> crate::Result<()>) -> lofi_status {
    clear_last_error();
    match quietly(body) {
        Ok(()) => lofi_status::LOFI_STATUS_OK,
        Err(e) => {
            set_last_error(&format!("{name}: {e}"));
            lofi_status::from(&e)
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

/// Test support, not part of the C API: fails at the boundary the way `kind` says (0: a panic of
/// lofi's own, a bug; 1: a libtorch error that tch surfaces as a panic; 2: libtorch's allocator
/// failing; 3: a fallible allocation failing; else: success), returning the status a C caller
/// would get.
#[doc(hidden)]
pub fn boundary_probe(kind: u8) -> lofi_status {
    use tch::{Device, Kind, Tensor};
    guard("boundary_probe", || match kind {
        0 => panic!("an invariant of lofi does not hold"),
        1 => {
            let _ = Tensor::zeros([2], (Kind::Float, Device::Cpu)).view([3]);
            Ok(())
        }
        2 => {
            let _ = Tensor::empty([1i64 << 48], (Kind::Float, Device::Cpu));
            Ok(())
        }
        3 => crate::error::try_vec::<u64>(usize::MAX / 4, "a probe").map(|_| ()),
        _ => Ok(()),
    })
}
