//! An installed `ssl` works anywhere: a copy of the binary in an empty
//! temporary directory, started there with a bare environment (no
//! `LD_LIBRARY_PATH`, no cargo or project variables), lists the presets,
//! writes one to a file and trains that file, as README's
//! `cargo install --path ssl-cli` user does.

use std::path::Path;
use std::process::{Command, Output};

use test_support::scratch_dir;

const SSL: &str = env!("CARGO_BIN_EXE_ssl");

/// `ssl ARGS` run from `dir` by the copy `bin`, with only `PATH` and `HOME`.
fn ssl_in(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .output()
        .expect("start the copied ssl")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_copied_binary_lists_shows_and_trains_a_preset_from_an_empty_directory() {
    let scratch = scratch_dir();
    let bin = scratch.path().join("bin/ssl");
    let work = scratch.path().join("work");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(SSL, &bin).expect("copy the ssl binary");

    // The source tree is still on this disk, so a binary that read its
    // presets from there would pass what follows: it must not even name
    // the folders it would read them from.
    let bytes = std::fs::read(&bin).unwrap();
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    for source in [
        env!("CARGO_MANIFEST_DIR").to_owned(),
        configs.canonicalize().unwrap().display().to_string(),
    ] {
        assert!(
            !bytes.windows(source.len()).any(|w| w == source.as_bytes()),
            "the ssl binary names {source}: it must carry its presets, not find them"
        );
    }

    // ssl config list
    let out = ssl_in(&bin, &work, &["config", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    for preset in [
        "cifar10/cw-rgp-4",
        "imagenet/cw-rgp-4-200ep",
        "synthetic/cw-rgp-demo",
    ] {
        assert!(
            list.lines().any(|l| l.contains(preset)),
            "{preset} missing:\n{list}"
        );
    }

    // ssl config show cifar10/cw-rgp-4 > my.toml
    let out = ssl_in(&bin, &work, &["config", "show", "cifar10/cw-rgp-4"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(work.join("my.toml"), &out.stdout).unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("name = \"cw-rgp\""), "{shown}");
    assert!(shown.contains("groups = 4"), "{shown}");

    // ssl train my.toml, made tiny: synthetic data (written under
    // ./data on first use), 128 images, ResNet-18 x 1/8, one epoch.
    let set = [
        "data.dataset=synthetic",
        "data.subset=128",
        "data.batch_size=64",
        "data.views=2",
        "model.width=0.125",
        "model.head_size=128",
        "optim.epochs=1",
        "optim.warmup_iters=2",
        "eval.linear=false",
        "run.name=anywhere",
    ];
    let mut args = vec!["train", "my.toml", "--device", "cpu"];
    for s in &set {
        args.extend(["--set", s]);
    }
    let out = ssl_in(&bin, &work, &args);
    assert!(out.status.success(), "{}", text(&out));
    let run = work.join("runs/anywhere");
    for file in ["config.toml", "metrics.jsonl", "checkpoint.safetensors"] {
        assert!(
            run.join(file).is_file(),
            "{file} missing in {}:\n{}",
            run.display(),
            text(&out)
        );
    }
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("groups = 4"), "my.toml's method: {config}");
    assert!(config.contains("dataset = \"synthetic\""), "{config}");
}
