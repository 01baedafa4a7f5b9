//! The error type of every fallible operation in this crate.

use std::path::PathBuf;

/// What went wrong, naming the file, tensor or value concerned.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value that cannot build a network or optimiser.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// libtorch refused an operation.
    #[error("{context}: {source}")]
    Tch {
        /// What was being done.
        context: String,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
    /// Reading, writing or renaming a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `read`, `write`, `rename`, …
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what it must be (truncated,
    /// corrupted, wrong format, checksum mismatch).
    #[error("{} is damaged: {reason}", path.display())]
    Damaged {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The tensors of a file do not fit the network they are loaded into;
    /// every mismatch is listed by name.
    #[error("{} does not match the model ({} mismatches): {}", path.display(), mismatches.len(), mismatches.join("; "))]
    Mismatch {
        /// The file concerned.
        path: PathBuf,
        /// One line per missing, unexpected or mis-shaped tensor.
        mismatches: Vec<String>,
    },
}

impl ModelError {
    /// Wraps a libtorch error with what was being done.
    pub(crate) fn tch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> ModelError {
        let context = context.into();
        move |source| ModelError::Tch { context, source }
    }

    /// Wraps an I/O error with the action and the file.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ModelError {
        let path = path.into();
        move |source| ModelError::Io {
            action,
            path,
            source,
        }
    }
}
