//! Build script shared by every crate that links libtorch (each names it with
//! `build = "../build-support/libtorch_link.rs"`).
//!
//! torch-sys tells the linker *where* libtorch is but not the loader, and the
//! linker's default `--as-needed` drops `libtorch_cuda.so` because no symbol
//! of ours refers to it directly; CUDA then silently vanishes on GPU machines.
//! So for every binary, test and bench of the crate we emit:
//! - `-Wl,-rpath,<libtorch>/lib`, so binaries start without `LD_LIBRARY_PATH`;
//! - `-Wl,--no-as-needed -ltorch_cuda` when that library exists, so
//!   `tch::Cuda::is_available()` is true wherever a GPU is.
//!
//! It also sets `cfg(ssl_libtorch_cuda)` when that libtorch has its CUDA
//! library, for tests that only make sense with one (e.g. NCCL loading;
//! the name is declared in the workspace's `unexpected_cfgs` lint).
//!
//! The directory comes from torch-sys itself (`DEP_TCH_LIBTORCH_LIB`, set
//! because the crate depends on torch-sys directly), so it is always the
//! libtorch that was actually linked.
use std::path::PathBuf;

pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=../build-support/libtorch_link.rs");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        // torch-sys in doc-only mode (docs.rs) emits nothing: nothing to link.
        return;
    };
    let lib = lib.canonicalize().unwrap_or(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    for cuda in ["torch_cuda", "torch_cuda_cu", "torch_cuda_cpp", "torch_hip"] {
        if lib.join(format!("lib{cuda}.so")).exists() {
            println!("cargo:rustc-link-arg=-L{}", lib.display());
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-l{cuda}");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-cfg=ssl_libtorch_cuda");
    }
    println!("cargo:rustc-env=SSL_LIBTORCH_LIB={}", lib.display());
}
