//! Arbitrary arguments for the C entry points, as a C caller that tells the truth about its
//! buffers would pass them: every size, count, stride, struct_size, budget, thread count,
//! coordinate, window, operator description and parameter the fuzzer likes, with buffers as
//! large as the arguments claim. Findings: a process crash (ASan, abort), a status of
//! LOFI_STATUS_INTERNAL (a bug: a panic caught at the boundary), or a broken last-error
//! contract (a failure without a message, a success with one).
#![no_main]

use std::ffi::{c_void, CStr, CString};
use std::mem::size_of;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lofi::ffi::*;

/// Outputs and images are kept small so that an execution takes milliseconds.
const MAX_FLOATS: usize = 1 << 14;

struct Fixtures {
    gray: *mut lofi_model,
    aware: *mut lofi_model,
    gray_bytes: Vec<u8>,
}
// SAFETY: models are immutable and shared between threads by design; only read here.
unsafe impl Send for Fixtures {}
unsafe impl Sync for Fixtures {}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models");
        let load = |name: &str| {
            let path = CString::new(dir.join(name).to_str().unwrap()).unwrap();
            let mut m = std::ptr::null_mut();
            // SAFETY: valid path, NULL params, valid out-pointer.
            assert_eq!(
                unsafe { lofi_load(path.as_ptr(), std::ptr::null(), &mut m) },
                lofi_status::LOFI_STATUS_OK
            );
            m
        };
        Fixtures {
            gray: load("tiny-gray.lofi"),
            aware: load("tiny-gray-sigma.lofi"),
            gray_bytes: std::fs::read(dir.join("tiny-gray.lofi")).unwrap(),
        }
    })
}

/// The status contract: never INTERNAL; a failure leaves a message, a success none.
fn check(what: &str, status: lofi_status) {
    let message = lofi_last_error();
    assert_ne!(status, lofi_status::LOFI_STATUS_INTERNAL, "{what}: {}", text(message));
    if status == lofi_status::LOFI_STATUS_OK {
        assert!(message.is_null(), "{what} succeeded with the message {}", text(message));
    } else {
        assert!(!message.is_null() && !text(message).is_empty(), "{what} failed without a message");
    }
}

fn text(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        "(NULL)".into()
    } else {
        // SAFETY: lofi's NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Current,
    Plus(u8),
    Raw(u16),
}

impl Size {
    fn bytes(self, current: usize) -> usize {
        match self {
            Size::Current => current,
            Size::Plus(k) => current + k as usize,
            Size::Raw(n) => n as usize,
        }
    }
}

/// A struct of `T` in a buffer large enough for the size it claims.
struct Claimed<T> {
    buf: Vec<u64>,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> Claimed<T> {
    fn new(value: T, size: Size) -> Self {
        let claimed = size.bytes(size_of::<T>());
        let mut buf = vec![0u64; claimed.max(size_of::<T>()).div_ceil(8)];
        // SAFETY: the buffer holds at least a T; T is plain data.
        unsafe {
            (buf.as_mut_ptr() as *mut T).write(value);
            (buf.as_mut_ptr() as *mut usize).write(claimed);
        }
        Claimed { buf, _t: std::marker::PhantomData }
    }
    fn ptr(&mut self) -> *mut T {
        self.buf.as_mut_ptr() as *mut T
    }
}

#[derive(Arbitrary, Debug)]
struct Run {
    size: Size,
    budget: u64,
    threads: i32,
    noise_level: f64,
    cancel_after: Option<u8>,
}

unsafe extern "C" fn progress(user: *mut c_void, _done: u64, _total: u64) -> bool {
    let left = &mut *(user as *mut u32);
    if *left == 0 {
        return false;
    }
    *left -= 1;
    true
}

fn run_params(run: &Run, counter: &mut u32) -> lofi_run_params {
    let mut p = lofi::ffi::default_run_params();
    p.memory_budget_bytes = run.budget;
    p.threads = run.threads;
    p.noise_level = run.noise_level;
    if let Some(n) = run.cancel_after {
        *counter = n as u32;
        p.progress = Some(progress);
        p.progress_user_data = counter as *mut u32 as *mut c_void;
    }
    p
}

#[derive(Arbitrary, Debug)]
struct Image {
    width: u8,
    height: u8,
    channels: u8,
    stride: Option<u16>,
    poison: Option<(u16, f32)>,
}

/// The image's buffer, as large as its description makes lofi read.
fn image(img: &Image) -> Option<(Vec<f32>, lofi_image)> {
    let (w, h, c) = (img.width as usize, img.height as usize, img.channels as usize % 5);
    let row = w * c;
    let stride_bytes = img.stride.map_or(0, |s| s as usize);
    let stride = if stride_bytes == 0 { row } else { stride_bytes / 4 };
    let len = (h.max(1) - 1) * stride + row;
    let len = len.max(h * row).max(1);
    if len > MAX_FLOATS {
        return None;
    }
    let mut data: Vec<f32> = (0..len).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    if let Some((at, v)) = img.poison {
        let at = at as usize % len;
        data[at] = v;
    }
    let desc =
        lofi_image { data: data.as_ptr(), width: w, height: h, channels: c, row_stride_bytes: stride_bytes };
    Some((data, desc))
}

/// The fuzzed reader's image and what it was asked for.
struct FuzzReader {
    width: usize,
    height: usize,
    channels: usize,
    calls: u32,
    fail_at: u32,
    leave_unwritten: bool,
}

unsafe extern "C" fn fuzz_read(
    user: *mut c_void,
    row0: usize,
    rows: usize,
    col0: usize,
    cols: usize,
    out: *mut f32,
) -> bool {
    let r = &mut *(user as *mut FuzzReader);
    // lofi's promise (lofi_read_fn): never empty, always inside the image it was told about.
    assert!(rows > 0 && cols > 0, "an empty rectangle: {rows} x {cols}");
    assert!(
        row0 + rows <= r.height && col0 + cols <= r.width,
        "rows {row0}+{rows}, columns {col0}+{cols} of a {} x {} image",
        r.width,
        r.height
    );
    r.calls += 1;
    if r.calls == r.fail_at {
        return false;
    }
    if !r.leave_unwritten {
        let out = std::slice::from_raw_parts_mut(out, rows * cols * r.channels);
        for (i, v) in out.iter_mut().enumerate() {
            let (row, col) = (row0 + i / (cols * r.channels), col0 + (i / r.channels) % cols);
            *v = ((row * 31 + col * 17 + i % r.channels) % 101) as f32 / 100.0;
        }
    }
    true
}

#[derive(Arbitrary, Debug)]
enum Op {
    Denoise,
    Inpaint { mask: Option<Vec<u8>>, fraction: f64, seed: u64 },
    Fourier { mask: Vec<u8> },
    Blur { kw: u8, kh: u8, taps: Vec<f32> },
    Lensing,
    Radon { angles: Vec<f64> },
    Callbacks { measurement_len: u16, fail: u8 },
    Unknown(i32),
}

#[derive(Arbitrary, Debug)]
struct Pnp {
    aware: bool,
    width: u8,
    height: u8,
    channels: u8,
    op: Op,
    op_size: Size,
    params: Option<(Size, Size, f64, u8, f64, Run, f64, f64, u8, f64, i32)>,
    measurements: Option<u16>,
    steps: u8,
    solve: u8,
    residuals: Option<Size>,
    free_model_first: bool,
}

struct UserOp {
    input: usize,
    output: usize,
    calls: u32,
    fail_at: u32,
}

unsafe extern "C" fn user_forward(user: *mut c_void, input: *const f32, output: *mut f32) -> bool {
    let op = &mut *(user as *mut UserOp);
    op.calls += 1;
    if op.calls == op.fail_at {
        return false;
    }
    let x = std::slice::from_raw_parts(input, op.input);
    let y = std::slice::from_raw_parts_mut(output, op.output);
    for (i, v) in y.iter_mut().enumerate() {
        *v = x[i % op.input.max(1)] * 0.5;
    }
    true
}

unsafe extern "C" fn user_adjoint(user: *mut c_void, input: *const f32, output: *mut f32) -> bool {
    let op = &mut *(user as *mut UserOp);
    op.calls += 1;
    if op.calls == op.fail_at {
        return false;
    }
    let y = std::slice::from_raw_parts(input, op.output);
    let x = std::slice::from_raw_parts_mut(output, op.input);
    x.fill(0.0);
    for (i, v) in y.iter().enumerate() {
        x[i % op.input.max(1)] += v * 0.5;
    }
    true
}

#[derive(Arbitrary, Debug)]
enum Call {
    Region {
        aware: bool,
        image: Image,
        region: Option<[f64; 4]>,
        grid: (u16, u16),
        window: Option<[u16; 4]>,
        out_stride: Option<u16>,
        run: Option<Run>,
        report: Option<Size>,
    },
    /// `lofi_reconstruct_region_from_reader_sized` with a reader whose image is computed on the
    /// fly (so its claimed size needs no buffer), failing or leaving values unwritten on demand.
    Reader {
        aware: bool,
        width: u8,
        height: u8,
        channels: u8,
        size: Size,
        null_read: bool,
        fail_at: Option<u8>,
        leave_unwritten: bool,
        region: Option<[f64; 4]>,
        grid: (u16, u16),
        window: Option<[u16; 4]>,
        run: Option<Run>,
        report: Option<Size>,
    },
    Points {
        aware: bool,
        image: Image,
        points: Vec<(f64, f64)>,
        run: Option<Run>,
        report: Option<Size>,
    },
    Pnp(Pnp),
    Info(Size),
    Metadata {
        key: u8,
        raw_key: String,
        buf_len: u16,
        null_buf: bool,
    },
    MemoryRequirements(usize, usize),
    Init {
        which: u8,
        size: Size,
    },
    Load {
        cut: u16,
        flip: Option<(u16, u8)>,
        params: Option<(Size, i32, i32, i32)>,
    },
    CheckVersion(u32),
    StatusName(i32),
    ReleaseCache,
}

fn model(aware: bool) -> *mut lofi_model {
    if aware {
        fixtures().aware
    } else {
        fixtures().gray
    }
}

/// The fuzzed region and window as the C structs (windows of at most 63 x 63 samples).
fn region_and_window(
    region: Option<[f64; 4]>,
    window: Option<[u16; 4]>,
) -> (Option<lofi_region>, Option<lofi_window>) {
    let region = region.map(|r| lofi_region { x0: r[0], y0: r[1], x1: r[2], y1: r[3] });
    let window = window.map(|w| lofi_window {
        col0: w[0] as usize,
        row0: w[1] as usize,
        cols: w[2] as usize % 64,
        rows: w[3] as usize % 64,
    });
    (region, window)
}

fn report_buffer(size: Option<Size>) -> (Vec<u64>, *mut lofi_run_report, usize) {
    match size {
        None => (Vec::new(), std::ptr::null_mut(), 0),
        Some(s) => {
            let n = s.bytes(size_of::<lofi_run_report>());
            let mut buf = vec![0u64; n.div_ceil(8).max(1)];
            let p = buf.as_mut_ptr() as *mut lofi_run_report;
            (buf, p, n)
        }
    }
}

unsafe fn call(c: Call) {
    match c {
        Call::Region { aware, image: img, region, grid, window, out_stride, run, report } => {
            let Some((_data, desc)) = image(&img) else { return };
            let (region, window) = region_and_window(region, window);
            let (gw, gh) = (grid.0 as usize, grid.1 as usize);
            let (cols, rows) = window.map_or((gw, gh), |w| (w.cols, w.rows));
            let stride_bytes = out_stride.map_or(0, |s| s as usize);
            let row = cols; // one output channel
            let stride = if stride_bytes == 0 { row } else { stride_bytes / 4 };
            let len = (rows.max(1) - 1) * stride + row;
            if cols * rows > 4096 || len > MAX_FLOATS {
                return;
            }
            let mut out = vec![0f32; len.max(1)];
            let mut counter = 0;
            let params = run.as_ref().map(|r| Claimed::new(run_params(r, &mut counter), r.size));
            let mut params = params;
            let pp = params.as_mut().map_or(std::ptr::null(), |p| p.ptr() as *const lofi_run_params);
            let (_rb, rp, rs) = report_buffer(report);
            let s = lofi_reconstruct_region_sized(
                model(aware),
                &desc,
                region.as_ref().map_or(std::ptr::null(), |r| r as *const _),
                gw,
                gh,
                window.as_ref().map_or(std::ptr::null(), |w| w as *const _),
                out.as_mut_ptr(),
                stride_bytes,
                pp,
                rp,
                rs,
            );
            check("lofi_reconstruct_region", s);
        }
        Call::Reader {
            aware,
            width,
            height,
            channels,
            size,
            null_read,
            fail_at,
            leave_unwritten,
            region,
            grid,
            window,
            run,
            report,
        } => {
            let mut state = FuzzReader {
                width: width as usize,
                height: height as usize,
                channels: channels as usize % 5,
                calls: 0,
                fail_at: fail_at.map_or(0, u32::from),
                leave_unwritten,
            };
            let reader = lofi_input_reader {
                width: state.width,
                height: state.height,
                channels: state.channels,
                read: if null_read { None } else { Some(fuzz_read) },
                user_data: &mut state as *mut FuzzReader as *mut c_void,
                ..lofi::ffi::default_input_reader()
            };
            let mut reader = Claimed::new(reader, size);
            let (region, window) = region_and_window(region, window);
            let (gw, gh) = (grid.0 as usize, grid.1 as usize);
            let (cols, rows) = window.map_or((gw, gh), |w| (w.cols, w.rows));
            if cols * rows > 4096 {
                return;
            }
            let mut out = vec![0f32; (cols * rows).max(1)];
            let mut counter = 0;
            let mut params = run.as_ref().map(|r| Claimed::new(run_params(r, &mut counter), r.size));
            let pp = params.as_mut().map_or(std::ptr::null(), |p| p.ptr() as *const lofi_run_params);
            let (_rb, rp, rs) = report_buffer(report);
            let s = lofi_reconstruct_region_from_reader_sized(
                model(aware),
                reader.ptr(),
                region.as_ref().map_or(std::ptr::null(), |r| r as *const _),
                gw,
                gh,
                window.as_ref().map_or(std::ptr::null(), |w| w as *const _),
                out.as_mut_ptr(),
                0,
                pp,
                rp,
                rs,
            );
            check("lofi_reconstruct_region_from_reader", s);
        }
        Call::Points { aware, image: img, points, run, report } => {
            let Some((_data, desc)) = image(&img) else { return };
            if points.len() > 256 {
                return;
            }
            let xy: Vec<f64> = points.iter().flat_map(|&(x, y)| [x, y]).collect();
            let mut out = vec![0f32; points.len().max(1)];
            let mut counter = 0;
            let mut params = run.as_ref().map(|r| Claimed::new(run_params(r, &mut counter), r.size));
            let pp = params.as_mut().map_or(std::ptr::null(), |p| p.ptr() as *const lofi_run_params);
            let (_rb, rp, rs) = report_buffer(report);
            let s = lofi_reconstruct_points_sized(
                model(aware),
                &desc,
                xy.as_ptr(),
                points.len(),
                out.as_mut_ptr(),
                pp,
                rp,
                rs,
            );
            check("lofi_reconstruct_points", s);
        }
        Call::Pnp(p) => pnp(p),
        Call::Info(size) => {
            let n = size.bytes(size_of::<lofi_model_info>());
            let mut buf = vec![0u64; n.div_ceil(8).max(1)];
            let s = lofi_model_get_info_sized(fixtures().gray, buf.as_mut_ptr() as *mut lofi_model_info, n);
            check("lofi_model_get_info", s);
            if s == lofi_status::LOFI_STATUS_OK {
                assert!(buf[0] as usize <= n);
            }
        }
        Call::Metadata { key, raw_key, buf_len, null_buf } => {
            let keys = ["notes", "config", "format_version", "digest"];
            let key = if (key as usize) < keys.len() { keys[key as usize].to_string() } else { raw_key };
            let Ok(key) = CString::new(key) else { return };
            let mut buf = vec![0u8; buf_len as usize];
            let (ptr, len) =
                if null_buf { (std::ptr::null_mut(), 0) } else { (buf.as_mut_ptr() as *mut _, buf.len()) };
            let mut needed = 0usize;
            let s = lofi_model_get_metadata(fixtures().gray, key.as_ptr(), ptr, len, &mut needed);
            check("lofi_model_get_metadata", s);
            if s == lofi_status::LOFI_STATUS_OK && !ptr.is_null() {
                assert_eq!(buf.iter().position(|&b| b == 0), Some(needed - 1));
            }
        }
        Call::MemoryRequirements(w, h) => {
            let (mut min, mut per) = (0u64, 0u64);
            check(
                "lofi_memory_requirements",
                lofi_memory_requirements(fixtures().gray, w, h, &mut min, &mut per),
            );
        }
        Call::Init { which, size } => match which % 4 {
            0 => {
                let mut c = Claimed::new(lofi::ffi::default_load_params(), size);
                check("lofi_init_load_params", lofi_init_load_params(c.ptr()));
            }
            1 => {
                let mut c = Claimed::new(lofi::ffi::default_run_params(), size);
                check("lofi_init_run_params", lofi_init_run_params(c.ptr()));
            }
            2 => {
                let mut c = Claimed::new(lofi::ffi::default_pnp_params(), size);
                check("lofi_init_pnp_params", lofi_init_pnp_params(c.ptr()));
            }
            _ => {
                let mut c = Claimed::new(lofi::ffi::default_operator(), size);
                check("lofi_init_operator", lofi_init_operator(c.ptr()));
            }
        },
        Call::Load { cut, flip, params } => {
            let f = fixtures();
            let mut bytes = f.gray_bytes[..(cut as usize).min(f.gray_bytes.len())].to_vec();
            if let Some((at, bit)) = flip {
                if !bytes.is_empty() {
                    let at = at as usize % bytes.len();
                    bytes[at] ^= 1 << (bit % 8);
                }
            }
            let mut lp = params.map(|(size, device, index, precision)| {
                let mut p = lofi::ffi::default_load_params();
                p.device = device % 3;
                p.device_index = index;
                p.precision = precision;
                Claimed::new(p, size)
            });
            let lpp = lp.as_mut().map_or(std::ptr::null(), |c| c.ptr() as *const lofi_load_params);
            let mut m = std::ptr::null_mut();
            let data = if bytes.is_empty() { [0u8].as_ptr() } else { bytes.as_ptr() };
            let s = lofi_load_from_memory(data, bytes.len(), lpp, &mut m);
            check("lofi_load_from_memory", s);
            lofi_model_free(m);
        }
        Call::CheckVersion(v) => check("lofi_check_version", lofi_check_version(v)),
        Call::StatusName(v) => assert!(!lofi_status_name(v).is_null()),
        Call::ReleaseCache => check("lofi_release_cached_memory", lofi_release_cached_memory()),
    }
}

unsafe fn pnp(p: Pnp) {
    let (w, h, c) = (p.width as usize % 24, p.height as usize % 24, p.channels as usize % 3);
    let n = w * h * c;
    let mut op = lofi::ffi::default_operator();
    op.width = w;
    op.height = h;
    op.channels = c;
    // Arrays live until the end of the function (the operator is read at create; user
    // callbacks during the steps).
    let mask: Vec<f32>;
    let kernel: Vec<f32>;
    let angles: Vec<f64>;
    let mut user = UserOp { input: n, output: 0, calls: 0, fail_at: 0 };
    match &p.op {
        Op::Denoise => op.kind = LOFI_OPERATOR_DENOISE,
        Op::Inpaint { mask: m, fraction, seed } => {
            op.kind = LOFI_OPERATOR_INPAINT;
            op.observed_fraction = *fraction;
            op.seed = *seed;
            mask = m.as_ref().map_or(Vec::new(), |m| m.iter().map(|&b| (b % 2) as f32).collect());
            if m.is_some() {
                op.mask = if mask.is_empty() { std::ptr::null() } else { mask.as_ptr() };
                op.mask_len = mask.len();
            }
        }
        Op::Fourier { mask: m } => {
            op.kind = LOFI_OPERATOR_FOURIER_MASK;
            mask = m.iter().map(|&b| (b % 2) as f32).collect();
            op.mask = if mask.is_empty() { std::ptr::null() } else { mask.as_ptr() };
            op.mask_len = mask.len();
        }
        Op::Blur { kw, kh, taps } => {
            op.kind = LOFI_OPERATOR_BLUR;
            let (kw, kh) = (*kw as usize % 9, *kh as usize % 9);
            kernel = (0..kw * kh).map(|i| taps.get(i).copied().unwrap_or(0.1)).collect();
            op.kernel = if kernel.is_empty() { std::ptr::null() } else { kernel.as_ptr() };
            op.kernel_width = kw;
            op.kernel_height = kh;
        }
        Op::Lensing => op.kind = LOFI_OPERATOR_LENSING,
        Op::Radon { angles: a } => {
            op.kind = LOFI_OPERATOR_RADON;
            angles = a.iter().take(16).copied().collect();
            op.angles_deg = if angles.is_empty() { std::ptr::null() } else { angles.as_ptr() };
            op.angle_count = angles.len();
        }
        Op::Callbacks { measurement_len, fail } => {
            op.kind = LOFI_OPERATOR_CALLBACKS;
            user.output = *measurement_len as usize % 1024;
            user.fail_at = *fail as u32;
            op.forward = Some(user_forward);
            op.adjoint = Some(user_adjoint);
            op.user_data = &mut user as *mut UserOp as *mut c_void;
            op.measurement_len = user.output;
        }
        Op::Unknown(k) => op.kind = *k,
    }
    let mut op = Claimed::new(op, p.op_size);
    let mut len = 0usize;
    let s = lofi_operator_measurement_len(op.ptr(), &mut len);
    check("lofi_operator_measurement_len", s);
    let len = match p.measurements {
        Some(l) => l as usize,
        None if s == lofi_status::LOFI_STATUS_OK => len,
        None => 1,
    };
    if len > MAX_FLOATS || n > MAX_FLOATS {
        return;
    }
    let y: Vec<f32> = (0..len.max(1)).map(|i| ((i * 13) % 17) as f32 / 17.0).collect();
    let mut counter = 0;
    let mut params =
        p.params.as_ref().map(|(size, run_size, alpha, cg, cg_tol, run, s0, s1, iters, tol, split)| {
            let mut q = lofi::ffi::default_pnp_params();
            q.alpha = *alpha;
            q.cg_max_iterations = *cg as u32 % 40;
            q.cg_tolerance = *cg_tol;
            q.run = run_params(run, &mut counter);
            q.run.struct_size = run_size.bytes(size_of::<lofi_run_params>());
            q.anneal_sigma_start = *s0;
            q.anneal_sigma_end = *s1;
            q.anneal_iterations = *iters as u32 % 8;
            q.tolerance = *tol;
            q.splitting = *split;
            Claimed::new(q, *size)
        });
    let pp = params.as_mut().map_or(std::ptr::null(), |c| c.ptr() as *const lofi_pnp_params);
    let owned = if p.free_model_first {
        let f = fixtures();
        let mut m = std::ptr::null_mut();
        let bytes = &f.gray_bytes;
        assert_eq!(
            lofi_load_from_memory(bytes.as_ptr(), bytes.len(), std::ptr::null(), &mut m),
            lofi_status::LOFI_STATUS_OK
        );
        Some(m)
    } else {
        None
    };
    let m = owned.unwrap_or_else(|| model(p.aware));
    let mut state = std::ptr::null_mut();
    let s = lofi_pnp_create(m, op.ptr(), y.as_ptr(), len, pp, &mut state);
    check("lofi_pnp_create", s);
    if let Some(m) = owned {
        lofi_model_free(m); // the state keeps it
    }
    if state.is_null() {
        return;
    }
    let residual_size = p.residuals.map(|s| s.bytes(size_of::<lofi_pnp_residuals>()));
    let mut rbuf = vec![0u64; residual_size.unwrap_or(8).div_ceil(8).max(1)];
    let rp = residual_size.map_or(std::ptr::null_mut(), |_| rbuf.as_mut_ptr() as *mut lofi_pnp_residuals);
    for _ in 0..p.steps % 3 {
        check("lofi_pnp_step", lofi_pnp_step_sized(state, rp, residual_size.unwrap_or(0)));
    }
    if p.solve % 4 > 0 {
        check(
            "lofi_pnp_solve",
            lofi_pnp_solve_sized(state, (p.solve % 4) as u32, rp, residual_size.unwrap_or(0)),
        );
    }
    let mut est = vec![0f32; n.max(1)];
    check("lofi_pnp_estimate", lofi_pnp_estimate(state, est.as_mut_ptr(), 0));
    if n > 0 {
        check("lofi_pnp_set_estimate", lofi_pnp_set_estimate(state, est.as_ptr()));
        check("lofi_pnp_set_ground_truth", lofi_pnp_set_ground_truth(state, est.as_ptr()));
    }
    lofi_pnp_free(state);
}

fuzz_target!(|c: Call| {
    // SAFETY: every buffer is as large as the arguments describe (see above).
    unsafe { call(c) }
});
