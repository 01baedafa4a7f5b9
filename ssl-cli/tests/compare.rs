//! `ssl compare` on two tiny trained runs (CW-RGP and SimCLR, CPU,
//! synthetic data, seconds each): the plots, the table's numbers against
//! each run's results.json, and the refusal of runs on different datasets.

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
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssl-cli-compare-data")
}

/// A tiny run of the demo preset: 2 epochs on 128 synthetic images, width
/// 1/8, k-NN after each epoch.
fn train_tiny(out: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut sets = vec![
        format!("data.path={}", data_dir().display()),
        format!("run.out_dir={}", out.display()),
        format!("run.name={name}"),
        "data.subset=128".into(),
        "data.batch_size=64".into(),
        "model.width=0.125".into(),
        "model.head_size=64".into(),
        "optim.epochs=2".into(),
        "optim.warmup_iters=2".into(),
        "optim.drop_epochs=[]".into(),
        "eval.every=1".into(),
        "eval.linear=false".into(),
        "run.log_every=1".into(),
        "data.workers=2".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let mut args = vec!["train", "synthetic/cw-rgp-demo", "--device", "cpu"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    ok(&ssl(&args));
    out.join(name)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The texts of an SVG (plotters writes each on its own line).
fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap();
    svg.split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>')?.1.split_once("</text>"))
        .map(|(body, _)| body.trim().to_string())
        .collect()
}

#[test]
fn compare_two_runs_and_refuse_mixed_datasets() {
    let scratch = test_support::scratch_dir();
    let out = scratch.path();
    let a = train_tiny(out, "cwrgp", &["method.w_size=16"]);
    let b = train_tiny(out, "simclr", &["method.name=simclr", "run.seed=1"]);
    let cmp = out.join("cmp");
    let stdout = ok(&ssl(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ]));

    for stem in ["loss", "accuracy"] {
        for ext in ["svg", "png"] {
            let f = cmp.join(format!("{stem}.{ext}"));
            let len = std::fs::metadata(&f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .len();
            assert!(len > 1000, "{} is {len} bytes", f.display());
        }
    }
    // Both runs' curves, named in the legends.
    let loss = svg_texts(&cmp.join("loss.svg"));
    assert!(loss.iter().any(|t| t == "cwrgp") && loss.iter().any(|t| t == "simclr"));
    assert!(
        loss.iter().any(|t| t == "epoch"),
        "steps per epoch are known: {loss:?}"
    );
    let acc = svg_texts(&cmp.join("accuracy.svg"));
    assert!(acc.iter().any(|t| t == "cwrgp k-NN") && acc.iter().any(|t| t == "simclr k-NN"));
    assert!(
        !acc.iter().any(|t| t.contains("linear")),
        "eval.linear = false: {acc:?}"
    );

    // The table: one row per run, its numbers those of results.json.
    let csv = std::fs::read_to_string(cmp.join("comparison.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let header = &rows[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    for (row, (run, method, settings)) in rows[1..].iter().zip([
        (&a, "cw-rgp", "method.w_size=16"),
        (&b, "simclr", "data.batch_size=64"),
    ]) {
        let r = json(&run.join("results.json"));
        assert_eq!(row[col("run")], run.file_name().unwrap().to_str().unwrap());
        assert_eq!(row[col("method")], method);
        assert_eq!(row[col("dataset")], "synthetic");
        assert!(row[col("settings")].contains(settings), "{row:?}");
        assert!(
            row[col("settings")].contains("model.width=0.125"),
            "{row:?}"
        );
        assert_eq!(row[col("epochs")], "2");
        assert_eq!(row[col("steps")], "4");
        for key in [
            "knn_top1",
            "normalised_stable_rank",
            "wall_time_s",
            "final_loss",
        ] {
            let want = r[key].as_f64().unwrap();
            let got: f64 = row[col(key)].parse().unwrap();
            assert_eq!(got, want, "{key} of {}", run.display());
        }
        assert_eq!(row[col("linear_top1")], "");
    }
    let md = std::fs::read_to_string(cmp.join("comparison.md")).unwrap();
    assert_eq!(md.lines().count(), 4, "{md}");
    let knn_a = 100.0 * json(&a.join("results.json"))["knn_top1"].as_f64().unwrap();
    let row_a = md.lines().find(|l| l.starts_with("| cwrgp |")).unwrap();
    assert!(row_a.contains(&format!("| {knn_a:.2} |")), "{row_a}");
    assert!(row_a.contains("| 2/2 |"), "{row_a}");
    assert!(
        stdout.contains("| simclr | simclr | synthetic |"),
        "{stdout}"
    );

    // A run on another dataset: refused unless asked for.
    let other = out.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["metrics.jsonl", "results.json"] {
        std::fs::copy(b.join(f), other.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(config.contains("dataset = \"synthetic\""));
    std::fs::write(
        other.join("config.toml"),
        config.replace("dataset = \"synthetic\"", "dataset = \"cifar10\""),
    )
    .unwrap();
    let mixed = [
        "compare",
        a.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ];
    let o = ssl(&mixed);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cwrgp (synthetic)")
            && err.contains("(cifar10)")
            && err.contains("--allow-mixed-datasets"),
        "{err}"
    );
    let mut allowed = mixed.to_vec();
    allowed.push("--allow-mixed-datasets");
    ok(&ssl(&allowed));
    let csv = std::fs::read_to_string(cmp.join("comparison.csv")).unwrap();
    assert!(csv.contains(",cifar10,"), "{csv}");

    // Not a run directory: the error names the file it needed.
    let o = ssl(&[
        "compare",
        a.to_str().unwrap(),
        cmp.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("config.toml"), "{err}");

    if let Some(keep) = std::env::var_os("SSL_KEEP_PLOTS") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        for f in std::fs::read_dir(&cmp).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, keep.join(f.file_name().unwrap())).unwrap();
        }
    }
}
