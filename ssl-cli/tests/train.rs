//! End-to-end runs of the `ssl` binary on the built-in synthetic data
//! (CPU, a thin ResNet-18): a run resumes exactly from the command line,
//! Ctrl-C saves a resumable checkpoint, a run killed with SIGKILL at any
//! point and resumed ends bit-identical to an uninterrupted one, bad
//! inputs are named. The trainer's
//! own behaviour (every method, the loss falling, divergence, events) is
//! tested in the test process by ssl-train's `tests/trainer.rs`.

use std::path::Path;
use std::process::{Command, Output};

use test_support::scratch_dir;

const SSL: &str = env!("CARGO_BIN_EXE_ssl");

/// The shared synthetic dataset, written once per test process folder.
fn data_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssl-cli-train-data")
}

/// A tiny run: 128 images, batches of 64, width 1/8, emb 128, k-NN only.
fn tiny(out: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "synthetic/cw-rgp-demo",
        "--device",
        "cpu",
        "--set",
        &format!("data.path={}", data_dir().display()),
        "--set",
        &format!("run.out_dir={}", out.display()),
        "--set",
        &format!("run.name={name}"),
        "--set",
        "data.subset=128",
        "--set",
        "data.batch_size=64",
        "--set",
        "model.width=0.125",
        "--set",
        "model.emb=128",
        "--set",
        "model.head_size=64",
        "--set",
        "optim.epochs=2",
        "--set",
        "optim.warmup_iters=2",
        "--set",
        "optim.drop_epochs=[]",
        "--set",
        "eval.linear=false",
        "--set",
        "run.log_every=1",
        "--set",
        "data.workers=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for e in extra {
        args.push(e.to_string());
    }
    args
}

fn ssl(args: &[String]) -> Output {
    Command::new(SSL).args(args).output().expect("run ssl")
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["kind"] == "step").then(|| v["loss"].as_f64().unwrap())
        })
        .collect()
}

fn set(kv: &str) -> [&str; 2] {
    ["--set", kv]
}

#[test]
fn resume_continues_exactly_where_it_stopped() {
    let out = scratch_dir();
    let common = ["method.w_size=16", "method.groups=2"];
    // Straight: 3 epochs.
    let mut a = tiny(out.path(), "straight", &[]);
    for kv in common.iter().chain(&["optim.epochs=3"]) {
        a.extend(set(kv).map(String::from));
    }
    assert!(ssl(&a).status.success());
    // Interrupted: 2 epochs, then the same run resumed to 3.
    let mut b = tiny(out.path(), "resumed", &[]);
    for kv in common {
        b.extend(set(kv).map(String::from));
    }
    assert!(ssl(&b).status.success());
    let mut c = b.clone();
    c.extend(set("optim.epochs=3").map(String::from));
    c.push("--resume".into());
    let o = ssl(&c);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resumed at step 4"));
    let straight = losses(&out.path().join("straight"));
    let resumed = losses(&out.path().join("resumed"));
    assert_eq!(straight.len(), 6);
    // Bit-identical losses on the CPU, including the steps after the resume.
    assert_eq!(straight, resumed);
}

#[test]
fn interrupt_saves_and_the_run_resumes() {
    let out = scratch_dir();
    let mut args = tiny(out.path(), "sigint", &[]);
    for kv in ["optim.epochs=50", "method.w_size=16", "method.groups=2"] {
        args.extend(set(kv).map(String::from));
    }
    let child = Command::new(SSL)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.path().join("sigint/metrics.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(0, |s| s.lines().count()) < 3 {
        assert!(std::time::Instant::now() < deadline, "no progress in 120 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("interrupted after step"), "{stdout}");
    assert!(out.path().join("sigint/checkpoint.safetensors").exists());
    // The saved position is resumable.
    let mut resume = args.clone();
    resume.extend(set("optim.epochs=2").map(String::from));
    resume.push("--resume".into());
    let o = ssl(&resume);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn fails_with(args: &[String], needles: &[&str]) {
    let o = ssl(args);
    assert!(!o.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&o.stderr);
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
}

#[test]
fn bad_inputs_are_named() {
    let out = scratch_dir();
    // A dataset that is not there: the error gives the download command.
    let mut a = tiny(out.path(), "missing", &[]);
    a.extend(set("data.dataset=cifar10").map(String::from));
    a.extend(
        set(&format!(
            "data.path={}",
            out.path().join("nowhere").display()
        ))
        .map(String::from),
    );
    fails_with(&a, &["cargo xtask download cifar10"]);
    // An unwritable run directory (a file stands where the folder should be).
    std::fs::write(out.path().join("blocked"), b"").unwrap();
    let b = tiny(&out.path().join("blocked"), "x", &[]);
    fails_with(&b, &["run directory"]);
    // --resume without a checkpoint, and with a damaged one.
    let mut c = tiny(out.path(), "damaged", &[]);
    c.push("--resume".into());
    fails_with(&c, &["no checkpoint"]);
    std::fs::create_dir_all(out.path().join("damaged")).unwrap();
    std::fs::write(
        out.path().join("damaged/checkpoint.safetensors"),
        b"not a checkpoint",
    )
    .unwrap();
    fails_with(&c, &["checkpoint.safetensors"]);
    // The same damaged run given to eval and export: named, nothing written.
    let damaged = out.path().join("damaged").display().to_string();
    let o = Command::new(SSL)
        .args(["eval", &damaged, "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("checkpoint"));
    let pt = out.path().join("x.pt");
    let o = Command::new(SSL)
        .args(["export", &damaged, "--format", "torchvision", "-o"])
        .arg(&pt)
        .output()
        .unwrap();
    assert!(!o.status.success() && !pt.exists());
    // Unknown keys and wrong types through `ssl train` itself (refused
    // before anything runs; `tests/config.rs` checks `ssl config show`).
    let mut d = tiny(out.path(), "typo", &[]);
    d.extend(set("optim.learning_rate=1").map(String::from));
    fails_with(&d, &["learning_rate"]);
    let mut e = tiny(out.path(), "typed", &[]);
    e.extend(set("data.batch_size=big").map(String::from));
    fails_with(&e, &["batch_size"]);
    assert!(!out.path().join("typo").exists() && !out.path().join("typed").exists());
}

/// Every tensor of a checkpoint (networks, optimiser state, EMA) as bytes.
fn checkpoint_tensors(run: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// Waits up to `limit` for `stop(run_dir)` to hold, polling every millisecond.
fn wait_for(limit: std::time::Duration, mut stop: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if stop() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

#[test]
fn sigkill_at_any_point_then_resume_ends_bit_identical() {
    let out = scratch_dir();
    // 3 epochs of 4 steps, a checkpoint after every step in the killed run.
    let common = [
        "data.subset=256",
        "optim.epochs=3",
        "method.w_size=16",
        "method.groups=2",
    ];
    let mut a = tiny(out.path(), "straight", &[]);
    for kv in common {
        a.extend(set(kv).map(String::from));
    }
    let o = ssl(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = out.path().join("killed");
    let mut b = tiny(out.path(), "killed", &[]);
    for kv in common.iter().chain(&["run.checkpoint_every_steps=1"]) {
        b.extend(set(kv).map(String::from));
    }
    let ckpt = run.join("checkpoint.safetensors");
    let steps_in = |run: &Path| {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .map_or(0, |s| s.lines().filter(|l| l.contains("\"step\"")).count())
    };
    // Where each kill lands: before the first checkpoint exists, inside an
    // epoch (a few steps logged), and the moment a checkpoint's temporary
    // file appears (while it is being written).
    #[derive(Debug, Clone, Copy)]
    enum At {
        Start,
        Steps(usize),
        Writing,
    }
    let mut writes_hit = 0;
    for at in [
        At::Start,
        At::Steps(2),
        At::Writing,
        At::Steps(7),
        At::Writing,
    ] {
        let mut args = b.clone();
        if ckpt.exists() {
            args.push("--resume".into());
        }
        let mut child = Command::new(SSL)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let limit = std::time::Duration::from_secs(120);
        // A run that ended on its own stops the wait (nothing left to kill).
        let mut ended = || child.try_wait().ok().flatten().is_some();
        match at {
            At::Start => std::thread::sleep(std::time::Duration::from_millis(200)),
            At::Steps(n) => {
                let before = steps_in(&run);
                wait_for(limit, || steps_in(&run) >= before + n || ended());
            }
            At::Writing => {
                let hit = wait_for(limit, || {
                    ended()
                        || std::fs::read_dir(&run).is_ok_and(|d| {
                            d.flatten().any(|e| {
                                let name = e.file_name();
                                let name = name.to_string_lossy();
                                name.starts_with(".checkpoint.safetensors")
                                    && name.ends_with(".tmp")
                            })
                        })
                });
                writes_hit += usize::from(hit);
            }
        }
        // SIGKILL (an error only when the run already ended and was reaped).
        let _ = child.kill();
        let _ = child.wait();
        if matches!(at, At::Start) {
            assert!(!ckpt.exists(), "killed after 200 ms, before any checkpoint");
        }
    }
    eprintln!("kills during a checkpoint write: {writes_hit} of 2");
    // The checkpoint left by the kills is whole and the run resumes to the end.
    let mut last = b.clone();
    last.push("--resume".into());
    let o = ssl(&last);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The history matches: every step once, in order, equal losses.
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "step")
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<u64>>(), "each step once");
    assert_eq!(losses(&run), losses(&out.path().join("straight")));
    let straight = checkpoint_tensors(&out.path().join("straight"));
    let killed = checkpoint_tensors(&run);
    assert_eq!(straight.len(), killed.len());
    for ((na, ta), (nb, tb)) in straight.iter().zip(&killed) {
        assert_eq!(na, nb);
        assert!(ta == tb, "{na} differs after the kills and resumes");
    }
}
