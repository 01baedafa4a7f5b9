//! Presets and configuration resolution through the `ssl` binary.

use std::process::Command;

const SSL: &str = env!("CARGO_BIN_EXE_ssl");

fn ssl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(SSL).args(args).output().expect("run ssl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_preset_resolves_and_validates() {
    let (ok, out, err) = ssl(&["config", "check"]);
    assert!(ok, "{out}{err}");
    // 15 CIFAR-10 + 15 CIFAR-100 (Table 1 + ablation), 11 STL-10, 11 Tiny-ImageNet,
    // 2 ImageNet (Table 2), 1 synthetic (the demo).
    assert!(out.contains("55 presets resolve and validate"), "{out}");
    let (_, list, _) = ssl(&["config", "list"]);
    assert_eq!(list.lines().count(), 55);
}

#[test]
fn show_snapshots() {
    for preset in [
        "cifar10/cw-rgp-4",
        "tiny-imagenet/w-mse-2",
        "imagenet/cw-rgp-4-200ep",
        "stl10/byol",
    ] {
        let (ok, out, err) = ssl(&["config", "show", preset]);
        assert!(ok, "{preset}: {err}");
        insta::assert_snapshot!(preset.replace('/', "__"), out);
    }
}

#[test]
fn overrides_apply_and_are_typed() {
    let (ok, out, err) = ssl(&[
        "config",
        "show",
        "cifar10/cw-rgp-4",
        "--set",
        "optim.lr=1e-3",
        "--set",
        "run.name=try",
        "--set",
        "method.groups=2",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("lr = 0.001"), "{out}");
    assert!(out.contains("name = \"try\""), "{out}");
    assert!(out.contains("groups = 2"), "{out}");
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let (ok, out, err) = ssl(args);
    assert!(!ok, "expected failure for {args:?}, got:\n{out}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
}

#[test]
fn unknown_key_is_named() {
    fails_with(
        &[
            "config",
            "show",
            "cifar10/cw-rgp-4",
            "--set",
            "optim.learning_rate=1",
        ],
        &["learning_rate"],
    );
    fails_with(
        &[
            "config",
            "show",
            "cifar10/cw-rgp-4",
            "--set",
            "method.w_sise=64",
        ],
        &["w_sise"],
    );
}

#[test]
fn wrong_type_is_named() {
    fails_with(
        &[
            "config",
            "show",
            "cifar10/cw-rgp-4",
            "--set",
            "data.batch_size=big",
        ],
        &["batch_size"],
    );
}

#[test]
fn impossible_combinations_are_rejected_with_a_way_out() {
    // CW needs emb/group > w_size: 512/4 = 128 channels vs w_size 256.
    fails_with(
        &[
            "config",
            "show",
            "cifar10/cw-rgp-4",
            "--set",
            "method.w_size=256",
        ],
        &["w_size", "channel (CW)", "fewer groups"],
    );
    // BW needs w_size > emb/group: 64 examples for 64 channels.
    fails_with(
        &[
            "config",
            "show",
            "cifar10/w-mse-2",
            "--set",
            "method.w_size=64",
        ],
        &["batch (BW)", "w_size"],
    );
    // A two-view method given four views.
    fails_with(
        &["config", "show", "cifar10/vicreg", "--set", "data.views=4"],
        &["data.views = 4", "vicreg", "data.views = 2"],
    );
    fails_with(
        &[
            "config",
            "show",
            "cifar10/cw-rgp-4",
            "--set",
            "method.w_size=48",
        ],
        &["does not divide data.batch_size"],
    );
    fails_with(
        &["config", "show", "cifar10/nope"],
        &["no preset", "ssl config list"],
    );
}

#[test]
fn train_help_lists_every_method() {
    let (ok, out, err) = ssl(&["train", "--help"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("Methods (--set method.name=NAME): "))
        .unwrap_or_else(|| panic!("no methods line in:\n{out}"));
    assert!(
        line.ends_with(&ssl_train::METHOD_NAMES.join(", ")),
        "{line}"
    );
}
