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

/// `mpirun -np <np>` ready for a program and its arguments, with what a
/// test machine needs: `--oversubscribe` (2 ranks may exceed the cores),
/// `--allow-run-as-root` when root (CI containers), one torch/OpenMP thread
/// per rank, and Open MPI's shared-memory transport without the
/// single-copy mechanism (which containers forbid via ptrace rules).
///
/// `None` when `mpirun` is missing and this is not CI (the caller skips with
/// a message); in CI (`CI=true`) a missing `mpirun` fails the test, since
/// `cargo xtask setup` installs Open MPI there.
pub fn mpirun(np: usize) -> Option<Command> {
    let found = Command::new("mpirun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "mpirun is missing on CI: run `cargo xtask setup` as root (it installs openmpi-bin \
             libopenmpi-dev)"
        );
        eprintln!(
            "SKIPPED: mpirun not found (install Open MPI: apt-get install openmpi-bin \
             libopenmpi-dev, or run `cargo xtask setup` as root)"
        );
        return None;
    }
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &np.to_string()]);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        c.arg("--allow-run-as-root");
    }
    c.env("OMP_NUM_THREADS", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    Some(c)
}

/// Runs `cmd` to completion with its output captured, killing it (and
/// failing the test) if it takes longer than `limit`.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> std::process::Output {
    use std::process::Stdio;
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = t_err.join().unwrap_or_default();
            panic!(
                "{cmd:?} did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}
