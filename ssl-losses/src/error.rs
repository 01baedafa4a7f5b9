//! Errors a caller can act on.

use whitening_core::WhiteningError;

/// What can go wrong when computing a loss, each message naming the
/// offending input, key or value.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// An input tensor has the wrong rank, shape or dtype.
    #[error("{what}: {problem}")]
    Shape {
        /// Which input (e.g. `"embeddings"`).
        what: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    /// A hyper-parameter is out of its valid range.
    #[error("method `{method}`: hyper-parameter `{key}` = {value} {reason}")]
    HyperParameter {
        /// The method's name.
        method: &'static str,
        /// The hyper-parameter's key, as in the config file.
        key: &'static str,
        /// Its value, formatted.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// The method needs an extra network output the caller did not pass.
    #[error("method `{method}` needs `{input}` ({why}) but none was given")]
    MissingInput {
        /// The method's name.
        method: &'static str,
        /// The missing output (the trainer's `MethodOutputs` field).
        input: &'static str,
        /// Which network produces it.
        why: &'static str,
    },

    /// No method has this name.
    #[error("unknown method `{name}`; valid names: {valid}")]
    UnknownMethod {
        /// The name asked for.
        name: String,
        /// The valid names, comma-separated.
        valid: String,
    },

    /// The whitening transform failed (rank-deficient or non-finite).
    #[error(transparent)]
    Whitening(#[from] WhiteningError),

    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
