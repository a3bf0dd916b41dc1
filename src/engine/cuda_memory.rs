//! Device-memory measurement and release on CUDA, through libtorch's caching-allocator statistics
//! (a small C++ shim, src/engine/cuda_memory.cpp, compiled when libtorch has CUDA).
//!
//! The statistics are per device and process-wide: concurrent work on the same GPU shows in the
//! figures of every call running at that time.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(lofi_cuda_stats)]
mod shim {
    extern "C" {
        pub fn lofi_cuda_memory_stats(
            device: i32,
            allocated: *mut u64,
            allocated_peak: *mut u64,
            reserved: *mut u64,
            reserved_peak: *mut u64,
        ) -> i32;
        pub fn lofi_cuda_reset_peak(device: i32) -> i32;
        pub fn lofi_cuda_empty_cache() -> i32;
    }
}

/// Set once a model lives on a GPU: until then there is no CUDA cache to release (and releasing
/// must not initialise CUDA).
static DEVICE_USED: AtomicBool = AtomicBool::new(false);

/// Records that this process put a model on a GPU.
pub fn note_device_used() {
    DEVICE_USED.store(true, Ordering::Relaxed);
}

/// Memory figures of one CUDA device, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub allocated: u64,
    pub allocated_peak: u64,
    /// Allocated plus cached by libtorch's caching allocator.
    pub reserved: u64,
    pub reserved_peak: u64,
}

/// The figures of CUDA device `device` (peaks since the last reset), if measurable.
pub fn memory_stats(device: usize) -> Option<MemoryStats> {
    #[cfg(lofi_cuda_stats)]
    {
        let mut s = MemoryStats::default();
        // SAFETY: plain out-pointers; the shim catches every C++ exception.
        let rc = unsafe {
            shim::lofi_cuda_memory_stats(
                device as i32,
                &mut s.allocated,
                &mut s.allocated_peak,
                &mut s.reserved,
                &mut s.reserved_peak,
            )
        };
        (rc == 0).then_some(s)
    }
    #[cfg(not(lofi_cuda_stats))]
    {
        let _ = device;
        None
    }
}

/// Allocated bytes (current, peak since the last reset) on CUDA device `device`, if measurable.
pub fn allocated_bytes(device: usize) -> Option<(u64, u64)> {
    memory_stats(device).map(|s| (s.allocated, s.allocated_peak))
}

/// Starts a new peak measurement on `device`.
pub fn reset_peak(device: usize) {
    #[cfg(lofi_cuda_stats)]
    // SAFETY: the shim catches every C++ exception.
    unsafe {
        shim::lofi_cuda_reset_peak(device as i32);
    }
    #[cfg(not(lofi_cuda_stats))]
    let _ = device;
}

/// Gives libtorch's cached, unused device memory back to the driver, so that other processes
/// (or other libraries in this one) can use it. A no-op when no model was ever put on a GPU, on
/// CPU-only builds and machines. Returns whether a cache was released.
pub fn release_cached_memory() -> bool {
    if !DEVICE_USED.load(Ordering::Relaxed) {
        return false;
    }
    #[cfg(lofi_cuda_stats)]
    {
        // SAFETY: the shim catches every C++ exception.
        unsafe { shim::lofi_cuda_empty_cache() == 0 }
    }
    #[cfg(not(lofi_cuda_stats))]
    false
}

/// Measures the peak CUDA memory allocated between `start` and `finish`, above what was
/// allocated at `start` (the model's weights and other live tensors are not counted), and the
/// memory reserved by the caching allocator.
pub struct PeakTracker {
    device: Option<(usize, u64)>,
}

/// What a [`PeakTracker`] measured, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    /// Peak allocated above the allocation at the start.
    pub peak_allocated: u64,
    /// Peak reserved (absolute, process-wide on the device).
    pub peak_reserved: u64,
    /// Reserved at the end.
    pub reserved: u64,
}

impl PeakTracker {
    pub fn start(device: tch::Device) -> Self {
        match device {
            tch::Device::Cuda(i) => {
                reset_peak(i);
                PeakTracker { device: allocated_bytes(i).map(|(current, _)| (i, current)) }
            }
            _ => PeakTracker { device: None },
        }
    }

    /// The peak allocated above the start (see [`PeakTracker::measure`] for all figures).
    pub fn finish(self) -> Option<u64> {
        self.measure().map(|m| m.peak_allocated)
    }

    /// Every figure, or `None` off CUDA.
    pub fn measure(self) -> Option<Measured> {
        let (device, base) = self.device?;
        memory_stats(device).map(|s| Measured {
            peak_allocated: s.allocated_peak.saturating_sub(base),
            peak_reserved: s.reserved_peak,
            reserved: s.reserved,
        })
    }
}
