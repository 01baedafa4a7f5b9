//! Dev-only helpers shared by the test suites.
//!
//! Cross-checks run the torch, torchvision and numpy that `cargo xtask
//! setup` installed into `.venv`; data moves between Rust and Python as
//! `.npy` files (`tch::Tensor::write_npy` / `read_npy`, `numpy.load`).

use std::path::PathBuf;
use std::process::Command;

/// The venv's Python: `SSL_PYTHON` at run time, else the value the
/// workspace config gave at compile time.
pub fn python() -> PathBuf {
    std::env::var_os("SSL_PYTHON")
        .map(PathBuf::from)
        .or_else(|| option_env!("SSL_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Runs a Python script with arguments and returns its stdout; panics with
/// the script's stderr when it fails, so a failed cross-check says why.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let py = python();
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (run `cargo xtask setup`): {e}",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "python cross-check failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh scratch directory, removed when dropped.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("whitening-ssl-test-")
        .tempdir()
        .expect("create a scratch directory")
}
