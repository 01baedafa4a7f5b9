//! `ssl eval` and `ssl export` on a tiny trained run, and what a finished
//! run leaves behind (plots, results.json). CPU, synthetic data, seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SSL: &str = env!("CARGO_BIN_EXE_ssl");

fn ssl(args: &[&str]) -> Output {
    Command::new(SSL).args(args).output().expect("run ssl")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ssl failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssl-cli-eval-data")
}

/// A tiny run: 2 epochs of CW-RGP on 128 synthetic images, width 1/8,
/// k-NN evaluation after each epoch.
fn train_tiny(out: &Path) -> PathBuf {
    let sets = [
        format!("data.path={}", data_dir().display()),
        format!("run.out_dir={}", out.display()),
        "run.name=tiny".into(),
        "data.subset=128".into(),
        "data.batch_size=64".into(),
        "model.width=0.125".into(),
        "model.head_size=64".into(),
        "method.w_size=16".into(),
        "optim.epochs=2".into(),
        "optim.warmup_iters=2".into(),
        "optim.drop_epochs=[]".into(),
        "eval.every=1".into(),
        "eval.linear=false".into(),
        "run.log_every=1".into(),
        "data.workers=2".into(),
    ];
    let mut args = vec!["train", "synthetic/cw-rgp-demo", "--device", "cpu"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    ok(&ssl(&args));
    out.join("tiny")
}

/// One trained run (the expensive part), then every check on it; the
/// checks are separate functions so a failure names the feature.
#[test]
fn a_trained_run_has_plots_and_results_and_evaluates_and_exports() {
    let out = test_support::scratch_dir();
    let run = train_tiny(out.path());
    finished_run_has_plots_and_results(&run);
    eval_reproduces_the_trainers_knn_and_runs_the_probe(&run);
    eval_refuses_what_cannot_apply(&run);
    export_writes_every_format(&run);
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn finished_run_has_plots_and_results(run: &Path) {
    for stem in ["loss", "accuracy", "spectrum"] {
        for ext in ["svg", "png"] {
            let f = run.join(format!("plots/{stem}.{ext}"));
            let len = std::fs::metadata(&f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .len();
            assert!(len > 1000, "{} is {len} bytes", f.display());
        }
    }
    let spectrum = json(&run.join("spectrum.json"));
    // Encoder output of width 1/8: 64 channels, so 64 singular values.
    assert_eq!(spectrum["singular_values"].as_array().unwrap().len(), 64);
    assert_eq!(spectrum["epoch"], 2);
    let r = json(&run.join("results.json"));
    assert_eq!(r["epochs"], 2);
    assert_eq!(r["steps"], 4);
    assert_eq!(r["interrupted"], false);
    assert_eq!(r["method"], "cw-rgp");
    let knn = r["knn_top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&knn), "{r}");
    assert!(r["linear_top1"].is_null(), "eval.linear = false");
    assert!(r["wall_time_s"].as_f64().unwrap() > 0.0);
    assert!(r["final_loss"].as_f64().unwrap().is_finite());
}

fn eval_reproduces_the_trainers_knn_and_runs_the_probe(run: &Path) {
    let out = run.parent().unwrap().join("eval-both.json");
    let stdout = ok(&ssl(&[
        "eval",
        run.to_str().unwrap(),
        "--device",
        "cpu",
        "--protocol",
        "both",
        "--set",
        "eval.linear_epochs=20",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        stdout.starts_with("eval | epoch 2 | encoder | 5-NN "),
        "{stdout}"
    );
    let e = json(&out);
    // The same weights, features and protocol as the trainer's last
    // evaluation: the same k-NN accuracy, exactly (CPU, deterministic).
    let trained = json(&run.join("results.json"))["knn_top1"]
        .as_f64()
        .unwrap();
    assert_eq!(e["knn"]["top1"].as_f64().unwrap(), trained);
    assert_eq!(e["linear"]["epochs"], 20);
    assert_eq!(e["linear"]["n_test"], 1000);
    let top1 = e["linear"]["top1"].as_f64().unwrap();
    let top5 = e["linear"]["top5"].as_f64().unwrap();
    assert!(top1 <= top5 && top5 <= 1.0, "{e}");
    assert_eq!(e["diagnostics"]["d"], 64);

    // The head's embedding, k-NN only, written to the run directory.
    let stdout = ok(&ssl(&[
        "eval",
        run.join("checkpoint.safetensors").to_str().unwrap(),
        "--device",
        "cpu",
        "--protocol",
        "knn",
        "--features",
        "head",
    ]));
    assert!(stdout.contains("| head |"), "{stdout}");
    let e = json(&run.join("eval.json"));
    assert_eq!(e["representation"], "head");
    assert!(e["linear"].is_null());
    assert_eq!(e["diagnostics"]["d"], 128, "model.emb of the demo preset");
}

fn eval_refuses_what_cannot_apply(run: &Path) {
    let fails = |args: &[&str], needles: &[&str]| {
        let o = ssl(args);
        assert!(!o.status.success(), "expected a failure for {args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        for n in needles {
            assert!(err.contains(n), "missing {n:?} in:\n{err}");
        }
    };
    let r = run.to_str().unwrap();
    fails(
        &["eval", r, "--device", "cpu", "--set", "model.width=1"],
        &["model.width", "data."],
    );
    fails(
        &[
            "eval",
            r,
            "--device",
            "cpu",
            "--protocol",
            "imagenet-linear",
        ],
        &["imagenet-linear", "--protocol linear"],
    );
    fails(
        &["eval", "/nonexistent/run", "--device", "cpu"],
        &["no such checkpoint"],
    );
    // A dataset the run was not trained on, absent here: the download command.
    let nowhere = run.parent().unwrap().join("nowhere");
    fails(
        &[
            "eval",
            r,
            "--device",
            "cpu",
            "--set",
            "data.dataset=cifar10",
            "--set",
            &format!("data.path={}", nowhere.display()),
        ],
        &["cargo xtask download cifar10"],
    );
}

/// Key names of each export against torchvision's resnet18 (the numerical
/// agreement with torchvision is checked at full width by the unit test in
/// src/export.rs; this run is 1/8 wide, so only names are compared).
const KEYS: &str = r#"
import sys, json, struct, pickle, torch, torchvision
pt, pkl, st = sys.argv[1:4]
tv = [k for k in torchvision.models.resnet18().state_dict() if not k.startswith("fc.")]
raw = open(st, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n]); header.pop("__metadata__", None)
print(json.dumps({
    "pt": sorted(torch.load(pt)) == sorted(tv),
    "d2": len(pickle.load(open(pkl, "rb"), encoding="latin1")["model"]) == len(tv),
    "st_encoder": sorted(k[len("encoder."):] for k in header if k.startswith("encoder.")) == sorted(tv),
    "st_head": any(k.startswith("head.") for k in header),
}))
"#;

fn export_writes_every_format(run: &Path) {
    let dir = test_support::scratch_dir();
    let f = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    for (format, file) in [
        ("torchvision", f("enc.pt")),
        ("detectron2", f("enc.pkl")),
        ("safetensors", f("all.safetensors")),
    ] {
        let o = ssl(&[
            "export",
            run.to_str().unwrap(),
            "--format",
            format,
            "-o",
            &file,
        ]);
        let stdout = ok(&o);
        assert!(stdout.starts_with("export | "), "{stdout}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        if format == "torchvision" {
            // The hint shows the stem to set and the width warning.
            assert!(
                stderr.contains("m.maxpool = torch.nn.Identity()"),
                "{stderr}"
            );
            assert!(stderr.contains("model.width = 0.125"), "{stderr}");
        }
    }
    let report =
        test_support::run_python(KEYS, &[&f("enc.pt"), &f("enc.pkl"), &f("all.safetensors")]);
    let r: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(
        r,
        serde_json::json!({"pt": true, "d2": true, "st_encoder": true, "st_head": true})
    );
    let o = ssl(&[
        "export",
        run.to_str().unwrap(),
        "--format",
        "torchvision",
        "-o",
        &f("enc.bin"),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".pt"));
}
