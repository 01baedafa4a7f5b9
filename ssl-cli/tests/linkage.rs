//! The built `ssl` binary starts without `LD_LIBRARY_PATH` (rpath) and,
//! when the libtorch in use has CUDA, lists `libtorch_cuda.so` among its
//! needed libraries (otherwise `--as-needed` drops it and CUDA vanishes).

use std::path::Path;
use std::process::Command;

const SSL: &str = env!("CARGO_BIN_EXE_ssl");
/// The libtorch `lib/` the build linked (from build-support/libtorch_link.rs).
const LIBTORCH_LIB: &str = env!("SSL_LIBTORCH_LIB");

fn needed_libraries() -> Vec<String> {
    let out = Command::new("readelf")
        .args(["-d", SSL])
        .output()
        .expect("readelf (binutils) is available where the linker is");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_owned))
        .collect()
}

#[test]
fn libtorch_resolves_without_ld_library_path() {
    let out = Command::new("ldd")
        .arg(SSL)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    let cpu = text
        .lines()
        .find(|l| l.contains("libtorch_cpu.so"))
        .unwrap_or_else(|| panic!("libtorch_cpu.so not linked:\n{text}"));
    let lib = Path::new(LIBTORCH_LIB).canonicalize().unwrap();
    assert!(
        cpu.contains(lib.to_str().unwrap()),
        "libtorch_cpu.so resolved outside {}: {cpu}",
        lib.display()
    );
}

#[test]
fn binary_starts_without_ld_library_path() {
    let out = Command::new(SSL)
        .arg("info")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("start ssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cuda available:"), "{text}");
}

#[test]
fn cuda_library_is_needed_when_libtorch_has_cuda() {
    let needed = needed_libraries();
    assert!(needed.iter().any(|n| n == "libtorch_cpu.so"), "{needed:?}");
    if Path::new(LIBTORCH_LIB).join("libtorch_cuda.so").exists() {
        assert!(
            needed.iter().any(|n| n == "libtorch_cuda.so"),
            "libtorch has CUDA but `ssl` does not need libtorch_cuda.so: {needed:?}"
        );
    } else {
        eprintln!("CPU-only libtorch at {LIBTORCH_LIB}: nothing to force in");
    }
}

/// `ssl` re-executes itself once with `OMP_WAIT_POLICY=PASSIVE` (see
/// `whitening_core::process`), keeping its arguments; a policy the user
/// set is left alone.
#[test]
fn the_binary_sets_the_openmp_wait_policy_unless_the_user_did() {
    let info = |policy: Option<&str>| {
        let mut cmd = Command::new(SSL);
        cmd.arg("info").env_remove("WHITENING_SSL_REEXECUTED");
        match policy {
            Some(p) => cmd.env("OMP_WAIT_POLICY", p),
            None => cmd.env_remove("OMP_WAIT_POLICY"),
        };
        let out = cmd.output().expect("start ssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let default = info(None);
    assert!(
        default.contains("cpu runtime: OMP_WAIT_POLICY=PASSIVE"),
        "{default}"
    );
    assert!(
        default.contains("cuda available:"),
        "arguments lost: {default}"
    );
    let own = info(Some("active"));
    assert!(own.contains("cpu runtime: OMP_WAIT_POLICY=active"), "{own}");
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(
            default.contains("keeps up to 1 GiB of freed memory"),
            "{default}"
        );
    }
}
