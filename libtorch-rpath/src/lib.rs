//! For build scripts: gives the binaries, tests, examples and benches of a
//! crate that uses tch an rpath to libtorch's `lib/`, so they start without
//! `LD_LIBRARY_PATH`, and links `libtorch_cuda.so` even though no symbol of
//! the program refers to it (the linker's default `--as-needed` would drop
//! it, and `tch::Cuda::is_available()` would then be false on a GPU
//! machine).
//!
//! In your crate's `Cargo.toml`:
//!
//! ```toml
//! [dependencies]
//! tch = "0.26"
//! torch-sys = "0.26"   # direct, so build.rs gets DEP_TCH_LIBTORCH_LIB
//!
//! [build-dependencies]
//! libtorch-rpath = { path = "../whitening-ssl/libtorch-rpath" }
//! ```
//!
//! and in its `build.rs`:
//!
//! ```no_run
//! fn main() {
//!     libtorch_rpath::link();
//! }
//! ```
//!
//! The libtorch directory comes from torch-sys itself: cargo passes
//! `DEP_TCH_LIBTORCH_LIB` (torch-sys `links = "tch"`) to the build scripts
//! of the crates that depend on torch-sys *directly*, so it is the libtorch
//! that was actually linked. Without that variable, `$LIBTORCH/lib` is used
//! when `LIBTORCH` is set. Linux (ELF) only.
//!
//! Every crate of this workspace that links libtorch runs this same code as
//! its build script (`build-support/libtorch_link.rs` includes this file).

// The example above is a whole build script, `fn main` included.
#![allow(clippy::needless_doctest_main)]

use std::path::{Path, PathBuf};

/// The libtorch libraries that must be linked even when no symbol refers
/// to them: the CUDA (and ROCm) halves of libtorch.
const DEVICE_LIBRARIES: [&str; 4] = ["torch_cuda", "torch_cuda_cu", "torch_cuda_cpp", "torch_hip"];

/// Writes the directives for libtorch's `lib/` directory to standard
/// output, where cargo reads them (the build-script protocol), and returns
/// that directory; `None`, with nothing written but the `rerun-if` lines,
/// when neither `DEP_TCH_LIBTORCH_LIB` nor `LIBTORCH` is set (torch-sys in
/// its doc-only mode, or a crate without the direct torch-sys dependency
/// and without `LIBTORCH`; then a `cargo:warning` says so, except on
/// docs.rs).
pub fn link() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(lib) = libtorch_lib(
        std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from),
        std::env::var_os("LIBTORCH").map(PathBuf::from),
    ) else {
        if std::env::var_os("DOCS_RS").is_none() {
            println!(
                "cargo:warning=libtorch-rpath: neither DEP_TCH_LIBTORCH_LIB nor LIBTORCH is set, \
                 so no rpath to libtorch: add torch-sys to [dependencies] (it is what passes \
                 DEP_TCH_LIBTORCH_LIB to this build script) or set LIBTORCH"
            );
        }
        return None;
    };
    for line in directives(&lib) {
        println!("{line}");
    }
    Some(lib)
}

/// The libtorch `lib/` directory: `dep_tch_lib` (torch-sys's
/// `DEP_TCH_LIBTORCH_LIB`) if given, else `<libtorch>/lib`; made absolute
/// and canonical where possible.
pub fn libtorch_lib(dep_tch_lib: Option<PathBuf>, libtorch: Option<PathBuf>) -> Option<PathBuf> {
    let lib = dep_tch_lib
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| {
            libtorch
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| p.join("lib"))
        })?;
    Some(
        lib.canonicalize()
            .or_else(|_| std::path::absolute(&lib))
            .unwrap_or(lib),
    )
}

/// The cargo directives for libtorch's `lib/` directory `lib`: an rpath
/// for every binary, test, example and bench of the crate, and
/// `--no-as-needed -l<name>` for each of libtorch's device libraries
/// present in `lib`.
pub fn directives(lib: &Path) -> Vec<String> {
    let mut out = vec![format!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display())];
    for device in DEVICE_LIBRARIES {
        if lib.join(format!("lib{device}.so")).exists() {
            out.push(format!("cargo:rustc-link-arg=-L{}", lib.display()));
            out.push("cargo:rustc-link-arg=-Wl,--no-as-needed".into());
            out.push(format!("cargo:rustc-link-arg=-l{device}"));
            out.push("cargo:rustc-link-arg=-Wl,--as-needed".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rpath_always_and_device_libraries_only_when_present() {
        let dir = std::env::temp_dir().join(format!("libtorch-rpath-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rpath = format!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        assert_eq!(directives(&dir), vec![rpath.clone()]);
        std::fs::write(dir.join("libtorch_cuda.so"), b"").unwrap();
        let with_cuda = directives(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            with_cuda,
            vec![
                rpath,
                format!("cargo:rustc-link-arg=-L{}", dir.display()),
                "cargo:rustc-link-arg=-Wl,--no-as-needed".into(),
                "cargo:rustc-link-arg=-ltorch_cuda".into(),
                "cargo:rustc-link-arg=-Wl,--as-needed".into(),
            ]
        );
    }

    #[test]
    fn torch_sys_directory_first_then_libtorch_lib() {
        let dep = std::env::temp_dir();
        let canonical = dep.canonicalize().unwrap();
        assert_eq!(
            libtorch_lib(Some(dep.clone()), Some("/elsewhere".into())),
            Some(canonical)
        );
        assert_eq!(
            libtorch_lib(None, Some("/no/such/libtorch".into())),
            Some(PathBuf::from("/no/such/libtorch/lib"))
        );
        assert_eq!(
            libtorch_lib(Some("".into()), Some("/no/such/libtorch".into())),
            Some(PathBuf::from("/no/such/libtorch/lib"))
        );
        assert_eq!(libtorch_lib(None, None), None);
        assert_eq!(libtorch_lib(Some("".into()), Some("".into())), None);
    }
}
