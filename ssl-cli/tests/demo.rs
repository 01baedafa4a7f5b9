//! The demo's promise: training beats the random encoder, by a margin.
//!
//! The full demo (`cargo xtask demo`: CW-RGP, 4 views, 10 epochs of batch
//! 128 on the 5 000 synthetic images) takes about 4 minutes on a quiet
//! 2-core machine, too long for every CI run, so this test runs `ssl demo`
//! itself (same preset, same code, same evaluation of the random and the
//! trained encoder) shortened with `--set`: the first 2 000 training images
//! (`data.subset=2000`, also the k-NN/probe training split; the 1 000 test
//! images are all kept), batches of 32 (`method.w_size=32`), 4 epochs (250
//! steps), learning-rate drop after epoch 3, evaluation at epoch 4.
//!
//! Measured (CPU, 2 threads, about 50 s of wall time on a quiet 2-core
//! machine), seeds 0 and 1:
//!   this shortened run: linear 13.6% -> 28.7% and 13.6% -> 34.8% (+15.1,
//!   +21.2); k-NN 21.5% -> 14.6% and 16.3% -> 18.8%;
//!   the full demo (seed 0): k-NN 22.4% -> 79.2%, linear 18.1% -> 92.3%.
//! The linear probe finds the shape in the features after 250 steps; the
//! 5-NN needs more (the full demo's 390 steps of 128), so at this budget
//! only the linear gain is asserted: 8 points, about half of the smaller
//! gain measured. The k-NN figures are printed.

use std::path::Path;
use std::process::Command;

const SSL: &str = env!("CARGO_BIN_EXE_ssl");

/// The shortened budget of the `--paper` test: the first 2 000 training
/// images, 3 epochs, learning-rate drop after the second.
const PAPER_SHORT: [&str; 4] = [
    "data.subset=2000",
    "optim.epochs=3",
    "optim.drop_epochs=[2]",
    "eval.every=3",
];
const LINEAR_MARGIN: f64 = 8.0;

/// `A%` → A.
fn percent(word: &str) -> f64 {
    word.trim_end_matches('%')
        .parse()
        .unwrap_or_else(|e| panic!("{word:?} is not a percentage: {e}"))
}

#[test]
fn the_trained_encoder_beats_the_random_one() {
    let out = test_support::scratch_dir();
    let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssl-cli-demo-data");
    let o = Command::new(SSL)
        .args(["demo", "--device", "cpu"])
        .args(["--set", &format!("data.path={}", data.display())])
        .args(["--set", &format!("run.out_dir={}", out.path().display())])
        .args(["--set", "data.subset=2000"])
        .args(["--set", "data.batch_size=32"])
        .args(["--set", "method.w_size=32"])
        .args(["--set", "optim.epochs=4"])
        .args(["--set", "optim.drop_epochs=[3]"])
        .args(["--set", "eval.every=4"])
        .output()
        .expect("run ssl demo");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // demo | k-NN random A% trained B% | linear random C% trained D% | run DIR
    let last = stdout.lines().last().expect("demo output");
    let words: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(
        &words[..6],
        ["demo", "|", "k-NN", "random", words[4], "trained"],
        "{last}"
    );
    let (knn_random, knn_trained) = (percent(words[4]), percent(words[6]));
    assert_eq!(&words[8..11], ["linear", "random", words[10]], "{last}");
    let (lin_random, lin_trained) = (percent(words[10]), percent(words[12]));
    eprintln!(
        "k-NN {knn_random} -> {knn_trained} (+{:.1}), linear {lin_random} -> {lin_trained} (+{:.1})",
        knn_trained - knn_random,
        lin_trained - lin_random
    );
    assert!(
        lin_trained >= lin_random + LINEAR_MARGIN,
        "linear: trained {lin_trained}% is not {LINEAR_MARGIN} points above random {lin_random}%"
    );
    // The run directory it names holds the run's plots and results.
    let run = Path::new(words.last().expect("run dir"));
    assert!(run.starts_with(out.path()), "{last}");
    assert!(run.join("plots/accuracy.png").exists());
    assert!(run.join("results.json").exists());
}

/// `ssl demo --paper` shortened to [`PAPER_SHORT`] (about 2.5 min on a
/// quiet 2-core machine instead of about 15): it writes its table (Markdown,
/// CSV, JSON) and plots, every row is there with its claim and verdict, and
/// the orderings that held over every seed tried hold.
///
/// At this budget (45 steps of batch 128) no method's 5-NN moves away from
/// the random encoder's reliably (measured over seeds 0-2: CW-RGP 14.1-15.0%,
/// random 16.2-21.5%), so the k-NN orderings of the full run are not
/// asserted here; what is asserted is what the whitening does from the
/// first steps: which embeddings collapse, which losses fall, and the rank
/// of the learnt features.
#[test]
fn the_paper_table_is_written_and_its_robust_orderings_hold() {
    let out = test_support::scratch_dir();
    let data = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssl-cli-demo-data");
    let mut cmd = Command::new(SSL);
    cmd.args(["demo", "--paper", "--device", "cpu"])
        .args(["--out", &out.path().display().to_string()])
        .args(["--set", &format!("data.path={}", data.display())]);
    for kv in PAPER_SHORT {
        cmd.args(["--set", kv]);
    }
    let o = cmd.output().expect("run ssl demo --paper");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for f in [
        "paper.md",
        "paper.csv",
        "paper.json",
        "paper.png",
        "paper.svg",
        "paper-loss.png",
    ] {
        assert!(out.path().join(f).exists(), "{f} missing; {stdout}");
    }
    let table: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("paper.json")).unwrap()).unwrap();
    let rows = table["rows"].as_array().expect("rows");
    let row = |key: &str| {
        rows.iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("no row {key} in {table:#}"))
    };
    let num = |key: &str, field: &str| {
        row(key)[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}.{field} in {table:#}"))
    };
    for key in [
        "random",
        "cw-rgp",
        "w-mse",
        "pca",
        "shuffled-dbn",
        "plain",
        "cw-rgp-small-batch",
        "w-mse-small-batch",
    ] {
        assert!(
            !row(key)["claim"].as_str().unwrap_or("").is_empty(),
            "{key} has no claim"
        );
        assert!(
            !row(key)["verdict"].as_str().unwrap_or("").is_empty(),
            "{key} has no verdict"
        );
    }
    for key in [
        "cw-rgp",
        "w-mse",
        "pca",
        "shuffled-dbn",
        "plain",
        "cw-rgp-small-batch",
    ] {
        assert_eq!(row(key)["status"], "ok", "{key}: {table:#}");
    }
    // BW cannot whiten 64 channels from 32 samples: refused, saying why.
    assert_eq!(row("w-mse-small-batch")["status"], "refused");
    assert!(
        row("w-mse-small-batch")["reason"]
            .as_str()
            .unwrap_or("")
            .contains("rank"),
        "{table:#}"
    );
    // What held over seeds 0, 1 and 2 at this budget (module doc), with the
    // measured range beside each bound:
    // without whitening the embedding collapses (spread 0.053-0.057, loss
    // 0.0035-0.0037 at the end); CW-RGP's spreads out (0.77-0.81).
    assert!(num("plain", "embedding_spread") < 0.2, "{table:#}");
    assert!(num("plain", "last_loss") < 0.05, "{table:#}");
    for key in ["cw-rgp", "cw-rgp-small-batch"] {
        assert!(num(key, "embedding_spread") > 0.5, "{key}: {table:#}");
        // CW-RGP's loss falls (last/first 0.76-0.85) ...
        let ratio = num(key, "last_loss") / num(key, "first_loss");
        assert!(ratio < 0.9, "{key}: loss ratio {ratio}; {table:#}");
    }
    // ... PCA whitening's does not (0.99-1.04): its targets jump.
    let pca = num("pca", "last_loss") / num("pca", "first_loss");
    assert!(pca > 0.95, "PCA loss ratio {pca}; {table:#}");
    // CW-RGP's encoder output has a higher stable rank than the random
    // encoder's (1.4-2.2 times).
    assert!(
        num("cw-rgp", "encoder_nsr") > 1.2 * num("random", "encoder_nsr"),
        "{table:#}"
    );
}
