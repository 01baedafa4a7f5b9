//! `cargo xtask bench AREA`: our measurement and the peer baseline
//! (`../shared/peer/torch_baseline.py`) in one invocation on one machine,
//! printed side by side as
//! `bench | CASE | ours V UNIT | peer V UNIT | speedup X` (X > 1: we are faster).
//!
//! Our side of each area is an example program of the crate that owns the
//! work; it prints `ours | CASE | UNIT | VALUE` lines with the peer's own
//! case labels, so the two sides pair by label.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup::Env;

/// One benchmark area: our example program and the peer's sub-command.
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub name: &'static str,
    pub package: &'static str,
    pub example: &'static str,
    pub peer: &'static str,
}

pub const AREAS: &[Area] = &[
    Area {
        name: "losses",
        package: "ssl-losses",
        example: "bench_losses",
        peer: "loss",
    },
    Area {
        name: "data",
        package: "ssl-data",
        example: "bench_data",
        peer: "aug",
    },
    Area {
        name: "eval",
        package: "ssl-eval",
        example: "bench_eval",
        peer: "eval",
    },
    Area {
        name: "train",
        package: "ssl-train",
        example: "bench_train",
        peer: "step",
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
    let peer_script = root.join("../shared/peer/torch_baseline.py");
    if !peer_script.exists() {
        bail!(
            "the peer baseline {} is missing: benches compare against it",
            peer_script.display()
        );
    }
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
        let ours_bin = root.join("target/release/examples").join(area.example);
        let ours = capture(Command::new(&ours_bin).current_dir(root), area.example)?;
        let peer = capture(
            Command::new(&env.python)
                .arg(&peer_script)
                .arg(area.peer)
                .current_dir(root),
            "torch_baseline.py",
        )?;
        lines.extend(pair(&parse(&ours, "ours"), &parse(&peer, "peer")));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
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
        // The label both sides print (torch_baseline.py bench_step).
        let label = "ResNet-18 CW-RGP train step, bs 64 x 2 views (fwd+bwd+Adam)";
        let ours = parse(&format!("ours | {label} | images/s | 120.0"), "ours");
        let peer = parse(&format!("peer | {label} | images/s | 100.0"), "peer");
        assert!(pair(&ours, &peer)[0].ends_with("speedup 1.20"));
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
