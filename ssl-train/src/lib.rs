//! The trainer of whitening-ssl as a library: configurations with the
//! paper's defaults, the networks each method trains, the training loop
//! with checkpoints, resume and evaluations, and the run directory it
//! writes. The `ssl` command is a thin client of this crate; your own
//! program can be one too.
//!
//! Train CW-RGP (paper §4) on your own backbone and your own images:
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//!
//! use ssl_data::{DatasetKind, InMemoryDataset, Pipeline, RgbImage, Sample};
//! use ssl_train::{Backbone, Config, Event, Override, Splits, Trainer};
//! use tch::nn::{self, ModuleT};
//!
//! /// A small convolutional encoder: images → 64 features.
//! #[derive(Debug)]
//! struct Tiny(nn::SequentialT);
//! impl ModuleT for Tiny {
//!     fn forward_t(&self, x: &tch::Tensor, train: bool) -> tch::Tensor {
//!         self.0.forward_t(x, train)
//!     }
//! }
//! impl Backbone for Tiny {
//!     fn out_dim(&self) -> i64 {
//!         64
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let images: Vec<Sample> = (0..256)
//!     .map(|i| Sample { image: RgbImage::zeros(32, 32), label: Some(i % 10) })
//!     .collect();
//! let data = InMemoryDataset::new(images, 10)?;
//! let set = |k: &str, v: &str| Override::new(k, v);
//! let cfg = Config::resolve(None, &[
//!     set("method.name", "cw-rgp"), set("method.w_size", "32"), set("method.groups", "2"),
//!     set("model.emb", "64"), set("model.head_size", "128"), set("data.batch_size", "64"),
//!     set("optim.epochs", "2"), set("optim.warmup_iters", "4"), set("run.out_dir", "runs"),
//! ])?;
//! let splits = Splits::custom(
//!     data,
//!     None, // no labelled split: evaluations are skipped
//!     Pipeline::ssl_small(DatasetKind::Cifar10),
//!     Pipeline::eval(DatasetKind::Cifar10),
//! );
//! let mut trainer = Trainer::builder(cfg)
//!     .data(splits)
//!     .backbone(|p| {
//!         let net = nn::seq_t()
//!             .add(nn::conv2d(p / "conv", 3, 64, 3, Default::default()))
//!             .add_fn(|x| x.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1));
//!         Ok(Box::new(Tiny(net)) as Box<dyn Backbone>)
//!     })
//!     .build()?;
//! let mut print = |e: &Event| {
//!     if let Event::EpochEnded { epoch, mean_loss, .. } = e {
//!         println!("epoch {epoch}: loss {mean_loss:.4}");
//!     }
//! };
//! trainer.fit(&mut print, &AtomicBool::new(false))?;
//! # Ok(())
//! # }
//! ```
//!
//! `ssl-train/examples/custom_backbone.rs` is the same program with a data
//! set that has something to learn; it runs in CI.
//!
//! Architecture Invariant: the crate never prints, holds no global state
//! and changes no process-wide setting; the caller passes in the
//! communicator of data-parallel runs and the cancellation flag.

pub mod config;
pub mod data;
pub mod data_parallel;
pub mod device;
pub mod error;
pub mod evaluate;
pub mod methods;
pub mod networks;
pub mod records;
pub mod restore;
pub mod run_dir;
pub mod schedule;
pub mod tensorboard;
pub mod trainer;

pub use config::{Config, DatasetName, Override, Preset};
pub use data::{open_splits, split_features, AnyDataset, Labelled, Splits};
pub use device::parse_device;
pub use error::{BoxError, Context, Result, TrainError};
pub use evaluate::{evaluate, evaluate_with, EvalRequest, EvalSummary, Evaluation};
pub use methods::{
    method_loss, EmaSchedule, ExtraNetworks, Head, LossContext, Method, MethodName, MethodOutputs,
    Predictor, METHOD_NAMES,
};
pub use networks::{Backbone, BackboneBuilder, ForwardPlan, Networks, StepOutputs};
pub use records::{read_config, read_records, read_results, RunResults, Spectrum};
pub use restore::{restore, Restored};
pub use run_dir::{Record, RunDir};
pub use schedule::LrSchedule;
pub use ssl_losses::{
    AxisName, BarlowTwinsParams, ByolParams, PcaWhiteningParams, PlainParams, ShuffledDbnParams,
    SimclrParams, SimsiamParams, SwavParams, VicRegWeights, WhiteningParams, ZeroClParams,
};
pub use trainer::{
    checkpoint_path, Callbacks, EpochReport, Event, StepReport, TrainOutcome, Trainer,
    TrainerBuilder,
};
