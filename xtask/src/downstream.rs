//! `cargo xtask check-downstream`: the library crates as a user's project
//! gets them. A fresh cargo project in a temporary directory, outside this
//! workspace and its `.cargo/config.toml`, depends on them by path,
//! resolves its own lock file (the newest versions our manifests allow, not
//! our `Cargo.lock`), builds, and runs a program of a few lines
//! (`xtask/downstream/main.rs`: a whitening, a loss, two training steps
//! through ssl-train) without `LD_LIBRARY_PATH`, its rpath to libtorch
//! coming from the `libtorch-rpath` build-dependency as README tells a
//! user to write it (`xtask/downstream/build.rs`).
//!
//! The build shares our target directory (`CARGO_TARGET_DIR`, else
//! `target/`) and copies our `[profile]` tables, so registry crates that
//! resolve to the same versions and features reuse the workspace's
//! artifacts (torch-sys's C++ above all); the rest, our crates included, is
//! built again for the project.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use toml::{Table, Value};

use crate::setup::Env;

/// The library crates a user depends on, by path.
const LIBRARIES: [&str; 6] = [
    "whitening-core",
    "ssl-losses",
    "ssl-models",
    "ssl-data",
    "ssl-eval",
    "ssl-train",
];

/// Registry crates the program names itself, at the workspace's
/// requirements. torch-sys is there for its build script: cargo passes
/// `DEP_TCH_LIBTORCH_LIB` only to crates that depend on it directly.
const DIRECT: [&str; 4] = ["tch", "torch-sys", "rand", "rand_chacha"];

/// Packages that must not be in a user's graph: they build or link a
/// system BLAS/LAPACK (the tests' f64 oracle has them as dev-dependencies).
const FORBIDDEN: [&str; 3] = ["openblas-src", "openblas-build", "ndarray-linalg"];

const BINARY: &str = "downstream-check";

pub fn run(root: &Path, env: &Env) -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("whitening-ssl-downstream-")
        .tempdir()
        .context("creating a temporary directory")?;
    let result = check(root, env, dir.path());
    if result.is_err() {
        let kept = dir.keep();
        eprintln!(
            "xtask | check-downstream: the project is kept in {}",
            kept.display()
        );
        return result;
    }
    eprintln!(
        "xtask | check-downstream passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn check(root: &Path, env: &Env, project: &Path) -> Result<()> {
    let root = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    std::fs::create_dir_all(project.join("src"))?;
    std::fs::write(project.join("Cargo.toml"), manifest(&root)?)?;
    std::fs::write(
        project.join("build.rs"),
        include_str!("../downstream/build.rs"),
    )?;
    std::fs::write(
        project.join("src/main.rs"),
        include_str!("../downstream/main.rs"),
    )?;
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::absolute(PathBuf::from(dir))?,
        None => root.join("target"),
    };
    eprintln!(
        "xtask | check-downstream: a project in {} depending on {} by path (target {})",
        project.display(),
        LIBRARIES.join(", "),
        target.display()
    );

    // `cargo fmt --all` in the workspace does not reach these two files.
    cargo_in(
        project,
        env,
        &target,
        "cargo fmt --check",
        &["fmt", "--check"],
    )?;
    let t = Instant::now();
    cargo_in(
        project,
        env,
        &target,
        "cargo generate-lockfile",
        &["generate-lockfile"],
    )?;
    let lock = std::fs::read_to_string(project.join("Cargo.lock"))?;
    let packages = lock.matches("[[package]]").count();
    eprintln!(
        "xtask | check-downstream: its own lock, {packages} packages ({:.0} s)",
        t.elapsed().as_secs_f64()
    );
    let forbidden: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|name| lock.contains(&format!("name = \"{name}\"\n")))
        .collect();
    if !forbidden.is_empty() {
        bail!(
            "the libraries pull in {} for a user (a system BLAS/LAPACK or its download): \
             keep them dev-dependencies (`cargo tree -i {}` in {} shows the path)",
            forbidden.join(", "),
            forbidden[0],
            project.display()
        );
    }

    let t = Instant::now();
    cargo_in(project, env, &target, "cargo build", &["build"])?;
    eprintln!(
        "xtask | check-downstream: built in {:.0} s",
        t.elapsed().as_secs_f64()
    );

    let binary = target.join("debug").join(BINARY);
    let t = Instant::now();
    let out = Command::new(&binary)
        .arg(project.join("run"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .with_context(|| format!("could not start {}", binary.display()))?;
    report(&binary, &out)?;
    eprintln!(
        "xtask | check-downstream: ran without LD_LIBRARY_PATH in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The project's `Cargo.toml`: our library crates by path, the registry
/// crates the program uses at the workspace's requirements, libtorch-rpath
/// as a build-dependency, our `[profile]`s, and an empty `[workspace]` (a
/// workspace of its own wherever the temporary directory is).
fn manifest(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let ours: Table = toml::from_str(&text).context("parsing the workspace Cargo.toml")?;
    let workspace_deps = ours
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(Value::as_table)
        .context("the workspace Cargo.toml has no [workspace.dependencies]")?;
    let by_path = |name: &str| {
        let mut t = Table::new();
        let path = root.join(name);
        t.insert("path".into(), path.display().to_string().into());
        Value::Table(t)
    };

    let mut package = Table::new();
    package.insert("name".into(), BINARY.into());
    package.insert("version".into(), "0.0.0".into());
    package.insert("edition".into(), "2021".into());
    package.insert("publish".into(), false.into());
    let mut deps = Table::new();
    for name in LIBRARIES {
        deps.insert(name.into(), by_path(name));
    }
    for name in DIRECT {
        let req = workspace_deps
            .get(name)
            .with_context(|| format!("[workspace.dependencies] has no {name}"))?;
        deps.insert(name.into(), req.clone());
    }
    let mut build_deps = Table::new();
    build_deps.insert("libtorch-rpath".into(), by_path("libtorch-rpath"));

    let mut manifest = Table::new();
    manifest.insert("package".into(), package.into());
    manifest.insert("dependencies".into(), deps.into());
    manifest.insert("build-dependencies".into(), build_deps.into());
    if let Some(profile) = ours.get("profile") {
        manifest.insert("profile".into(), profile.clone());
    }
    manifest.insert("workspace".into(), Table::new().into());
    Ok(toml::to_string(&manifest)?)
}

/// Runs cargo in the project (so our `.cargo/config.toml` does not apply)
/// with the libtorch of set-up, our target directory, and no
/// `LD_LIBRARY_PATH`.
fn cargo_in(project: &Path, env: &Env, target: &Path, what: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask | check-downstream: {what}");
    let status = env
        .apply(&mut crate::cargo())
        .args(args)
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("LD_LIBRARY_PATH")
        .status()
        .with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        bail!("check-downstream: `{what}` failed ({status})");
    }
    Ok(())
}

/// The program's verdict: success and its summary line.
fn report(binary: &Path, out: &Output) -> Result<()> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{} failed ({}) started without LD_LIBRARY_PATH:\n{stdout}{stderr}",
            binary.display(),
            out.status
        );
    }
    let Some(line) = stdout.lines().find(|l| l.starts_with("downstream |")) else {
        bail!(
            "{} printed no summary line:\n{stdout}{stderr}",
            binary.display()
        );
    };
    eprintln!("xtask | check-downstream: {line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_every_library_by_path_and_is_its_own_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let m: Table = toml::from_str(&manifest(root).unwrap()).unwrap();
        let deps = m["dependencies"].as_table().unwrap();
        for lib in LIBRARIES {
            let path = deps[lib]["path"].as_str().unwrap();
            assert!(Path::new(path).join("Cargo.toml").exists(), "{lib}: {path}");
        }
        assert!(deps.contains_key("torch-sys"));
        let rpath = m["build-dependencies"]["libtorch-rpath"]["path"]
            .as_str()
            .unwrap();
        assert!(Path::new(rpath).join("src/lib.rs").exists());
        assert!(m["workspace"].as_table().unwrap().is_empty());
        assert!(m["profile"]["dev"].is_table());
    }
}
