//! Build script shared by every crate that links libtorch (each names it with
//! `build = "../build-support/libtorch_link.rs"`; ssl-cli calls `main` from
//! its own `build.rs`).
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
//! libtorch that was actually linked. The code is the `libtorch-rpath`
//! crate's, included here, which a user's own build script calls the same
//! way (README, "Using the libraries").

#[path = "../libtorch-rpath/src/lib.rs"]
mod libtorch_rpath;

pub fn main() {
    println!("cargo:rerun-if-changed=../build-support/libtorch_link.rs");
    println!("cargo:rerun-if-changed=../libtorch-rpath/src/lib.rs");
    if let Some(lib) = libtorch_rpath::link() {
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-cfg=ssl_libtorch_cuda");
        }
        println!("cargo:rustc-env=SSL_LIBTORCH_LIB={}", lib.display());
    }
}
