//! Peak device-memory measurement on CUDA, through libtorch's caching-allocator statistics
//! (a small C++ shim, src/engine/cuda_memory.cpp, compiled when libtorch has CUDA).
//!
//! The statistics are per device and process-wide: concurrent work on the same GPU shows in the
//! figures of every call running at that time.

#[cfg(lofi_cuda_stats)]
mod shim {
    extern "C" {
        pub fn lofi_cuda_allocated_bytes(device: i32, current: *mut u64, peak: *mut u64) -> i32;
        pub fn lofi_cuda_reset_peak(device: i32) -> i32;
    }
}

/// Allocated bytes (current, peak since the last reset) on CUDA device `device`, if measurable.
pub fn allocated_bytes(device: usize) -> Option<(u64, u64)> {
    #[cfg(lofi_cuda_stats)]
    {
        let (mut current, mut peak) = (0u64, 0u64);
        // SAFETY: plain out-pointers; the shim catches every C++ exception.
        let rc = unsafe { shim::lofi_cuda_allocated_bytes(device as i32, &mut current, &mut peak) };
        (rc == 0).then_some((current, peak))
    }
    #[cfg(not(lofi_cuda_stats))]
    {
        let _ = device;
        None
    }
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

/// Measures the peak CUDA memory allocated between `start` and `finish`, above what was
/// allocated at `start` (the model's weights and other live tensors are not counted).
pub struct PeakTracker {
    device: Option<(usize, u64)>,
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

    pub fn finish(self) -> Option<u64> {
        let (device, base) = self.device?;
        allocated_bytes(device).map(|(_, peak)| peak.saturating_sub(base))
    }
}
