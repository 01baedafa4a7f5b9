//! STL-10 binary files (`docs/reference.md` §5.5): `*_X.bin` holds 96×96×3
//! uint8 images, each as three column-major planes (byte `c·96² + x·96 + y` is
//! channel `c` of column `x`, row `y`); `*_y.bin` one label byte per image in
//! `1..=10`.

use std::path::Path;

use crate::dataset::{Dataset, Sample};
use crate::error::DataError;
use crate::image::RgbImage;
use crate::mapped_file::MappedFile;

/// STL-10 image side.
pub const STL10_SIDE: usize = 96;
const IMAGE_BYTES: usize = 3 * STL10_SIDE * STL10_SIDE;

/// Which files to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stl10Split {
    /// `train_X.bin` / `train_y.bin`: 5 000 labelled images.
    Train,
    /// `test_X.bin` / `test_y.bin`: 8 000 labelled images.
    Test,
    /// `unlabeled_X.bin`: 100 000 images without labels.
    Unlabeled,
    /// Train then unlabeled: the 105 000 images of the SSL split.
    TrainUnlabeled,
}

#[derive(Debug)]
struct Part {
    images: MappedFile,
    /// Labels already shifted to `0..10`.
    labels: Option<Vec<u8>>,
    count: usize,
}

/// STL-10, memory-mapped: images are read on [`Dataset::get`].
#[derive(Debug)]
pub struct Stl10 {
    parts: Vec<Part>,
}

impl Stl10 {
    /// Opens `split` in `dir` (the unpacked `stl10_binary/` folder).
    pub fn open(dir: &Path, split: Stl10Split) -> Result<Self, DataError> {
        let names: &[(&str, Option<&str>)] = match split {
            Stl10Split::Train => &[("train_X.bin", Some("train_y.bin"))],
            Stl10Split::Test => &[("test_X.bin", Some("test_y.bin"))],
            Stl10Split::Unlabeled => &[("unlabeled_X.bin", None)],
            Stl10Split::TrainUnlabeled => &[
                ("train_X.bin", Some("train_y.bin")),
                ("unlabeled_X.bin", None),
            ],
        };
        let mut parts = Vec::new();
        for &(x, y) in names {
            let images = MappedFile::open(&dir.join(x))?;
            let count = images.whole_records(IMAGE_BYTES)?;
            let labels = match y {
                Some(y) => Some(read_labels(&dir.join(y), images.path(), count)?),
                None => None,
            };
            parts.push(Part {
                images,
                labels,
                count,
            });
        }
        Ok(Self { parts })
    }
}

fn read_labels(path: &Path, images: &Path, count: usize) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.len() != count {
        return Err(DataError::CountMismatch {
            images: images.to_path_buf(),
            image_count: count as u64,
            labels: path.to_path_buf(),
            label_count: raw.len() as u64,
        });
    }
    raw.iter()
        .enumerate()
        .map(|(i, &l)| {
            if (1..=10).contains(&l) {
                Ok(l - 1)
            } else {
                Err(DataError::BadLabel {
                    path: path.to_path_buf(),
                    record: i as u64,
                    offset: i as u64,
                    label: l as u32,
                    classes: 10,
                    hint: " (STL-10 stores labels 1..=10, read as 0..10)",
                })
            }
        })
        .collect()
}

impl Dataset for Stl10 {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.count).sum()
    }

    fn num_classes(&self) -> usize {
        10
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let mut i = index;
        for part in &self.parts {
            if i < part.count {
                let bytes = &part.images.bytes()[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES];
                let s = STL10_SIDE;
                let mut data = vec![0u8; IMAGE_BYTES];
                for c in 0..3 {
                    let plane = &bytes[c * s * s..(c + 1) * s * s];
                    for x in 0..s {
                        let column = &plane[x * s..(x + 1) * s];
                        for (y, &v) in column.iter().enumerate() {
                            data[3 * (y * s + x) + c] = v;
                        }
                    }
                }
                return Ok(Sample {
                    image: RgbImage::from_raw(s, s, data)?,
                    label: part.labels.as_ref().map(|l| l[i] as u32),
                });
            }
            i -= part.count;
        }
        Err(DataError::IndexOutOfRange {
            index,
            len: self.len(),
        })
    }
}

/// Encodes an image in STL-10's column-major plane layout (the inverse of the
/// reader), for writing test files.
pub fn encode_image(image: &RgbImage) -> Result<Vec<u8>, DataError> {
    let s = STL10_SIDE;
    if image.width() != s || image.height() != s {
        return Err(DataError::InvalidParameter(format!(
            "STL-10 images are {s}x{s}, got {}x{}",
            image.width(),
            image.height()
        )));
    }
    let mut out = vec![0u8; IMAGE_BYTES];
    for c in 0..3 {
        for x in 0..s {
            for y in 0..s {
                out[c * s * s + x * s + y] = image.pixel(x, y)[c];
            }
        }
    }
    Ok(out)
}
