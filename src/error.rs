//! One error type for the whole library; each variant maps to one C status code.

use std::fmt;

/// What went wrong, in one line a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller-supplied argument is out of range or inconsistent (sizes, channels, regions...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The input image holds NaN or infinite values, or is otherwise unusable.
    #[error("{0}")]
    InvalidInput(String),
    /// A model file is missing, truncated, corrupt or does not match its configuration.
    #[error("{0}")]
    InvalidModel(String),
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The memory budget cannot hold even one pixel's working memory.
    #[error("{0}")]
    BudgetTooSmall(String),
    /// The requested device does not exist or is not usable.
    #[error("{0}")]
    DeviceUnavailable(String),
    /// The caller's progress callback asked to stop.
    #[error("cancelled by the progress callback")]
    Cancelled,
    /// libtorch reported an error other than running out of memory.
    #[error("libtorch: {0}")]
    Torch(String),
    /// A host or device allocation failed (a fallible allocation of ours, or libtorch's CPU or
    /// CUDA allocator).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// A bug in lofi: a panic caught at the boundary or a broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid_argument(msg: impl fmt::Display) -> Self {
        Error::InvalidArgument(msg.to_string())
    }
    pub fn invalid_input(msg: impl fmt::Display) -> Self {
        Error::InvalidInput(msg.to_string())
    }
    pub fn invalid_model(msg: impl fmt::Display) -> Self {
        Error::InvalidModel(msg.to_string())
    }
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io { context: context.to_string(), source }
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        // libtorch messages carry a C++ backtrace after the first line; keep the first line only.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("unknown error").trim().to_string();
        torch_error(first)
    }
}

/// Whether a libtorch message reports a failed allocation: CUDA's caching allocator ("CUDA out
/// of memory. Tried to allocate ..."), the CPU allocator ("DefaultCPUAllocator: can't allocate
/// memory: you tried to allocate ..." / "not enough memory"), or a C++ `std::bad_alloc`.
pub fn is_out_of_memory_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory", "bad_alloc"]
        .iter()
        .any(|pattern| m.contains(pattern))
}

/// A libtorch failure's message as an error: [`Error::OutOfMemory`] for allocation failures,
/// [`Error::Torch`] otherwise.
pub fn torch_error(message: String) -> Error {
    if is_out_of_memory_message(&message) {
        Error::OutOfMemory(message)
    } else {
        Error::Torch(message)
    }
}

/// A vector with room for `len` elements, or [`Error::OutOfMemory`] naming `what` when the
/// allocation fails (sizes come from callers and files: they must not abort the process).
pub fn try_vec<T>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::OutOfMemory(format!(
            "cannot allocate {what} ({len} values of {} bytes)",
            std::mem::size_of::<T>()
        ))
    })?;
    Ok(v)
}

/// The first line of a caught panic's message (libtorch errors from tch arrive as panics).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    };
    // tch formats libtorch failures as `...: Torch("message\nbacktrace...")`, the string
    // Debug-escaped: its line breaks are the two characters `\n`.
    let text = text.split_once("Torch(\"").map(|(_, rest)| rest.to_string()).unwrap_or(text);
    let first = text.lines().next().unwrap_or("");
    let first = first.split("\\n").next().unwrap_or(first);
    first.trim_end_matches("\")").trim().to_string()
}

/// The error a caught panic stands for. tch's infallible methods panic with the libtorch error
/// they unwrapped (`...: Torch("message...")`): that is a libtorch failure ([`Error::Torch`], or
/// [`Error::OutOfMemory`] when an allocator failed). Any other panic is a bug in lofi:
/// [`Error::Internal`].
pub fn panic_error(panic: &(dyn std::any::Any + Send)) -> Error {
    let raw = if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        String::new()
    };
    let message = panic_message(panic);
    if raw.contains("Torch(\"") {
        torch_error(message)
    } else {
        Error::Internal(format!("panic: {message}"))
    }
}

/// Runs `f`, turning a panic into the error it stands for (see [`panic_error`]): libtorch
/// failures surfaced by tch as [`Error::Torch`] / [`Error::OutOfMemory`], anything else as
/// [`Error::Internal`].
pub fn catch_torch<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => Err(panic_error(&*panic)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_failures_are_out_of_memory() {
        for message in [
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.8 GiB total capacity)",
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1125899906842624 bytes.",
            "DefaultCPUAllocator: not enough memory: you tried to allocate 1024 bytes.",
            "std::bad_alloc",
        ] {
            assert!(matches!(torch_error(message.into()), Error::OutOfMemory(_)), "{message}");
        }
        assert!(matches!(torch_error("shape '[3]' is invalid for input of size 2".into()), Error::Torch(_)));
        assert!(matches!(try_vec::<u64>(usize::MAX / 4, "x"), Err(Error::OutOfMemory(_))));
    }

    #[test]
    fn panics_are_bugs_unless_tch_surfaced_a_libtorch_error() {
        let torch = String::from(
            r#"called `Result::unwrap()` on an `Err` value: Torch("shape '[3]' is invalid\nframe #0: c10::...")"#,
        );
        match panic_error(&torch) {
            Error::Torch(m) => assert_eq!(m, "shape '[3]' is invalid"),
            other => panic!("{other:?}"),
        }
        let oom =
            String::from(r#"...: Torch("DefaultCPUAllocator: can't allocate memory: you tried\nframe #0")"#);
        assert!(matches!(panic_error(&oom), Error::OutOfMemory(_)));
        assert!(matches!(
            panic_error(&"index out of bounds: the len is 3 but the index is 7"),
            Error::Internal(_)
        ));
        assert!(matches!(panic_error(&String::from("out of memory in a Rust panic")), Error::Internal(_)));
        assert!(matches!(panic_error(&42u32), Error::Internal(_)));
    }
}
