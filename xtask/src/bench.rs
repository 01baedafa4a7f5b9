//! `cargo xtask bench AREA`: our measurement and the peer baseline in one
//! invocation on one machine, printed side by side as
//! `bench | CASE | ours V UNIT | peer V UNIT | speedup X` (X > 1: we are faster).
//!
//! The peer is [`PEER_SCRIPT`]: the same work done the way the paper's
//! published PyTorch release does it, run with the project venv's Python.
//! Our side of each area is an example program of the crate that owns the
//! work; it prints `ours | CASE | UNIT | VALUE` lines with the peer's own
//! case labels, so the two sides pair by label.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup::Env;

/// The peer baseline, relative to the repository root.
pub const PEER_SCRIPT: &str = "xtask/peer/torch_peer.py";

/// One benchmark area: our example program and the peer's sub-command.
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub name: &'static str,
    pub package: &'static str,
    pub example: &'static str,
    pub peer: &'static str,
    /// Both sides get `--data DIR`, one scratch folder: ours writes its
    /// input files there, the peer reads the same files.
    pub shared_files: bool,
}

pub const AREAS: &[Area] = &[
    Area {
        name: "losses",
        package: "ssl-losses",
        example: "bench_losses",
        peer: "loss",
        shared_files: false,
    },
    Area {
        name: "data",
        package: "ssl-data",
        example: "bench_data",
        peer: "aug",
        shared_files: true,
    },
    Area {
        name: "eval",
        package: "ssl-eval",
        example: "bench_eval",
        peer: "eval",
        shared_files: false,
    },
    Area {
        name: "train",
        package: "ssl-train",
        example: "bench_train",
        peer: "step",
        shared_files: false,
    },
];

/// A parsed `who | CASE | UNIT | VALUE` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub case: String,
    pub unit: String,
    pub value: f64,
}

/// Parses the lines of one side (`ours` or `peer`); other lines are ignored.
pub fn parse(output: &str, who: &str) -> Vec<Measurement> {
    output
        .lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split(" | ").map(str::trim).collect();
            match parts[..] {
                [w, case, unit, value] if w == who => Some(Measurement {
                    case: case.to_string(),
                    unit: unit.to_string(),
                    value: value.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The label without its "(acc …)" details, which legitimately differ
/// between the two sides.
pub fn case_key(case: &str) -> String {
    let mut key = case.to_string();
    while let Some(start) = key.find("(acc") {
        let end = key[start..].find(')').map_or(key.len(), |e| start + e + 1);
        key.replace_range(start..end, "");
    }
    key.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `peer / ours` for times, `ours / peer` for rates: > 1 means we are faster.
pub fn speedup(unit: &str, ours: f64, peer: f64) -> f64 {
    if unit.contains("/s") {
        ours / peer
    } else {
        peer / ours
    }
}

/// The side-by-side lines for one area.
pub fn pair(ours: &[Measurement], peer: &[Measurement]) -> Vec<String> {
    ours.iter()
        .map(|o| {
            let key = case_key(&o.case);
            match peer
                .iter()
                .find(|p| case_key(&p.case) == key && p.unit == o.unit)
            {
                Some(p) => format!(
                    "bench | {} | ours {} {} | peer {} {} | speedup {:.2}",
                    o.case,
                    o.value,
                    o.unit,
                    p.value,
                    p.unit,
                    speedup(&o.unit, o.value, p.value)
                ),
                None => format!(
                    "bench | {} | ours {} {} | peer - | speedup -",
                    o.case, o.value, o.unit
                ),
            }
        })
        .collect()
}

pub fn run(root: &Path, env: &Env, which: &str) -> Result<()> {
    let areas: Vec<&Area> = if which == "all" {
        AREAS.iter().collect()
    } else {
        match AREAS.iter().find(|a| a.name == which) {
            Some(a) => vec![a],
            None => bail!(
                "unknown bench area `{which}`: expected one of {} or all",
                AREAS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    let peer_script = root.join(PEER_SCRIPT);
    if !peer_script.exists() {
        bail!(
            "the peer baseline {} is missing: benches compare against it",
            peer_script.display()
        );
    }
    let examples = target_dir(
        root,
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
    )
    .join("release/examples");
    let mut lines = Vec::new();
    for area in areas {
        crate::run_step(
            root,
            &format!(
                "cargo build --release -p {} --example {}",
                area.package, area.example
            ),
            env.apply(crate::cargo().args([
                "build",
                "--release",
                "--package",
                area.package,
                "--example",
                area.example,
            ])),
        )?;
        let scratch = if area.shared_files {
            Some(
                tempfile::Builder::new()
                    .prefix("xtask-bench-")
                    .tempdir()
                    .context("creating the benchmark's scratch folder")?,
            )
        } else {
            None
        };
        let data_args: Vec<&std::ffi::OsStr> = match &scratch {
            Some(dir) => vec!["--data".as_ref(), dir.path().as_os_str()],
            None => Vec::new(),
        };
        let ours = capture(
            Command::new(examples.join(area.example))
                .args(&data_args)
                .current_dir(root),
            area.example,
        )?;
        // The same OpenMP runtime setting on both sides: our examples apply
        // `OMP_WAIT_POLICY=PASSIVE` at start (as `ssl` does), and libgomp's
        // default spinning made the peer 6-20x slower on a loaded 2-core
        // machine, which would credit us with the machine's load. A policy
        // the user set is kept for both.
        let policy = std::env::var_os("OMP_WAIT_POLICY").unwrap_or_else(|| "PASSIVE".into());
        let peer = capture(
            Command::new(&env.python)
                .env("OMP_WAIT_POLICY", &policy)
                .arg(&peer_script)
                .arg(area.peer)
                .args(&data_args)
                .current_dir(root),
            PEER_SCRIPT,
        )?;
        lines.extend(pair(&parse(&ours, "ours"), &parse(&peer, "peer")));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Where cargo puts its output: `CARGO_TARGET_DIR` (relative to the root
/// when relative, as cargo reads it) or `target`.
fn target_dir(root: &Path, from_env: Option<PathBuf>) -> PathBuf {
    match from_env {
        Some(dir) if !dir.as_os_str().is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

fn capture(cmd: &mut Command, what: &str) -> Result<String> {
    eprintln!("xtask | running {what}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {what}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("{text}");
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_by_label_ignoring_accuracy_details() {
        let ours = parse(
            "ours | 5-NN, 50000 x 512 train, 10000 test (acc 0.912) | s | 2.5\nnoise\n",
            "ours",
        );
        let peer = parse(
            "peer | torch 2.13.0, 2 threads | - | -\npeer | 5-NN, 50000 x 512 train, 10000 test (acc 0.913) | s | 10.0\n",
            "peer",
        );
        let lines = pair(&ours, &peer);
        assert_eq!(
            lines,
            ["bench | 5-NN, 50000 x 512 train, 10000 test (acc 0.912) | ours 2.5 s | peer 10 s | speedup 4.00"]
        );
    }

    #[test]
    fn the_train_area_pairs_with_the_peers_step() {
        let train = AREAS
            .iter()
            .find(|a| a.name == "train")
            .expect("train area");
        assert_eq!(
            (train.package, train.example, train.peer),
            ("ssl-train", "bench_train", "step")
        );
        // The label both sides print (torch_peer.py bench_step).
        let label = "ResNet-18 CW-RGP train step, bs 64 x 2 views (fwd+bwd+Adam)";
        let ours = parse(&format!("ours | {label} | images/s | 120.0"), "ours");
        let peer = parse(&format!("peer | {label} | images/s | 100.0"), "peer");
        assert!(pair(&ours, &peer)[0].ends_with("speedup 1.20"));
    }

    #[test]
    fn the_peer_script_is_in_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits inside the workspace");
        assert!(root.join(PEER_SCRIPT).is_file());
        let data = AREAS.iter().find(|a| a.name == "data").expect("data area");
        assert!(data.shared_files);
    }

    #[test]
    fn the_target_dir_follows_cargo_target_dir() {
        let root = Path::new("/repo");
        assert_eq!(target_dir(root, None), Path::new("/repo/target"));
        assert_eq!(
            target_dir(root, Some("/elsewhere/t".into())),
            Path::new("/elsewhere/t")
        );
        assert_eq!(
            target_dir(root, Some("build".into())),
            Path::new("/repo/build")
        );
    }

    #[test]
    fn rates_and_times_have_opposite_speedups() {
        assert_eq!(speedup("images/s", 8600.0, 860.0), 10.0);
        assert_eq!(speedup("ms", 28.0, 140.0), 5.0);
    }

    #[test]
    fn labels_with_parentheses_that_are_not_details_are_kept() {
        let label = "CW-RGP 4 loss fwd+bwd (bs 256, 4 views, d 512, w_size 64, 4 groups)";
        assert_eq!(case_key(label), label);
        let ours = parse(&format!("ours | {label} | ms | 20"), "ours");
        let peer = parse(&format!("peer | {label} | ms | 140"), "peer");
        assert!(pair(&ours, &peer)[0].ends_with("speedup 7.00"));
    }
}
