// Whether libtorch lets cuBLAS compute float32 products with TF32 tensor cores: the process-wide
// switch behind torch.backends.cuda.matmul.allow_tf32. The legacy setter is used on purpose: it
// keeps libtorch's old and new precision settings consistent (setting only the new one makes
// later cuBLAS calls fail with a "mix of legacy and new APIs" error), and it leaves the CPU's
// oneDNN precision alone. Every C++ exception is caught.
#include <ATen/Context.h>

extern "C" {

// Returns 0 on success.
int lofi_set_cuda_tf32(int on) {
  try {
    at::globalContext().setAllowTF32CuBLAS(on != 0);
    return 0;
  } catch (...) {
    return 1;
  }
}

// 1 if TF32 is allowed, 0 if not, -1 on failure.
int lofi_cuda_tf32(void) {
  try {
    return at::globalContext().allowTF32CuBLAS() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
