//! `cargo xtask`: everything beyond `cargo build` / `cargo test`.
//!
//! This crate never links libtorch: it is what installs it. It only runs
//! other programs (python, pip, apt-get, cargo) and reads files.

mod bench;
mod download;
mod downstream;
mod reproduce;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "whitening-ssl project automation",
    long_about = "whitening-ssl project automation.\n\n\
        Every command that builds first runs `setup`: it installs PyPI's torch==2.13.0 \
        (the libtorch that tch 0.26 binds), torchvision, numpy, pillow and tensorboard into the \
        project-local `.venv` unless LIBTORCH points at your own libtorch, and checks \
        for the system OpenBLAS that the tests' f64 oracle links (ndarray-linalg)."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install libtorch (project venv) and OpenBLAS if missing; print what is in use.
    Setup,
    /// The README's first command: a short run on built-in synthetic data, CPU only.
    Demo {
        /// The paper's qualitative claims instead: CW-RGP, W-MSE, PCA
        /// whitening, Shuffled-DBN and plain side by side (`ssl demo --paper`;
        /// about a quarter of an hour on 2 cores), table and plot in demo-paper/.
        #[arg(long)]
        paper: bool,
    },
    /// Everything CI checks: fmt, clippy (-D warnings), workspace tests, doc
    /// tests, check-downstream.
    Test {
        /// Extra arguments passed to the test runner (e.g. a test-name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A fresh cargo project outside the workspace, with its own lock file,
    /// that depends on the library crates by path: builds, and runs a
    /// whitening, a loss and training steps without LD_LIBRARY_PATH.
    CheckDownstream,
    /// Our implementation beside the peer baseline (xtask/peer/torch_peer.py:
    /// the same work as the paper's PyTorch release does it), same machine,
    /// same invocation: `bench | CASE | ours | peer | speedup`.
    Bench {
        /// losses, data, eval, train or all.
        area: String,
    },
    /// Download, verify (MD5) and extract a dataset: cifar10, cifar100, stl10, tiny-imagenet.
    /// Resumable and idempotent.
    Download {
        /// cifar10, cifar100, stl10 or tiny-imagenet.
        dataset: String,
        /// Where datasets live.
        #[arg(long, default_value = "data")]
        dir: PathBuf,
        /// Fetch from this URL instead of the publisher's (a mirror).
        #[arg(long)]
        url: Option<String>,
    },
    /// Check a user's ImageNet folder (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG).
    CheckImagenet {
        /// The ImageNet root folder.
        dir: PathBuf,
    },
    /// Reproduce a table of the paper: run every row's preset (resuming),
    /// then write <out>/tableN.md, .csv (and Table 1's .svg) with the
    /// paper's numbers beside ours.
    Reproduce(reproduce::ReproduceArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root();
    match cli.command {
        Cmd::Setup => {
            let env = setup::run(&root)?;
            env.print_summary();
            Ok(())
        }
        Cmd::Demo { paper } => demo(&root, paper),
        Cmd::Test { args } => test(&root, &args),
        Cmd::CheckDownstream => {
            let env = setup::run(&root)?;
            downstream::run(&root, &env)
        }
        Cmd::Download { dataset, dir, url } => {
            let src = download::source(&dataset)?;
            let dir = if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            };
            match download::fetch(src, &dir, url.as_deref())? {
                download::Outcome::AlreadyPresent => {
                    eprintln!(
                        "xtask | {dataset} is already in {} (verified)",
                        dir.display()
                    )
                }
                download::Outcome::Downloaded { .. } => {
                    eprintln!(
                        "xtask | {dataset} downloaded, verified and extracted into {}",
                        dir.display()
                    )
                }
            }
            Ok(())
        }
        Cmd::CheckImagenet { dir } => {
            print!("{}", download::check_imagenet(&dir)?);
            Ok(())
        }
        Cmd::Reproduce(args) => reproduce::run(&root, &args),
        Cmd::Bench { area } => {
            let env = setup::run(&root)?;
            bench::run(&root, &env, &area)
        }
    }
}

/// The workspace root: xtask lives one level below it.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a command in the project root, echoing it, failing with its name.
pub(crate) fn run_step(root: &Path, what: &str, cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root);
    eprintln!("xtask | {what}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    let env = setup::run(root)?;
    env.print_summary();
    let started = std::time::Instant::now();
    run_step(
        root,
        "cargo fmt --all -- --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run_step(
        root,
        "cargo clippy --workspace --all-targets -- -D warnings",
        env.apply(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])),
    )?;
    // Tests that need a GPU are `#[ignore = "needs a CUDA device"]`: run
    // them where there is one, else they are reported as ignored.
    let gpu = env.cuda_libs && has_nvidia_device();
    eprintln!(
        "xtask | {}",
        if gpu {
            "NVIDIA device found: running the tests that need CUDA too"
        } else {
            "no CUDA device (or a CPU-only libtorch): tests that need one are reported as ignored"
        }
    );
    if has_nextest() {
        let mut cmd = cargo();
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
        if gpu {
            cmd.args(["--run-ignored", "all"]);
        }
        run_step(
            root,
            "cargo nextest run --workspace",
            env.apply(cmd.args(extra)),
        )?;
    } else {
        eprintln!("xtask | cargo-nextest not found: using cargo test");
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
            .args(extra);
        if gpu {
            if !extra.iter().any(|a| a == "--") {
                cmd.arg("--");
            }
            cmd.arg("--include-ignored");
        }
        run_step(root, "cargo test --workspace", env.apply(&mut cmd))?;
    }
    user_code_example(root, &env)?;
    run_step(
        root,
        "cargo test --doc --workspace",
        env.apply(cargo().args(["test", "--doc", "--workspace", "--exclude", "xtask"])),
    )?;
    downstream::run(root, &env)?;
    eprintln!(
        "xtask | all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `ssl-train/examples/custom_backbone.rs` (a user's program: its own
/// encoder, its own in-memory images, CW-RGP through ssl-train's public
/// API) and checks that its epoch-mean loss fell.
fn user_code_example(root: &Path, env: &setup::Env) -> Result<()> {
    let what = "cargo run -p ssl-train --example custom_backbone";
    eprintln!("xtask | {what}");
    let out_dir = tempfile::tempdir().context("creating the example's run folder")?;
    let out = env
        .apply(cargo().args([
            "run",
            "--quiet",
            "-p",
            "ssl-train",
            "--example",
            "custom_backbone",
        ]))
        .args(["--", "--epochs", "4", "--out"])
        .arg(out_dir.path())
        .current_dir(root)
        .output()
        .with_context(|| format!("could not start `{what}`"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprint!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("`{what}` failed ({})", out.status);
    }
    let (first, last) = example_losses(&stdout)
        .with_context(|| format!("`{what}` printed no `custom_backbone | loss A -> B` line"))?;
    if last.partial_cmp(&first) != Some(std::cmp::Ordering::Less) {
        bail!("`{what}`: the loss did not fall ({first} -> {last})");
    }
    Ok(())
}

/// `(A, B)` of the example's `custom_backbone | loss A -> B ...` line.
fn example_losses(stdout: &str) -> Option<(f64, f64)> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("custom_backbone | loss "))?;
    let mut words = line.split_whitespace();
    let first = words.next()?.parse().ok()?;
    let _arrow = words.next()?;
    let last = words.next()?.parse().ok()?;
    Some((first, last))
}

/// An NVIDIA GPU device node: `/dev/nvidia0`, `/dev/nvidia1`, ... (the
/// driver creates one per GPU; `/dev/nvidiactl` alone is no device).
fn has_nvidia_device() -> bool {
    std::fs::read_dir("/dev").is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("nvidia"))
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn demo(root: &Path, paper: bool) -> Result<()> {
    let env = setup::run(root)?;
    env.print_summary();
    let mut ssl = vec!["demo", "--device", "cpu"];
    if paper {
        ssl.push("--paper");
    }
    let what = format!("ssl {}", ssl.join(" "));
    let mut args = vec![
        "run",
        "--quiet",
        "--package",
        "ssl-cli",
        "--bin",
        "ssl",
        "--",
    ];
    args.extend(ssl);
    run_step(root, &what, env.apply(cargo().args(args)))
}

#[cfg(test)]
mod tests {
    use super::example_losses;

    #[test]
    fn the_examples_loss_line_is_read() {
        let out = "epoch 1: loss 1.6\ncustom_backbone | loss 1.5871 -> 1.4429 (epoch means) | k-NN 32.0% | run r\n";
        assert_eq!(example_losses(out), Some((1.5871, 1.4429)));
        assert_eq!(example_losses("custom_backbone | loss nan"), None);
        assert_eq!(example_losses("nothing"), None);
    }
}
