//! Links libtorch so that the binaries and the C library run without LD_LIBRARY_PATH and find CUDA,
//! and compiles the small C++ shims: float32 CPU products through oneDNN, the CUDA TF32 switch,
//! asynchronous copies of results to the host, and CUDA memory statistics.
//!
//! torch-sys links `torch_cuda` as an ordinary library, but the toolchain's default `--as-needed`
//! drops it because no symbol of it is referenced directly; CUDA then silently stays unavailable
//! on a GPU machine. We re-link it with `--no-as-needed` and add an rpath to libtorch's directory.
use std::env;
use std::path::PathBuf;

/// `liblofi.so.MAJOR`, or `liblofi.so.0.MINOR` before 1.0.
fn soname() -> String {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    if major == "0" {
        format!("liblofi.so.0.{minor}")
    } else {
        format!("liblofi.so.{major}")
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/engine/cuda_memory.cpp");
    println!("cargo:rerun-if-changed=src/kernels/onednn_linear.cpp");
    println!("cargo:rerun-if-changed=src/kernels/matmul_precision.cpp");
    println!("cargo:rerun-if-changed=src/engine/host_copy.cpp");
    println!("cargo::rustc-check-cfg=cfg(lofi_cuda_stats)");
    println!("cargo::rustc-check-cfg=cfg(lofi_onednn)");
    println!("cargo::rustc-check-cfg=cfg(lofi_host_copy)");
    println!("cargo::rustc-check-cfg=cfg(lofi_matmul_precision)");
    let lib_dir = match env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => return, // non-Unix targets: torch-sys did not report it
    };
    let lib = lib_dir.display();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // A SONAME, so that programs record the ABI they were linked against and installs keep ABIs
    // apart: `liblofi.so.MAJOR` from 1.0 (minor versions only add), `liblofi.so.0.MINOR` before
    // (every 0.x minor version may change the ABI). docs/abi.md states the policy.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{}", soname());
    let torch_include = lib_dir.join("../include");
    let shim = |file: &str, name: &str| {
        cc::Build::new()
            .cpp(true)
            .pic(true)
            .warnings(false)
            .std("c++17")
            .define("_GLIBCXX_USE_CXX11_ABI", "1")
            .include(&torch_include)
            .include(torch_include.join("torch/csrc/api/include"))
            .file(file)
            .compile(name);
    };
    // Float32 CPU products through oneDNN (src/kernels/linear.rs says why).
    shim("src/kernels/onednn_linear.cpp", "lofi_onednn_linear");
    println!("cargo:rustc-cfg=lofi_onednn");
    // The CUDA float32 products' TF32 switch (src/kernels/linear.rs); libtorch's context lives in
    // its CPU library, so this builds without CUDA too.
    shim("src/kernels/matmul_precision.cpp", "lofi_matmul_precision");
    println!("cargo:rustc-cfg=lofi_matmul_precision");
    // Asynchronous device-to-host copies of the engine's batches (src/engine/host_copy.rs).
    shim("src/engine/host_copy.cpp", "lofi_host_copy");
    println!("cargo:rustc-cfg=lofi_host_copy");
    if !lib_dir.join("libtorch_cuda.so").exists() {
        return; // a CPU-only libtorch
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-L{lib}");
    println!("cargo:rustc-link-arg=-ltorch_cuda");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    shim("src/engine/cuda_memory.cpp", "lofi_cuda_memory");
    println!("cargo:rustc-cfg=lofi_cuda_stats");
}
