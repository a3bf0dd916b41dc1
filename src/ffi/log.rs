//! Routing the library's `log` messages to a C callback.

use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::OnceLock;

use parking_lot::RwLock;

use super::error::{guard, lofi_status};
use crate::error::Error;

/// Log levels, most to least severe.
pub type lofi_log_level = i32;
pub const LOFI_LOG_OFF: lofi_log_level = 0;
pub const LOFI_LOG_ERROR: lofi_log_level = 1;
pub const LOFI_LOG_WARN: lofi_log_level = 2;
pub const LOFI_LOG_INFO: lofi_log_level = 3;
pub const LOFI_LOG_DEBUG: lofi_log_level = 4;
pub const LOFI_LOG_TRACE: lofi_log_level = 5;

/// Receives one log message (NUL-terminated, valid only during the call). May be called from
/// any thread that runs lofi code, concurrently: make it thread-safe.
pub type lofi_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: lofi_log_level, message: *const c_char)>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, lofi_log_level, *const c_char),
    user_data: usize,
}

struct CallbackLogger {
    sink: RwLock<Option<Sink>>,
}

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Some(sink) = self.sink.read().as_ref() {
            let text = CString::new(format!("{}: {}", record.target(), record.args()).replace('\0', " "))
                .expect("NULs removed");
            let level = match record.level() {
                log::Level::Error => LOFI_LOG_ERROR,
                log::Level::Warn => LOFI_LOG_WARN,
                log::Level::Info => LOFI_LOG_INFO,
                log::Level::Debug => LOFI_LOG_DEBUG,
                log::Level::Trace => LOFI_LOG_TRACE,
            };
            // SAFETY: the caller's callback and user data, as registered.
            unsafe { (sink.callback)(sink.user_data as *mut c_void, level, text.as_ptr()) };
        }
    }
    fn flush(&self) {}
}

static LOGGER: OnceLock<&'static CallbackLogger> = OnceLock::new();

/// Sends lofi's log messages up to `max_level` to `callback` (NULL stops them). Process-wide.
/// Fails with `LOFI_STATUS_INVALID_ARGUMENT` if the host process already installed another
/// logger of the Rust `log` crate.
#[no_mangle]
pub unsafe extern "C" fn lofi_set_log_callback(
    callback: lofi_log_fn,
    user_data: *mut c_void,
    max_level: lofi_log_level,
) -> lofi_status {
    guard("lofi_set_log_callback", || {
        let level = match max_level {
            LOFI_LOG_OFF => log::LevelFilter::Off,
            LOFI_LOG_ERROR => log::LevelFilter::Error,
            LOFI_LOG_WARN => log::LevelFilter::Warn,
            LOFI_LOG_INFO => log::LevelFilter::Info,
            LOFI_LOG_DEBUG => log::LevelFilter::Debug,
            LOFI_LOG_TRACE => log::LevelFilter::Trace,
            other => return Err(Error::invalid_argument(format!("unknown log level {other}"))),
        };
        let logger = *LOGGER.get_or_init(|| Box::leak(Box::new(CallbackLogger { sink: RwLock::new(None) })));
        if log::set_logger(logger).is_err() {
            // Either ours (installed by an earlier call) or someone else's.
            let ours = std::ptr::eq(
                log::logger() as *const dyn log::Log as *const (),
                logger as *const CallbackLogger as *const (),
            );
            if !ours {
                return Err(Error::invalid_argument(
                    "another Rust logger is already installed in this process",
                ));
            }
        }
        *logger.sink.write() = callback.map(|cb| Sink { callback: cb, user_data: user_data as usize });
        log::set_max_level(if callback.is_some() { level } else { log::LevelFilter::Off });
        Ok(())
    })
}
