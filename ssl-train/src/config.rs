//! Training configuration: every setting with the reference defaults
//! (paper §5 and Appendix, the official release's `scripts/*.sh`), a
//! preset layer (a TOML text: the CLI's `configs/<dataset>/<row>.toml`)
//! and key = value overrides.
//!
//! Resolution, in order: the dataset's defaults ([`Config::defaults_for`]),
//! then the preset (only the keys it sets), then each [`Override`]. The
//! merged TOML is deserialised with unknown keys rejected, then
//! [`Config::validate`] rejects impossible combinations before anything
//! runs. [`Config::to_toml`] prints the result, so two runs can be diffed.
//!
//! ```
//! use ssl_train::{Config, Override, Preset};
//! let preset = Preset::new("[method]\nname = \"w-mse\"\n[model]\nemb = 64\n", "my.toml");
//! let cfg = Config::resolve(Some(&preset), &[Override::new("optim.lr", "1e-3")])?;
//! assert_eq!(cfg.method.name(), "w-mse");
//! assert_eq!(cfg.optim.lr, 1e-3);
//! # Ok::<(), ssl_train::TrainError>(())
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::methods::Method;

/// Returns early with [`TrainError::Config`] and a formatted message.
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err(TrainError::Config(format!($($arg)*)))
    };
}

/// A preset layer: TOML text and where it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    /// The TOML text (only the keys the preset changes).
    pub text: String,
    /// A file path or name, quoted in errors.
    pub origin: String,
}

impl Preset {
    /// A preset from its text and origin.
    pub fn new(text: impl Into<String>, origin: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            origin: origin.into(),
        }
    }
}

/// One `key = value` edit of the merged configuration, e.g. `optim.lr` =
/// `1e-3`. Where the key holds a string the value is taken as written
/// (`run.name` = `nan` is the name "nan"); elsewhere it is read as TOML
/// (`3e-3`, `true`, `[1, 2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Dotted key, e.g. `optim.lr`.
    pub key: String,
    /// The value as written.
    pub value: String,
}

impl Override {
    /// An override of `key` with `value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into().trim().to_string(),
            value: value.into().trim().to_string(),
        }
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// The datasets of the paper's Table 1 and 2, the built-in synthetic one,
/// and any folder of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// CIFAR-10 (binary version).
    Cifar10,
    /// CIFAR-100 (binary version).
    Cifar100,
    /// STL-10 (binary version; `unlabeled` for training).
    Stl10,
    /// Tiny-ImageNet-200.
    TinyImagenet,
    /// ImageNet as `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`.
    Imagenet,
    /// The built-in synthetic set (the demo and tests).
    Synthetic,
    /// Images in `data.path`: in class sub-folders, or flat (unlabelled);
    /// `data.eval_path` optionally holds labelled `train/` and `val/`
    /// folders for the evaluations.
    Folder,
}

impl DatasetName {
    /// Every dataset name.
    pub const ALL: [DatasetName; 7] = [
        Self::Cifar10,
        Self::Cifar100,
        Self::Stl10,
        Self::TinyImagenet,
        Self::Imagenet,
        Self::Synthetic,
        Self::Folder,
    ];

    /// The name as written in a config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Stl10 => "stl10",
            Self::TinyImagenet => "tiny-imagenet",
            Self::Imagenet => "imagenet",
            Self::Synthetic => "synthetic",
            Self::Folder => "folder",
        }
    }

    /// Parses a config's dataset name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "unknown dataset `{s}`: expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[run]`: identity, seed, device, output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name (the run directory is `out_dir/name`).
    pub name: String,
    /// Seed of every random draw (data order, augmentation, whitening partitions, init).
    pub seed: u64,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Parent folder of run directories.
    pub out_dir: PathBuf,
    /// Log the loss every this many steps.
    pub log_every: usize,
    /// Store convolution weights channels-last (NHWC): faster kernels on
    /// CUDA (cuDNN tensor cores) and in the CPU forward (oneDNN; on the
    /// 2-core development machine the ResNet-18 CW-RGP forward took 15–30%
    /// less time, the whole step 0–10% less, within that machine's noise).
    /// Values, checkpoints and results are the same up to float rounding.
    #[serde(default = "default_true")]
    pub channels_last: bool,
    /// Run the encoder's convolutions in bfloat16 on CUDA (weights, BN and
    /// the loss stay float32); skipped with a note on other devices.
    #[serde(default)]
    pub bf16: bool,
    /// Write a resumable checkpoint inside an epoch after this many minutes
    /// of training since the last one (0 = only at epoch ends). Resuming
    /// from it continues at that exact step, bit for bit on the CPU.
    #[serde(default = "default_checkpoint_minutes")]
    pub checkpoint_every_minutes: f64,
    /// ... and after this many steps since the last one (0 = off).
    #[serde(default)]
    pub checkpoint_every_steps: usize,
    /// Write TensorBoard event files (loss, learning rate, throughput,
    /// k-NN/linear accuracy, stable rank, the spectrum's histogram) into
    /// the run directory: `tensorboard --logdir run.out_dir`.
    #[serde(default = "default_true")]
    pub tensorboard: bool,
}

fn default_true() -> bool {
    true
}

fn default_checkpoint_minutes() -> f64 {
    15.0
}

/// `[data]`: dataset, views, batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetName,
    /// Dataset folder (as `cargo xtask download` lays it out).
    pub path: PathBuf,
    /// Views per image (`num_samples`: 2 or 4).
    pub views: i64,
    /// Images per step (`bs`).
    pub batch_size: i64,
    /// Augmentation threads (0 = all cores).
    pub workers: usize,
    /// The SSL views' crop size (the random crop's output; the evaluation
    /// transform of the paper's datasets keeps their own size, a folder's
    /// centre-crops to this size).
    pub crop: i64,
    /// Use only the first N images of the training split (0 = all): quick
    /// runs, smoke tests.
    pub subset: usize,
    /// Per-channel normalisation mean, 3 values in [0, 1] (empty: the
    /// dataset's statistics; ImageNet's for a folder).
    #[serde(default)]
    pub mean: Vec<f64>,
    /// Per-channel normalisation standard deviation (empty: as `mean`).
    #[serde(default)]
    pub std: Vec<f64>,
    /// Measure `mean` and `std` from (up to 512 of) the training images at
    /// start, instead of the keys above (a folder of unusual images).
    #[serde(default)]
    pub measure_stats: bool,
    /// For `dataset = "folder"`: a folder with labelled `train/<class>/…`
    /// (what k-NN and the linear probe are fitted on) and `val/<class>/…`
    /// (what they are scored on). Empty: no evaluation, with a note.
    #[serde(default)]
    pub eval_path: PathBuf,
    /// Replace an image whose file cannot be decoded by the next readable
    /// one instead of stopping the run; the skipped files are counted and
    /// named in the run's notes at the end of each epoch. Off: a bad file
    /// stops the run with an error naming it.
    #[serde(default)]
    pub skip_unreadable: bool,
}

/// `[model]`: encoder and projection head (paper §5: ResNet + MLP head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `resnet18`, `resnet34` or `resnet50`.
    pub arch: String,
    /// Channel-width multiplier (1 = torchvision's network; < 1 for CPU demos).
    pub width: f64,
    /// Embedding size `d` (`emb`).
    pub emb: i64,
    /// Head layers (`head_layers`).
    pub head_layers: i64,
    /// Hidden size of the head (`head_size`).
    pub head_size: i64,
}

/// The optimiser (the release's `base/train.py` and `ImageNet/main.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerName {
    Adam,
    Sgd,
    Lars,
}

/// The learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleName {
    /// ×`drop_factor` at epochs `E − 50` and `E − 25` (small datasets).
    Step,
    /// Cosine decay per epoch (ImageNet).
    Cosine,
}

/// `[optim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub optimizer: OptimizerName,
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD/LARS momentum.
    pub momentum: f64,
    pub epochs: usize,
    /// Linear warm-up iterations: `lr·(step+1)/warmup_iters`.
    pub warmup_iters: usize,
    pub schedule: ScheduleName,
    /// Step schedule: epochs at which the rate is multiplied by
    /// `drop_factor`; empty = the reference's `[E − 50, E − 25]`.
    pub drop_epochs: Vec<usize>,
    pub drop_factor: f64,
}

/// `[eval]`: the evaluation protocols (paper §5) during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many epochs.
    pub every: usize,
    /// ... and every this many after the first learning-rate drop.
    pub every_after_drop: usize,
    /// k of the k-NN classifier.
    pub knn_k: usize,
    /// Run the linear probe (500 epochs of Adam on frozen features).
    pub linear: bool,
    /// Linear-probe epochs.
    pub linear_epochs: usize,
    /// Evaluate the head output instead of the encoder output (`eval_head`).
    pub head: bool,
}

/// A whole training configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub run: RunConfig,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub method: Method,
    pub optim: OptimConfig,
    pub eval: EvalConfig,
}

impl Config {
    /// The reference defaults (the release's `scripts/*.sh`) for a dataset: bs 512, emb 512,
    /// head 2 × 1024, Adam with 500 warm-up iterations and step drops,
    /// CW-RGP; ImageNet: ResNet-50, head 3 × 2048, emb 1024, SGD + cosine.
    pub fn defaults_for(dataset: DatasetName) -> Self {
        let imagenet = dataset == DatasetName::Imagenet;
        let crop = match dataset {
            DatasetName::Cifar10 | DatasetName::Cifar100 | DatasetName::Synthetic => 32,
            DatasetName::Stl10 | DatasetName::TinyImagenet => 64,
            DatasetName::Imagenet | DatasetName::Folder => 224,
        };
        Self {
            run: RunConfig {
                name: format!("{dataset}-cw-rgp"),
                seed: 0,
                device: "auto".into(),
                out_dir: "runs".into(),
                log_every: 50,
                channels_last: true,
                bf16: false,
                checkpoint_every_minutes: default_checkpoint_minutes(),
                checkpoint_every_steps: 0,
                tensorboard: true,
            },
            data: DataConfig {
                dataset,
                path: PathBuf::from("data"),
                views: 2,
                batch_size: 512,
                workers: 0,
                crop,
                subset: 0,
                mean: Vec::new(),
                std: Vec::new(),
                measure_stats: false,
                eval_path: PathBuf::new(),
                skip_unreadable: false,
            },
            model: ModelConfig {
                arch: if imagenet { "resnet50" } else { "resnet18" }.into(),
                width: 1.0,
                emb: if imagenet { 1024 } else { 512 },
                head_layers: if imagenet { 3 } else { 2 },
                head_size: if imagenet { 2048 } else { 1024 },
            },
            method: Method::from_name("cw-rgp").expect("cw-rgp is a method"),
            optim: OptimConfig {
                optimizer: if imagenet {
                    OptimizerName::Sgd
                } else {
                    OptimizerName::Adam
                },
                lr: if imagenet { 0.1 } else { 3e-3 },
                weight_decay: if imagenet { 1e-4 } else { 1e-6 },
                momentum: 0.9,
                epochs: if imagenet { 100 } else { 1000 },
                warmup_iters: 500,
                schedule: if imagenet {
                    ScheduleName::Cosine
                } else {
                    ScheduleName::Step
                },
                drop_epochs: Vec::new(),
                drop_factor: 0.2,
            },
            eval: EvalConfig {
                every: 10,
                every_after_drop: 5,
                knn_k: 5,
                linear: true,
                linear_epochs: 500,
                head: false,
            },
        }
    }

    /// Resolves a preset layer and overrides into a validated config.
    pub fn resolve(preset: Option<&Preset>, overrides: &[Override]) -> Result<Self> {
        let mut value = toml::Value::Table(toml::map::Map::new());
        let mut origin = String::from("defaults");
        if let Some(preset) = preset {
            value = toml::from_str(&preset.text).map_err(|e| {
                TrainError::Config(format!(
                    "{} is not valid TOML: {}",
                    preset.origin,
                    e.to_string().trim()
                ))
            })?;
            origin = preset.origin.clone();
        }
        // The dataset picks the defaults: from an override, else the preset, else CIFAR-10.
        let dataset = match overrides.iter().rev().find(|o| o.key == "data.dataset") {
            Some(o) => DatasetName::parse(o.value.trim_matches('"'))
                .map_err(|e| TrainError::Config(format!("--set data.dataset: {e}")))?,
            None => match value.get("data").and_then(|d| d.get("dataset")) {
                Some(toml::Value::String(s)) => DatasetName::parse(s)
                    .map_err(|e| TrainError::Config(format!("{origin}: key data.dataset: {e}")))?,
                Some(other) => refuse!("{origin}: key data.dataset must be a string, got {other}"),
                None => DatasetName::Cifar10,
            },
        };
        let mut merged = toml_value(&Self::defaults_for(dataset))?;
        // A preset that names a method replaces the default method table
        // whole, and an override of method.name replaces the preset's:
        // one method's hyper-parameters mean nothing to another.
        let renamed = overrides.iter().any(|o| o.key == "method.name");
        let preset_names_method = value.get("method").and_then(|m| m.get("name")).is_some();
        if let toml::Value::Table(root) = &mut merged {
            if renamed || preset_names_method {
                root.remove("method");
            }
        }
        if renamed {
            if let toml::Value::Table(root) = &mut value {
                root.remove("method");
            }
        }
        merge(&mut merged, value);
        for o in overrides {
            apply_override(&mut merged, o)?;
        }
        // Omitted method keys take that method's own paper defaults
        // (`Method::from_name`: e.g. CW has no groups, W-MSE w_size 128).
        if let toml::Value::Table(root) = &mut merged {
            if let Some(toml::Value::Table(m)) = root.get("method") {
                if let Some(toml::Value::String(name)) = m.get("name") {
                    let base = Method::from_name(name).map_err(|e| {
                        TrainError::Config(format!("{origin}: key method.name: {e}"))
                    })?;
                    let mut full = toml_value(&base)?;
                    merge(&mut full, toml::Value::Table(m.clone()));
                    root.insert("method".into(), full);
                }
            }
        }
        // Through text, so a type error quotes the offending line (key and value).
        let text = toml::to_string(&merged)?;
        let cfg: Self = toml::from_str(&text).map_err(|e| {
            TrainError::Config(format!(
                "{origin} (with the defaults and --set overrides merged): {}",
                e.to_string().trim()
            ))
        })?;
        cfg.validate()
            .map_err(|e| TrainError::Config(format!("{origin}: impossible configuration: {e}")))?;
        Ok(cfg)
    }

    /// This configuration with overrides applied (as [`Config::resolve`]
    /// applies them), re-parsed and validated. `allowed` lists the key
    /// prefixes that may change (e.g. `data.` for a stored run, whose
    /// model must stay what the weights were trained as).
    pub fn with_overrides(&self, overrides: &[Override], allowed: &[&str]) -> Result<Self> {
        let mut merged = toml_value(self)?;
        for o in overrides {
            if !allowed.iter().any(|p| o.key.starts_with(p)) {
                refuse!(
                    "--set {o}: only {} keys can change here (the rest is what the run \
                     was trained with)",
                    allowed.join(", ")
                );
            }
            apply_override(&mut merged, o)?;
        }
        let text = toml::to_string(&merged)?;
        let cfg: Self = toml::from_str(&text).map_err(|e| {
            TrainError::Config(format!("--set overrides: {}", e.to_string().trim()))
        })?;
        cfg.validate()
            .map_err(|e| TrainError::Config(format!("impossible configuration: {e}")))?;
        Ok(cfg)
    }

    /// The whole configuration as TOML (what `ssl config show` prints and
    /// what a run directory keeps).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// The run directory: `run.out_dir/run.name`.
    pub fn run_dir(&self) -> PathBuf {
        self.run.out_dir.join(&self.run.name)
    }

    /// Rejects combinations that cannot train, naming the key, the value
    /// and a way out.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        if !(d.views == 2 || d.views == 4) {
            refuse!(
                "data.views = {}: the methods use 2 or 4 views per image",
                d.views
            );
        }
        if let Some(fixed) = self.method.fixed_views() {
            if d.views != fixed {
                refuse!(
                    "data.views = {} but method {} works on exactly {fixed} views: set data.views = {fixed}",
                    d.views,
                    self.method.name()
                );
            }
        }
        for (key, v) in [("data.mean", &d.mean), ("data.std", &d.std)] {
            if !(v.is_empty() || v.len() == 3) {
                refuse!("{key} = {v:?}: expected 3 values (one per channel) or none");
            }
        }
        if d.mean.is_empty() != d.std.is_empty() {
            refuse!("data.mean and data.std go together: give both or neither");
        }
        if d.std.iter().any(|&s| !(s > 0.0 && s.is_finite())) {
            refuse!("data.std = {:?}: every value must be positive", d.std);
        }
        if d.crop < 8 {
            refuse!("data.crop = {}: expected at least 8 pixels", d.crop);
        }
        if d.batch_size < 2 {
            refuse!("data.batch_size = {}: need at least 2", d.batch_size);
        }
        if !["resnet18", "resnet34", "resnet50"].contains(&self.model.arch.as_str()) {
            refuse!(
                "model.arch = {:?}: expected resnet18, resnet34 or resnet50",
                self.model.arch
            );
        }
        if !(self.model.width > 0.0 && self.model.width <= 4.0) {
            refuse!(
                "model.width = {}: expected a multiplier in (0, 4]",
                self.model.width
            );
        }
        if self.model.head_layers < 1 {
            refuse!(
                "model.head_layers = {}: need at least 1",
                self.model.head_layers
            );
        }
        if let Some(w) = self.method.whitening_loss() {
            if w.w_size > 1 && d.batch_size % w.w_size != 0 {
                refuse!(
                    "method.w_size = {} does not divide data.batch_size = {}: choose a w_size \
                     among the divisors of the batch",
                    w.w_size,
                    d.batch_size
                );
            }
            if let ssl_losses::ViewTransform::Whiten(cfg) = &w.transform {
                cfg.validate(w.w_size, self.model.emb).map_err(|e| {
                    TrainError::Config(format!(
                        "method {} with model.emb = {} and method.w_size = {}: {e}",
                        self.method.name(),
                        self.model.emb,
                        w.w_size
                    ))
                })?;
            }
        }
        let minutes = self.run.checkpoint_every_minutes;
        if !(minutes >= 0.0 && minutes.is_finite()) {
            refuse!(
                "run.checkpoint_every_minutes = {minutes}: expected minutes >= 0 (0 = only at \
                 epoch ends)"
            );
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            refuse!("optim.lr = {}: must be positive", o.lr);
        }
        if o.epochs == 0 {
            refuse!("optim.epochs = 0: nothing to train");
        }
        if let Some(&e) = o.drop_epochs.iter().find(|&&e| e >= o.epochs) {
            refuse!(
                "optim.drop_epochs contains {e}, not before optim.epochs = {}",
                o.epochs
            );
        }
        if self.eval.every == 0 || self.eval.every_after_drop == 0 {
            refuse!("eval.every and eval.every_after_drop must be at least 1");
        }
        Ok(())
    }

    /// The epochs at which the step schedule drops the rate.
    pub fn drop_epochs(&self) -> Vec<usize> {
        if !self.optim.drop_epochs.is_empty() {
            return self.optim.drop_epochs.clone();
        }
        let e = self.optim.epochs;
        [e.checked_sub(50), e.checked_sub(25)]
            .into_iter()
            .flatten()
            .filter(|&x| x > 0)
            .collect()
    }
}

/// A serialisable value as a TOML tree.
fn toml_value<T: Serialize>(v: &T) -> Result<toml::Value> {
    toml::Value::try_from(v).map_err(TrainError::from)
}

/// Applies one override to the merged configuration (see [`Override`]).
fn apply_override(root: &mut toml::Value, o: &Override) -> Result<()> {
    let (key, raw) = (o.key.as_str(), o.value.as_str());
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        refuse!("--set {o}: malformed key `{key}`");
    }
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node
            .as_table_mut()
            .ok_or_else(|| TrainError::Config(format!("--set {o}: `{part}` is not a table")))?;
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::map::Map::new()));
    }
    let table = node.as_table_mut().ok_or_else(|| {
        TrainError::Config(format!("--set {o}: parent of `{key}` is not a table"))
    })?;
    let last = parts[parts.len() - 1];
    let as_toml = || {
        toml::from_str::<toml::Value>(&format!("v = {raw}"))
            .ok()
            .and_then(|t| t.get("v").cloned())
    };
    let parsed = match table.get(last) {
        Some(toml::Value::String(_)) if !raw.starts_with('"') => {
            toml::Value::String(raw.to_string())
        }
        _ => as_toml().unwrap_or_else(|| toml::Value::String(raw.to_string())),
    };
    table.insert(last.to_string(), parsed);
    Ok(())
}

/// Deep merge: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
