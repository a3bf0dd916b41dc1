//! The Linear layer's product, `x w^T + b`, and which library computes it on the CPU.
//!
//! libtorch computes a float32 `linear` on the CPU with MKL's sgemm. On AMD CPUs MKL takes a
//! generic path: on two Zen 4 cores (avx512) it runs LoFi's products (4,096 x 370 x 370, 2,048 x
//! 1,152 x 128, ...) at 100-130 GFLOP/s, while oneDNN, which libtorch bundles and already uses for
//! bfloat16, runs them at 165-195 GFLOP/s. [`linear`] therefore sends float32 CPU products to oneDNN
//! through a small C++ shim (`onednn_linear.cpp`, with its own autograd function so that training
//! uses it too), and everything else (CUDA, half precisions, which libtorch already gives to
//! cuBLAS or oneDNN) to libtorch's `linear`. That is the default on x86 CPUs other than Intel's;
//! on Intel's, MKL runs its AVX-512 kernels and stays the default.
//!
//! Both are exact float32; they sum in different orders, so outputs differ by rounding (about
//! 1e-7 relative). oneDNN, like MKL's AVX-512 path, computes each output row independently of the
//! other rows once a product has 16 rows or more (inputs are padded to a multiple of 64 rows, see
//! `ROW_QUANTUM`), which keeps tiles and streamed batches bit-identical to the whole image.
//!
//! `LOFI_CPU_MATMUL=blas` or `=onednn` (or [`set_cpu_backend`]) overrides the default: for
//! comparisons, and for hosts that need the previous release's bits.
//!
//! On CUDA, cuBLAS computes every product. Two things are chosen here:
//! - in inference, a hidden layer's bias and ReLU run in cuBLASLt's epilogue of the product
//!   (libtorch's `_addmm_activation`), not as a separate pass over the activations, which on a
//!   GPU costs about as much memory traffic as the product itself ([`set_cuda_fused_epilogue`]
//!   switches it, for comparisons);
//! - whether float32 products may use TF32 tensor cores ([`set_cuda_tf32`], `LOFI_CUDA_TF32`).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

/// Who computes float32 products on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuBackend {
    /// oneDNN, through `onednn_linear.cpp` (the default on x86 CPUs other than Intel's).
    OneDnn,
    /// libtorch's own `linear` (MKL's sgemm).
    Blas,
}

impl CpuBackend {
    pub fn name(self) -> &'static str {
        match self {
            CpuBackend::OneDnn => "onednn",
            CpuBackend::Blas => "blas",
        }
    }
}

const UNSET: u8 = 0;
const ONEDNN: u8 = 1;
const BLAS: u8 = 2;

/// The chosen backend (UNSET until the first product or [`set_cpu_backend`]).
static BACKEND: AtomicU8 = AtomicU8::new(UNSET);

#[cfg(lofi_matmul_precision)]
mod precision_shim {
    extern "C" {
        pub fn lofi_set_cuda_tf32(on: i32) -> i32;
        pub fn lofi_cuda_tf32() -> i32;
    }
}

#[cfg(lofi_onednn)]
mod shim {
    use torch_sys::C_tensor;
    extern "C" {
        pub fn lofi_onednn_available() -> i32;
        pub fn lofi_onednn_linear(
            x: *const C_tensor,
            w: *const C_tensor,
            b: *const C_tensor,
            relu: i32,
        ) -> *mut C_tensor;
    }
}

/// Whether this build can call oneDNN (the shim was compiled and libtorch has oneDNN).
pub fn onednn_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(lofi_onednn)]
        {
            // SAFETY: no arguments; the shim catches every C++ exception.
            unsafe { shim::lofi_onednn_available() == 1 }
        }
        #[cfg(not(lofi_onednn))]
        {
            false
        }
    })
}

/// The backend of float32 CPU products: [`set_cpu_backend`]'s choice, else `LOFI_CPU_MATMUL`
/// (`onednn` or `blas`), else the CPU's default (see `default_backend`).
pub fn cpu_backend() -> CpuBackend {
    match BACKEND.load(Ordering::Relaxed) {
        ONEDNN => CpuBackend::OneDnn,
        BLAS => CpuBackend::Blas,
        _ => {
            let wanted = std::env::var("LOFI_CPU_MATMUL").ok();
            let backend = match wanted.as_deref().map(str::trim) {
                Some("blas") | Some("mkl") => CpuBackend::Blas,
                Some(other) if !other.is_empty() && other != "onednn" => {
                    log::warn!("LOFI_CPU_MATMUL={other:?} is not onednn or blas; using the default");
                    default_backend()
                }
                _ => default_backend(),
            };
            set_cpu_backend(backend);
            backend
        }
    }
}

/// oneDNN on x86 CPUs that are not Intel's, where MKL runs its generic kernels; MKL elsewhere.
/// On Intel CPUs MKL takes its AVX-512 path, which ran these products at about 260 GFLOP/s on a
/// 2-core Xeon (README, "Speed"), near that machine's peak; oneDNN was not measured there, so the
/// default stays libtorch's (`LOFI_CPU_MATMUL=onednn` chooses it).
fn default_backend() -> CpuBackend {
    let not_intel = crate::device::cpu_vendor().is_some_and(|v| v != "GenuineIntel");
    if onednn_available() && cfg!(target_arch = "x86_64") && not_intel {
        CpuBackend::OneDnn
    } else {
        CpuBackend::Blas
    }
}

/// Chooses the backend of float32 CPU products for the whole process (the bench compares both in
/// one run). oneDNN where it is not available means libtorch's products.
pub fn set_cpu_backend(backend: CpuBackend) {
    let backend =
        if backend == CpuBackend::OneDnn && !onednn_available() { CpuBackend::Blas } else { backend };
    BACKEND.store(if backend == CpuBackend::OneDnn { ONEDNN } else { BLAS }, Ordering::Relaxed);
}

/// Lets cuBLAS compute float32 products with TF32 tensor cores (10-bit mantissas, float32 range
/// and sums), or not: libtorch's process-wide switch (`torch.backends.cuda.matmul.allow_tf32`),
/// so it applies to every CUDA model of the process, and to the host's own libtorch products if
/// it has any. Returns false where this build cannot set it. Half-precision networks are not
/// affected; nor is the CPU.
pub fn set_cuda_tf32(on: bool) -> bool {
    TF32_CHOSEN.store(true, Ordering::Relaxed);
    #[cfg(lofi_matmul_precision)]
    {
        // SAFETY: an integer argument; the shim catches every C++ exception.
        unsafe { precision_shim::lofi_set_cuda_tf32(i32::from(on)) == 0 }
    }
    #[cfg(not(lofi_matmul_precision))]
    {
        let _ = on;
        false
    }
}

/// Whether float32 CUDA products may use TF32 now (libtorch's switch; see [`set_cuda_tf32`]).
pub fn cuda_tf32() -> bool {
    #[cfg(lofi_matmul_precision)]
    {
        // SAFETY: no arguments; the shim catches every C++ exception.
        unsafe { precision_shim::lofi_cuda_tf32() == 1 }
    }
    #[cfg(not(lofi_matmul_precision))]
    {
        false
    }
}

/// Whether [`set_cuda_tf32`] (or [`apply_cuda_tf32_default`]) has chosen already.
static TF32_CHOSEN: AtomicBool = AtomicBool::new(false);

/// TF32 for float32 CUDA products unless `LOFI_CUDA_TF32` says otherwise: measured on an H200
/// (README, "GPU"), the paper-size model's output moved by less than bfloat16 moves it, at
/// several times float32's speed.
pub const CUDA_TF32_DEFAULT: bool = true;

/// Called when a model is loaded on CUDA: the first time, sets TF32 from `LOFI_CUDA_TF32`
/// (`1`/`on` or `0`/`off`), else [`CUDA_TF32_DEFAULT`], unless [`set_cuda_tf32`] chose before.
pub fn apply_cuda_tf32_default() {
    if TF32_CHOSEN.swap(true, Ordering::Relaxed) {
        return;
    }
    let on = tf32_wanted(std::env::var("LOFI_CUDA_TF32").ok().as_deref());
    if !set_cuda_tf32(on) {
        log::warn!("cannot set TF32 for CUDA float32 products in this build");
    }
}

/// TF32 or not from `LOFI_CUDA_TF32`'s value (`1`/`on`/`true`, `0`/`off`/`false`; unset, empty
/// or anything else: [`CUDA_TF32_DEFAULT`], with a warning for anything else).
fn tf32_wanted(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        Some("1") | Some("on") | Some("true") => true,
        Some("0") | Some("off") | Some("false") => false,
        Some(other) if !other.is_empty() => {
            log::warn!("LOFI_CUDA_TF32={other:?} is not 1/on or 0/off; using the default");
            CUDA_TF32_DEFAULT
        }
        _ => CUDA_TF32_DEFAULT,
    }
}

/// Whether inference on CUDA fuses bias and ReLU into the product (default true).
static CUDA_FUSED_EPILOGUE: AtomicBool = AtomicBool::new(true);

/// Chooses whether CUDA inference runs bias + ReLU in cuBLASLt's epilogue (true, the default)
/// or as libtorch's `linear` then an in-place ReLU (the other side of a benchmark).
pub fn set_cuda_fused_epilogue(on: bool) {
    CUDA_FUSED_EPILOGUE.store(on, Ordering::Relaxed);
}

/// ReLU(`x w^T + b`) as one `_addmm_activation` (x flattened to rows and restored): on CUDA
/// cuBLASLt applies bias and ReLU in the product's epilogue. Not for autograd.
fn fused_bias_relu(x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    let rows = as_rows(x, w.size()[1]);
    // tch 0.24's wrapper calls `_addmm_activation(self, mat1, mat2, use_gelu)` against the C++
    // signature `(self, mat1, mat2, beta = 1, alpha = 1, use_gelu = false)`: its flag lands in
    // `beta` and `use_gelu` keeps its default. So `true` here means beta = 1 (the bias added) and
    // ReLU; `false` would drop the bias. The test below holds this to relu(linear).
    let y = b.internal_addmm_activation(&rows, &w.tr(), true);
    in_leading_dims_of(y, x)
}

/// `x` (..., k) as 2-D rows of k columns (products that take matrices): itself when 2-D.
fn as_rows(x: &Tensor, k: i64) -> Tensor {
    if x.dim() == 2 {
        x.shallow_clone()
    } else {
        x.reshape([-1, k])
    }
}

/// The rows `y` (n, m) of a product of [`as_rows`]`(x)` in x's leading dimensions: (..., m).
fn in_leading_dims_of(y: Tensor, x: &Tensor) -> Tensor {
    if x.dim() == 2 {
        return y;
    }
    let mut shape = x.size();
    *shape.last_mut().expect("x has a dimension") = y.size()[1];
    y.view(shape.as_slice())
}

/// `x w^T + b`, as `x.linear(w, b)`: x (..., k), w (m, k), b (m). Differentiable.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    if uses_onednn(x, w, b) {
        if let Some(y) = onednn_linear(x, w, b, false) {
            return y;
        }
        warn_fallback();
    }
    x.linear(w, b)
}

/// ReLU(`x w^T + b`): one fused oneDNN operation where [`linear`] uses oneDNN and no input
/// requires a gradient (inference), else [`linear`] followed by `relu` (an in-place ReLU: the
/// product's output is fresh, and ReLU's backward needs only its own output).
pub fn linear_relu(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    relu: impl FnOnce(Tensor) -> Tensor,
) -> Tensor {
    let differentiable = x.requires_grad() || w.requires_grad() || b.is_some_and(Tensor::requires_grad);
    if let (false, Some(bias), Device::Cuda(_)) = (differentiable, b, x.device()) {
        if CUDA_FUSED_EPILOGUE.load(Ordering::Relaxed)
            && x.dim() >= 1
            && x.size().last() == Some(&w.size()[1])
        {
            return fused_bias_relu(x, w, bias);
        }
    }
    if !differentiable && uses_onednn(x, w, b) {
        if let Some(y) = onednn_linear(x, w, b, true) {
            return y;
        }
        warn_fallback();
    }
    relu(linear(x, w, b))
}

fn warn_fallback() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| log::warn!("oneDNN's product failed; libtorch's linear computes it instead"));
}

/// The narrowest side (inputs or outputs) of a product that oneDNN computes. Measured on one Zen 4
/// core (2,048 rows): oneDNN is 10-30 % faster from 128 x 128 up (100 x 128 about even), MKL is
/// faster for thin products (21 inputs: 130 against 210 us; 1 output: 35 against 95-150 us), where
/// oneDNN's fixed cost per call dominates. The choice depends on the weight's shape only, never on
/// the number of rows, so a row's value does not depend on the batch it comes in.
const ONEDNN_MIN_SIDE: i64 = 64;

/// Row counts are padded with zero rows to a multiple of this. Two reasons:
/// - oneDNN computes products of fewer than 16 rows with other kernels, whose sums round
///   differently (measured: every row count from 1 to 15 differs in the last bits from the same
///   rows within a larger product; every count from 16 up gives the same bits), and a row's value
///   must not depend on the batch it comes in;
/// - oneDNN compiles a kernel for every new shape (about 2.3 ms for 370 x 370, cached after), so
///   calls whose row counts all differ (partial batches, point lists) would each pay that per
///   layer; rounding up bounds the shapes to a few, at most 63 wasted rows per call.
const ROW_QUANTUM: i64 = 64;

/// Float32 on the CPU, a weight whose sides are both at least [`ONEDNN_MIN_SIDE`], oneDNN chosen.
fn uses_onednn(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> bool {
    let cpu_f32 = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float;
    w.dim() == 2
        && w.size().iter().all(|&side| side >= ONEDNN_MIN_SIDE)
        && x.dim() >= 1
        && x.numel() > 0
        && cpu_f32(x)
        && cpu_f32(w)
        && b.is_none_or(|b| cpu_f32(b) && b.dim() == 1)
        && cpu_backend() == CpuBackend::OneDnn
}

#[cfg(lofi_onednn)]
fn onednn_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, relu: bool) -> Option<Tensor> {
    let k = w.size()[1];
    if x.size().last() != Some(&k) {
        return None; // libtorch's linear reports the mismatch
    }
    // The shim takes 2-D inputs: leading dimensions are flattened into rows and restored after.
    let mut rows = as_rows(x, k);
    let n = rows.size()[0];
    let padded = (n + ROW_QUANTUM - 1) / ROW_QUANTUM * ROW_QUANTUM;
    if padded > n {
        rows = Tensor::cat(
            &[rows.shallow_clone(), rows.new_zeros([padded - n, k], (Kind::Float, Device::Cpu))],
            0,
        );
    }
    let null = std::ptr::null();
    // SAFETY: the pointers are live tensors for the call; the shim returns a new tensor (or
    // null), which `from_ptr` takes over.
    let y = unsafe {
        let out = shim::lofi_onednn_linear(
            rows.as_ptr(),
            w.as_ptr(),
            b.map_or(null, Tensor::as_ptr),
            i32::from(relu),
        );
        if out.is_null() {
            return None;
        }
        Tensor::from_ptr(out)
    };
    let y = if padded > n { y.narrow(0, 0, n) } else { y };
    Some(in_leading_dims_of(y, x))
}

#[cfg(not(lofi_onednn))]
fn onednn_linear(_x: &Tensor, _w: &Tensor, _b: Option<&Tensor>, _relu: bool) -> Option<Tensor> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> (Tensor, Tensor) {
        (onednn_linear(x, w, b, false).expect("oneDNN product"), x.linear(w, b))
    }

    /// `got` equals `want` to float32 rounding: the largest difference is at most 1e-5 of the
    /// largest magnitude.
    fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
        let err = f64::try_from((got - want).abs().max()).unwrap();
        let scale = f64::try_from(want.abs().max()).unwrap();
        assert!(err <= 1e-5 * scale, "{what}: max difference {err} of {scale}");
    }

    /// oneDNN's product equals libtorch's up to float32 rounding, with and without bias, for 2-D
    /// and 3-D inputs, and for a weight that is a narrowed (non-contiguous) view.
    #[test]
    fn onednn_products_equal_libtorch_s() {
        assert!(onednn_available(), "this libtorch has no oneDNN");
        tch::manual_seed(5);
        let opts = (Kind::Float, Device::Cpu);
        let w_full = Tensor::randn([37, 45], opts);
        let b = Tensor::randn([37], opts);
        for (x, w) in [
            (Tensor::randn([1000, 45], opts), w_full.shallow_clone()),
            (Tensor::randn([3, 7, 45], opts), w_full.shallow_clone()),
            (Tensor::randn([5, 40], opts), w_full.narrow(1, 0, 40)),
        ] {
            for bias in [Some(&b), None] {
                let (got, want) = both(&x, &w, bias);
                assert_eq!(got.size(), want.size());
                assert_close(&got, &want, &format!("x {:?}, bias {}", x.size(), bias.is_some()));
            }
        }
    }

    /// The fused ReLU gives the bits of ReLU after the same product; under autograd the shim
    /// refuses it (the caller applies ReLU), and `linear_relu` then equals relu(linear).
    #[test]
    fn onednn_fused_relu_equals_relu_after_the_product() {
        tch::manual_seed(8);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([333, 96], opts);
        let w = Tensor::randn([80, 96], opts);
        let b = Tensor::randn([80], opts);
        let fused = onednn_linear(&x, &w, Some(&b), true).expect("oneDNN product");
        assert!(fused.equal(&onednn_linear(&x, &w, Some(&b), false).unwrap().relu()));
        let w = w.set_requires_grad(true);
        assert!(onednn_linear(&x, &w, Some(&b), true).is_none(), "a recorded product must not fuse ReLU");
        let y = linear_relu(&x, &w, Some(&b), |t| t.relu());
        assert!(y.requires_grad());
        assert!(y.allclose(&fused, 1e-5, 1e-5, false));
    }

    /// The fused bias + ReLU (`_addmm_activation`, what CUDA inference runs) equals ReLU after
    /// libtorch's linear, for 2-D and 3-D inputs (computed here on the CPU, where libtorch has the
    /// same operation).
    #[test]
    fn fused_bias_relu_equals_relu_after_linear() {
        tch::manual_seed(9);
        let opts = (Kind::Float, Device::Cpu);
        let w = Tensor::randn([37, 21], opts);
        let b = Tensor::randn([37], opts);
        for x in [Tensor::randn([130, 21], opts), Tensor::randn([4, 33, 21], opts)] {
            let got = fused_bias_relu(&x, &w, &b);
            let want = x.linear(&w, Some(&b)).relu();
            assert_eq!(got.size(), want.size());
            assert_close(&got, &want, &format!("x {:?}", x.size()));
        }
    }

    /// LOFI_CUDA_TF32's values: on, off, and the default for unset, empty or unknown ones.
    #[test]
    fn the_tf32_variable_is_read_as_documented() {
        for on in ["1", "on", "true", " on "] {
            assert!(tf32_wanted(Some(on)), "{on:?}");
        }
        for off in ["0", "off", "false"] {
            assert!(!tf32_wanted(Some(off)), "{off:?}");
        }
        for default in [None, Some(""), Some("maybe")] {
            assert_eq!(tf32_wanted(default), CUDA_TF32_DEFAULT, "{default:?}");
        }
    }

    /// The TF32 switch sets libtorch's flag and reads it back (a context flag: no GPU needed).
    #[test]
    fn the_tf32_switch_round_trips() {
        let before = cuda_tf32();
        for on in [true, false, true] {
            assert!(set_cuda_tf32(on));
            assert_eq!(cuda_tf32(), on);
        }
        set_cuda_tf32(before);
    }

    /// Gradients through the shim's autograd function equal libtorch's, for input, weight and
    /// bias.
    #[test]
    fn onednn_gradients_equal_libtorch_s() {
        tch::manual_seed(6);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([300, 21], opts).set_requires_grad(true);
        let w = Tensor::randn([64, 21], opts).set_requires_grad(true);
        let b = Tensor::randn([64], opts).set_requires_grad(true);
        let weights = Tensor::randn([300, 64], opts);
        let grads =
            |y: Tensor| Tensor::run_backward(&[(y * &weights).sum(Kind::Float)], &[&x, &w, &b], false, false);
        let got = grads(onednn_linear(&x, &w, Some(&b), false).expect("oneDNN product"));
        let want = grads(x.linear(&w, Some(&b)));
        for (name, g, h) in [("x", &got[0], &want[0]), ("w", &got[1], &want[1]), ("b", &got[2], &want[2])] {
            assert_close(g, h, &format!("gradient of {name}"));
        }
    }

    /// Each output row is computed independently of the other rows, on one thread and on two, with
    /// and without the fused ReLU: the rows of a product of any part of the input are the bits of
    /// the same rows of the whole (what bit-identical tiles and streamed batches rest on).
    #[test]
    fn onednn_rows_do_not_depend_on_the_other_rows() {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([2500, 130], opts);
        let w = Tensor::randn([128, 130], opts);
        let b = Tensor::randn([128], opts);
        let threads = tch::get_num_threads();
        for t in [1, 2] {
            tch::set_num_threads(t);
            for relu in [false, true] {
                let whole = onednn_linear(&x, &w, Some(&b), relu).expect("oneDNN product");
                for len in (1..80).chain([127, 128, 129, 255, 256, 1000, 2047]) {
                    for start in [0, 3, 401] {
                        let part = onednn_linear(&x.narrow(0, start, len), &w, Some(&b), relu)
                            .expect("oneDNN product");
                        assert!(
                            part.equal(&whole.narrow(0, start, len)),
                            "rows {start}..+{len}, {t} thread(s), relu {relu}"
                        );
                    }
                }
            }
        }
        tch::set_num_threads(threads);
    }
}
