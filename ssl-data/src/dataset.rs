//! The random-access dataset interface the loader draws from.

use crate::error::DataError;
use crate::image::RgbImage;

/// One example: an image and its class, `None` for unlabeled data (STL-10's
/// `unlabeled` split).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The decoded image.
    pub image: RgbImage,
    /// The class index in `0..num_classes`, or `None` when unlabeled.
    pub label: Option<u32>,
}

/// A random-access dataset. Readers decode lazily in [`Dataset::get`] (from a
/// memory map or a file), so a dataset larger than memory can be read.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether the dataset has no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes labels are drawn from.
    fn num_classes(&self) -> usize;

    /// Decodes sample `index` (`0..len()`).
    fn get(&self, index: usize) -> Result<Sample, DataError>;
}

/// Samples already in memory (tests, benches, small user data).
#[derive(Clone, Debug)]
pub struct InMemoryDataset {
    samples: Vec<Sample>,
    num_classes: usize,
}

impl InMemoryDataset {
    /// Wraps samples; fails when a label is `>= num_classes`.
    pub fn new(samples: Vec<Sample>, num_classes: usize) -> Result<Self, DataError> {
        if let Some((i, s)) = samples
            .iter()
            .enumerate()
            .find(|(_, s)| s.label.is_some_and(|l| l as usize >= num_classes))
        {
            return Err(DataError::InvalidParameter(format!(
                "sample {i} has label {:?}, outside 0..{num_classes}",
                s.label
            )));
        }
        Ok(Self {
            samples,
            num_classes,
        })
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        self.samples
            .get(index)
            .cloned()
            .ok_or(DataError::IndexOutOfRange {
                index,
                len: self.samples.len(),
            })
    }
}
