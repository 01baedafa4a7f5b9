//! Data-parallel `ssl train` under `mpirun -np 2` (Open MPI, CPU, a thin
//! ResNet-18 on the synthetic data): parameters bit-identical on both ranks
//! after every step, a resumed two-rank run, and a killed rank ending the
//! job within a bounded time with the last checkpoint intact. Skipped with
//! a message when mpirun is missing outside CI; required in CI.

use std::path::Path;
use std::time::{Duration, Instant};

use test_support::scratch_dir;

const SSL: &str = env!("CARGO_BIN_EXE_ssl");

fn data_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssl-cli-dist-data")
}

/// 128 images, a global batch of 64 (32 per rank), 2 steps per epoch.
fn tiny(out: &Path, name: &str, epochs: usize) -> Vec<String> {
    let mut args: Vec<String> = ["train", "synthetic/cw-rgp-demo", "--device", "cpu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for kv in [
        format!("data.path={}", data_dir().display()),
        format!("run.out_dir={}", out.display()),
        format!("run.name={name}"),
        "data.subset=128".into(),
        "data.batch_size=64".into(),
        "model.width=0.125".into(),
        "model.emb=64".into(),
        "model.head_size=64".into(),
        format!("optim.epochs={epochs}"),
        "optim.warmup_iters=2".into(),
        "optim.drop_epochs=[]".into(),
        "method.w_size=16".into(),
        "method.groups=2".into(),
        "eval.linear=false".into(),
        "run.log_every=1".into(),
        "data.workers=1".into(),
    ] {
        args.push("--set".into());
        args.push(kv);
    }
    args.extend([
        "--dist".into(),
        "mpi".into(),
        "--dist-timeout".into(),
        "60".into(),
    ]);
    args
}

fn mpirun_ssl(
    args: &[String],
    env: &[(&str, &str)],
    limit: Duration,
) -> Option<std::process::Output> {
    let mut c = test_support::mpirun(2)?;
    for (k, v) in env {
        c.args(["-x", k]).env(k, v);
    }
    c.args(["-x", "OMP_NUM_THREADS"]).arg(SSL).args(args);
    Some(test_support::output_within(&mut c, limit))
}

fn steps(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(r#""kind":"step""#))
        .count()
}

#[test]
fn two_ranks_keep_identical_parameters_and_resume() {
    let out = scratch_dir();
    let started = Instant::now();
    let check = [("SSL_DIST_CHECK_PARAMS", "1")];
    let Some(o) = mpirun_ssl(&tiny(out.path(), "dp", 1), &check, Duration::from_secs(300)) else {
        return;
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("data-parallel: 2 ranks over mpi"), "{err}");
    // Rank 0's checksum compared on every rank after every step (the check
    // fails the run otherwise); rank 0 reports each step.
    for step in 0..2 {
        assert!(
            err.contains(&format!(
                "rank 0: parameters identical to rank 0's after step {step}"
            )),
            "{err}"
        );
    }
    assert!(
        err.contains("rank 1: parameters identical to rank 0's after step 0"),
        "{err}"
    );
    let run = out.path().join("dp");
    assert_eq!(steps(&run), 2, "rank 0 alone logs: 2 steps, not 4");
    assert!(run.join("checkpoint.safetensors").exists());
    let first = started.elapsed();
    // Both ranks resume from rank 0's checkpoint and finish a second epoch.
    let mut resume = tiny(out.path(), "dp", 2);
    resume.push("--resume".into());
    let o = mpirun_ssl(&resume, &check, Duration::from_secs(300)).expect("mpirun");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("resumed at step 2").count(), 2, "{err}");
    assert!(err.contains("after step 3"), "{err}");
    assert_eq!(steps(&run), 4);
    eprintln!(
        "two ranks: 1 epoch {:.1} s, resumed epoch {:.1} s",
        first.as_secs_f64(),
        (started.elapsed() - first).as_secs_f64()
    );
}

#[test]
fn a_killed_rank_ends_the_job_naming_it_and_the_checkpoint_survives() {
    let out = scratch_dir();
    // Rank 1 dies after step 3, in epoch 2; the epoch-1 checkpoint (step 2) exists.
    let started = Instant::now();
    let Some(o) = mpirun_ssl(
        &tiny(out.path(), "killed", 3),
        &[("SSL_DIST_FAIL_AT", "1:3")],
        Duration::from_secs(300),
    ) else {
        return;
    };
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    // mpirun names the rank that died ([[job,1],1] is rank 1) and its status.
    assert!(err.contains("dying after step 3"), "{err}");
    assert!(
        err.contains("],1]") && err.contains("Exit code:    3"),
        "{err}"
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
    let run = out.path().join("killed");
    assert!(run.join("checkpoint.safetensors").exists());
    // The last checkpoint is intact: both ranks resume from it and finish.
    let mut resume = tiny(out.path(), "killed", 3);
    resume.push("--resume".into());
    let o = mpirun_ssl(&resume, &[], Duration::from_secs(300)).expect("mpirun");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("resumed at step 2"), "{e}");
    eprintln!("killed rank: job ended in {:.1} s", took.as_secs_f64());
}
