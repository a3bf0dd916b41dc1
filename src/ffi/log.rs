//! Routing the library's `log` messages to a C callback.
//!
//! The sink sits behind a read-write lock: a message holds the read lock while the callback
//! runs, so `lofi_set_log_callback()` (which takes the write lock) returns only once no thread is
//! still running the callback it replaced. From inside the callback (same thread, read lock held)
//! that would deadlock, so a replacement made there is recorded and applied when the callback
//! returns; and messages lofi logs while the callback runs on that thread (a lofi call made from
//! the callback) are dropped rather than delivered recursively.

use std::cell::Cell;
use std::ffi::CString;
use std::os::raw::{c_char, c_void};
use std::sync::OnceLock;

use parking_lot::{Mutex, RwLock};

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
/// any thread that runs lofi code, concurrently: make it thread-safe. It must return normally:
/// no C++ exception, longjmp or thread cancellation may leave it (that would unwind through
/// lofi's frames: the process aborts, or worse). It may call `lofi_set_log_callback()` (the
/// change applies when it returns) and other lofi functions (their messages are dropped).
pub type lofi_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: lofi_log_level, message: *const c_char)>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, lofi_log_level, *const c_char),
    user_data: usize,
}

struct CallbackLogger {
    sink: RwLock<Option<Sink>>,
    /// A replacement requested from inside the callback: (the sink or none, the level).
    pending: Mutex<Option<(Option<Sink>, log::LevelFilter)>>,
}

thread_local! {
    /// Set while this thread runs the log callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

fn in_callback() -> bool {
    IN_CALLBACK.try_with(Cell::get).unwrap_or(false)
}

impl CallbackLogger {
    fn install(&self, sink: Option<Sink>, level: log::LevelFilter) {
        *self.sink.write() = sink;
        log::set_max_level(if sink.is_some() { level } else { log::LevelFilter::Off });
    }
}

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || in_callback() {
            return;
        }
        {
            let guard = self.sink.read();
            let Some(sink) = guard.as_ref() else { return };
            let text = CString::new(format!("{}: {}", record.target(), record.args()).replace('\0', " "))
                .expect("NULs removed");
            let level = match record.level() {
                log::Level::Error => LOFI_LOG_ERROR,
                log::Level::Warn => LOFI_LOG_WARN,
                log::Level::Info => LOFI_LOG_INFO,
                log::Level::Debug => LOFI_LOG_DEBUG,
                log::Level::Trace => LOFI_LOG_TRACE,
            };
            struct Reset;
            impl Drop for Reset {
                fn drop(&mut self) {
                    let _ = IN_CALLBACK.try_with(|c| c.set(false));
                }
            }
            let _ = IN_CALLBACK.try_with(|c| c.set(true));
            let _reset = Reset;
            // SAFETY: the caller's callback and user data, as registered.
            unsafe { (sink.callback)(sink.user_data as *mut c_void, level, text.as_ptr()) };
        }
        // The read lock is released: apply a replacement the callback asked for. The `pending`
        // guard must be gone before `install` waits for the write lock: another thread inside its
        // callback holds the read lock and may be waiting for `pending` (a deadlock, seen in
        // tests/c/test_log.c's stress test when the guard lived through the `if let`).
        let pending = self.pending.lock().take();
        if let Some((sink, level)) = pending {
            self.install(sink, level);
        }
    }
    fn flush(&self) {}
}

static LOGGER: OnceLock<&'static CallbackLogger> = OnceLock::new();

/// Sends lofi's log messages up to `max_level` to `callback` (NULL stops them). Process-wide.
/// When it returns, the callback it replaced is no longer running on any thread and will not be
/// called again (so its `user_data` may be freed), except when called from inside the log
/// callback itself: then the change takes effect as that callback returns. Fails with
/// `LOFI_STATUS_INVALID_ARGUMENT` if the host process already installed another logger of the
/// Rust `log` crate.
///
/// # Safety
/// Every pointer argument must be NULL (where allowed above) or valid as described above for
/// the duration of the call; handles must come from this library and not be used after being freed.
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
        let logger = *LOGGER.get_or_init(|| {
            Box::leak(Box::new(CallbackLogger { sink: RwLock::new(None), pending: Mutex::new(None) }))
        });
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
        let sink = callback.map(|cb| Sink { callback: cb, user_data: user_data as usize });
        if in_callback() {
            // This thread holds the read lock (it is inside the callback): the write lock would
            // never come. Applied by `log()` once the callback returns.
            *logger.pending.lock() = Some((sink, level));
        } else {
            logger.pending.lock().take();
            logger.install(sink, level);
        }
        Ok(())
    })
}
