//! Errors a user can act on: each names the file and the offset or entry.

use std::path::PathBuf;

/// What can go wrong while reading, generating or augmenting data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file system refused an operation.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A binary file ends inside a record.
    #[error(
        "{path}: {len} bytes is not a whole number of {record_bytes}-byte records: the partial record \
         starts at byte offset {offset} (is the file truncated?)"
    )]
    PartialRecord {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
        /// The size of one record in bytes.
        record_bytes: u64,
        /// Byte offset of the first incomplete record.
        offset: u64,
    },

    /// A label byte is outside the classes of the format.
    #[error("{path}: label {label} of record {record} (byte offset {offset}) is outside 0..{classes}{hint}")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Index of the record in the file.
        record: u64,
        /// Byte offset of the label.
        offset: u64,
        /// The label read.
        label: u32,
        /// The number of classes of the format.
        classes: u32,
        /// What the format stores, when it is not `0..classes` directly.
        hint: &'static str,
    },

    /// Two files that describe the same records disagree on their number.
    #[error("{images} holds {image_count} images but {labels} holds {label_count} labels")]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images in it.
        image_count: u64,
        /// The label file.
        labels: PathBuf,
        /// Labels in it.
        label_count: u64,
    },

    /// An image file could not be decoded.
    #[error("{path}: cannot decode the image (entry {entry} of the dataset): {message}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// Index of the entry in the dataset.
        entry: usize,
        /// The decoder's message.
        message: String,
    },

    /// A dataset folder does not have the documented layout.
    #[error("{path}: {message}")]
    Layout {
        /// The file or folder.
        path: PathBuf,
        /// What is missing or malformed.
        message: String,
    },

    /// An index past the end of a dataset.
    #[error("index {index} is out of range for a dataset of {len} samples")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The dataset's length.
        len: usize,
    },

    /// A parameter outside its valid range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),

    /// libtorch reported an error while building a batch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
