//! Your own encoder and your own images, trained with CW-RGP through
//! ssl-train's public API: what a program that depends on our crates
//! writes. The images here are drawn in memory (stripes whose angle is the
//! class, under random colours and phases); put your own `Dataset` in
//! their place.
//!
//! ```sh
//! cargo run --release -p ssl-train --example custom_backbone -- --epochs 4
//! ```
//!
//! Prints one line per epoch, then
//! `custom_backbone | loss FIRST -> LAST | k-NN A% | run DIR`.

use std::sync::atomic::AtomicBool;

use clap::Parser;
use rand::{Rng, SeedableRng};
use ssl_data::{DatasetKind, InMemoryDataset, Pipeline, RgbImage, Sample};
use ssl_train::{AnyDataset, Backbone, Config, Event, Override, Splits, Trainer};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A small convolutional encoder: `[m, 3, 32, 32]` → `[m, 128]`.
#[derive(Debug)]
struct SmallConvNet(nn::SequentialT);

impl SmallConvNet {
    fn new(p: &nn::Path<'_>) -> Self {
        let conv = |c_in, c_out, name: &str| {
            let cfg = nn::ConvConfig {
                padding: 1,
                stride: 2,
                ..Default::default()
            };
            nn::conv2d(p / name, c_in, c_out, 3, cfg)
        };
        let bn = |c, name: &str| nn::batch_norm2d(p / name, c, Default::default());
        let net = nn::seq_t()
            .add(conv(3, 32, "conv1"))
            .add(bn(32, "bn1"))
            .add_fn(|x| x.relu())
            .add(conv(32, 64, "conv2"))
            .add(bn(64, "bn2"))
            .add_fn(|x| x.relu())
            .add(conv(64, 128, "conv3"))
            .add(bn(128, "bn3"))
            .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1));
        Self(net)
    }
}

impl ModuleT for SmallConvNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.0.forward_t(x, train)
    }
}

impl Backbone for SmallConvNet {
    fn out_dim(&self) -> i64 {
        128
    }
}

#[derive(Debug, Parser)]
#[command(about = "Train CW-RGP on a custom encoder and in-memory images")]
struct Args {
    /// Training epochs.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Images per class in the training split.
    #[arg(long, default_value_t = 64)]
    per_class: usize,
    /// Where the run directory goes.
    #[arg(long, default_value = "runs")]
    out: std::path::PathBuf,
}

/// Stripes at one of `classes` angles, random colours and phase.
fn stripes(n_per_class: usize, classes: usize, seed: u64) -> InMemoryDataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut samples = Vec::new();
    for class in 0..classes {
        let angle = std::f64::consts::PI * class as f64 / classes as f64;
        let (dx, dy) = (angle.cos(), angle.sin());
        for _ in 0..n_per_class {
            let (fg, bg): ([u8; 3], [u8; 3]) = (rng.random(), rng.random());
            let phase: f64 = rng.random_range(0.0..8.0);
            let mut img = RgbImage::zeros(32, 32);
            for y in 0..32 {
                for x in 0..32 {
                    let t = (x as f64 * dx + y as f64 * dy + phase) / 4.0;
                    let c = if t.floor() as i64 % 2 == 0 { fg } else { bg };
                    let i = 3 * (y * 32 + x);
                    img.as_raw_mut()[i..i + 3].copy_from_slice(&c);
                }
            }
            samples.push(Sample {
                image: img,
                label: Some(class as u32),
            });
        }
    }
    InMemoryDataset::new(samples, classes).expect("labels below the class count")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (train, test) = (stripes(args.per_class, 4, 0), stripes(32, 4, 1));
    // The configuration: defaults, then what this program changes.
    let set = |k: &str, v: String| Override::new(k, v);
    let cfg = Config::resolve(
        None,
        &[
            set("run.name", "custom-backbone".into()),
            set("run.out_dir", args.out.display().to_string()),
            set("run.device", "cpu".into()),
            set("method.name", "cw-rgp".into()),
            set("method.w_size", "32".into()),
            set("method.groups", "2".into()),
            set("model.emb", "128".into()),
            set("model.head_size", "256".into()),
            set("data.batch_size", "64".into()),
            set("optim.epochs", args.epochs.to_string()),
            set("optim.warmup_iters", "8".into()),
            set("optim.drop_epochs", "[]".into()),
            set("eval.linear", "false".into()),
        ],
    )?;
    // The data: the SSL split and the labelled splits k-NN is scored on.
    let splits = Splits::custom(
        train.clone(),
        Some((AnyDataset::new(train, 0), AnyDataset::new(test, 0))),
        Pipeline::ssl_small(DatasetKind::Cifar10),
        Pipeline::eval(DatasetKind::Cifar10),
    );
    let mut trainer = Trainer::builder(cfg)
        .data(splits)
        .backbone(|p| Ok(Box::new(SmallConvNet::new(p)) as Box<dyn Backbone>))
        .build()?;
    let mut epoch_losses = Vec::new();
    let mut report = |e: &Event| match e {
        Event::EpochEnded {
            epoch, mean_loss, ..
        } => {
            println!("epoch {epoch}: loss {mean_loss:.4}");
            epoch_losses.push(*mean_loss);
        }
        Event::Note { text } => println!("note: {text}"),
        _ => {}
    };
    let outcome = trainer.fit(&mut report, &AtomicBool::new(false))?;
    println!(
        "custom_backbone | loss {:.4} -> {:.4} (epoch means) | k-NN {:.1}% | run {}",
        epoch_losses.first().copied().unwrap_or(f64::NAN),
        epoch_losses.last().copied().unwrap_or(f64::NAN),
        100.0 * outcome.last_eval.map_or(f64::NAN, |e| e.knn_top1),
        outcome.run_dir.display()
    );
    Ok(())
}
