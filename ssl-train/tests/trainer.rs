//! The trainer in the test process, on the built-in synthetic data (CPU, a
//! thin ResNet-18): every method trains, the loss falls, a run resumes bit
//! for bit, a cancellation saves a resumable checkpoint, a divergence
//! stops with its diagnosis, and a tiny run reports its events in order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ssl_train::{Config, Event, Networks, Override, Record, TrainError, Trainer};
use tch::Tensor;
use test_support::scratch_dir;

/// The shared synthetic dataset, written once per target directory.
fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssl-train-data")
}

/// A tiny run: 128 images, batches of 64, width 1/8, emb 128, k-NN only,
/// 2 epochs of 2 steps, CW-RGP with w_size 16 and 2 groups unless `extra`
/// names another method.
fn tiny(out: &Path, name: &str, extra: &[(&str, &str)]) -> Config {
    let data = data_dir().display().to_string();
    let out = out.display().to_string();
    let mut o: Vec<Override> = [
        ("data.dataset", "synthetic"),
        ("data.path", data.as_str()),
        ("run.out_dir", out.as_str()),
        ("run.name", name),
        ("run.device", "cpu"),
        ("data.subset", "128"),
        ("data.batch_size", "64"),
        ("model.width", "0.125"),
        ("model.emb", "128"),
        ("model.head_size", "64"),
        ("optim.epochs", "2"),
        ("optim.warmup_iters", "2"),
        ("optim.drop_epochs", "[]"),
        ("eval.linear", "false"),
        ("run.log_every", "1"),
        ("data.workers", "2"),
    ]
    .iter()
    .map(|(k, v)| Override::new(*k, *v))
    .collect();
    if !extra.iter().any(|(k, _)| *k == "method.name") {
        o.extend([
            Override::new("method.name", "cw-rgp"),
            Override::new("method.w_size", "16"),
            Override::new("method.groups", "2"),
        ]);
    }
    o.extend(extra.iter().map(|(k, v)| Override::new(*k, *v)));
    Config::resolve(None, &o).expect("a valid tiny config")
}

fn losses(run: &Path) -> Vec<f64> {
    ssl_train::read_records(run)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Step { loss, .. } => Some(loss),
            _ => None,
        })
        .collect()
}

/// Every variable of the networks (online and EMA target), by name.
fn parameters(nets: &Networks) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = nets.vs.variables().into_iter().collect();
    if let Some(t) = &nets.target {
        v.extend(
            t.ema
                .var_store()
                .variables()
                .into_iter()
                .map(|(k, t)| (format!("ema.{k}"), t)),
        );
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn assert_bit_identical(a: &Networks, b: &Networks) {
    let (pa, pb) = (parameters(a), parameters(b));
    assert_eq!(pa.len(), pb.len());
    for ((na, ta), (nb, tb)) in pa.iter().zip(&pb) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs");
    }
}

fn fit(cfg: Config, resume: bool) -> (Trainer, ssl_train::TrainOutcome) {
    let mut t = Trainer::builder(cfg).resume(resume).build().unwrap();
    let outcome = t.fit(&mut (), &AtomicBool::new(false)).unwrap();
    (t, outcome)
}

#[test]
fn every_method_trains_with_a_finite_loss_and_writes_a_checkpoint() {
    let out = scratch_dir();
    // Per method, settings that make its constraints hold at m = 64, d = 128.
    let methods: &[(&str, &[(&str, &str)])] = &[
        ("cw-rgp", &[("method.w_size", "16"), ("method.groups", "2")]),
        ("cw", &[("method.w_size", "32")]),
        ("cw-gp", &[("method.w_size", "16"), ("method.groups", "2")]),
        ("w-mse", &[("method.w_size", "64"), ("model.emb", "32")]),
        ("pca-whitening", &[("method.w_size", "32")]),
        ("shuffled-dbn", &[("method.w_size", "32")]),
        ("plain", &[]),
        ("simclr", &[]),
        ("byol", &[]),
        ("simsiam", &[]),
        ("barlow-twins", &[]),
        ("vicreg", &[]),
        ("zero-cl", &[]),
        ("swav", &[("method.prototypes", "30")]),
    ];
    for (name, extra) in methods {
        // The method table is replaced: CW-RGP's keys mean nothing to others.
        let mut kv = vec![("method.name", *name)];
        kv.extend(extra.iter().copied());
        let cfg = tiny(out.path(), name, &kv);
        let (_, outcome) = fit(cfg, false);
        let run = out.path().join(name);
        let l = losses(&run);
        assert_eq!(l.len(), 4, "{name}: 2 epochs x 2 steps logged");
        assert!(l.iter().all(|v| v.is_finite()), "{name}: {l:?}");
        assert_eq!((outcome.epochs_done, outcome.steps_done), (2, 4), "{name}");
        assert!(run.join("checkpoint.safetensors").exists(), "{name}");
        for f in [
            "metrics.csv",
            "config.toml",
            "results.json",
            "spectrum.json",
        ] {
            assert!(run.join(f).exists(), "{name}: {f}");
        }
    }
}

#[test]
fn cw_rgp_loss_decreases() {
    let out = scratch_dir();
    let cfg = tiny(
        out.path(),
        "decrease",
        &[("data.subset", "256"), ("optim.epochs", "6")],
    );
    let (_, outcome) = fit(cfg, false);
    let l = losses(&out.path().join("decrease"));
    assert_eq!(l.len(), 24);
    let first: f64 = l[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = l[l.len() - 4..].iter().sum::<f64>() / 4.0;
    // Measured: about 1.6 falling to about 1.2 over 24 steps.
    assert!(last < first - 0.05, "loss did not fall: {l:?}");
    assert!(outcome.last_eval.is_some_and(|e| e.knn_top1 > 0.0));
}

#[test]
fn resume_continues_bit_for_bit() {
    let out = scratch_dir();
    // Straight: 3 epochs.
    let (straight, _) = fit(
        tiny(out.path(), "straight", &[("optim.epochs", "3")]),
        false,
    );
    // 2 epochs, then the same run resumed to 3.
    fit(tiny(out.path(), "resumed", &[]), false);
    let cfg = tiny(out.path(), "resumed", &[("optim.epochs", "3")]);
    let mut t = Trainer::builder(cfg).resume(true).build().unwrap();
    assert_eq!(t.steps_done(), 4);
    let mut events = Vec::new();
    t.fit(
        &mut |e: &Event| events.push(e.clone()),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Resumed { step: 4, .. })),
        "{events:?}"
    );
    let a = losses(&out.path().join("straight"));
    assert_eq!(a.len(), 6);
    // Bit-identical losses on the CPU, including the steps after the resume,
    // and bit-identical parameters, optimiser-driven and EMA alike.
    assert_eq!(a, losses(&out.path().join("resumed")));
    assert_bit_identical(straight.networks(), t.networks());
}

#[test]
fn cancellation_saves_a_checkpoint_the_run_resumes_from_exactly() {
    let out = scratch_dir();
    let (straight, _) = fit(tiny(out.path(), "straight", &[]), false);
    // Cancelled after step 3 (mid-epoch 2).
    let cancel = AtomicBool::new(false);
    let mut t = Trainer::new(tiny(out.path(), "cancelled", &[])).unwrap();
    let mut seen = Vec::new();
    let outcome = t
        .fit(
            &mut |e: &Event| {
                if let Event::Step { step: 3, .. } = e {
                    cancel.store(true, Ordering::SeqCst);
                }
                seen.push(e.clone());
            },
            &cancel,
        )
        .unwrap();
    assert!(outcome.interrupted);
    assert_eq!(outcome.steps_done, 3);
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::Interrupted { step: 3 })));
    assert!(seen
        .iter()
        .any(|e| matches!(e, Event::Checkpoint { step: 3, .. })));
    drop(t);
    let (resumed, outcome) = fit(tiny(out.path(), "cancelled", &[]), true);
    assert!(!outcome.interrupted);
    assert_eq!(outcome.steps_done, 4);
    assert_bit_identical(straight.networks(), resumed.networks());
}

#[test]
fn divergence_stops_with_a_diagnosis_and_keeps_the_last_checkpoint() {
    let out = scratch_dir();
    let cfg = tiny(
        out.path(),
        "nan",
        &[
            ("method.name", "plain"),
            ("optim.lr", "1e30"),
            ("optim.warmup_iters", "1"),
            ("optim.epochs", "3"),
        ],
    );
    let mut t = Trainer::new(cfg).unwrap();
    let err = t.fit(&mut (), &AtomicBool::new(false)).unwrap_err();
    match &err {
        TrainError::NonFinite {
            diagnosis,
            checkpoint,
            ..
        } => {
            assert!(diagnosis.contains("non-finite loss"), "{diagnosis}");
            assert_eq!(checkpoint, &out.path().join("nan/checkpoint.safetensors"));
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("last good checkpoint"), "{text}");
}

#[test]
fn the_events_of_a_tiny_run() {
    let out = scratch_dir();
    let cfg = tiny(out.path(), "events", &[("run.log_every", "2")]);
    let mut t = Trainer::new(cfg).unwrap();
    let mut lines = Vec::new();
    let run = out.path().join("events");
    t.fit(
        &mut |e: &Event| {
            // Values that vary (timings, losses, accuracies, paths) are left out.
            lines.push(match e {
                Event::Note { text } => format!("note: {text}"),
                Event::Resumed { step, .. } => format!("resumed at {step}"),
                Event::EpochStarted {
                    epoch,
                    epochs,
                    steps,
                    position,
                } => format!("epoch {epoch} of {epochs} started: {steps} steps from {position}"),
                Event::Step {
                    epoch,
                    step,
                    loss,
                    logged,
                    ..
                } => format!(
                    "step {step} (epoch {epoch}) logged {logged}, finite loss {}",
                    loss.is_finite()
                ),
                Event::EpochEnded { epoch, epochs, .. } => format!("epoch {epoch}/{epochs} ended"),
                Event::Checkpoint { path, step } => format!(
                    "checkpoint at step {step}: {}",
                    path.strip_prefix(&run).unwrap().display()
                ),
                Event::Evaluated { epoch, step, .. } => {
                    format!("evaluated after epoch {epoch} (step {step})")
                }
                Event::Interrupted { step } => format!("interrupted at {step}"),
                Event::Finished {
                    epochs,
                    steps,
                    results,
                } => format!(
                    "finished: {epochs} epochs, {steps} steps, {}",
                    results
                        .as_ref()
                        .unwrap()
                        .strip_prefix(&run)
                        .unwrap()
                        .display()
                ),
            })
        },
        &AtomicBool::new(false),
    )
    .unwrap();
    insta::assert_snapshot!(lines.join("\n"));
}

/// Writes `n` random 40×40 PNGs into `dir`.
fn write_pngs(dir: &Path, n: usize, seed: u64) {
    use rand::{Rng, SeedableRng};
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n {
        let px: Vec<u8> = (0..40 * 40 * 3).map(|_| rng.random()).collect();
        image::RgbImage::from_raw(40, 40, px)
            .unwrap()
            .save(dir.join(format!("{i:03}.png")))
            .unwrap();
    }
}

#[test]
fn a_folder_of_images_trains_and_evaluates_only_when_labelled() {
    let out = scratch_dir();
    // A flat folder of unlabelled images, and a labelled train/val pair.
    let flat = out.path().join("flat");
    write_pngs(&flat, 64, 1);
    for (split, class, seed) in [
        ("train", "a", 2),
        ("train", "b", 3),
        ("val", "a", 4),
        ("val", "b", 5),
    ] {
        write_pngs(&out.path().join("eval").join(split).join(class), 8, seed);
    }
    let flat_s = flat.display().to_string();
    let eval_s = out.path().join("eval").display().to_string();
    let base = [
        ("data.dataset", "folder"),
        ("data.path", flat_s.as_str()),
        ("data.crop", "32"),
        ("data.subset", "0"),
        ("optim.epochs", "1"),
        ("data.measure_stats", "true"),
    ];
    let notes_of = |name: &str, extra: &[(&str, &str)]| {
        let mut kv = base.to_vec();
        kv.extend_from_slice(extra);
        let mut t = Trainer::new(tiny(out.path(), name, &kv)).unwrap();
        let mut events = Vec::new();
        let outcome = t
            .fit(
                &mut |e: &Event| events.push(e.clone()),
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(outcome.steps_done, 1, "{name}: 64 images, batches of 64");
        assert_eq!(
            t.splits().ssl_pipeline.output_size(),
            (32, 32),
            "data.crop is the SSL crop"
        );
        events
    };
    let unlabelled = notes_of("unlabelled", &[]);
    let said = |events: &[Event], what: &str| {
        events
            .iter()
            .any(|e| matches!(e, Event::Note { text } if text.contains(what)))
    };
    assert!(
        said(&unlabelled, "no labelled evaluation split"),
        "{unlabelled:?}"
    );
    assert!(
        said(&unlabelled, "data.measure_stats: mean"),
        "{unlabelled:?}"
    );
    assert!(!unlabelled
        .iter()
        .any(|e| matches!(e, Event::Evaluated { .. })));
    let labelled = notes_of("labelled", &[("data.eval_path", eval_s.as_str())]);
    assert!(!said(&labelled, "no labelled evaluation split"));
    let knn = labelled.iter().find_map(|e| match e {
        Event::Evaluated { summary, .. } => Some(summary.knn_top1),
        _ => None,
    });
    assert!(
        knn.is_some_and(|k| (0.0..=1.0).contains(&k)),
        "{labelled:?}"
    );
    // A folder that is not there is named.
    let missing = out.path().join("nowhere").display().to_string();
    let mut kv = base.to_vec();
    kv.push(("data.path", missing.as_str()));
    let err = Trainer::new(tiny(out.path(), "missing", &kv)).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

/// A folder with a damaged file: by default the run stops with an error
/// naming it; with `data.skip_unreadable` it trains and a note names it.
#[test]
fn an_unreadable_image_stops_the_run_unless_skipped_and_then_is_named() {
    let out = scratch_dir();
    let flat = out.path().join("flat");
    write_pngs(&flat, 64, 7);
    std::fs::write(flat.join("010.png"), b"\x89PNG\r\n\x1a\n not an image").unwrap();
    let flat_s = flat.display().to_string();
    let base = [
        ("data.dataset", "folder"),
        ("data.path", flat_s.as_str()),
        ("data.crop", "32"),
        ("data.subset", "0"),
        ("optim.epochs", "1"),
    ];
    let run = |name: &str, extra: &[(&str, &str)]| {
        let mut kv = base.to_vec();
        kv.extend_from_slice(extra);
        let mut t = Trainer::new(tiny(out.path(), name, &kv)).unwrap();
        let mut events = Vec::new();
        let outcome = t.fit(
            &mut |e: &Event| events.push(e.clone()),
            &AtomicBool::new(false),
        );
        (outcome, events)
    };
    let (stopped, _) = run("strict", &[]);
    let err = stopped.unwrap_err();
    let err: Vec<String> =
        std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect();
    let err = err.join(": ");
    assert!(err.contains("010.png"), "{err}");
    let (skipped, events) = run("skip", &[("data.skip_unreadable", "true")]);
    assert_eq!(skipped.unwrap().steps_done, 1);
    let note = events.iter().find_map(|e| match e {
        Event::Note { text } if text.contains("skip_unreadable") => Some(text.clone()),
        _ => None,
    });
    let note = note.unwrap_or_else(|| panic!("no note in {events:?}"));
    assert!(
        note.contains("010.png") && note.contains("1 unreadable"),
        "{note}"
    );
}
