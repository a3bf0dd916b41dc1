//! The C boundary: a panic becomes LOFI_STATUS_INTERNAL (a libtorch failure surfaced as a panic
//! LOFI_STATUS_TORCH, an allocator failure LOFI_STATUS_OUT_OF_MEMORY), with a message, a log
//! record and nothing printed; panics outside entry points still reach the host's panic hook.
//! One test in this binary: it installs a panic hook before lofi installs its own.

use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use lofi::ffi::{self, lofi_status};

static HOST_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);
static LOG: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_log(_: *mut c_void, level: i32, message: *const c_char) {
    let text = CStr::from_ptr(message).to_string_lossy().into_owned();
    LOG.lock().unwrap().push((level, text));
}

fn last_error() -> String {
    let p = ffi::lofi_last_error();
    assert!(!p.is_null(), "no message");
    // SAFETY: lofi's NUL-terminated message, valid until this thread's next lofi call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[test]
fn panics_at_the_boundary_become_statuses_quietly() {
    // The host's hook (a stand-in for whatever a program installs), before lofi's first call.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        HOST_HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
        default(info); // prints (this test's own assertion failures too)
    }));
    // SAFETY: a valid callback; no user data.
    assert_eq!(
        unsafe { ffi::lofi_set_log_callback(Some(on_log), std::ptr::null_mut(), ffi::LOFI_LOG_TRACE) },
        lofi_status::LOFI_STATUS_OK
    );

    assert_eq!(ffi::boundary_probe(0), lofi_status::LOFI_STATUS_INTERNAL);
    let msg = last_error();
    assert!(msg.starts_with("boundary_probe: internal error: panic: an invariant of lofi"), "{msg}");
    assert_eq!(ffi::boundary_probe(1), lofi_status::LOFI_STATUS_TORCH);
    let msg = last_error();
    assert!(msg.starts_with("boundary_probe: libtorch: ") && msg.contains("shape"), "{msg}");
    let status = ffi::boundary_probe(2);
    let msg = last_error();
    assert_eq!(status, lofi_status::LOFI_STATUS_OUT_OF_MEMORY, "{msg}");
    assert!(
        msg.starts_with("boundary_probe: out of memory: ")
            && msg.contains("allocate memory")
            && !msg.contains("frame #"),
        "{msg}"
    );
    assert_eq!(ffi::boundary_probe(3), lofi_status::LOFI_STATUS_OUT_OF_MEMORY);
    assert!(last_error().contains("cannot allocate a probe"));
    assert_eq!(ffi::boundary_probe(9), lofi_status::LOFI_STATUS_OK);
    assert!(ffi::lofi_last_error().is_null());

    // None of them reached the host's hook (which is what prints, by default)...
    assert_eq!(
        HOST_HOOK_CALLS.load(Ordering::SeqCst),
        0,
        "a panic inside an entry point reached the host's hook"
    );
    // ... the bug went to the log at ERROR, with its location; the libtorch failures at DEBUG.
    {
        let log = LOG.lock().unwrap();
        let bug: Vec<_> = log.iter().filter(|(_, m)| m.contains("an invariant of lofi")).collect();
        assert_eq!(bug.len(), 1, "{log:?}");
        assert_eq!(bug[0].0, ffi::LOFI_LOG_ERROR);
        assert!(
            bug[0].1.contains("caught at the C boundary") && bug[0].1.contains("src/ffi/error.rs"),
            "{}",
            bug[0].1
        );
        assert!(
            log.iter().any(|(l, m)| *l == ffi::LOFI_LOG_DEBUG && m.contains("libtorch failure")),
            "{log:?}"
        );
    }
    // A panic outside any entry point still goes to the host's hook.
    let _ = std::panic::catch_unwind(|| panic!("the host's own panic"));
    assert_eq!(HOST_HOOK_CALLS.load(Ordering::SeqCst), 1);
    // SAFETY: clearing the callback.
    unsafe { ffi::lofi_set_log_callback(None, std::ptr::null_mut(), ffi::LOFI_LOG_OFF) };
    let _ = std::panic::take_hook();
}
