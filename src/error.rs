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
    /// libtorch reported an error (out of device memory, for instance).
    #[error("libtorch: {0}")]
    Torch(String),
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
        Error::Torch(first)
    }
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
    // tch formats libtorch failures as `...: Torch("message\nbacktrace...")`.
    let text = text.split_once("Torch(\"").map(|(_, rest)| rest.to_string()).unwrap_or(text);
    text.lines().next().unwrap_or("").trim_end_matches("\")").trim().to_string()
}

/// Runs `f`, turning a panic (a libtorch error surfaced by tch, such as running out of device
/// memory) into [`Error::Torch`].
pub fn catch_torch<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => Err(Error::Torch(panic_message(&*panic))),
    }
}
