//! `ssl demo --paper`: the paper's qualitative claims at toy scale on the
//! built-in synthetic data, each method at the same budget (the demo
//! preset's network, data, views, epochs, learning rate and seed; only the
//! method and, where it says so, the batch change), in about a quarter of
//! an hour on 2 CPU cores.
//!
//! Rows (each a run of ssl-train's [`Trainer`] under `OUT/runs/`):
//! - the random encoder (the initialisation every run starts from);
//! - CW-RGP (the demo preset: `g` 2, `w_size` 32, embedding 128);
//! - W-MSE (Cholesky batch whitening, with W-MSE's own CIFAR shape:
//!   embedding 64, the whole batch of 128 as one sub-batch);
//! - PCA whitening (channel whitening as CW-RGP's, PCA instead of ZCA);
//! - Shuffled-DBN (per-sub-batch standardisation, docs/reference.md §3.2);
//! - plain (no whitening: the control);
//! - CW-RGP and W-MSE at batch 32, below W-MSE's embedding of 64.
//!
//! For every row: training status, 5-NN and linear top-1 (docs/reference.md
//! §7.2–7.3), the normalised stable rank of the centred encoder output and
//! of the centred embedding on the test split (§7.5; centred, since the mean
//! of non-negative features would otherwise dominate the largest singular
//! value), and the spread of the embedding (the standard deviation over
//! the test images of the ℓ2-normalised head output, averaged over its `d`
//! dimensions, times `√d`: about 1 when the embeddings spread over all
//! directions, 0 when they collapse to one point). Beside each row, the
//! claim it speaks to and whether the toy result agrees, by rules fixed in
//! [`verdicts`] before any number is seen; a disagreement is reported as
//! such.
//!
//! Writes `paper.{md,csv,json}`, `paper.{svg,png}` (k-NN and linear per
//! row) and `paper-loss.{svg,png}` (the loss curves) into `--out`.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use tch::Tensor;
use whitening_core::diagnostics::rank_diagnostics;

use crate::analyze::{encoder_and_embedding, pct, write_json, Table};
use crate::demo::DemoArgs;
use crate::plot::{BarChart, LineChart, Series};
use ssl_train::{evaluate, Config, Event, Networks, Splits, TrainError, Trainer};

/// The budget every method gets, on top of the demo preset (before the
/// user's `--set`s): fewer epochs than the demo, so that seven runs fit in
/// about a quarter of an hour on 2 cores.
pub const PAPER_OVERRIDES: &[&str] = &["optim.epochs=6", "optim.drop_epochs=[5]", "eval.every=6"];

/// The small batch of the CW-vs-BW rows: below W-MSE's embedding (64).
pub const SMALL_BATCH: i64 = 32;

/// Tolerance of "at least its equal", in k-NN points: about 1.3 standard
/// errors of an accuracy near 60 % on the 1 000 test images.
pub const EQUAL_TOLERANCE: f64 = 2.0;

/// One row's method.
struct RowSpec {
    key: &'static str,
    label: &'static str,
    overrides: Vec<String>,
}

fn rows() -> Vec<RowSpec> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        RowSpec {
            key: "cw-rgp",
            label: "CW-RGP",
            overrides: Vec::new(),
        },
        RowSpec {
            key: "w-mse",
            label: "W-MSE",
            overrides: s(&["method.name=w-mse", "model.emb=64", "method.w_size=128"]),
        },
        RowSpec {
            key: "pca",
            label: "PCA whitening",
            overrides: s(&["method.name=pca-whitening", "method.w_size=32"]),
        },
        RowSpec {
            key: "shuffled-dbn",
            label: "Shuffled-DBN",
            overrides: s(&["method.name=shuffled-dbn", "method.w_size=128"]),
        },
        RowSpec {
            key: "plain",
            label: "plain",
            overrides: s(&["method.name=plain"]),
        },
        RowSpec {
            key: "cw-rgp-small-batch",
            label: "CW-RGP, batch 32",
            overrides: vec![
                format!("data.batch_size={SMALL_BATCH}"),
                format!("method.w_size={SMALL_BATCH}"),
            ],
        },
        RowSpec {
            key: "w-mse-small-batch",
            label: "W-MSE, batch 32",
            overrides: vec![
                "method.name=w-mse".into(),
                "model.emb=64".into(),
                format!("data.batch_size={SMALL_BATCH}"),
                format!("method.w_size={SMALL_BATCH}"),
            ],
        },
    ]
}

/// What one row measured.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    pub key: String,
    pub label: String,
    pub method: String,
    pub batch: Option<i64>,
    pub emb: Option<i64>,
    /// `ok`, `refused` (the configuration cannot run: the reason says why)
    /// or `failed` (training stopped, e.g. a non-finite loss).
    pub status: String,
    pub reason: Option<String>,
    pub knn: f64,
    pub linear: f64,
    /// Normalised stable rank of the centred encoder output (test split).
    pub encoder_nsr: f64,
    /// Normalised stable rank of the centred embedding (test split).
    pub embedding_nsr: f64,
    /// Spread of the ℓ2-normalised embedding (see the module doc).
    pub embedding_spread: f64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// `(step, loss)` of every step.
    pub losses: Vec<(usize, f64)>,
    pub seconds: f64,
    /// The paper's claim this row speaks to, and the toy result's verdict.
    pub claim: String,
    pub verdict: String,
}

impl RowResult {
    fn empty(key: &str, label: &str) -> Self {
        Self {
            key: key.into(),
            label: label.into(),
            method: String::new(),
            batch: None,
            emb: None,
            status: "ok".into(),
            reason: None,
            knn: f64::NAN,
            linear: f64::NAN,
            encoder_nsr: f64::NAN,
            embedding_nsr: f64::NAN,
            embedding_spread: f64::NAN,
            first_loss: None,
            last_loss: None,
            losses: Vec::new(),
            seconds: 0.0,
            claim: String::new(),
            verdict: String::new(),
        }
    }
}

/// Rank and spread of the test split's encoder output and embedding.
struct Geometry {
    encoder_nsr: f64,
    embedding_nsr: f64,
    embedding_spread: f64,
}

fn geometry(cfg: &Config, nets: &Networks, splits: &Splits) -> Result<Geometry> {
    let device = ssl_train::parse_device(&cfg.run.device)?;
    let labelled = splits.labelled()?;
    let (h, z) = encoder_and_embedding(
        cfg,
        nets,
        &labelled.test,
        &splits.eval_pipeline,
        device,
        "test",
    )?;
    let centred_nsr = |x: &Tensor| -> Result<f64> {
        let x = x.to_kind(tch::Kind::Double);
        Ok(rank_diagnostics(&(&x - x.mean_dim(0, true, None)))?.normalised_stable_rank)
    };
    let z = z.x.to_kind(tch::Kind::Double);
    let d = z.size()[1] as f64;
    let zn = &z / z.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    let spread = zn
        .std_dim(0, false, false)
        .mean(tch::Kind::Double)
        .double_value(&[])
        * d.sqrt();
    Ok(Geometry {
        encoder_nsr: centred_nsr(&h.x)?,
        embedding_nsr: centred_nsr(&z)?,
        embedding_spread: spread,
    })
}

/// Resolves one row's config: the demo preset, the paper budget, the
/// user's `--set`s, the row's method, then where it writes.
fn row_config(args: &DemoArgs, key: &str, extra: &[String]) -> Result<Config> {
    let mut o: Vec<String> = vec![format!("run.device={}", args.device)];
    o.extend(PAPER_OVERRIDES.iter().map(|s| s.to_string()));
    o.extend(args.overrides.iter().cloned());
    o.extend(extra.iter().cloned());
    o.push(format!("run.out_dir={}", args.out.join("runs").display()));
    o.push(format!("run.name={key}"));
    crate::presets::resolve(Some("synthetic/cw-rgp-demo"), &o)
}

/// One line per epoch and evaluation; the step losses kept.
struct Quiet<'a> {
    label: &'a str,
    losses: Vec<(usize, f64)>,
}

impl ssl_train::Callbacks for Quiet<'_> {
    fn on_event(&mut self, e: &Event) -> Result<(), ssl_train::BoxError> {
        match e {
            Event::Step { step, loss, .. } => self.losses.push((*step, *loss)),
            Event::EpochEnded {
                epoch,
                epochs,
                mean_loss,
                images_per_s,
                ..
            } => println!(
                "demo --paper | {} | epoch {epoch}/{epochs} | loss {mean_loss:.4} | {images_per_s:.0} images/s",
                self.label
            ),
            _ => {}
        }
        Ok(())
    }
}

fn train_row(args: &DemoArgs, spec: &RowSpec) -> RowResult {
    let mut r = RowResult::empty(spec.key, spec.label);
    let cfg = match row_config(args, spec.key, &spec.overrides) {
        Ok(c) => c,
        Err(e) => {
            r.status = "refused".into();
            r.reason = Some(first_sentence(&format!("{:#}", e.root_cause())));
            println!(
                "demo --paper | {} | refused: {}",
                spec.label,
                r.reason.as_deref().unwrap_or("")
            );
            return r;
        }
    };
    r.method = cfg.method.name().into();
    r.batch = Some(cfg.data.batch_size);
    r.emb = Some(cfg.model.emb);
    let start = std::time::Instant::now();
    let mut quiet = Quiet {
        label: spec.label,
        losses: Vec::new(),
    };
    let outcome = (|| -> Result<(Trainer, ssl_train::TrainOutcome), TrainError> {
        // A fresh run each time: the comparison is of whole runs.
        let _ = std::fs::remove_dir_all(cfg.run.out_dir.join(&cfg.run.name));
        let mut t = Trainer::builder(cfg.clone()).build()?;
        let o = t.fit(&mut quiet, &AtomicBool::new(false))?;
        Ok((t, o))
    })();
    r.losses = quiet.losses;
    r.seconds = start.elapsed().as_secs_f64();
    r.first_loss = r.losses.first().map(|l| l.1);
    r.last_loss = r.losses.last().map(|l| l.1);
    match outcome {
        Ok((trainer, o)) => {
            if let Some(e) = o.last_eval {
                r.knn = e.knn_top1;
                r.linear = e.linear_top1.unwrap_or(f64::NAN);
            }
            match geometry(&cfg, trainer.networks(), trainer.splits()) {
                Ok(g) => {
                    r.encoder_nsr = g.encoder_nsr;
                    r.embedding_nsr = g.embedding_nsr;
                    r.embedding_spread = g.embedding_spread;
                }
                Err(e) => eprintln!("demo --paper | {}: rank not measured: {e:#}", spec.label),
            }
        }
        Err(e) => {
            r.status = "failed".into();
            r.reason = Some(format!("{e}"));
        }
    }
    println!(
        "demo --paper | {} | {} | k-NN {}% | linear {}% | {:.0} s",
        spec.label,
        r.status,
        pct(r.knn),
        pct(r.linear),
        r.seconds
    );
    r
}

/// The first sentence of a refusal, after the configuration's name.
fn first_sentence(msg: &str) -> String {
    let tail = msg
        .split_once("impossible configuration: ")
        .map_or(msg, |(_, t)| t);
    tail.split_once(". ").map_or(tail, |(s, _)| s).to_string()
}

fn random_row(args: &DemoArgs) -> Result<RowResult> {
    let cfg = row_config(args, "random", &[])?;
    let mut r = RowResult::empty("random", "random encoder");
    r.method = "-".into();
    r.emb = Some(cfg.model.emb);
    let start = std::time::Instant::now();
    let device = ssl_train::parse_device(&cfg.run.device)?;
    let (nets, splits) = crate::demo::random_start(&cfg)?;
    let e = evaluate(&cfg, &nets, &splits, device)?.summary;
    r.knn = e.knn_top1;
    r.linear = e.linear_top1.unwrap_or(f64::NAN);
    let g = geometry(&cfg, &nets, &splits)?;
    r.encoder_nsr = g.encoder_nsr;
    r.embedding_nsr = g.embedding_nsr;
    r.embedding_spread = g.embedding_spread;
    r.seconds = start.elapsed().as_secs_f64();
    println!(
        "demo --paper | random encoder | k-NN {}% | linear {}%",
        pct(r.knn),
        pct(r.linear)
    );
    Ok(r)
}

/// Below this embedding spread, the embedding has collapsed to (nearly)
/// one point: a spread-out embedding has about 1.
pub const COLLAPSED_SPREAD: f64 = 0.2;

fn points(x: f64) -> String {
    format!("{:+.1}", 100.0 * x)
}

/// The claims and the rules that judge them, fixed before any run.
pub fn verdicts(rows: &mut [RowResult]) {
    let get = |rows: &[RowResult], k: &str| rows.iter().find(|r| r.key == k).cloned();
    let random = get(rows, "random");
    let cw = get(rows, "cw-rgp");
    let random_knn = random.as_ref().map_or(f64::NAN, |r| r.knn);
    let cw_ok = cw.as_ref().filter(|c| c.status == "ok");
    let small_cw = get(rows, "cw-rgp-small-batch");
    let small_bw = get(rows, "w-mse-small-batch");
    for r in rows.iter_mut() {
        let gain = r.knn - random_knn;
        let (claim, verdict) = match r.key.as_str() {
            "random" => ("the reference: the initialisation every run starts from".into(), "-".into()),
            "cw-rgp" => (
                "CW-RGP learns: whitening keeps the embedding from collapsing".into(),
                if r.status != "ok" {
                    format!("disagrees: {}", r.status)
                } else if gain > 0.05 && r.embedding_spread >= COLLAPSED_SPREAD {
                    format!("agrees: k-NN {} points over random, spread {:.2}", points(gain), r.embedding_spread)
                } else {
                    format!("disagrees: k-NN {} points over random, spread {:.2}", points(gain), r.embedding_spread)
                },
            ),
            "plain" => (
                "without whitening the embedding collapses (docs/reference.md §3.2)".into(),
                if r.status != "ok" {
                    format!("no verdict: {}", r.status)
                } else if r.embedding_spread < COLLAPSED_SPREAD {
                    format!("agrees: spread {:.2}, collapsed", r.embedding_spread)
                } else {
                    format!("disagrees: spread {:.2}, not collapsed", r.embedding_spread)
                },
            ),
            "pca" => (
                "PCA whitening fails to learn: its targets jump between steps (paper §3.2, docs/reference.md §9.1)".into(),
                match (r.status.as_str(), cw_ok) {
                    ("ok", Some(c)) => {
                        let cw_gain = c.knn - random_knn;
                        if gain < 0.5 * cw_gain {
                            format!("agrees: k-NN {} points over random, CW-RGP {}", points(gain), points(cw_gain))
                        } else {
                            format!("disagrees: k-NN {} points over random, CW-RGP {}", points(gain), points(cw_gain))
                        }
                    }
                    ("ok", None) => "no verdict: CW-RGP did not train".into(),
                    (s, _) => format!("agrees: {s}"),
                },
            ),
            k @ ("w-mse" | "shuffled-dbn") => (
                format!(
                    "CW-RGP is at least {}'s equal (Table 1: 5-NN {} on CIFAR-10)",
                    r.label,
                    if k == "w-mse" { "90.74 vs 89.69 (2 views)" } else { "90.74 vs 88.15" }
                ),
                match (r.status.as_str(), cw_ok) {
                    ("ok", Some(c)) => {
                        let diff = c.knn - r.knn;
                        if 100.0 * diff >= -EQUAL_TOLERANCE {
                            format!("agrees: CW-RGP k-NN {} points", points(diff))
                        } else {
                            format!("disagrees: CW-RGP k-NN {} points", points(diff))
                        }
                    }
                    ("ok", None) => "disagrees: CW-RGP did not train".into(),
                    (s, _) => format!("agrees: {} {s}", r.label),
                },
            ),
            "cw-rgp-small-batch" | "w-mse-small-batch" => {
                let cw_learns = small_cw
                    .as_ref()
                    .is_some_and(|c| c.status == "ok" && c.knn - random_knn > 0.05);
                let bw_cannot = small_bw.as_ref().is_some_and(|b| b.status != "ok");
                (
                    format!("CW trains at batch sizes where BW cannot (docs/reference.md §9.4): batch {SMALL_BATCH} < W-MSE's d 64"),
                    match (cw_learns, bw_cannot) {
                        (true, true) => "agrees: CW-RGP learns, W-MSE cannot whiten".into(),
                        (true, false) => "disagrees: W-MSE trains too".into(),
                        (false, _) => "disagrees: CW-RGP does not learn at this batch".into(),
                    },
                )
            }
            _ => (String::new(), String::new()),
        };
        r.claim = claim;
        r.verdict = verdict;
    }
}

fn table(rows: &[RowResult]) -> Table {
    let mut t = Table::new(&[
        "method",
        "batch",
        "status",
        "k-NN %",
        "linear %",
        "NSR encoder %",
        "NSR embedding %",
        "spread",
        "claim",
        "toy result",
    ]);
    for r in rows {
        t.row(vec![
            r.label.clone(),
            r.batch.map_or("-".into(), |b| b.to_string()),
            match &r.reason {
                Some(why) => format!("{}: {why}", r.status),
                None => r.status.clone(),
            },
            pct(r.knn),
            pct(r.linear),
            pct(r.encoder_nsr),
            pct(r.embedding_nsr),
            if r.embedding_spread.is_finite() {
                format!("{:.2}", r.embedding_spread)
            } else {
                "-".into()
            },
            r.claim.clone(),
            r.verdict.clone(),
        ]);
    }
    t
}

fn write_outputs(out: &Path, rows: &[RowResult], base: &Config) -> Result<()> {
    let t = table(rows);
    t.write(&out.join("paper"))?;
    write_json(
        &out.join("paper.json"),
        &json!({
            "budget": {
                "epochs": base.optim.epochs,
                "views": base.data.views,
                "batch": base.data.batch_size,
                "model_width": base.model.width,
                "lr": base.optim.lr,
                "seed": base.run.seed,
                "train_images": "the synthetic training split (data.subset applies)",
            },
            "equal_tolerance_points": EQUAL_TOLERANCE,
            "collapsed_spread": COLLAPSED_SPREAD,
            "rows": rows,
        }),
    )?;
    // Short enough for one bar group each ("CW-RGP, batch 32" -> "CW-RGP b=32").
    let categories: Vec<String> = rows
        .iter()
        .map(|r| r.label.replace(", batch ", " b="))
        .collect();
    BarChart {
        title: format!(
            "The paper's claims at toy scale ({} epochs, {} views, synthetic shapes)",
            base.optim.epochs, base.data.views
        ),
        y_label: "top-1 % (absent: did not run)".into(),
        categories,
        groups: vec![
            ("5-NN".into(), rows.iter().map(|r| 100.0 * r.knn).collect()),
            (
                "linear".into(),
                rows.iter().map(|r| 100.0 * r.linear).collect(),
            ),
        ],
    }
    .write(&out.join("paper"))?;
    let mut loss = LineChart::new("Training loss per step", "step", "loss");
    for r in rows.iter().filter(|r| !r.losses.is_empty()) {
        loss = loss.series(Series::new(
            r.label.clone(),
            r.losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
        ));
    }
    loss.write(&out.join("paper-loss"))?;
    Ok(())
}

pub fn run(args: &DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let base = row_config(args, "cw-rgp", &[])?;
    println!(
        "demo --paper | {} methods x {} epochs, {} views, batch {}, ResNet-18 x{}, on synthetic 32x32 shapes -> {}",
        rows().len(),
        base.optim.epochs,
        base.data.views,
        base.data.batch_size,
        base.model.width,
        args.out.display()
    );
    let mut results = vec![random_row(args)?];
    for spec in rows() {
        results.push(train_row(args, &spec));
    }
    verdicts(&mut results);
    write_outputs(&args.out, &results, &base)?;
    print!("{}", table(&results).markdown());
    println!(
        "demo --paper | table {} | plot {}",
        args.out.join("paper.md").display(),
        args.out.join("paper.png").display()
    );
    Ok(())
}
