//! The splits a run reads: the SSL split (augmented views) and, for the
//! evaluations, a labelled classifier split and test split (evaluation
//! transform). [`open_splits`] reads a configured dataset from where
//! `cargo xtask download` puts it (the splits of the paper §5); a caller
//! brings its own data with [`Splits::custom`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ssl_data::{
    open_synthetic, open_tiny_imagenet, write_synthetic_cifar, CifarBinary, CifarKind, CifarSplit,
    DataError, Dataset, DatasetKind, ImageFolder, Loader, LoaderConfig, Normalize, Pipeline,
    Sample, Stl10, Stl10Split, SyntheticConfig, TinyImageNetSplit,
};
use tch::{Device, Tensor};

use crate::config::{Config, DatasetName};
use crate::data_parallel::per_rank_batch;
use crate::error::{bail, Context, Result, TrainError};

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
    /// `inner`, of which only the first `limit` samples are used (0 = all).
    pub fn new(inner: impl DatasetDebug + 'static, limit: usize) -> Self {
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
    fn get_part(
        &self,
        index: usize,
        need: &mut dyn FnMut(
            usize,
            usize,
        ) -> Option<ssl_data::augment::random_resized_crop::CropBox>,
    ) -> Result<ssl_data::PartSample, DataError> {
        self.inner.get_part(index, need)
    }
}

/// The splits of a run and their transforms.
#[derive(Debug)]
pub struct Splits {
    /// What self-supervised training reads (labels unused).
    pub ssl: Arc<AnyDataset>,
    /// The labelled splits the evaluations read, if any.
    pub labelled: Option<Labelled>,
    /// The augmentation recipe of the SSL views.
    pub ssl_pipeline: Pipeline,
    /// The evaluation transform (classifier and test splits).
    pub eval_pipeline: Pipeline,
    /// Which of the paper's datasets this is (`None`: a caller's own data).
    pub kind: Option<DatasetKind>,
    /// Lines for the run's log (measured statistics, …).
    pub notes: Vec<String>,
}

/// The labelled splits of the evaluations.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// What the k-NN and linear classifiers are fitted on.
    pub classifier: Arc<AnyDataset>,
    /// What they are scored on.
    pub test: Arc<AnyDataset>,
}

impl Splits {
    /// A caller's own data: `ssl` for training, `labelled` (classifier,
    /// test) for the evaluations or `None` to skip them, and the two
    /// transforms (e.g. [`Pipeline::ssl_small`] and [`Pipeline::eval`] of
    /// the dataset kind closest to the images).
    pub fn custom(
        ssl: impl DatasetDebug + 'static,
        labelled: Option<(AnyDataset, AnyDataset)>,
        ssl_pipeline: Pipeline,
        eval_pipeline: Pipeline,
    ) -> Self {
        Self {
            ssl: Arc::new(AnyDataset::new(ssl, 0)),
            labelled: labelled.map(|(classifier, test)| Labelled {
                classifier: Arc::new(classifier),
                test: Arc::new(test),
            }),
            ssl_pipeline,
            eval_pipeline,
            kind: None,
            notes: Vec::new(),
        }
    }

    fn paper(
        ssl: Arc<AnyDataset>,
        classifier: Arc<AnyDataset>,
        test: Arc<AnyDataset>,
        kind: DatasetKind,
    ) -> Self {
        Self {
            ssl,
            labelled: Some(Labelled { classifier, test }),
            ssl_pipeline: match kind {
                DatasetKind::ImageNet => Pipeline::ssl_imagenet(),
                k => Pipeline::ssl_small(k),
            },
            eval_pipeline: Pipeline::eval(kind),
            kind: Some(kind),
            notes: Vec::new(),
        }
    }

    /// The labelled splits, or an error saying there are none.
    pub fn labelled(&self) -> Result<&Labelled> {
        self.labelled.as_ref().ok_or_else(|| {
            TrainError::Invalid(
                "this run has no labelled evaluation split (classifier + test)".into(),
            )
        })
    }
}

fn missing(dataset: DatasetName, dir: &Path, root: &Path) -> TrainError {
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
    TrainError::Invalid(format!(
        "dataset {dataset} not found at {} (data.path = {}): {fetch}",
        dir.display(),
        root.display()
    ))
}

/// The synthetic dataset of the demo and the tests, written once (CIFAR
/// binary format, read back through the real reader). The folder is named
/// after the generator (`ssl_data::synthetic`), so data written by an
/// earlier generator is never read as this one's.
pub fn synthetic_dir(root: &Path) -> PathBuf {
    root.join("synthetic-shapes")
}

/// The splits of the configured dataset (`data.dataset`, `data.path`,
/// `data.subset`; the synthetic dataset is written on first use), with the
/// SSL crop `data.crop` and the normalisation `data.mean`/`data.std` (or
/// measured, `data.measure_stats`) applied to the transforms.
pub fn open_splits(cfg: &Config) -> Result<Splits> {
    let mut splits = match cfg.data.dataset {
        DatasetName::Folder => folder_splits(cfg)?,
        _ => paper_splits(cfg)?,
    };
    let crop = cfg.data.crop as usize;
    if splits.ssl_pipeline.output_size() != (crop, crop) {
        splits.ssl_pipeline = splits.ssl_pipeline.clone().with_crop(crop);
    }
    let stats = if cfg.data.measure_stats {
        let (mean, std) = measure_stats(&splits.ssl, 512)?;
        splits.notes.push(format!(
            "data.measure_stats: mean {mean:.4?}, std {std:.4?} over up to 512 training images"
        ));
        Some((mean, std))
    } else if !cfg.data.mean.is_empty() {
        let three = |v: &[f64]| [v[0] as f32, v[1] as f32, v[2] as f32];
        Some((three(&cfg.data.mean), three(&cfg.data.std)))
    } else {
        None
    };
    if let Some((mean, std)) = stats {
        let n = Normalize::new(mean, std)?;
        splits.ssl_pipeline = splits.ssl_pipeline.clone().with_normalize(n);
        splits.eval_pipeline = splits.eval_pipeline.clone().with_normalize(n);
    }
    Ok(splits)
}

/// Per-channel mean and standard deviation of the pixels (in [0, 1]) of up
/// to `max` images spread evenly over `dataset`.
pub fn measure_stats(dataset: &AnyDataset, max: usize) -> Result<([f32; 3], [f32; 3])> {
    let n = dataset.len().min(max).max(1);
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut count = 0f64;
    for k in 0..n.min(dataset.len()) {
        let index = k * dataset.len() / n;
        let image = dataset.get(index)?.image;
        for px in image.as_raw().chunks_exact(3) {
            for c in 0..3 {
                let v = f64::from(px[c]) / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        count += (image.width() * image.height()) as f64;
    }
    if count == 0.0 {
        bail!("data.measure_stats: the training split has no pixels");
    }
    let mean = sum.map(|s| s / count);
    let std: Vec<f64> = (0..3)
        .map(|c| {
            (sq[c] / count - mean[c] * mean[c])
                .max(0.0)
                .sqrt()
                .max(1e-3)
        })
        .collect();
    Ok((
        mean.map(|m| m as f32),
        [std[0] as f32, std[1] as f32, std[2] as f32],
    ))
}

/// `data.path` as a folder of images: class sub-folders (labels kept) or a
/// flat folder (one class, labels unused), and `data.eval_path`'s
/// `train/` and `val/` for the evaluations when given.
fn folder_splits(cfg: &Config) -> Result<Splits> {
    let root = &cfg.data.path;
    if !root.is_dir() {
        bail!(
            "data.path = {}: no such folder (data.dataset = \"folder\" trains on the images in \
             it, or in its class sub-folders)",
            root.display()
        );
    }
    let has_class_dirs = std::fs::read_dir(root)
        .with_context(|| format!("reading {}", root.display()))?
        .flatten()
        .any(|e| e.path().is_dir());
    let ssl = if has_class_dirs {
        ImageFolder::open(root).with_context(|| format!("opening {}", root.display()))?
    } else {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root)
            .with_context(|| format!("reading {}", root.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| ssl_data::image_folder::is_image_file(p))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "data.path = {}: no image files in it (nor class sub-folders)",
                root.display()
            );
        }
        let entries = files.into_iter().map(|f| (f, 0)).collect();
        ImageFolder::from_entries(vec!["unlabelled".into()], entries)?
    };
    let labelled = if cfg.data.eval_path.as_os_str().is_empty() {
        None
    } else {
        let open = |split: &str| -> Result<AnyDataset> {
            let dir = cfg.data.eval_path.join(split);
            let folder = ImageFolder::open(&dir).with_context(|| {
                format!(
                    "data.eval_path: opening {} (labelled class sub-folders expected)",
                    dir.display()
                )
            })?;
            Ok(AnyDataset::new(folder, 0))
        };
        Some((open("train")?, open("val")?))
    };
    let crop = cfg.data.crop as usize;
    let ssl_pipeline = if crop < 96 {
        Pipeline::ssl_small(DatasetKind::Cifar10)
    } else {
        Pipeline::ssl_imagenet()
    }
    .with_crop(crop)
    .with_normalize(DatasetKind::ImageNet.normalize());
    let eval_pipeline = Pipeline::eval(DatasetKind::ImageNet).with_crop(crop);
    Ok(Splits::custom(
        AnyDataset::new(ssl, cfg.data.subset),
        labelled,
        ssl_pipeline,
        eval_pipeline,
    ))
}

fn paper_splits(cfg: &Config) -> Result<Splits> {
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
            let test = Arc::new(AnyDataset::new(open(CifarSplit::Test)?, 0));
            Splits::paper(train.clone(), train, test, dkind)
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
            let test = Arc::new(AnyDataset::new(
                open_synthetic(&dir, &sc, CifarSplit::Test)?,
                0,
            ));
            Splits::paper(train.clone(), train, test, DatasetKind::Cifar10)
        }
        DatasetName::Stl10 => {
            let dir = root.join("stl10_binary");
            if !dir.is_dir() {
                return Err(missing(ds, &dir, root));
            }
            let open = |split| Stl10::open(&dir, split).with_context(|| format!("opening {ds}"));
            Splits::paper(
                Arc::new(AnyDataset::new(open(Stl10Split::TrainUnlabeled)?, limit)),
                Arc::new(AnyDataset::new(open(Stl10Split::Train)?, 0)),
                Arc::new(AnyDataset::new(open(Stl10Split::Test)?, 0)),
                DatasetKind::Stl10,
            )
        }
        DatasetName::TinyImagenet => {
            let dir = root.join("tiny-imagenet-200");
            if !dir.is_dir() {
                return Err(missing(ds, &dir, root));
            }
            let open =
                |split| open_tiny_imagenet(&dir, split).with_context(|| format!("opening {ds}"));
            let train = Arc::new(AnyDataset::new(open(TinyImageNetSplit::Train)?, limit));
            let test = Arc::new(AnyDataset::new(open(TinyImageNetSplit::Val)?, 0));
            Splits::paper(train.clone(), train, test, DatasetKind::TinyImageNet)
        }
        DatasetName::Folder => folder_splits(cfg)?,
        DatasetName::Imagenet => {
            if !root.join("train").is_dir() {
                return Err(missing(ds, &root.join("train"), root));
            }
            let open = |split: &str| {
                ImageFolder::open(&root.join(split))
                    .with_context(|| format!("opening {ds} {split}"))
            };
            let train = Arc::new(AnyDataset::new(open("train")?, limit));
            let test = Arc::new(AnyDataset::new(open("val")?, 0));
            Splits::paper(train.clone(), train, test, DatasetKind::ImageNet)
        }
    })
}

fn threads(cfg: &Config) -> usize {
    match cfg.data.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The SSL loader: shuffled, drop-last, `views` augmented views; with
/// several ranks, this rank's `shard` with its share of the global batch.
pub fn ssl_loader(
    cfg: &Config,
    splits: &Splits,
    device: Device,
    shard: ssl_data::Shard,
) -> Result<Loader<AnyDataset>> {
    let mut lc = LoaderConfig::new(
        per_rank_batch(cfg, shard.count)? as usize,
        cfg.data.views as usize,
        cfg.run.seed,
    );
    lc.threads = threads(cfg);
    lc.device = device;
    lc.shard = shard;
    lc.skip_unreadable = cfg.data.skip_unreadable;
    if splits.ssl.len() < lc.batch_size {
        bail!(
            "data.batch_size = {} is larger than the SSL split ({} images)",
            lc.batch_size,
            splits.ssl.len()
        );
    }
    Ok(Loader::new(
        splits.ssl.clone(),
        splits.ssl_pipeline.clone(),
        lc,
    )?)
}

/// Features of a split under the evaluation transform, in dataset order,
/// streamed batch by batch through `encode` (no whole-split image tensor).
pub fn split_features(
    cfg: &Config,
    dataset: &Arc<AnyDataset>,
    pipeline: &Pipeline,
    device: Device,
    encode: impl FnMut(&Tensor) -> Tensor,
    what: &str,
) -> Result<ssl_eval::Features> {
    let mut lc = LoaderConfig::new(256, 1, cfg.run.seed);
    lc.threads = threads(cfg);
    lc.shuffle = false;
    lc.drop_last = false;
    lc.device = device;
    let loader = Loader::new(dataset.clone(), pipeline.clone(), lc)?;
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
