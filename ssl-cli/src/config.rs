//! Training configuration: every setting of SPEC §6 with the reference
//! defaults, presets per paper row (`configs/<dataset>/<row>.toml`), and
//! `--set key=value` overrides.
//!
//! Resolution, in order: the dataset's defaults ([`Config::defaults_for`]),
//! then the preset file (only the keys it sets), then each `--set`. The
//! merged TOML is deserialised with unknown keys rejected, then
//! [`Config::validate`] rejects impossible combinations before anything
//! runs. `ssl config show` prints the result, so two runs can be diffed.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use ssl_losses::Method;

/// The datasets of SPEC §5, plus the built-in synthetic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    Cifar10,
    Cifar100,
    Stl10,
    TinyImagenet,
    Imagenet,
    Synthetic,
}

impl DatasetName {
    pub const ALL: [DatasetName; 6] = [
        Self::Cifar10,
        Self::Cifar100,
        Self::Stl10,
        Self::TinyImagenet,
        Self::Imagenet,
        Self::Synthetic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Stl10 => "stl10",
            Self::TinyImagenet => "tiny-imagenet",
            Self::Imagenet => "imagenet",
            Self::Synthetic => "synthetic",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                anyhow!(
                    "unknown dataset `{s}`: expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
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
}

fn default_true() -> bool {
    true
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
    /// Training crop size.
    pub crop: i64,
    /// Use only the first N images of the training split (0 = all): quick
    /// runs, smoke tests.
    pub subset: usize,
}

/// `[model]`: encoder and projection head (SPEC §4).
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

/// The optimiser (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerName {
    Adam,
    Sgd,
    Lars,
}

/// The learning-rate schedule after warm-up (SPEC §6).
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

/// `[eval]`: the protocols of SPEC §7 during training.
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
    /// The reference defaults (SPEC §6) for a dataset: bs 512, emb 512,
    /// head 2 × 1024, Adam with 500 warm-up iterations and step drops,
    /// CW-RGP; ImageNet: ResNet-50, head 3 × 2048, emb 1024, SGD + cosine.
    pub fn defaults_for(dataset: DatasetName) -> Self {
        let imagenet = dataset == DatasetName::Imagenet;
        let crop = match dataset {
            DatasetName::Cifar10 | DatasetName::Cifar100 | DatasetName::Synthetic => 32,
            DatasetName::Stl10 | DatasetName::TinyImagenet => 64,
            DatasetName::Imagenet => 224,
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
            },
            data: DataConfig {
                dataset,
                path: PathBuf::from("data"),
                views: 2,
                batch_size: 512,
                workers: 0,
                crop,
                subset: 0,
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

    /// Resolves a preset (a path, or a name under `configs/` such as
    /// `cifar10/cw-rgp-4`) and `key=value` overrides into a validated config.
    pub fn resolve(preset: Option<&str>, overrides: &[String]) -> Result<Self> {
        let mut value = toml::Value::Table(toml::map::Map::new());
        let mut origin = String::from("defaults");
        if let Some(preset) = preset {
            let path = preset_path(preset)?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading preset {}", path.display()))?;
            value = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            origin = path.display().to_string();
        }
        // The dataset picks the defaults: from --set, else the preset, else CIFAR-10.
        let dataset = match overrides
            .iter()
            .rev()
            .find_map(|o| o.trim().strip_prefix("data.dataset="))
        {
            Some(s) => {
                DatasetName::parse(s.trim().trim_matches('"')).context("--set data.dataset")?
            }
            None => match value.get("data").and_then(|d| d.get("dataset")) {
                Some(toml::Value::String(s)) => {
                    DatasetName::parse(s).with_context(|| format!("{origin}: key data.dataset"))?
                }
                Some(other) => bail!("{origin}: key data.dataset must be a string, got {other}"),
                None => DatasetName::Cifar10,
            },
        };
        let mut merged = toml::Value::try_from(Self::defaults_for(dataset))?;
        // A preset that names a method replaces the default method table
        // whole, and `--set method.name=X` replaces the preset's: one
        // method's hyper-parameters mean nothing to another.
        let renamed = overrides
            .iter()
            .any(|o| o.trim_start().starts_with("method.name="));
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
        for item in overrides {
            apply_override(&mut merged, item)?;
        }
        // Omitted method keys take that method's own paper defaults
        // (`Method::from_name`: e.g. CW has no groups, W-MSE w_size 128).
        if let toml::Value::Table(root) = &mut merged {
            if let Some(toml::Value::Table(m)) = root.get("method") {
                if let Some(toml::Value::String(name)) = m.get("name") {
                    let base = Method::from_name(name)
                        .map_err(|e| anyhow!("{origin}: key method.name: {e}"))?;
                    let mut full = toml::Value::try_from(base)?;
                    merge(&mut full, toml::Value::Table(m.clone()));
                    root.insert("method".into(), full);
                }
            }
        }
        // Through text, so a type error quotes the offending line (key and value).
        let text = toml::to_string(&merged)?;
        let cfg: Self = toml::from_str(&text).map_err(|e| {
            anyhow!(
                "{origin} (with the defaults and --set overrides merged): {}",
                e.to_string().trim()
            )
        })?;
        cfg.validate()
            .with_context(|| format!("{origin}: impossible configuration"))?;
        Ok(cfg)
    }

    /// This configuration with `key=value` overrides applied (as `--set`
    /// does in [`Config::resolve`]), re-parsed and validated. `allowed`
    /// lists the key prefixes that may change (e.g. `data.` for a stored
    /// run, whose model must stay what the weights were trained as).
    pub fn with_overrides(&self, overrides: &[String], allowed: &[&str]) -> Result<Self> {
        let mut merged = toml::Value::try_from(self)?;
        for item in overrides {
            let key = item
                .split_once('=')
                .map_or(item.as_str(), |(k, _)| k)
                .trim();
            if !allowed.iter().any(|p| key.starts_with(p)) {
                bail!(
                    "--set {item}: only {} keys can change here (the rest is what the run \
                     was trained with)",
                    allowed.join(", ")
                );
            }
            apply_override(&mut merged, item)?;
        }
        let text = toml::to_string(&merged)?;
        let cfg: Self = toml::from_str(&text)
            .map_err(|e| anyhow!("--set overrides: {}", e.to_string().trim()))?;
        cfg.validate().context("impossible configuration")?;
        Ok(cfg)
    }

    /// The whole configuration as TOML (what `ssl config show` prints and
    /// what a run directory keeps).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Rejects combinations that cannot train, naming the key, the value
    /// and a way out.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        if !(d.views == 2 || d.views == 4) {
            bail!(
                "data.views = {}: the methods use 2 or 4 views per image",
                d.views
            );
        }
        if let Some(fixed) = self.method.fixed_views() {
            if d.views != fixed {
                bail!(
                    "data.views = {} but method {} works on exactly {fixed} views: set data.views = {fixed}",
                    d.views,
                    self.method.name()
                );
            }
        }
        if d.batch_size < 2 {
            bail!("data.batch_size = {}: need at least 2", d.batch_size);
        }
        if !["resnet18", "resnet34", "resnet50"].contains(&self.model.arch.as_str()) {
            bail!(
                "model.arch = {:?}: expected resnet18, resnet34 or resnet50",
                self.model.arch
            );
        }
        if !(self.model.width > 0.0 && self.model.width <= 4.0) {
            bail!(
                "model.width = {}: expected a multiplier in (0, 4]",
                self.model.width
            );
        }
        if self.model.head_layers < 1 {
            bail!(
                "model.head_layers = {}: need at least 1",
                self.model.head_layers
            );
        }
        if let Some(w) = self.method.whitening_loss() {
            if w.w_size > 1 && d.batch_size % w.w_size != 0 {
                bail!(
                    "method.w_size = {} does not divide data.batch_size = {}: choose a w_size \
                     among the divisors of the batch",
                    w.w_size,
                    d.batch_size
                );
            }
            if let ssl_losses::ViewTransform::Whiten(cfg) = &w.transform {
                cfg.validate(w.w_size, self.model.emb).map_err(|e| {
                    anyhow!(
                        "method {} with model.emb = {} and method.w_size = {}: {e}",
                        self.method.name(),
                        self.model.emb,
                        w.w_size
                    )
                })?;
            }
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            bail!("optim.lr = {}: must be positive", o.lr);
        }
        if o.epochs == 0 {
            bail!("optim.epochs = 0: nothing to train");
        }
        if let Some(&e) = o.drop_epochs.iter().find(|&&e| e >= o.epochs) {
            bail!(
                "optim.drop_epochs contains {e}, not before optim.epochs = {}",
                o.epochs
            );
        }
        if self.eval.every == 0 || self.eval.every_after_drop == 0 {
            bail!("eval.every and eval.every_after_drop must be at least 1");
        }
        Ok(())
    }

    /// The epochs at which the step schedule drops the rate.
    #[allow(dead_code)] // used by the trainer (issue 8)
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

/// The folder of presets shipped with the project.
pub fn presets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// Every preset name (`dataset/row`), sorted.
pub fn preset_names() -> Result<Vec<String>> {
    let mut names = Vec::new();
    let root = presets_dir();
    for dataset in
        std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))?
    {
        let dataset = dataset?;
        if !dataset.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dataset.path())? {
            let path = file?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                names.push(format!("{}/{stem}", dataset.file_name().to_string_lossy()));
            }
        }
    }
    names.sort();
    Ok(names)
}

fn preset_path(preset: &str) -> Result<PathBuf> {
    let direct = PathBuf::from(preset);
    if direct.is_file() {
        return Ok(direct);
    }
    let named = presets_dir().join(format!("{preset}.toml"));
    if named.is_file() {
        return Ok(named);
    }
    let names = preset_names().unwrap_or_default();
    let close: Vec<&String> = names
        .iter()
        .filter(|n| n.contains(preset) || preset.contains(n.as_str()))
        .take(5)
        .collect();
    bail!(
        "no preset `{preset}` (neither a file nor configs/{preset}.toml){}; `ssl config list` \
         shows all",
        if close.is_empty() {
            String::new()
        } else {
            format!(": did you mean {close:?}?")
        }
    )
}

/// Applies `a.b.c=value` to the merged configuration. Where the key holds
/// a string the value is taken as written (`run.name=nan` is the name
/// "nan"); elsewhere it is read as TOML (`3e-3`, `true`, `[1, 2]`).
fn apply_override(root: &mut toml::Value, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .with_context(|| format!("--set {item}: expected key=value, e.g. optim.lr=1e-3"))?;
    let (key, raw) = (key.trim(), raw.trim());
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {item}: malformed key `{key}`");
    }
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        let table = node
            .as_table_mut()
            .with_context(|| format!("--set {item}: `{part}` is not a table"))?;
        node = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::map::Map::new()));
    }
    let table = node
        .as_table_mut()
        .with_context(|| format!("--set {item}: parent of `{key}` is not a table"))?;
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
