//! A batch's results on their way to the host.
//!
//! On the CPU a batch is computed when its call returns, and its values are copied out at once.
//! On CUDA the call only queues the work: reading the values at once would leave the GPU idle
//! while the host waits for the copy, writes the values out and builds the next batch's
//! coordinates. Instead the values are copied asynchronously into pinned host memory (a small
//! C++ shim, `host_copy.cpp`), and the engine launches the next batch before it waits for this
//! one, so the GPU computes batch k + 1 while the host writes batch k.
//!
//! [`set_overlapped_copies`] switches the overlap off (the other side of a benchmark).

use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

use crate::error::Result;

#[cfg(lofi_host_copy)]
mod shim {
    use torch_sys::C_tensor;

    #[repr(C)]
    pub struct LofiHostCopy {
        _opaque: [u8; 0],
    }

    extern "C" {
        pub fn lofi_host_copy_start(src: *const C_tensor) -> *mut LofiHostCopy;
        pub fn lofi_host_copy_finish(copy: *mut LofiHostCopy) -> *mut C_tensor;
        pub fn lofi_host_copy_free(copy: *mut LofiHostCopy);
    }
}

static OVERLAP: AtomicBool = AtomicBool::new(true);

/// Whether batches on a GPU are copied to the host asynchronously, overlapping the next batch's
/// work (default true). Process-wide.
pub fn set_overlapped_copies(on: bool) {
    OVERLAP.store(on, Ordering::Relaxed);
}

/// A batch's float32 values: on the host already, or being copied there.
pub(crate) enum PendingValues {
    Ready(Vec<f32>),
    #[cfg(lofi_host_copy)]
    Copying(CopyInFlight),
}

/// A copy queued by the shim, freed if dropped unfinished.
#[cfg(lofi_host_copy)]
pub(crate) struct CopyInFlight(*mut shim::LofiHostCopy);

// SAFETY: the pending copy is owned by this value alone and only touched through it.
#[cfg(lofi_host_copy)]
unsafe impl Send for CopyInFlight {}

#[cfg(lofi_host_copy)]
impl CopyInFlight {
    /// Waits for the bytes; the host tensor that holds them.
    fn finish(self, what: &str) -> Result<Tensor> {
        let copy = self.0;
        std::mem::forget(self);
        // SAFETY: `copy` came from lofi_host_copy_start and is finished once (the shim frees it;
        // `forget` keeps Drop from freeing it again); the returned handle is a new tensor that
        // `from_ptr` takes over.
        let host = unsafe { shim::lofi_host_copy_finish(copy) };
        if host.is_null() {
            return Err(crate::error::Error::Internal(format!("copying {what} to the host failed")));
        }
        // SAFETY: see above.
        Ok(unsafe { Tensor::from_ptr(host) })
    }
}

#[cfg(lofi_host_copy)]
impl Drop for CopyInFlight {
    fn drop(&mut self) {
        // SAFETY: an unfinished copy from lofi_host_copy_start, freed once.
        unsafe { shim::lofi_host_copy_free(self.0) };
    }
}

impl PendingValues {
    /// Starts moving `values` (float32, any device) to the host: an asynchronous copy from a GPU
    /// when overlapping is on, else the values at once.
    pub(crate) fn start(values: &Tensor, what: &str) -> Result<PendingValues> {
        #[cfg(lofi_host_copy)]
        if values.device() != tch::Device::Cpu && OVERLAP.load(Ordering::Relaxed) {
            // SAFETY: a live tensor for the call; the shim returns a new pending copy or null.
            let copy = unsafe { shim::lofi_host_copy_start(values.as_ptr()) };
            if !copy.is_null() {
                return Ok(PendingValues::Copying(CopyInFlight(copy)));
            }
            warn_fallback();
        }
        Ok(PendingValues::Ready(super::to_host(values, what)?))
    }

    /// Whether the values are on the host already (no copy in flight).
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, PendingValues::Ready(_))
    }

    /// The values, once they are on the host.
    pub(crate) fn finish(self, what: &str) -> Result<Vec<f32>> {
        match self {
            PendingValues::Ready(values) => Ok(values),
            #[cfg(lofi_host_copy)]
            PendingValues::Copying(copy) => super::to_host(&copy.finish(what)?, what),
        }
    }
}

#[cfg(lofi_host_copy)]
fn warn_fallback() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        log::warn!("asynchronous copies to the host are unavailable; copying each batch at once")
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// On the CPU the values are there at once and come back unchanged.
    #[test]
    fn cpu_values_pass_through() {
        let t = Tensor::from_slice(&[1.0f32, -2.5, 3.0]).view([3, 1]);
        let pending = PendingValues::start(&t, "test values").unwrap();
        assert!(matches!(pending, PendingValues::Ready(_)));
        assert_eq!(pending.finish("test values").unwrap(), vec![1.0, -2.5, 3.0]);
    }

    /// On a GPU the copy is asynchronous and gives the device's values; a copy dropped unfinished
    /// is freed. Run with `--ignored` on a GPU machine.
    #[test]
    #[ignore = "needs a CUDA device"]
    fn cuda_values_arrive_asynchronously() {
        let t = Tensor::arange(100_000, (tch::Kind::Float, Device::Cuda(0))).view([50_000, 2]) * 0.5;
        let pending = PendingValues::start(&t, "test values").unwrap();
        assert!(matches!(pending, PendingValues::Copying(_)));
        let got = pending.finish("test values").unwrap();
        assert_eq!(got.len(), 100_000);
        assert!(got.iter().enumerate().all(|(i, v)| *v == i as f32 * 0.5));
        drop(PendingValues::start(&t, "test values").unwrap());
    }
}
