// Peak accelerator (CUDA) memory of libtorch's caching allocator, for the engine's reports and
// benchmarks. Uses libtorch's device-agnostic accelerator API, so no CUDA headers are needed;
// on a libtorch without an accelerator the calls fail and the Rust side reports no figure.
#include <ATen/DeviceAccelerator.h>
#include <cstdint>

extern "C" {

// Allocated bytes now and at peak since the last reset on `device`. Returns 0 on success.
int lofi_cuda_allocated_bytes(int device, uint64_t *current, uint64_t *peak) {
  try {
    auto stats = at::accelerator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto &bytes = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    *current = static_cast<uint64_t>(bytes.current);
    *peak = static_cast<uint64_t>(bytes.peak);
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

}  // extern "C"
