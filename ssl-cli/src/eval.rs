//! `ssl eval RUN_OR_CHECKPOINT`: the paper's protocols (docs/reference.md §7) on a
//! trained run, restored with the configuration it was trained with.
//!
//! `--protocol knn|linear|both` extracts the classifier- and test-split
//! features once (evaluation transform; encoder output, or the head's with
//! `--features head`) and runs 5-NN and/or the Adam linear probe, exactly
//! as the trainer's evaluations do (`train::evaluate_with`);
//! `--protocol imagenet-linear` runs Table 2's frozen-encoder protocol
//! (`ssl_eval::imagenet_linear`: SGD, cosine, RandomResizedCrop(224) +
//! flip on every training batch) on an ImageNet run. The results, with the
//! collapse diagnostics of the test features, go to `eval.json` in the run
//! directory (or `--out FILE`); one summary line goes to stdout.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ssl_data::{Loader, LoaderConfig, Pipeline};
use ssl_eval::{
    collapse_diagnostics, imagenet_linear, EvalResults, ImagenetLinearConfig, ImagenetLinearTask,
    LinearOptimizer, Representation,
};

use ssl_files::write_atomic as atomic_write;
use ssl_train::restore;
use ssl_train::{evaluate_with, EvalRequest};
use ssl_train::{open_splits, split_features, AnyDataset};
use ssl_train::{Config, DatasetName};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// k-NN (k = eval.knn_k, Euclidean, majority vote).
    Knn,
    /// The Adam linear probe on frozen features (eval.linear_epochs epochs).
    Linear,
    /// k-NN and the linear probe.
    Both,
    /// Table 2's ImageNet linear protocol (SGD, cosine, augmented batches).
    ImagenetLinear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FeatureSource {
    /// The encoder output h (the paper's protocol).
    Encoder,
    /// The projection head's embedding z.
    Head,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory (runs/<name>) or its checkpoint.safetensors.
    pub path: PathBuf,
    #[arg(long, value_enum, default_value = "both")]
    pub protocol: Protocol,
    #[arg(long, value_enum, default_value = "encoder")]
    pub features: FeatureSource,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Change a data or eval key of the stored config, e.g.
    /// `--set data.path=/datasets --set eval.linear_epochs=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// ImageNet linear protocol: epochs (Table 2: 100).
    #[arg(long, default_value_t = 100)]
    pub imagenet_epochs: usize,
    /// ImageNet linear protocol: batch size (Table 2: 1024; lr = 0.1 x bs/256).
    #[arg(long, default_value_t = 1024)]
    pub imagenet_batch_size: usize,
    /// ImageNet linear protocol: optimiser. larc = apex's LARC around SGD,
    /// what the release's `lincls.py --lars` ran for the published numbers;
    /// sgd = plain momentum SGD; lars = MoCo v3's LARS (biases excluded).
    #[arg(long, default_value = "larc", value_parser = ["larc", "sgd", "lars"])]
    pub imagenet_optimizer: String,
    /// Where to write the results (default: eval.json in the run directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let device = ssl_train::parse_device(&args.device)?;
    let restored = restore(&args.path, device)?;
    let cfg = restored.config.with_overrides(
        &crate::presets::overrides(&args.overrides)?,
        &["data.", "eval."],
    )?;
    let nets = &restored.nets;
    let head = args.features == FeatureSource::Head;
    let results = match args.protocol {
        Protocol::ImagenetLinear => {
            if head {
                bail!("--protocol imagenet-linear evaluates the encoder: drop --features head");
            }
            imagenet_protocol(&cfg, &restored.nets, device, args)?
        }
        p => {
            let splits = open_splits(&cfg)?;
            let req = EvalRequest {
                knn: matches!(p, Protocol::Knn | Protocol::Both),
                linear: matches!(p, Protocol::Linear | Protocol::Both),
                head,
            };
            evaluate_with(&cfg, nets, &splits, device, &req)?.results
        }
    };
    let out = match &args.out {
        Some(p) => p.clone(),
        None => restored
            .checkpoint
            .parent()
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join("eval.json"),
    };
    atomic_write(&out, results.to_json().as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    println!("{}", summary_line(&restored.meta.epoch, &results, &out));
    Ok(())
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// `eval | epoch E | encoder | k-NN A% | linear B% (top-5 C%) | nsr D% | FILE`
fn summary_line(epoch: &u64, r: &EvalResults, out: &std::path::Path) -> String {
    let mut parts = vec![
        format!("eval | epoch {epoch}"),
        match r.representation {
            Representation::Encoder => "encoder",
            Representation::Head => "head",
            Representation::Whitened => "whitened",
        }
        .to_string(),
    ];
    if let Some(k) = &r.knn {
        parts.push(format!("{}-NN {}", k.k, pct(k.top1)));
    }
    if let Some(l) = &r.linear {
        parts.push(format!("linear {} (top-5 {})", pct(l.top1), pct(l.top5)));
    }
    if let Some(d) = &r.diagnostics {
        parts.push(format!(
            "normalised stable rank {}",
            pct(d.rank.normalised_stable_rank)
        ));
    }
    parts.push(out.display().to_string());
    parts.join(" | ")
}

/// Table 2's linear protocol: a linear layer on the frozen encoder, trained
/// on RandomResizedCrop(224) + flip batches, validated on the evaluation
/// transform (Resize 256 + CenterCrop 224).
fn imagenet_protocol(
    cfg: &Config,
    nets: &ssl_train::Networks,
    device: tch::Device,
    args: &EvalArgs,
) -> Result<EvalResults> {
    if cfg.data.dataset != DatasetName::Imagenet {
        bail!(
            "--protocol imagenet-linear is Table 2's protocol for ImageNet runs (224-pixel \
             crops); this run was trained on {} (data.dataset): use --protocol linear",
            cfg.data.dataset
        );
    }
    let splits = open_splits(cfg)?;
    let labelled = splits.labelled()?;
    let threads = match cfg.data.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let loader = |data: &Arc<AnyDataset>, pipeline, train: bool, bs: usize| {
        let mut lc = LoaderConfig::new(bs, 1, cfg.run.seed);
        lc.threads = threads;
        lc.shuffle = train;
        lc.drop_last = false;
        lc.device = device;
        Loader::new(data.clone(), pipeline, lc)
    };
    let train = loader(
        &labelled.classifier,
        Pipeline::linear_train_imagenet(),
        true,
        args.imagenet_batch_size,
    )?;
    let val = loader(&labelled.test, splits.eval_pipeline.clone(), false, 256)?;
    // A read error ends that epoch's batches and is reported afterwards.
    let failure = std::cell::RefCell::new(None);
    let batches = |l: &Loader<AnyDataset>, epoch: u64| {
        let failure = &failure;
        l.epoch(epoch).map_while(move |b| match b {
            Ok(mut b) => Some((b.views.remove(0), b.labels)),
            Err(e) => {
                *failure.borrow_mut() = Some(e);
                None
            }
        })
    };
    let pc = ImagenetLinearConfig {
        epochs: args.imagenet_epochs,
        batch_size: args.imagenet_batch_size as i64,
        seed: cfg.run.seed,
        optimizer: match args.imagenet_optimizer.as_str() {
            "sgd" => LinearOptimizer::Sgd,
            "lars" => LinearOptimizer::Lars {
                trust_coefficient: 0.001,
            },
            _ => LinearOptimizer::Larc {
                trust_coefficient: 0.001,
            },
        },
        ..ImagenetLinearConfig::paper()
    };
    let classes = ssl_data::Dataset::num_classes(labelled.test.as_ref()) as i64;
    let task = ImagenetLinearTask {
        encoder: nets.encoder.as_ref(),
        feature_dim: nets.encoder.out_dim(),
        num_classes: classes,
        device,
    };
    let outcome = imagenet_linear(
        &task,
        |e| batches(&train, e as u64),
        |x| x.shallow_clone(),
        || batches(&val, 0),
        &pc,
    );
    if let Some(e) = failure.take() {
        return Err(e).context("reading the ImageNet batches");
    }
    let (_, linear) = outcome?;
    let mut results = EvalResults::new(Representation::Encoder);
    results.linear = Some(linear);
    // Diagnostics of the validation features (evaluation transform).
    let test = split_features(
        cfg,
        &labelled.test,
        &splits.eval_pipeline,
        device,
        |x| tch::nn::ModuleT::forward_t(nets.encoder.as_ref(), x, false),
        "test",
    )?;
    results.diagnostics = Some(collapse_diagnostics(&test.x, Some(&test.y))?);
    Ok(results)
}
