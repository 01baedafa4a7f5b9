//! Datasets, synthetic data, torchvision-semantics augmentation and a
//! parallel deterministic loader for self-supervised learning, as the
//! official release's data pipelines run.
//!
//! - Readers for the formats users download: [`cifar`] (CIFAR-10/100 binary),
//!   [`stl10`], [`tiny_imagenet`], [`image_folder`] (ImageNet-style folders).
//!   Binary files are memory-mapped, image files decoded on access; JPEG
//!   exactly as Pillow decodes it ([`jpeg`], libjpeg-turbo), whole or only
//!   the part a crop needs.
//! - [`synthetic`]: a learnable, class-structured dataset written in CIFAR format.
//! - [`augment`]: the transforms of the published pipeline, matching
//!   torchvision on PIL images, and the official release's recipes ([`Pipeline`]).
//! - [`loader`]: shuffled multi-view batches as tch tensors, identical for
//!   any thread count, with bounded memory (`prefetch + 1` batches) and an
//!   option to skip unreadable files.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ssl_data::{CifarBinary, CifarKind, CifarSplit, DatasetKind, Loader, LoaderConfig, Pipeline};
//! let train = CifarBinary::open("cifar-10-batches-bin".as_ref(), CifarKind::Cifar10, CifarSplit::Train)?;
//! let loader = Loader::new(Arc::new(train), Pipeline::ssl_small(DatasetKind::Cifar10), LoaderConfig::new(256, 2, 0))?;
//! for batch in loader.epoch(0) {
//!     let batch = batch?; // batch.views[v]: [256, 3, 32, 32]
//! }
//! # Ok::<(), ssl_data::DataError>(())
//! ```

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod error;
pub mod image;
pub mod image_folder;
pub mod jpeg;
pub mod loader;
pub mod mapped_file;
pub mod seed;
pub mod stl10;
pub mod synthetic;
pub mod tiny_imagenet;

pub use augment::normalize::Normalize;
pub use augment::pipeline::{DatasetKind, Draw, Pipeline, Step};
pub use cifar::{CifarBinary, CifarKind, CifarSplit};
pub use dataset::{Dataset, InMemoryDataset, PartSample, Sample};
pub use error::DataError;
pub use image::RgbImage;
pub use image_folder::ImageFolder;
pub use loader::{Batch, EpochBatches, Loader, LoaderConfig, Shard, Skipped};
pub use stl10::{Stl10, Stl10Split};
pub use synthetic::{open_synthetic, write_synthetic_cifar, SyntheticConfig};
pub use tiny_imagenet::{open_tiny_imagenet, TinyImageNetSplit};
