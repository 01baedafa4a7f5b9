//! `cargo xtask reproduce` end to end, through the xtask binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const DATASETS: [&str; 4] = ["cifar10", "cifar100", "stl10", "tiny-imagenet"];
/// Table 1's rows (preset names) and the paper's labels.
const ROWS: [(&str, &str); 11] = [
    ("simclr", "SimCLR"),
    ("byol", "BYOL"),
    ("simsiam", "SimSiam (repro.)"),
    ("shuffled-dbn", "Shuffled-DBN (repro.)"),
    ("barlow-twins", "Barlow Twins (repro.)"),
    ("vicreg", "VICReg (repro.)"),
    ("zero-cl", "Zero-ICL (repro.)"),
    ("w-mse-2", "W-MSE 2"),
    ("w-mse-4", "W-MSE 4"),
    ("cw-rgp-2", "CW-RGP 2"),
    ("cw-rgp-4", "CW-RGP 4"),
];

fn xtask(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where cargo put the `ssl` the smoke run built.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

#[test]
fn dry_run_lists_every_row_with_its_command_and_an_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (ok, stdout, stderr) = xtask(&[
        "reproduce",
        "--table",
        "1",
        "--dry-run",
        "--out",
        out,
        "--epochs-scale",
        "0.1",
    ]);
    assert!(ok, "{stderr}");
    for d in DATASETS {
        for (row, _) in ROWS {
            let cmd = stdout
                .lines()
                .find(|l| l.starts_with(&format!("ssl train {d}/{row} ")))
                .unwrap_or_else(|| panic!("no command for {d}/{row} in\n{stdout}"));
            assert!(cmd.contains(&format!("--set run.name={row}-x0.1")), "{cmd}");
            assert!(
                cmd.contains(&format!("--set run.out_dir={out}/runs/{d}")),
                "{cmd}"
            );
        }
    }
    // CIFAR-10 CW-RGP 4: 1000 epochs scaled to 100.
    assert!(
        stdout.contains("# cifar10/cw-rgp-4 | 100 epochs x 49920 images x 4 views, resnet18 | ~")
    );
    assert!(stdout.contains("# 44 rows, about "), "{stdout}");
    assert!(stdout.contains("GPU hours"));
    // Nothing ran, nothing was written.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

    let (ok, stdout, stderr) = xtask(&["reproduce", "--table", "2", "--dry-run", "--out", out]);
    assert!(ok, "{stderr}");
    for row in ["cw-rgp-4-100ep", "cw-rgp-4-200ep"] {
        assert!(
            stdout.contains(&format!("ssl train imagenet/{row} ")),
            "{stdout}"
        );
    }
    let (ok, stdout, stderr) = xtask(&["reproduce", "--table", "3", "--dry-run", "--out", out]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("--format detectron2 -o"));
    assert_eq!(
        stdout.matches("train_net.py --config-file").count(),
        6,
        "{stdout}"
    );

    let (ok, _, stderr) = xtask(&[
        "reproduce",
        "--table",
        "1",
        "--dry-run",
        "--methods",
        "nope",
    ]);
    assert!(!ok && stderr.contains("not a Table 1 row"), "{stderr}");
}

/// The whole Table 1 pipeline at toy scale: every row of every dataset is
/// trained and evaluated by the real `ssl` on synthetic data in the real
/// formats, and the table has the paper's numbers beside ours. A second
/// call finds every row finished and only rewrites the table.
#[test]
fn smoke_table1_runs_every_row_and_reports_it_beside_the_paper() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let out_s = out.to_str().unwrap();
    let started = Instant::now();
    let (ok, _, stderr) = xtask(&["reproduce", "--table", "1", "--smoke", "--out", out_s]);
    assert!(ok, "smoke run failed:\n{stderr}");
    eprintln!(
        "smoke run: {:.0} s in all (building ssl included); {}",
        started.elapsed().as_secs_f64(),
        stderr
            .lines()
            .find(|l| l.contains(" rows ("))
            .unwrap_or_default()
    );
    // The data was written in the datasets' own layouts.
    let data = out.join("smoke-data");
    for f in [
        "cifar-10-batches-bin/data_batch_5.bin",
        "cifar-100-binary/test.bin",
        "stl10_binary/unlabeled_X.bin",
        "tiny-imagenet-200/val/val_annotations.txt",
    ] {
        assert!(data.join(f).is_file(), "{f}");
    }

    let md = std::fs::read_to_string(out.join("table1.md")).unwrap();
    let csv = std::fs::read_to_string(out.join("table1.csv")).unwrap();
    // The paper's Table 1 as the repository transcribes it: the table of
    // docs/reference.md §8.1 (up to the next heading).
    let reference = std::fs::read_to_string(project_root().join("docs/reference.md"))
        .expect("docs/reference.md");
    let table1: Vec<&str> = reference
        .lines()
        .skip_while(|l| !l.starts_with("### 8.1 "))
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with('|'))
        .collect();
    assert!(table1.len() > 2, "no Table 1 in docs/reference.md §8.1");
    for (i, d) in DATASETS.iter().enumerate() {
        for (row, label) in ROWS {
            let line = md
                .lines()
                .find(|l| {
                    l.starts_with(&format!("| {label} |"))
                        && l.contains(&format!("runs/{d}/{row} |"))
                })
                .unwrap_or_else(|| panic!("no {d}/{row} line in\n{md}"));
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | label | lin paper | lin ours | Δ | knn paper | knn ours | Δ | epochs | status | run |
            assert_eq!(cells[9], "finished", "{line}");
            let num = |c: &str| {
                c.parse::<f64>()
                    .unwrap_or_else(|_| panic!("{c:?} in {line}"))
            };
            let (lp, lo, ld) = (num(cells[2]), num(cells[3]), num(cells[4]));
            let (kp, ko, kd) = (num(cells[5]), num(cells[6]), num(cells[7]));
            assert!(
                (0.0..=100.0).contains(&lo) && (0.0..=100.0).contains(&ko),
                "{line}"
            );
            assert!(
                (lo - lp - ld).abs() < 0.011 && (ko - kp - kd).abs() < 0.011,
                "{line}"
            );
            // The paper's numbers are docs/reference.md's Table 1 row, in column order.
            let published: Vec<f64> = table1
                .iter()
                .find(|l| l.starts_with(&format!("| {label} |")))
                .unwrap_or_else(|| panic!("docs/reference.md §8.1 has no row {label}"))
                .split('|')
                .filter_map(|c| c.trim().parse().ok())
                .collect();
            assert_eq!(published.len(), 8, "{label}");
            assert_eq!(
                (lp, kp),
                (published[2 * i], published[2 * i + 1]),
                "{d}/{row}"
            );
            let csv_rows: Vec<&str> = csv
                .lines()
                .filter(|l| l.starts_with(&format!("{d},{row},")))
                .collect();
            assert_eq!(csv_rows.len(), 3, "{d}/{row}");
            assert!(csv_rows[0].contains(&format!(",linear_top1,{lp:.4},{lo:.4},")));
        }
    }
    let svg = std::fs::read_to_string(out.join("table1.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("CW-RGP 4") && svg.contains("Tiny-ImageNet"));

    export_for_detectron2(&out, dir.path());

    // Resuming: every row is finished, nothing runs again (the ssl just
    // built is reused, so nothing is rebuilt either).
    let ssl = target_dir().join("debug/ssl");
    let (ok, _, stderr) = xtask(&[
        "reproduce",
        "--table",
        "1",
        "--smoke",
        "--out",
        out_s,
        "--ssl",
        ssl.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("finished earlier, skipped").count(),
        44,
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(out.join("table1.md")).unwrap(), md);
}

/// Table 3's export without Detectron2: a smoke run's checkpoint through
/// `reproduce --table 3 --export-only` (which runs `ssl export --format
/// detectron2`) gives the pickle Detectron2 reads, and the configs point at it.
fn export_for_detectron2(out: &Path, scratch: &Path) {
    let ssl = target_dir().join("debug/ssl");
    let ckpt = out.join("runs/cifar10/cw-rgp-4/checkpoint.safetensors");
    let t3 = scratch.join("t3");
    let (ok, stdout, stderr) = xtask(&[
        "reproduce",
        "--table",
        "3",
        "--export-only",
        "--out",
        t3.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--ssl",
        ssl.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let pkl = t3.join("table3/cw-rgp-4-200ep-detectron2.pkl");
    assert!(
        stdout.contains(&format!("backbone: {}", pkl.display())),
        "{stdout}"
    );
    let voc =
        std::fs::read_to_string(t3.join("table3/configs/pascal_voc_R_50_C4_24k_ssl.yaml")).unwrap();
    assert!(
        voc.contains(&format!("WEIGHTS: \"{}\"", pkl.display())),
        "{voc}"
    );
    // Detectron2's names and the shapes of a ResNet-18 at 1/8 width with the CIFAR stem.
    let report = test_support::run_python(
        r#"
import pickle, sys
d = pickle.load(open(sys.argv[1], "rb"))
assert d["matching_heuristics"] is True, d.keys()
m = d["model"]
bad = [k for k in m if not k.startswith(("stem.", "res2.", "res3.", "res4.", "res5."))]
assert not bad, bad
shapes = {k: tuple(v.shape) for k, v in m.items()}
print(len(m), shapes["stem.conv1.weight"], shapes["stem.conv1.norm.running_mean"],
      shapes["res3.0.shortcut.weight"], shapes["res3.0.shortcut.norm.weight"],
      shapes["res5.1.conv2.weight"], str(m["res2.0.conv1.weight"].dtype))
"#,
        &[pkl.to_str().unwrap()],
    );
    // The 120 tensors of torchvision's resnet18 state_dict without fc (BN counters included).
    assert_eq!(
        report.trim(),
        "120 (8, 3, 3, 3) (8,) (16, 8, 1, 1) (16,) (64, 64, 3, 3) float32"
    );
}
