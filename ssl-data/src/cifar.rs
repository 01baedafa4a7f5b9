//! CIFAR-10 and CIFAR-100 binary batches (`docs/reference.md` §5.5): each
//! record is the label byte(s) — CIFAR-100: coarse then fine — followed by the
//! R, G and B planes of a `side × side` image (`side` = 32 for the published
//! data; the synthetic generator writes other sides in the same layout).

use std::path::{Path, PathBuf};

use crate::dataset::{Dataset, Sample};
use crate::error::DataError;
use crate::image::RgbImage;
use crate::mapped_file::MappedFile;

/// Which of the two record layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    /// 1 label byte in `0..10`.
    Cifar10,
    /// A coarse label byte in `0..20` then a fine label byte in `0..100`; the
    /// fine label is the class.
    Cifar100,
}

impl CifarKind {
    /// Label bytes before the image in each record.
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Number of (fine) classes.
    pub fn classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    /// The distribution's file names for a split, as the tarballs unpack them
    /// (`cifar-10-batches-bin/`, `cifar-100-binary/`).
    pub fn file_names(self, split: CifarSplit) -> Vec<String> {
        match (self, split) {
            (CifarKind::Cifar10, CifarSplit::Train) => {
                (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
            }
            (CifarKind::Cifar10, CifarSplit::Test) => vec!["test_batch.bin".into()],
            (CifarKind::Cifar100, CifarSplit::Train) => vec!["train.bin".into()],
            (CifarKind::Cifar100, CifarSplit::Test) => vec!["test.bin".into()],
        }
    }
}

/// The training or the test split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarSplit {
    /// 50 000 images (5 batches of 10 000 for CIFAR-10).
    Train,
    /// 10 000 images.
    Test,
}

/// CIFAR binary batches, memory-mapped; labels are validated when opened,
/// images decoded (planes → `HWC`) on [`Dataset::get`].
#[derive(Debug)]
pub struct CifarBinary {
    kind: CifarKind,
    side: usize,
    files: Vec<MappedFile>,
    /// `starts[f]` is the index of the first record of file `f`; last entry = total.
    starts: Vec<usize>,
}

impl CifarBinary {
    /// Opens the standard files of `split` in `dir` (32×32 images).
    pub fn open(dir: &Path, kind: CifarKind, split: CifarSplit) -> Result<Self, DataError> {
        Self::open_with_side(dir, kind, split, 32)
    }

    /// Opens the standard files of `split` in `dir` with `side × side` images.
    pub fn open_with_side(
        dir: &Path,
        kind: CifarKind,
        split: CifarSplit,
        side: usize,
    ) -> Result<Self, DataError> {
        let paths: Vec<PathBuf> = kind.file_names(split).iter().map(|n| dir.join(n)).collect();
        Self::from_files(&paths, kind, side)
    }

    /// Opens the given batch files, in order. Each must hold a whole number of
    /// `label_bytes + 3 side²` byte records with labels in range.
    pub fn from_files(paths: &[PathBuf], kind: CifarKind, side: usize) -> Result<Self, DataError> {
        if side == 0 {
            return Err(DataError::InvalidParameter(
                "CIFAR image side must be positive".into(),
            ));
        }
        let record = kind.label_bytes() + 3 * side * side;
        let mut files = Vec::with_capacity(paths.len());
        let mut starts = vec![0usize];
        for path in paths {
            let file = MappedFile::open(path)?;
            let n = file.whole_records(record)?;
            check_labels(&file, kind, record, n)?;
            starts.push(starts[starts.len() - 1] + n);
            files.push(file);
        }
        Ok(Self {
            kind,
            side,
            files,
            starts,
        })
    }

    /// The record layout.
    pub fn kind(&self) -> CifarKind {
        self.kind
    }

    /// Image side in pixels.
    pub fn side(&self) -> usize {
        self.side
    }

    /// CIFAR-100's coarse label (superclass, `0..20`) of sample `index`.
    pub fn coarse_label(&self, index: usize) -> Result<Option<u32>, DataError> {
        let (bytes, _) = self.record(index)?;
        Ok((self.kind == CifarKind::Cifar100).then_some(bytes[0] as u32))
    }

    fn record(&self, index: usize) -> Result<(&[u8], usize), DataError> {
        let total = self.starts[self.starts.len() - 1];
        if index >= total {
            return Err(DataError::IndexOutOfRange { index, len: total });
        }
        // the last file whose start is <= index
        let f = self.starts.partition_point(|&s| s <= index) - 1;
        let record = self.kind.label_bytes() + 3 * self.side * self.side;
        let offset = (index - self.starts[f]) * record;
        Ok((&self.files[f].bytes()[offset..offset + record], f))
    }
}

fn check_labels(
    file: &MappedFile,
    kind: CifarKind,
    record: usize,
    n: usize,
) -> Result<(), DataError> {
    let bytes = file.bytes();
    for r in 0..n {
        let o = r * record;
        let checks: &[(usize, u32, &'static str)] = match kind {
            CifarKind::Cifar10 => &[(0, 10, "")],
            CifarKind::Cifar100 => &[
                (0, 20, " (CIFAR-100 coarse label, first byte of the record)"),
                (1, 100, " (CIFAR-100 fine label, second byte of the record)"),
            ],
        };
        for &(at, classes, hint) in checks {
            let label = bytes[o + at] as u32;
            if label >= classes {
                return Err(DataError::BadLabel {
                    path: file.path().to_path_buf(),
                    record: r as u64,
                    offset: (o + at) as u64,
                    label,
                    classes,
                    hint,
                });
            }
        }
    }
    Ok(())
}

impl Dataset for CifarBinary {
    fn len(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }

    fn num_classes(&self) -> usize {
        self.kind.classes()
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let (bytes, _) = self.record(index)?;
        let lb = self.kind.label_bytes();
        let image = RgbImage::from_planes(self.side, self.side, &bytes[lb..])?;
        Ok(Sample {
            image,
            label: Some(bytes[lb - 1] as u32),
        })
    }
}

/// Encodes one record (the inverse of the reader): label byte(s) then planes.
/// For CIFAR-100 `coarse` is required; for CIFAR-10 it is ignored.
pub fn encode_record(kind: CifarKind, label: u8, coarse: u8, image: &RgbImage, out: &mut Vec<u8>) {
    if kind == CifarKind::Cifar100 {
        out.push(coarse);
    }
    out.push(label);
    out.extend_from_slice(&image.to_planes());
}
