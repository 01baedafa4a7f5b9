//! Errors of the evaluation protocols, each naming the input or setting at fault.

use std::path::PathBuf;

/// What can go wrong when evaluating features or an encoder.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A tensor has the wrong rank, length or dtype.
    #[error("{what}: expected {expected}, got shape {got:?}")]
    Shape {
        /// Which input (e.g. "k-NN train features").
        what: String,
        /// What the protocol needs, in words.
        expected: String,
        /// The shape it was given.
        got: Vec<i64>,
    },

    /// An input holds no examples.
    #[error("{0} is empty: the protocol needs at least one example")]
    Empty(String),

    /// A label is negative or not below the number of classes.
    #[error("{what}: labels must lie in [0, {num_classes}), found {min}..={max}")]
    LabelRange {
        /// Which labels.
        what: String,
        /// Number of classes the protocol uses.
        num_classes: i64,
        /// Smallest label found.
        min: i64,
        /// Largest label found.
        max: i64,
    },

    /// A configuration value is out of range.
    #[error("invalid setting {key} = {value}: {reason}")]
    Config {
        /// The setting's name (e.g. "knn.k").
        key: &'static str,
        /// Its value, as given.
        value: String,
        /// What it must be.
        reason: String,
    },

    /// Training produced a non-finite value.
    #[error("{0} became non-finite (NaN or inf): lower the learning rate or check the features")]
    NonFinite(String),

    /// Reading or writing a results file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },

    /// A results file is not valid JSON for [`crate::EvalResults`].
    #[error("results file {path} is not valid: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },

    /// The rank diagnostics of whitening-core failed.
    #[error(transparent)]
    Whitening(#[from] whitening_core::WhiteningError),

    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
