//! `ssl whiten` on .npy files, checked with numpy from the project venv.

use std::process::Command;

use test_support::{run_python, scratch_dir};

const SSL: &str = env!("CARGO_BIN_EXE_ssl");

#[test]
fn batch_whitening_fits_and_applies() {
    let dir = scratch_dir();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // Correlated data: x = g A with a random mixing A (500 x 32).
    run_python(
        "import numpy as np, sys\n\
         r = np.random.default_rng(0)\n\
         x = r.normal(size=(500, 32)) @ r.normal(size=(32, 32)) + 3.0\n\
         np.save(sys.argv[1], x.astype(np.float32)); np.save(sys.argv[2], x[:40].astype(np.float64))",
        &[&p("db.npy"), &p("q.npy")],
    );
    for kind in ["zca", "pca", "cholesky"] {
        let out = Command::new(SSL)
            .args([
                "whiten",
                &p("db.npy"),
                "-o",
                &p("w.npy"),
                "--kind",
                kind,
                "--groups",
                "2",
                "--apply",
                &p("q.npy"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Per group of 16 channels: identity covariance (1e-4: float32 output);
        // queries equal the first 40 whitened rows (same fitted transform).
        let report = run_python(
            "import numpy as np, sys\n\
             z = np.load(sys.argv[1]); q = np.load(sys.argv[2])\n\
             assert z.dtype == np.float32 and q.dtype == np.float64, (z.dtype, q.dtype)\n\
             err = max(np.abs(np.cov(z[:, g*16:(g+1)*16].T) - np.eye(16)).max() for g in range(2))\n\
             print(err, np.abs(q - z[:40]).max())",
            &[&p("w.npy"), &p("q.whitened.npy")],
        );
        let v: Vec<f64> = report
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(v[0] < 1e-4, "{kind}: |cov - I| = {}", v[0]);
        assert!(v[1] < 1e-4, "{kind}: applied transform differs by {}", v[1]);
    }
}

#[test]
fn bad_inputs_are_named() {
    let dir = scratch_dir();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    run_python(
        "import numpy as np, sys\nnp.save(sys.argv[1], np.zeros((4, 4, 4), np.float32))",
        &[&p("cube.npy")],
    );
    let out = Command::new(SSL)
        .args(["whiten", &p("cube.npy"), "-o", &p("o.npy")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cube.npy") && err.contains("2-D"), "{err}");
    let out = Command::new(SSL)
        .args(["whiten", &p("missing.npy"), "-o", &p("o.npy")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.npy"));
}
