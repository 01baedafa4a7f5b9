//! The three splits of SPEC §5 for a configured dataset: the SSL split
//! (augmented views), the classifier split and the test split (evaluation
//! transform), read from where `cargo xtask download` puts them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ssl_data::{
    open_synthetic, open_tiny_imagenet, write_synthetic_cifar, CifarBinary, CifarKind, CifarSplit,
    DataError, Dataset, DatasetKind, ImageFolder, Loader, LoaderConfig, Pipeline, Sample, Stl10,
    Stl10Split, SyntheticConfig, TinyImageNetSplit,
};
use tch::{Device, Tensor};

use crate::config::{Config, DatasetName};

/// Any reader behind one type, so one loader type serves every dataset.
#[derive(Debug)]
pub struct AnyDataset {
    inner: Box<dyn DatasetDebug>,
    /// Only the first `limit` samples (0 = all): quick runs and tests.
    limit: usize,
}

/// `Dataset` + `Debug`, so readers can sit behind one box.
pub trait DatasetDebug: Dataset + std::fmt::Debug {}
impl<T: Dataset + std::fmt::Debug> DatasetDebug for T {}

impl AnyDataset {
    fn new(inner: impl DatasetDebug + 'static, limit: usize) -> Self {
        Self {
            inner: Box::new(inner),
            limit,
        }
    }
}

impl Dataset for AnyDataset {
    fn len(&self) -> usize {
        match self.limit {
            0 => self.inner.len(),
            n => n.min(self.inner.len()),
        }
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn get(&self, index: usize) -> Result<Sample, DataError> {
        self.inner.get(index)
    }
}

#[derive(Debug)]
pub struct Splits {
    pub ssl: Arc<AnyDataset>,
    pub classifier: Arc<AnyDataset>,
    pub test: Arc<AnyDataset>,
    pub kind: DatasetKind,
}

fn missing(dataset: DatasetName, dir: &Path, root: &Path) -> anyhow::Error {
    let fetch = match dataset {
        DatasetName::Imagenet => format!(
            "ImageNet needs an account: place it as {}/train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, \
             then check it with `cargo xtask check-imagenet {}`",
            root.display(),
            root.display()
        ),
        _ => format!(
            "download it with `cargo xtask download {dataset} --dir {}`",
            root.display()
        ),
    };
    anyhow::anyhow!(
        "dataset {dataset} not found at {} (data.path = {}): {fetch}",
        dir.display(),
        root.display()
    )
}

/// The synthetic dataset of the demo and the tests, written once (CIFAR
/// binary format, read back through the real reader).
pub fn synthetic_dir(root: &Path) -> PathBuf {
    root.join("synthetic-cifar")
}

pub fn open_splits(cfg: &Config) -> Result<Splits> {
    let root = &cfg.data.path;
    let limit = cfg.data.subset;
    let ds = cfg.data.dataset;
    Ok(match ds {
        DatasetName::Cifar10 | DatasetName::Cifar100 => {
            let (kind, sub, dkind) = if ds == DatasetName::Cifar10 {
                (
                    CifarKind::Cifar10,
                    "cifar-10-batches-bin",
                    DatasetKind::Cifar10,
                )
            } else {
                (
                    CifarKind::Cifar100,
                    "cifar-100-binary",
                    DatasetKind::Cifar100,
                )
            };
            let dir = root.join(sub);
            if !dir.is_dir() {
                return Err(missing(ds, &dir, root));
            }
            let open = |split| {
                CifarBinary::open(&dir, kind, split).with_context(|| format!("opening {ds}"))
            };
            let train = Arc::new(AnyDataset::new(open(CifarSplit::Train)?, limit));
            Splits {
                ssl: train.clone(),
                classifier: train,
                test: Arc::new(AnyDataset::new(open(CifarSplit::Test)?, 0)),
                kind: dkind,
            }
        }
        DatasetName::Synthetic => {
            let dir = synthetic_dir(root);
            let sc = SyntheticConfig::demo();
            if !dir.join("test_batch.bin").exists() {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                write_synthetic_cifar(&dir, &sc).with_context(|| {
                    format!("writing the synthetic dataset to {}", dir.display())
                })?;
            }
            let train = Arc::new(AnyDataset::new(
                open_synthetic(&dir, &sc, CifarSplit::Train)?,
                limit,
            ));
            Splits {
                ssl: train.clone(),
                classifier: train,
                test: Arc::new(AnyDataset::new(
                    open_synthetic(&dir, &sc, CifarSplit::Test)?,
                    0,
                )),
                kind: DatasetKind::Cifar10,
            }
        }
        DatasetName::Stl10 => {
            let dir = root.join("stl10_binary");
            if !dir.is_dir() {
                return Err(missing(ds, &dir, root));
            }
            let open = |split| Stl10::open(&dir, split).with_context(|| format!("opening {ds}"));
            Splits {
                ssl: Arc::new(AnyDataset::new(open(Stl10Split::TrainUnlabeled)?, limit)),
                classifier: Arc::new(AnyDataset::new(open(Stl10Split::Train)?, 0)),
                test: Arc::new(AnyDataset::new(open(Stl10Split::Test)?, 0)),
                kind: DatasetKind::Stl10,
            }
        }
        DatasetName::TinyImagenet => {
            let dir = root.join("tiny-imagenet-200");
            if !dir.is_dir() {
                return Err(missing(ds, &dir, root));
            }
            let open =
                |split| open_tiny_imagenet(&dir, split).with_context(|| format!("opening {ds}"));
            let train = Arc::new(AnyDataset::new(open(TinyImageNetSplit::Train)?, limit));
            Splits {
                ssl: train.clone(),
                classifier: train,
                test: Arc::new(AnyDataset::new(open(TinyImageNetSplit::Val)?, 0)),
                kind: DatasetKind::TinyImageNet,
            }
        }
        DatasetName::Imagenet => {
            if !root.join("train").is_dir() {
                return Err(missing(ds, &root.join("train"), root));
            }
            let open = |split: &str| {
                ImageFolder::open(&root.join(split))
                    .with_context(|| format!("opening {ds} {split}"))
            };
            let train = Arc::new(AnyDataset::new(open("train")?, limit));
            Splits {
                ssl: train.clone(),
                classifier: train,
                test: Arc::new(AnyDataset::new(open("val")?, 0)),
                kind: DatasetKind::ImageNet,
            }
        }
    })
}

fn threads(cfg: &Config) -> usize {
    match cfg.data.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The SSL loader: shuffled, drop-last, `views` augmented views.
pub fn ssl_loader(cfg: &Config, splits: &Splits, device: Device) -> Result<Loader<AnyDataset>> {
    let pipeline = match splits.kind {
        DatasetKind::ImageNet => Pipeline::ssl_imagenet(),
        k => Pipeline::ssl_small(k),
    };
    // Data-parallel: this rank's share of the global batch, from its shard.
    let mut lc = LoaderConfig::new(
        super::dist::per_rank_batch(cfg)? as usize,
        cfg.data.views as usize,
        cfg.run.seed,
    );
    lc.threads = threads(cfg);
    lc.device = device;
    lc.shard = super::dist::shard();
    if splits.ssl.len() < lc.batch_size {
        bail!(
            "data.batch_size = {} is larger than the SSL split ({} images)",
            lc.batch_size,
            splits.ssl.len()
        );
    }
    Ok(Loader::new(splits.ssl.clone(), pipeline, lc)?)
}

/// Features of a split under the evaluation transform, in dataset order,
/// streamed batch by batch through `encode` (no whole-split image tensor).
pub fn split_features(
    cfg: &Config,
    dataset: &Arc<AnyDataset>,
    kind: DatasetKind,
    device: Device,
    encode: impl FnMut(&Tensor) -> Tensor,
    what: &str,
) -> Result<ssl_eval::Features> {
    let mut lc = LoaderConfig::new(256, 1, cfg.run.seed);
    lc.threads = threads(cfg);
    lc.shuffle = false;
    lc.drop_last = false;
    lc.device = device;
    let loader = Loader::new(dataset.clone(), Pipeline::eval(kind), lc)?;
    let mut failure = None;
    let batches = loader.epoch(0).map_while(|b| match b {
        Ok(mut b) => Some((b.views.remove(0), b.labels)),
        Err(e) => {
            failure = Some(e);
            None
        }
    });
    let features = ssl_eval::extract_features(encode, batches, device, what)?;
    if let Some(e) = failure {
        return Err(e).with_context(|| format!("reading the {what} split"));
    }
    Ok(features)
}
