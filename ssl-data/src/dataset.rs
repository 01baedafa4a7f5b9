//! The random-access dataset interface the loader draws from.

use crate::augment::random_resized_crop::CropBox;
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

    /// Decodes sample `index` for a caller that reads only part of it:
    /// `need(height, width)` is told the image's size before it is decoded
    /// and answers the box it will read (`None`: all of it). The returned
    /// image covers at least that box, its top-left pixel at `origin` of
    /// the whole image. Readers that can decode part of an image cheaply
    /// (JPEG files: [`crate::jpeg::decode_region`]) override this; the
    /// default decodes the whole image.
    fn get_part(
        &self,
        index: usize,
        need: &mut dyn FnMut(usize, usize) -> Option<CropBox>,
    ) -> Result<PartSample, DataError> {
        let sample = self.get(index)?;
        need(sample.image.height(), sample.image.width());
        Ok(PartSample {
            sample,
            origin: (0, 0),
        })
    }
}

/// A sample of which only part may have been decoded ([`Dataset::get_part`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSample {
    /// The decoded pixels (all of the image, or a rectangle of it) and the label.
    pub sample: Sample,
    /// `(left, top)` of `sample.image` in the whole image.
    pub origin: (usize, usize),
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
