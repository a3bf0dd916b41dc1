// Accelerator (CUDA) memory of libtorch's caching allocator, for the engine's reports, the
// benchmarks and lofi_release_cached_memory(). Uses libtorch's device-agnostic accelerator API,
// so no CUDA headers are needed; on a libtorch without an accelerator the calls fail and the Rust
// side reports no figure. Every function catches every C++ exception.
#include <ATen/DeviceAccelerator.h>
#include <cstdint>

extern "C" {

// Allocated and reserved bytes, now and at peak since the last reset, on `device`. Returns 0 on
// success.
int lofi_cuda_memory_stats(int device, uint64_t *allocated, uint64_t *allocated_peak, uint64_t *reserved,
                           uint64_t *reserved_peak) {
  try {
    auto stats = at::accelerator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = static_cast<uint64_t>(stats.allocated_bytes[aggregate].current);
    *allocated_peak = static_cast<uint64_t>(stats.allocated_bytes[aggregate].peak);
    *reserved = static_cast<uint64_t>(stats.reserved_bytes[aggregate].current);
    *reserved_peak = static_cast<uint64_t>(stats.reserved_bytes[aggregate].peak);
    return 0;
  } catch (...) {
    return 1;
  }
}

// Starts a new peak measurement on `device`. Returns 0 on success.
int lofi_cuda_reset_peak(int device) {
  try {
    at::accelerator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return 0;
  } catch (...) {
    return 1;
  }
}

// Returns the caching allocator's unused cached blocks to the driver (all devices). Returns 0 on
// success.
int lofi_cuda_empty_cache(void) {
  try {
    at::accelerator::emptyCache();
    return 0;
  } catch (...) {
    return 1;
  }
}

}  // extern "C"
