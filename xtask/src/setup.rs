//! libtorch and OpenBLAS without a manual step.
//!
//! - `LIBTORCH` unset: PyPI's `torch==2.13.0` (the version tch 0.26 binds)
//!   goes into the project-local, git-ignored `.venv`, whose `torch/`
//!   folder carries `include/` and `lib/`; `.libtorch` is linked to it.
//! - `LIBTORCH` set: that libtorch is checked (version 2.13.x, `lib/`,
//!   `include/`) and `.libtorch` is linked to it. The venv still gets
//!   torchvision, numpy, pillow and tensorboard, since tests cross-check
//!   against them.
//!
//! `.cargo/config.toml` points tch at `.libtorch` and the tests at
//! `.venv/bin/python`, so a plain `cargo build` / `cargo test` works after
//! set-up. A stamp file makes the second run a few file reads.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The libtorch version tch 0.26 binds.
pub const TORCH_VERSION: &str = "2.13.0";
/// The Python packages of the project venv (torchvision 0.28 pairs with torch
/// 2.13; tensorboard's event reader checks the event files runs write).
pub const REQUIREMENTS: &[&str] = &[
    "torch==2.13.0",
    "torchvision==0.28.0",
    "numpy",
    "pillow",
    "tensorboard",
];
const STAMP: &str = ".ssl-setup-stamp";

/// What set-up found or installed.
#[derive(Debug)]
pub struct Env {
    pub libtorch: PathBuf,
    pub libtorch_version: String,
    pub user_libtorch: bool,
    pub python: PathBuf,
    pub cuda_libs: bool,
}

impl Env {
    pub fn print_summary(&self) {
        eprintln!(
            "xtask | libtorch {} at {} ({}{})",
            self.libtorch_version,
            self.libtorch.display(),
            if self.user_libtorch {
                "your LIBTORCH"
            } else {
                "project venv"
            },
            if self.cuda_libs {
                ", with CUDA libraries"
            } else {
                ", CPU only"
            }
        );
        eprintln!("xtask | python for cross-checks: {}", self.python.display());
    }

    /// Environment for cargo commands started by xtask: the same values the
    /// workspace config gives a plain `cargo`, made explicit.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("LIBTORCH", &self.libtorch)
            .env("SSL_PYTHON", &self.python)
    }
}

pub fn run(root: &Path) -> Result<Env> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let link = root.join(".libtorch");

    // `cargo xtask` itself receives the workspace's LIBTORCH (= .libtorch);
    // only a different value is the user's own.
    let user_libtorch = std::env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .filter(|p| !p.as_os_str().is_empty() && !same_path(p, &link));

    ensure_venv(root, &venv)?;
    ensure_python_packages(&venv, &python)?;

    let libtorch = match &user_libtorch {
        Some(path) => {
            let path = std::path::absolute(path)
                .with_context(|| format!("LIBTORCH={} is not a usable path", path.display()))?;
            path
        }
        None => venv_torch_dir(&python)?,
    };
    let libtorch_version = check_libtorch(&libtorch, user_libtorch.is_some())?;
    relink(&link, &libtorch)?;
    ensure_openblas()?;
    ensure_openmpi()?;
    ensure_jpeg_build_tools()?;
    let cuda_libs = libtorch.join("lib/libtorch_cuda.so").exists();
    Ok(Env {
        libtorch,
        libtorch_version,
        user_libtorch: user_libtorch.is_some(),
        python,
        cuda_libs,
    })
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (std::path::absolute(a), std::path::absolute(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn ensure_venv(root: &Path, venv: &Path) -> Result<()> {
    if venv.join("bin/python").exists() {
        return Ok(());
    }
    let python3 = std::env::var_os("PYTHON").unwrap_or_else(|| OsString::from("python3"));
    let found = Command::new(&python3)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(found, Ok(s) if s.success()) {
        bail!(
            "python3 was not found (tried `{}`). Set-up needs Python 3.10+ with venv and pip to \
             install libtorch. On Debian/Ubuntu: `apt-get install python3 python3-venv \
             python3-pip`; or set PYTHON=/path/to/python3; or set LIBTORCH to your own \
             libtorch {TORCH_VERSION} (python3 is still needed for the cross-checking tests).",
            python3.to_string_lossy()
        );
    }
    crate::run_step(
        root,
        &format!("{} -m venv .venv", python3.to_string_lossy()),
        Command::new(&python3).args(["-m", "venv"]).arg(venv),
    )
    .context(
        "creating the project venv failed: on Debian/Ubuntu install the venv module with \
         `apt-get install python3-venv`",
    )
}

/// Packages of torch's own requirements that the project never uses:
/// triton is torch.compile's GPU code generator (~0.6 GB installed).
const SKIPPED: &[&str] = &["triton"];

/// Free space set-up wants before installing: torch, its CUDA libraries
/// (which libtorch's shared objects name as needed even on CPU machines)
/// and the largest single wheel while it is being installed.
const NEEDED_BYTES: u64 = 5_000_000_000;

/// Prints torch's and torchvision's requirements for this platform, one per
/// line: markers evaluated, `extra ==` ones dropped, SKIPPED left out, and a
/// requirement with extras split into one line per extra so that each pip
/// call downloads one package family.
const REQUIREMENTS_PY: &str = r#"
import importlib.metadata as md, sys
from pip._vendor.packaging.requirements import Requirement
skip = set(sys.argv[1].split(",")) if sys.argv[1] else set()
seen = []
for dist in ("torch", "torchvision"):
    for text in md.requires(dist) or []:
        r = Requirement(text)
        if r.marker is not None and not r.marker.evaluate({"extra": ""}):
            continue
        if r.name in ("torch", "torchvision") or r.name in skip:
            continue
        base = r.name + str(r.specifier)
        lines = [f"{r.name}[{e}]{r.specifier}" for e in sorted(r.extras)] or [base]
        for line in lines:
            if line not in seen:
                seen.append(line)
print("\n".join(seen))
"#;

/// Installs the venv's packages in stages, so that a machine with little
/// disk gets through: torch and torchvision without dependencies, then each
/// of their requirements in its own pip call with no pip cache. The peak
/// disk use is what is installed plus one package family's wheels, instead
/// of every wheel twice (cache and temp copy) beside the installed tree.
fn ensure_python_packages(venv: &Path, python: &Path) -> Result<()> {
    let wanted = format!(
        "{} (staged, without {})",
        REQUIREMENTS.join(" "),
        SKIPPED.join(",")
    );
    let stamp = venv.join(STAMP);
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        return Ok(());
    }
    if !venv_has_torch(venv) {
        warn_if_short_of_space(venv);
    }
    eprintln!(
        "xtask | installing {} into {} (one time: ~4 GB with the CUDA libraries libtorch links)",
        REQUIREMENTS.join(" "),
        venv.display()
    );
    let (head, tail): (Vec<&str>, Vec<&str>) = REQUIREMENTS
        .iter()
        .partition(|r| r.starts_with("torch==") || r.starts_with("torchvision=="));
    pip_install(python, &["--no-deps"], &head)?;
    let out = Command::new(python)
        .args(["-c", REQUIREMENTS_PY, &SKIPPED.join(",")])
        .output()
        .with_context(|| format!("could not run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "reading torch's requirements with {} failed:\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut reqs: Vec<&str> = listed.lines().filter(|l| !l.trim().is_empty()).collect();
    for extra in &tail {
        let name = extra
            .split(['=', '<', '>', '!', '['])
            .next()
            .unwrap_or(extra);
        if !reqs.iter().any(|r| r.starts_with(name)) {
            reqs.push(extra);
        }
    }
    for req in &reqs {
        pip_install(python, &[], &[req])?;
    }
    std::fs::write(&stamp, format!("{wanted}\n"))
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// Whether a torch package is already in the venv (a re-run after an
/// interrupted or older set-up needs little new space).
fn venv_has_torch(venv: &Path) -> bool {
    std::fs::read_dir(venv.join("lib")).is_ok_and(|dirs| {
        dirs.flatten()
            .any(|d| d.path().join("site-packages/torch/lib").is_dir())
    })
}

/// Bytes free on the file system holding `dir`, from `df -Pk` (POSIX
/// output); `None` when df is missing or prints something else.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Warns (does not fail: `df` can under-report on overlay file systems,
/// and pip's own error is caught below) when the venv's disk looks too
/// small for the install.
fn warn_if_short_of_space(venv: &Path) {
    let Some(free) = free_bytes(venv) else {
        return;
    };
    if free < NEEDED_BYTES {
        eprintln!(
            "xtask | warning: only {:.1} GB free at {}: torch {TORCH_VERSION} with the CUDA \
             libraries that libtorch's shared objects need takes about {:.1} GB, and the build \
             a few more. If the install fails, free some space or set LIBTORCH to an existing \
             libtorch {TORCH_VERSION}.",
            free as f64 / 1e9,
            venv.display(),
            NEEDED_BYTES as f64 / 1e9
        );
    }
}

/// One `pip install --no-cache-dir EXTRA... REQS...`, with errors a user
/// can act on.
///
/// pip's downloads and unpacking go to a temporary folder inside the venv,
/// on the same disk as the install: a small `/tmp` (a tmpfs, say) cannot
/// hold torch's 0.5 GB wheels.
fn pip_install(python: &Path, extra: &[&str], reqs: &[&str]) -> Result<()> {
    let wanted = reqs.join(" ");
    eprintln!("xtask | pip install {wanted}");
    let venv = python
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."));
    let tmp = venv.join(".pip-tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let out = Command::new(python)
        .env("TMPDIR", &tmp)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--progress-bar",
            "off",
            "-q",
        ])
        .args(extra)
        .args(reqs)
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("could not run {} -m pip", python.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("{err}");
        if err.contains("No module named pip") {
            bail!(
                "pip is missing in {}: on Debian/Ubuntu `apt-get install python3-pip \
                 python3-venv`, then remove .venv and retry",
                python.display()
            );
        }
        if err.contains("No space left on device") {
            let free = free_bytes(python.parent().unwrap_or(python))
                .map(|b| format!("{:.1} GB", b as f64 / 1e9))
                .unwrap_or_else(|| "unknown".into());
            bail!(
                "the disk filled up while installing {wanted} (free now: {free}). torch \
                 {TORCH_VERSION} with its CUDA libraries takes about {:.1} GB: free some space \
                 and run `cargo xtask setup` again (finished packages are kept).",
                NEEDED_BYTES as f64 / 1e9
            );
        }
        let offline = [
            "Failed to establish a new connection",
            "Temporary failure in name resolution",
            "Network is unreachable",
            "ConnectionError",
            "Max retries exceeded",
            "ProxyError",
        ];
        if offline.iter().any(|m| err.contains(m)) {
            bail!(
                "pip could not reach the Python package registry to install {wanted}. Check the \
                 network or proxy (pip honours HTTPS_PROXY and PIP_INDEX_URL), or set LIBTORCH to \
                 a local libtorch {TORCH_VERSION}."
            );
        }
        if err.contains("No matching distribution") || err.contains("Could not find a version") {
            bail!(
                "the package registry has no {wanted} for this Python/platform ({}). tch 0.26 \
                 needs libtorch {TORCH_VERSION}: use a Python version that torch {TORCH_VERSION} \
                 supports (PYTHON=/path/to/python3, then remove .venv), or set LIBTORCH.",
                python_version(python)
            );
        }
        bail!("pip install {wanted} failed ({})", out.status);
    }
    Ok(())
}

fn python_version(python: &Path) -> String {
    Command::new(python)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "unknown Python".into())
}

fn venv_torch_dir(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.util, os; s = importlib.util.find_spec('torch'); \
             print(os.path.dirname(s.origin))",
        ])
        .output()
        .with_context(|| format!("could not run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "torch is not importable from {}: remove .venv/{STAMP} and run `cargo xtask setup` \
             again\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Reads the version of a libtorch folder: `build-version` (libtorch zips)
/// or `version.py` (PyPI's torch package).
pub fn libtorch_version(dir: &Path) -> Option<String> {
    if let Ok(v) = std::fs::read_to_string(dir.join("build-version")) {
        return Some(v.trim().to_string());
    }
    let py = std::fs::read_to_string(dir.join("version.py")).ok()?;
    py.lines()
        .find_map(|l| l.strip_prefix("__version__"))
        .map(|rest| {
            rest.trim_start_matches([' ', ':', '='])
                .trim_start_matches("str")
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_string()
        })
        .filter(|v| !v.is_empty())
}

fn check_libtorch(dir: &Path, from_user: bool) -> Result<String> {
    let origin = if from_user {
        "LIBTORCH"
    } else {
        "the venv's torch"
    };
    if !dir.is_dir() {
        bail!("{origin}={} is not a directory", dir.display());
    }
    for needed in ["lib/libtorch_cpu.so", "include/torch"] {
        if !dir.join(needed).exists() {
            bail!(
                "{origin}={} is not a libtorch: `{needed}` is missing (expected a libtorch \
                 {TORCH_VERSION} folder with include/ and lib/, or a torch {TORCH_VERSION} \
                 site-packages/torch folder)",
                dir.display()
            );
        }
    }
    let Some(version) = libtorch_version(dir) else {
        bail!(
            "{origin}={}: cannot tell its version (no build-version or version.py); tch 0.26 \
             needs libtorch {TORCH_VERSION}",
            dir.display()
        );
    };
    let base = version.split('+').next().unwrap_or(&version);
    if base != TORCH_VERSION {
        bail!(
            "{origin}={} holds libtorch {version}, but tch 0.26 needs libtorch {TORCH_VERSION}. \
             Unset LIBTORCH to let set-up install torch=={TORCH_VERSION} in .venv, or point it \
             at a libtorch {TORCH_VERSION}.",
            dir.display()
        );
    }
    Ok(version)
}

fn relink(link: &Path, target: &Path) -> Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

const OPENBLAS_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

fn has_openblas() -> bool {
    OPENBLAS_DIRS
        .iter()
        .any(|d| Path::new(d).join("libopenblas.so").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `apt-get update` then `apt-get install -y PACKAGES`, non-interactive
/// (set-up runs it only as root); `what` names the software in errors.
fn apt_install(packages: &[&str], what: &str) -> Result<()> {
    let apt = |args: &[&str]| -> Result<()> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| {
                format!(
                    "apt-get not found: install {what} ({}) by hand",
                    packages.join(" ")
                )
            })?;
        if !status.success() {
            bail!(
                "`apt-get {}` failed ({status}); run it by hand",
                args.join(" ")
            );
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&[&["install", "-y", "-qq"][..], packages].concat())
}

fn ensure_openblas() -> Result<()> {
    if has_openblas() {
        return Ok(());
    }
    const INSTALL: &str = "apt-get install -y libopenblas-dev";
    if !is_root() {
        bail!(
            "the system OpenBLAS (LAPACK for ndarray-linalg) is missing and set-up is not root. \
             Run: sudo apt-get update && sudo {INSTALL}"
        );
    }
    eprintln!("xtask | installing libopenblas-dev (LAPACK for the f64 oracle)");
    apt_install(&["libopenblas-dev"], "OpenBLAS")?;
    if !has_openblas() {
        bail!("libopenblas-dev was installed but libopenblas.so is still not found");
    }
    Ok(())
}

fn has_openmpi() -> bool {
    let lib = OPENBLAS_DIRS
        .iter()
        .any(|d| Path::new(d).join("libmpi.so.40").exists());
    let mpirun = Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    lib && mpirun
}

/// Open MPI (`mpirun` and `libmpi.so.40`) for data-parallel training on
/// CPU processes (`ssl train --dist mpi`) and its `mpirun -np 2` tests; the
/// `ssl` binary loads it at run time, so it is not needed to build.
fn ensure_openmpi() -> Result<()> {
    if has_openmpi() {
        return Ok(());
    }
    const INSTALL: &str = "apt-get install -y openmpi-bin libopenmpi-dev";
    if !is_root() {
        bail!(
            "Open MPI (mpirun, libmpi.so.40: data-parallel training on CPUs and its tests) is \
             missing and set-up is not root. Run: sudo apt-get update && sudo {INSTALL}"
        );
    }
    eprintln!("xtask | installing openmpi-bin libopenmpi-dev (data-parallel training on CPUs)");
    apt_install(&["openmpi-bin", "libopenmpi-dev"], "Open MPI")?;
    if !has_openmpi() {
        bail!("openmpi-bin was installed but mpirun or libmpi.so.40 is still not found");
    }
    Ok(())
}

/// Whether `program arg` runs and succeeds.
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// CMake and NASM, which building ssl-data needs: `turbojpeg-sys` compiles
/// the libjpeg-turbo sources it vendors with CMake, and NASM assembles its
/// SIMD kernels (ssl-data decodes JPEG with libjpeg-turbo, as Pillow does).
fn ensure_jpeg_build_tools() -> Result<()> {
    const TOOLS: [(&str, &str); 2] = [("cmake", "--version"), ("nasm", "-v")];
    let missing = || -> Vec<&str> {
        TOOLS
            .into_iter()
            .filter(|(program, arg)| !runs(program, arg))
            .map(|(program, _)| program)
            .collect()
    };
    let absent = missing();
    if absent.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", absent.join(" "));
    if !is_root() {
        bail!(
            "{} (to build libjpeg-turbo for ssl-data's JPEG decoding) missing and set-up is \
             not root. Run: sudo apt-get update && sudo {install}",
            absent.join(" and ")
        );
    }
    eprintln!(
        "xtask | installing {} (libjpeg-turbo's build, for JPEG decoding as Pillow does it)",
        absent.join(" ")
    );
    apt_install(&absent, "CMake and NASM")?;
    if let Some(p) = missing().first() {
        bail!("{p} was installed but still does not run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_libtorch(version_file: (&str, &str)) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-libtorch-{}-{}",
            std::process::id(),
            version_file.1.len()
        ));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::create_dir_all(dir.join("include/torch")).unwrap();
        std::fs::write(dir.join("lib/libtorch_cpu.so"), b"").unwrap();
        std::fs::write(dir.join(version_file.0), version_file.1).unwrap();
        dir
    }

    #[test]
    fn version_from_pip_version_py() {
        // The format PyPI's torch writes (torch/version.py).
        let dir = fake_libtorch((
            "version.py",
            "from typing import Optional\n__all__ = ['__version__']\n__version__ = '2.13.0+cu128'\n",
        ));
        assert_eq!(libtorch_version(&dir).as_deref(), Some("2.13.0+cu128"));
        assert_eq!(check_libtorch(&dir, true).unwrap(), "2.13.0+cu128");
    }

    #[test]
    fn wrong_version_names_both() {
        let dir = fake_libtorch(("build-version", "2.4.1+cpu\n"));
        let err = check_libtorch(&dir, true).unwrap_err().to_string();
        assert!(err.contains("2.4.1+cpu"), "{err}");
        assert!(err.contains(TORCH_VERSION), "{err}");
        assert!(err.contains("LIBTORCH"), "{err}");
    }

    #[test]
    fn not_a_libtorch_names_missing_part() {
        let dir = std::env::temp_dir().join(format!("xtask-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = check_libtorch(&dir, true).unwrap_err().to_string();
        assert!(err.contains("lib/libtorch_cpu.so"), "{err}");
    }
}
