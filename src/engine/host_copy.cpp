// Asynchronous copies of a batch's results from the accelerator (CUDA) into pinned host memory,
// so that the engine can launch the next batch before it waits for this one (see
// src/engine/host_copy.rs). Device-agnostic libtorch API only (no CUDA headers): the pinned
// buffer comes from libtorch's caching host allocator, the copy is queued on the device's current
// stream with non_blocking, and an event recorded after it tells when the bytes are there.
// Every function catches every C++ exception.
#include <ATen/DeviceAccelerator.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Event.h>

struct LofiHostCopy {
  at::Tensor host;
  c10::Event event;
};

extern "C" {

// Queues the copy of `src` (a tensor on an accelerator) into a new pinned host tensor of its shape
// and kind; returns the pending copy, or null on failure (the caller then copies synchronously).
LofiHostCopy *lofi_host_copy_start(const at::Tensor *src) {
  try {
    const auto device = src->device();
    auto host = at::empty(src->sizes(), src->options().device(at::kCPU).pinned_memory(true));
    host.copy_(*src, /*non_blocking=*/true);
    auto *copy = new LofiHostCopy{host, c10::Event(device.type())};
    copy->event.record(at::accelerator::getCurrentStream(device.index()));
    return copy;
  } catch (...) {
    return nullptr;
  }
}

// Waits until the copy has arrived and returns the host tensor (a new handle the caller owns), or
// null on failure. Frees `copy` in both cases.
at::Tensor *lofi_host_copy_finish(LofiHostCopy *copy) {
  at::Tensor *out = nullptr;
  try {
    copy->event.synchronize();
    out = new at::Tensor(copy->host);
  } catch (...) {
    out = nullptr;
  }
  delete copy;
  return out;
}

// Frees a copy that will not be finished (an error or a cancel on the way). The pinned block goes
// back to libtorch's host allocator, which keeps it until the copy queued into it is done.
void lofi_host_copy_free(LofiHostCopy *copy) {
  try {
    delete copy;
  } catch (...) {
  }
}

}  // extern "C"
