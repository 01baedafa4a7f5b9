//! The error type of the trainer: every failure names the key, file, step
//! or rank concerned, and keeps the error it came from as its source.

use std::fmt::Display;
use std::path::PathBuf;

/// A boxed error from a caller's callback or another library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong while configuring, training or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration that cannot train, naming the key, the value and a
    /// way out.
    #[error("{0}")]
    Config(String),
    /// Any other refusal (missing dataset, unwritable run directory, …).
    #[error("{0}")]
    Invalid(String),
    /// The loss became NaN or infinite: training stopped, the checkpoint
    /// from before the step is intact.
    #[error(
        "step {step} (epoch {epoch}): {diagnosis}. Training stopped; the last good checkpoint is {}",
        checkpoint.display()
    )]
    NonFinite {
        /// The global step (0-based) whose loss was not finite.
        step: usize,
        /// The epoch, 1-based as printed.
        epoch: usize,
        /// Which term, and what the embeddings looked like.
        diagnosis: String,
        /// The last good checkpoint.
        checkpoint: PathBuf,
    },
    /// A failure with what was being done when it happened.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// The failure itself.
        #[source]
        source: BoxError,
    },
    /// A caller's callback (events, observer) failed.
    #[error("callback: {0}")]
    Callback(BoxError),
    /// Reading a dataset or augmenting failed.
    #[error(transparent)]
    Data(#[from] ssl_data::DataError),
    /// Building networks, the optimiser or a checkpoint failed.
    #[error(transparent)]
    Model(#[from] ssl_models::ModelError),
    /// A loss refused its inputs.
    #[error(transparent)]
    Loss(#[from] ssl_losses::LossError),
    /// An evaluation protocol failed.
    #[error(transparent)]
    Eval(#[from] ssl_eval::EvalError),
    /// A collective of data-parallel training failed.
    #[error(transparent)]
    Dist(#[from] ssl_dist::DistError),
    /// A whitening or diagnostic computation failed.
    #[error(transparent)]
    Whitening(#[from] whitening_core::WhiteningError),
    /// libtorch refused an operation.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON (metadata, records) did not parse or serialise.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A configuration did not serialise to TOML.
    #[error(transparent)]
    TomlSer(#[from] toml::ser::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Adds what was being done to an error, as `anyhow::Context` does, keeping
/// the error as the source.
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context<C: Display>(self, context: C) -> Result<T>;
    /// Wraps the error with the context `f` builds (only on failure).
    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context<C: Display>(self, context: C) -> Result<T> {
        self.map_err(|e| TrainError::Context {
            context: context.to_string(),
            source: Box::new(e),
        })
    }

    fn with_context<C: Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| TrainError::Context {
            context: f().to_string(),
            source: Box::new(e),
        })
    }
}

/// Returns early with [`TrainError::Invalid`] and a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::TrainError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;
